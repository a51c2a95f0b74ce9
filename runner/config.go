package runner

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/n8n-fn/n8n-fn/registry"
)

// Runner modes: how a runner gets behind the sidecar's broker.
const (
	ModeSpawn    = "spawn"    // the sidecar starts the official JS runner itself
	ModeExternal = "external" // a runner or the official launcher connects by itself
	ModeNone     = "none"     // no runner behind: only directives work
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid configuration")

// Config is everything `n8n-fn run` reads from the environment. Names follow n8n where n8n has one.
type Config struct {
	// Upstream: n8n's broker, n8n's names.
	BrokerURI      string        // N8N_RUNNERS_TASK_BROKER_URI
	AuthToken      string        // N8N_RUNNERS_AUTH_TOKEN
	MaxConcurrency int           // N8N_RUNNERS_MAX_CONCURRENCY
	MaxPayload     int64         // N8N_RUNNERS_MAX_PAYLOAD
	TaskTimeout    time.Duration // N8N_RUNNERS_TASK_TIMEOUT (seconds)

	// Ours.
	ID              string        // N8N_FN_ID
	TaskTypes       []string      // N8N_FN_TASK_TYPES
	BrokerListen    string        // N8N_FN_BROKER_LISTEN
	BrokerAuthToken string        // N8N_FN_BROKER_AUTH_TOKEN
	HealthListen    string        // N8N_FN_HEALTH_LISTEN ("off" = none)
	RunnerMode      string        // N8N_FN_RUNNER_MODE
	RunnerCommand   string        // N8N_FN_RUNNER_COMMAND
	RunnerArgs      []string      // N8N_FN_RUNNER_ARGS (space separated)
	RunnerDir       string        // N8N_FN_RUNNER_DIR
	NoRunnerWait    time.Duration // N8N_FN_NO_RUNNER_WAIT
	RedisURL        string        // N8N_FN_REDIS_URL
	Prefix          string        // N8N_FN_PREFIX
	Secret          string        // N8N_FN_SECRET
	N8NAPIURL       string        // N8N_FN_N8N_API_URL
	N8NAPIKey       string        // N8N_FN_N8N_API_KEY
	WebhookURL      string        // N8N_FN_WEBHOOK_URL
	ShutdownGrace   time.Duration // N8N_FN_SHUTDOWN_GRACE
	LogLevel        string        // N8N_FN_LOG_LEVEL
	LogFormat       string        // N8N_FN_LOG_FORMAT
	Pprof           bool          // N8N_FN_PPROF
}

// EnvVar documents one environment variable for `n8n-fn run --help` and the README.
type EnvVar struct {
	Name        string
	Default     string
	Description string
}

// healthOff as N8N_FN_HEALTH_LISTEN turns the health server off.
const healthOff = "off"

const defaultRunnerArgs = "--disallow-code-generation-from-strings --disable-proto=delete dist/start.js"

// EnvVars lists every variable `n8n-fn run` reads, in the order --help prints them.
func EnvVars() []EnvVar {
	return []EnvVar{
		{"N8N_RUNNERS_TASK_BROKER_URI", "http://127.0.0.1:5679", "n8n's task broker (the n8n process this sidecar serves)"},
		{"N8N_RUNNERS_AUTH_TOKEN", "(required)", "n8n's runner auth token (n8n runs with N8N_RUNNERS_MODE=external)"},
		{"N8N_RUNNERS_MAX_CONCURRENCY", "10", "tasks run at once (native + relayed); also given to the spawned runner"},
		{"N8N_RUNNERS_MAX_PAYLOAD", "1073741824", "largest websocket message in bytes, both sides"},
		{"N8N_RUNNERS_TASK_TIMEOUT", "300", "n8n's task timeout in seconds; the spawned runner gets a few seconds less"},
		{"N8N_FN_ID", "hostname-pid", "this sidecar's id (runner id toward n8n, logs, heartbeats)"},
		{"N8N_FN_TASK_TYPES", "javascript", "task types taken from n8n (add python when a Python runner is attached behind)"},
		{"N8N_FN_BROKER_LISTEN", "127.0.0.1:5700", "address of the broker for runners behind the sidecar"},
		{"N8N_FN_BROKER_AUTH_TOKEN", "= N8N_RUNNERS_AUTH_TOKEN", "auth token runners/launchers behind the sidecar must present"},
		{"N8N_FN_HEALTH_LISTEN", "127.0.0.1:5701", "address of /healthz and /readyz (off = no health server)"},
		{"N8N_FN_RUNNER_MODE", "spawn", "spawn: start the official JS runner; external: a runner/launcher connects; none: directives only"},
		{"N8N_FN_RUNNER_COMMAND", "node", "spawn mode: command that starts the official JS runner"},
		{"N8N_FN_RUNNER_ARGS", defaultRunnerArgs, "spawn mode: its arguments (space separated)"},
		{"N8N_FN_RUNNER_DIR", "(required in spawn mode)", "spawn mode: its working dir, the @n8n/task-runner package dir"},
		{"GENERIC_TIMEZONE", "America/New_York", "spawn mode: passed to the runner ($now's zone); set it to n8n's value"},
		{"N8N_FN_NO_RUNNER_WAIT", "60s", "how long an ordinary Code task waits for a runner behind to take it before it fails (n8n's N8N_RUNNERS_TASK_REQUEST_TIMEOUT)"},
		{"N8N_FN_REDIS_URL", "redis://127.0.0.1:6379/0", "Redis for function calls (n8n's queue-mode Redis)"},
		{"N8N_FN_PREFIX", "n8nfn:", "prefix of every Redis key of n8n-fn"},
		{"N8N_FN_SECRET", "(required for functions)", "HMAC secret shared by all sidecars (signs function calls)"},
		{"N8N_FN_N8N_API_URL", "http://127.0.0.1:5678", "n8n's base URL for the public API (function discovery)"},
		{"N8N_FN_N8N_API_KEY", "", "n8n public API key (function discovery)"},
		{"N8N_FN_WEBHOOK_URL", "= N8N_FN_N8N_API_URL + /webhook", "base URL that triggers function webhooks"},
		{"N8N_FN_SHUTDOWN_GRACE", "30s", "on SIGTERM: how long in-flight tasks may take to finish"},
		{"N8N_FN_LOG_LEVEL", "info", "trace, debug, info, warn, error"},
		{"N8N_FN_LOG_FORMAT", "text", "text or json"},
		{"N8N_FN_PPROF", "false", "true: also serve Go's /debug/pprof/ on the health address (profiling; keep it off in production)"},
	}
}

// ConfigFromEnv reads the configuration through getenv (os.Getenv in production), fills defaults and
// validates it.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var c Config
	var errs []error
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	atoi := func(name string) int {
		v := get(name)
		if v == "" {
			return 0
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive whole number", name, v))
			return 0
		}
		return n
	}
	c.BrokerURI = get("N8N_RUNNERS_TASK_BROKER_URI")
	c.AuthToken = getenv("N8N_RUNNERS_AUTH_TOKEN")
	c.MaxConcurrency = atoi("N8N_RUNNERS_MAX_CONCURRENCY")
	c.MaxPayload = int64(atoi("N8N_RUNNERS_MAX_PAYLOAD"))
	c.TaskTimeout = time.Duration(atoi("N8N_RUNNERS_TASK_TIMEOUT")) * time.Second
	c.ID = get("N8N_FN_ID")
	if v := get("N8N_FN_TASK_TYPES"); v != "" {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				c.TaskTypes = append(c.TaskTypes, t)
			}
		}
	}
	c.BrokerListen = get("N8N_FN_BROKER_LISTEN")
	c.BrokerAuthToken = getenv("N8N_FN_BROKER_AUTH_TOKEN")
	c.HealthListen = get("N8N_FN_HEALTH_LISTEN")
	c.RunnerMode = strings.ToLower(get("N8N_FN_RUNNER_MODE"))
	c.RunnerCommand = get("N8N_FN_RUNNER_COMMAND")
	c.RunnerArgs = strings.Fields(getenv("N8N_FN_RUNNER_ARGS"))
	c.RunnerDir = get("N8N_FN_RUNNER_DIR")
	c.NoRunnerWait = parseDuration("N8N_FN_NO_RUNNER_WAIT", get("N8N_FN_NO_RUNNER_WAIT"), &errs)
	c.RedisURL = get("N8N_FN_REDIS_URL")
	c.Prefix = get("N8N_FN_PREFIX")
	c.Secret = getenv("N8N_FN_SECRET")
	c.N8NAPIURL = get("N8N_FN_N8N_API_URL")
	c.N8NAPIKey = get("N8N_FN_N8N_API_KEY")
	c.WebhookURL = get("N8N_FN_WEBHOOK_URL")
	c.ShutdownGrace = parseDuration("N8N_FN_SHUTDOWN_GRACE", get("N8N_FN_SHUTDOWN_GRACE"), &errs)
	c.LogLevel = strings.ToLower(get("N8N_FN_LOG_LEVEL"))
	c.LogFormat = strings.ToLower(get("N8N_FN_LOG_FORMAT"))
	switch v := strings.ToLower(get("N8N_FN_PPROF")); v {
	case "", "false", "0":
	case "true", "1":
		c.Pprof = true
	default:
		errs = append(errs, fmt.Errorf("N8N_FN_PPROF=%q: want true or false", v))
	}
	if len(errs) > 0 {
		return c, configError(errs)
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// parseDuration accepts Go durations ("30s", "1m") and plain seconds ("30").
func parseDuration(name, v string, errs *[]error) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		*errs = append(*errs, fmt.Errorf("%s=%q: want a positive duration like 30s or 2m (plain numbers are seconds)", name, v))
		return 0
	}
	return d
}

