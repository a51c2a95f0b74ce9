package runner

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/runner/functions"
	"github.com/n8n-fn/n8n-fn/workflows"
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
	// RedisBudgetBytes caps the bytes of unanswered calls in Redis (N8N_FN_REDIS_BUDGET_BYTES).
	RedisBudgetBytes int64
	Secret           string        // N8N_FN_SECRET
	N8NAPIURL        string        // N8N_FN_N8N_API_URL
	N8NAPIKey        string        // N8N_FN_N8N_API_KEY
	DiscoveryTag     string        // N8N_FN_DISCOVERY_TAG
	WebhookURL       string        // N8N_FN_WEBHOOK_URL
	ShutdownGrace    time.Duration // N8N_FN_SHUTDOWN_GRACE
	LogLevel         string        // N8N_FN_LOG_LEVEL
	LogFormat        string        // N8N_FN_LOG_FORMAT
	Pprof            bool          // N8N_FN_PPROF
	TraceTTL         time.Duration // N8N_FN_TRACE_TTL; -1 = off
	StatusPage       bool          // N8N_FN_STATUS_PAGE
	MaxFrameDepth    int           // N8N_FN_MAX_FRAME_DEPTH
	ExecutionSlots   string        // N8N_FN_EXECUTION_SLOTS: "auto" or a whole number (executionSlots reads it)
	// Limits bound what a workflow sends (N8N_FN_MAX_PARAMS_BYTES, ..._JSON_DEPTH, ..._HEADER_BYTES,
	// ..._RESULT_BYTES, ..._CALL_ITEMS), read by workflows.LimitsFromEnv.
	Limits workflows.Limits
}

// ConfigFromEnv reads the configuration through getenv (os.Getenv in production), fills defaults and
// validates it. Every variable, its default and its parsing is in envTable (env.go).
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var c Config
	var errs []error
	for _, v := range envTable() {
		if err := v.read(&c, getenv); err != nil {
			errs = append(errs, err)
		}
	}
	lim, err := workflows.LimitsFromEnv(getenv)
	if err != nil {
		errs = append(errs, err)
	}
	c.Limits = lim
	if len(errs) > 0 {
		return c, configError(errs)
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// setDefaults fills every zero field with its default from envTable, then the derived ones (an
// id from the host name, the broker token from n8n's, the webhook URL from the API URL).
func (c *Config) setDefaults() {
	table := envTable()
	for _, v := range table {
		if v.field != nil && v.def != "" && v.isZero(c) {
			_ = v.set(c, v.def) // cannot fail: TestEnvDefaultsParse
		}
	}
	for _, v := range table {
		if v.derive != nil {
			v.derive(c)
		}
	}
}

// Validate checks a defaulted Config and returns every problem at once, each naming the variable.
func (c *Config) Validate() error {
	var p problems
	c.checkUpstream(&p)
	c.checkTaskTypes(&p)
	c.checkListeners(&p)
	c.checkRunnerMode(&p)
	c.checkURLs(&p)
	c.checkLogging(&p)
	if strings.Contains(c.DiscoveryTag, ",") {
		p.add("N8N_FN_DISCOVERY_TAG=%q: one tag name, without commas (n8n's API reads a comma as a list of tags that must all be present)", c.DiscoveryTag)
	}
	if len(p) > 0 {
		return configError(p)
	}
	return nil
}

// problems collects configuration errors.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

func (c *Config) checkUpstream(p *problems) {
	if !isHTTPURL(c.BrokerURI) {
		p.add("N8N_RUNNERS_TASK_BROKER_URI=%q: want http://host:port of n8n's task broker (n8n's N8N_RUNNERS_BROKER_PORT, default 5679)", c.BrokerURI)
	}
	if c.AuthToken == "" {
		p.add("N8N_RUNNERS_AUTH_TOKEN is not set: give the sidecar the same value as n8n's N8N_RUNNERS_AUTH_TOKEN")
	}
	if c.RedisBudgetBytes < 1 {
		p.add("N8N_FN_REDIS_BUDGET_BYTES=%d: want at least 1 (bytes; the default is 268435456, 256 MiB)", c.RedisBudgetBytes)
	}
	if n, err := strconv.Atoi(c.ExecutionSlots); c.ExecutionSlots != "" && c.ExecutionSlots != "auto" && (err != nil || n < 0) {
		p.add("N8N_FN_EXECUTION_SLOTS=%q: want auto or a whole number (0: announce none, on a queue-mode main's sidecar)", c.ExecutionSlots)
	}
	if c.MaxConcurrency <= 0 {
		p.add("N8N_RUNNERS_MAX_CONCURRENCY=%d: want at least 1", c.MaxConcurrency)
	}
}

func (c *Config) checkTaskTypes(p *problems) {
	for _, t := range c.TaskTypes {
		if t != "javascript" && t != "python" {
			p.add("N8N_FN_TASK_TYPES: unknown task type %q (want javascript and/or python)", t)
		}
	}
	if !slices.Contains(c.TaskTypes, "javascript") {
		p.add("N8N_FN_TASK_TYPES=%q must include javascript: directives are javascript Code nodes", strings.Join(c.TaskTypes, ","))
	}
}

func (c *Config) checkListeners(p *problems) {
	if _, _, err := net.SplitHostPort(c.BrokerListen); err != nil {
		p.add("N8N_FN_BROKER_LISTEN=%q: want host:port (%v)", c.BrokerListen, err)
	}
	if c.HealthListen != healthOff {
		if _, _, err := net.SplitHostPort(c.HealthListen); err != nil {
			p.add("N8N_FN_HEALTH_LISTEN=%q: want host:port or off (%v)", c.HealthListen, err)
		}
	}
}

func (c *Config) checkRunnerMode(p *problems) {
	python := slices.Contains(c.TaskTypes, "python")
	switch c.RunnerMode {
	case ModeSpawn:
		c.checkSpawn(p)
		if python {
			p.add("N8N_FN_TASK_TYPES includes python but spawn mode starts only the JS runner: use N8N_FN_RUNNER_MODE=external with a launcher that serves python")
		}
	case ModeNone:
		if python {
			p.add("N8N_FN_TASK_TYPES includes python but N8N_FN_RUNNER_MODE=none: python tasks could never run")
		}
	case ModeExternal:
	default:
		p.add("N8N_FN_RUNNER_MODE=%q: want spawn, external or none", c.RunnerMode)
	}
}

// checkSpawn checks what spawn mode needs: the runner package and its start script.
func (c *Config) checkSpawn(p *problems) {
	if c.RunnerDir == "" {
		p.add("N8N_FN_RUNNER_DIR is not set: in spawn mode it must be the @n8n/task-runner package directory (the one with dist/start.js), or set N8N_FN_RUNNER_MODE=external or none")
		return
	}
	if st, err := os.Stat(c.RunnerDir); err != nil || !st.IsDir() {
		p.add("N8N_FN_RUNNER_DIR=%q is not a directory: point it at the @n8n/task-runner package (npm i @n8n/task-runner)", c.RunnerDir)
		return
	}
	if entry := c.runnerEntry(); entry != "" {
		if _, err := os.Stat(entry); err != nil {
			p.add("spawn mode: the runner script %s does not exist: check N8N_FN_RUNNER_DIR and N8N_FN_RUNNER_ARGS", entry)
		}
	}
}

func (c *Config) checkURLs(p *problems) {
	// The registry's own parser, so every form it takes (cluster, sentinel) is accepted here too;
	// it builds a client without connecting.
	if rdb, err := registry.NewClient(c.RedisURL, 1); err != nil {
		p.add("N8N_FN_REDIS_URL=%q: want redis://[user:pass@]host:port/db, redis+cluster://host:port?addr=host2:port2 or redis+sentinel://host:port?master_name=NAME (%v)", c.RedisURL, err)
	} else {
		_ = rdb.Close()
	}
	if !isHTTPURL(c.N8NAPIURL) {
		p.add("N8N_FN_N8N_API_URL=%q: want an http(s) URL", c.N8NAPIURL)
	}
	if !isHTTPURL(c.WebhookURL) {
		p.add("N8N_FN_WEBHOOK_URL=%q: want an http(s) URL", c.WebhookURL)
	}
}

func (c *Config) checkLogging(p *problems) {
	if c.ShutdownGrace <= 0 {
		p.add("N8N_FN_SHUTDOWN_GRACE must be positive")
	}
	if _, err := logrus.ParseLevel(c.LogLevel); err != nil {
		p.add("N8N_FN_LOG_LEVEL=%q: want trace, debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		p.add("N8N_FN_LOG_FORMAT=%q: want text or json", c.LogFormat)
	}
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
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

// functionsConfig is the part of the configuration the function runtime reads.
func (c *Config) functionsConfig() functions.Config {
	return functions.Config{
		ID: c.ID, Secret: c.Secret, RedisURL: c.RedisURL, Prefix: c.Prefix,
		N8NAPIURL: c.N8NAPIURL, N8NAPIKey: c.N8NAPIKey, WebhookURL: c.WebhookURL, DiscoveryTag: c.DiscoveryTag,
		TaskTimeout: c.TaskTimeout, MaxConcurrency: c.MaxConcurrency, Limits: c.Limits, TraceTTL: c.TraceTTL,
		RedisBudgetBytes: c.RedisBudgetBytes,
		ExecutionSlots:   c.executionSlots(),
	}
}

// executionSlots is N8N_FN_EXECUTION_SLOTS as a number: "auto" is N8N_RUNNERS_MAX_CONCURRENCY,
// the tasks this sidecar takes at once (a waiting call node holds one), which n8n's worker
// concurrency matches by default. Validate has refused anything else that is not a number >= 0.
func (c *Config) executionSlots() int {
	if c.ExecutionSlots == "" || c.ExecutionSlots == "auto" {
		return c.MaxConcurrency
	}
	n, err := strconv.Atoi(c.ExecutionSlots)
	if err != nil || n < 0 {
		return 0
	}
	return n
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