// setDefaults fills every zero field with its documented default.
func (c *Config) setDefaults() {
	if c.BrokerURI == "" {
		c.BrokerURI = "http://127.0.0.1:5679"
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = 10
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 1 << 30
	}
	if c.TaskTimeout == 0 {
		c.TaskTimeout = 300 * time.Second
	}
	if c.ID == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "n8n-fn"
		}
		c.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if len(c.TaskTypes) == 0 {
		c.TaskTypes = []string{"javascript"}
	}
	if c.BrokerListen == "" {
		c.BrokerListen = "127.0.0.1:5700"
	}
	if c.BrokerAuthToken == "" {
		c.BrokerAuthToken = c.AuthToken
	}
	if c.HealthListen == "" {
		c.HealthListen = "127.0.0.1:5701"
	}
	if c.RunnerMode == "" {
		c.RunnerMode = ModeSpawn
	}
	if c.RunnerCommand == "" {
		c.RunnerCommand = "node"
	}
	if len(c.RunnerArgs) == 0 {
		c.RunnerArgs = strings.Fields(defaultRunnerArgs)
	}
	if c.NoRunnerWait == 0 {
		c.NoRunnerWait = 60 * time.Second // n8n's N8N_RUNNERS_TASK_REQUEST_TIMEOUT default
	}
	if c.RedisURL == "" {
		c.RedisURL = "redis://127.0.0.1:6379/0"
	}
	if c.Prefix == "" {
		c.Prefix = "n8nfn:"
	}
	if c.N8NAPIURL == "" {
		c.N8NAPIURL = "http://127.0.0.1:5678"
	}
	c.N8NAPIURL = strings.TrimRight(c.N8NAPIURL, "/")
	if c.WebhookURL == "" {
		c.WebhookURL = c.N8NAPIURL + "/webhook"
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
}

// Validate checks a defaulted Config and returns every problem at once, each naming the variable.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if u, err := url.Parse(c.BrokerURI); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("N8N_RUNNERS_TASK_BROKER_URI=%q: want http://host:port of n8n's task broker (n8n's N8N_RUNNERS_BROKER_PORT, default 5679)", c.BrokerURI)
	}
	if c.AuthToken == "" {
		bad("N8N_RUNNERS_AUTH_TOKEN is not set: give the sidecar the same value as n8n's N8N_RUNNERS_AUTH_TOKEN")
	}
	if c.MaxConcurrency <= 0 {
		bad("N8N_RUNNERS_MAX_CONCURRENCY=%d: want at least 1", c.MaxConcurrency)
	}
	for _, t := range c.TaskTypes {
		if t != "javascript" && t != "python" {
			bad("N8N_FN_TASK_TYPES: unknown task type %q (want javascript and/or python)", t)
		}
	}
	if !contains(c.TaskTypes, "javascript") {
		bad("N8N_FN_TASK_TYPES=%q must include javascript: directives are javascript Code nodes", strings.Join(c.TaskTypes, ","))
	}
	if _, _, err := net.SplitHostPort(c.BrokerListen); err != nil {
		bad("N8N_FN_BROKER_LISTEN=%q: want host:port (%v)", c.BrokerListen, err)
	}
	if c.HealthListen != healthOff {
		if _, _, err := net.SplitHostPort(c.HealthListen); err != nil {
			bad("N8N_FN_HEALTH_LISTEN=%q: want host:port or off (%v)", c.HealthListen, err)
		}
	}
	switch c.RunnerMode {
	case ModeSpawn:
		if c.RunnerDir == "" {
			bad("N8N_FN_RUNNER_DIR is not set: in spawn mode it must be the @n8n/task-runner package directory (the one with dist/start.js), or set N8N_FN_RUNNER_MODE=external or none")
		} else if st, err := os.Stat(c.RunnerDir); err != nil || !st.IsDir() {
			bad("N8N_FN_RUNNER_DIR=%q is not a directory: point it at the @n8n/task-runner package (npm i @n8n/task-runner)", c.RunnerDir)
		} else if entry := c.runnerEntry(); entry != "" {
			if _, err := os.Stat(entry); err != nil {
				bad("spawn mode: the runner script %s does not exist: check N8N_FN_RUNNER_DIR and N8N_FN_RUNNER_ARGS", entry)
			}
		}
		if contains(c.TaskTypes, "python") {
			bad("N8N_FN_TASK_TYPES includes python but spawn mode starts only the JS runner: use N8N_FN_RUNNER_MODE=external with a launcher that serves python")
		}
	case ModeExternal, ModeNone:
	default:
		bad("N8N_FN_RUNNER_MODE=%q: want spawn, external or none", c.RunnerMode)
	}
	if c.RunnerMode == ModeNone && contains(c.TaskTypes, "python") {
		bad("N8N_FN_TASK_TYPES includes python but N8N_FN_RUNNER_MODE=none: python tasks could never run")
	}
	// The registry's parser, as every other command uses: it also takes redis+cluster:// and
	// redis+sentinel:// (a client is built, nothing connects).
	if rdb, err := registry.NewClient(c.RedisURL, 1); err != nil {
		bad("N8N_FN_REDIS_URL: %v", err)
	} else {
		_ = rdb.Close()
	}
	for name, v := range map[string]string{"N8N_FN_N8N_API_URL": c.N8NAPIURL, "N8N_FN_WEBHOOK_URL": c.WebhookURL} {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("%s=%q: want an http(s) URL", name, v)
		}
	}
	if c.ShutdownGrace <= 0 {
		bad("N8N_FN_SHUTDOWN_GRACE must be positive")
	}
	if _, err := logrus.ParseLevel(c.LogLevel); err != nil {
		bad("N8N_FN_LOG_LEVEL=%q: want trace, debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("N8N_FN_LOG_FORMAT=%q: want text or json", c.LogFormat)
	}
	if len(errs) > 0 {
		return configError(errs)
	}
	return nil
}

// configError lists every problem on its own line.
func configError(errs []error) error {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("%w:\n  - %s", ErrConfig, strings.Join(msgs, "\n  - "))
}

// Logger builds the logrus logger the configuration asks for.
func (c *Config) Logger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	if lvl, err := logrus.ParseLevel(c.LogLevel); err == nil {
		l.SetLevel(lvl)
	}
	if c.LogFormat == "json" {
		l.SetFormatter(&logrus.JSONFormatter{})
	} else {
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	return l
}

// runnerTaskTimeout is the timeout the spawned runner gets: a few seconds below n8n's, so the runner's
// own timeout error (which says what to do) wins over the broker's bare cancel.
func (c *Config) runnerTaskTimeout() int {
	s := int(c.TaskTimeout / time.Second)
	switch {
	case s >= 20:
		return s - 5
	case s >= 4:
		return s - 2
	default:
		return max(1, s)
	}
}

// runnerEntry is the spawn-mode start script as an absolute path, for error messages.
func (c *Config) runnerEntry() string {
	for _, a := range c.RunnerArgs {
		if strings.HasSuffix(a, ".js") {
			if filepath.IsAbs(a) {
				return a
			}
			return filepath.Join(c.RunnerDir, a)
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
