package runner

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// envVar is one environment variable of `n8n-fn run`. The table of them (envTable) is the one
// source of the variable names, their defaults, how each is parsed into Config, `n8n-fn run
// --help` and the README's configuration table (cmd/n8n-fn checks the README against it).
type envVar struct {
	name string
	// def is the default, parsed exactly like a set value when the variable is unset or empty;
	// "" = the zero value (or whatever derive fills in).
	def string
	// shown is the default as people read it when def cannot say it (derived, required, none).
	shown string
	doc   string // one line; `backquotes` are kept in the README and dropped in --help
	// field points at the Config field the variable sets: *string, *int, *int64,
	// *time.Duration, *[]string or *bool. nil: read by something else (passed to the runner).
	field func(c *Config) any
	opt   envOpt
	// derive completes the field after every literal default is in (a default that depends on
	// other variables, or a normalisation); it runs in table order, also for a Config built in code.
	derive func(c *Config)
}

// envOpt says how a value is read.
type envOpt uint8

const (
	optRaw     envOpt = 1 << iota // keep surrounding spaces (tokens, secrets)
	optLower                      // case-insensitive: lowered before use
	optSeconds                    // a duration given as whole seconds (n8n's own format)
	optWords                      // a list separated by spaces (else by commas)
	optOff                        // a duration that also takes "off" (stored as -1: none)
)

// healthOff as N8N_FN_HEALTH_LISTEN turns the health server off.
const healthOff = "off"

const defaultRunnerArgs = "--disallow-code-generation-from-strings --disable-proto=delete dist/start.js"

// envTable lists every variable `n8n-fn run` reads, in the order --help and the README show them.
// It is a function so that no package-level table can be changed by anyone.
func envTable() []envVar {
	return []envVar{
		{name: "N8N_RUNNERS_TASK_BROKER_URI", def: "http://127.0.0.1:5679", doc: "task broker of the n8n process this sidecar serves",
			field: func(c *Config) any { return &c.BrokerURI }},
		{name: "N8N_RUNNERS_AUTH_TOKEN", shown: "(required)", doc: "n8n's runner auth token (n8n runs with `N8N_RUNNERS_MODE=external`)",
			field: func(c *Config) any { return &c.AuthToken }, opt: optRaw},
		{name: "N8N_RUNNERS_MAX_CONCURRENCY", def: "10", doc: "tasks run at once (native + relayed); also given to the spawned runner",
			field: func(c *Config) any { return &c.MaxConcurrency }},
		{name: "N8N_RUNNERS_MAX_PAYLOAD", def: "1073741824", doc: "largest websocket message in bytes, both sides",
			field: func(c *Config) any { return &c.MaxPayload }},
		{name: "N8N_RUNNERS_TASK_TIMEOUT", def: "300", doc: "n8n's task timeout in seconds (the spawned runner gets a few seconds less)",
			field: func(c *Config) any { return &c.TaskTimeout }, opt: optSeconds},
		{name: "N8N_FN_ID", shown: "hostname-pid", doc: "this sidecar's id (runner id toward n8n, logs, heartbeats)",
			field: func(c *Config) any { return &c.ID }, derive: deriveID},
		{name: "N8N_FN_TASK_TYPES", def: "javascript", doc: "task types taken from n8n (`javascript,python` when a Python runner is attached behind)",
			field: func(c *Config) any { return &c.TaskTypes }},
		{name: "N8N_FN_BROKER_LISTEN", def: "127.0.0.1:5700", doc: "address of the broker for the official runner(s) behind the sidecar",
			field: func(c *Config) any { return &c.BrokerListen }},
		{name: "N8N_FN_BROKER_AUTH_TOKEN", shown: "= N8N_RUNNERS_AUTH_TOKEN", doc: "auth token runners/launchers behind the sidecar must present",
			field: func(c *Config) any { return &c.BrokerAuthToken }, opt: optRaw,
			derive: func(c *Config) {
				if c.BrokerAuthToken == "" {
					c.BrokerAuthToken = c.AuthToken
				}
			}},
		{name: "N8N_FN_HEALTH_LISTEN", def: "127.0.0.1:5701", doc: "address of `/healthz`, `/readyz` and `/metrics` (Prometheus) (`off`: no health server)",
			field: func(c *Config) any { return &c.HealthListen }},
		{name: "N8N_FN_RUNNER_MODE", def: ModeSpawn, doc: "`spawn`: start the official JS runner; `external`: a runner/launcher connects; `none`: directives only",
			field: func(c *Config) any { return &c.RunnerMode }, opt: optLower},
		{name: "N8N_FN_RUNNER_COMMAND", def: "node", doc: "spawn mode: command that starts the official JS runner",
			field: func(c *Config) any { return &c.RunnerCommand }},
		{name: "N8N_FN_RUNNER_ARGS", def: defaultRunnerArgs, doc: "spawn mode: its arguments (space separated)",
			field: func(c *Config) any { return &c.RunnerArgs }, opt: optWords | optRaw},
		{name: "N8N_FN_RUNNER_DIR", shown: "(required in spawn mode)", doc: "spawn mode: its working dir, the `@n8n/task-runner` package directory",
			field: func(c *Config) any { return &c.RunnerDir }},
		{name: "GENERIC_TIMEZONE", def: "America/New_York", doc: "spawn mode: passed to the runner (`$now`'s zone); set it to n8n's value"},
		{name: "N8N_FN_NO_RUNNER_WAIT", def: "60s", doc: "how long an ordinary Code task waits for a runner behind the sidecar to take it before it fails: n8n's own broker waits `N8N_RUNNERS_TASK_REQUEST_TIMEOUT` (60 s) for a runner, keep both equal. A launcher's deferral or a runner that does not answer starts the wait over (at most 3 times, as in n8n); directives never wait",
			field: func(c *Config) any { return &c.NoRunnerWait }},
		{name: "N8N_FN_REDIS_URL", def: "redis://127.0.0.1:6379/0", doc: "Redis for function calls (n8n's queue-mode Redis); `redis+cluster://` and `redis+sentinel://...?master_name=` work too",
			field: func(c *Config) any { return &c.RedisURL }},
		{name: "N8N_FN_PREFIX", def: "n8nfn:", doc: "prefix of every Redis key of n8n-fn",
			field: func(c *Config) any { return &c.Prefix }},
		{name: "N8N_FN_SECRET", shown: "(required for functions)", doc: "HMAC secret shared by all sidecars (signs function calls)",
			field: func(c *Config) any { return &c.Secret }, opt: optRaw},
		{name: "N8N_FN_N8N_API_URL", def: "http://127.0.0.1:5678", doc: "n8n's base URL for the public API (function discovery)",
			field:  func(c *Config) any { return &c.N8NAPIURL },
			derive: func(c *Config) { c.N8NAPIURL = strings.TrimRight(c.N8NAPIURL, "/") }},
		{name: "N8N_FN_N8N_API_KEY", shown: "—", doc: "n8n public API key (function discovery)",
			field: func(c *Config) any { return &c.N8NAPIKey }},
		{name: "N8N_FN_DISCOVERY_TAG", shown: "(all published workflows)", doc: "discovery lists only the published workflows with this n8n tag (n8n's `tags` filter): in an installation with many workflows, tag the ones that define functions and n8n lists just those",
			field: func(c *Config) any { return &c.DiscoveryTag }},
		{name: "N8N_FN_WEBHOOK_URL", shown: "= N8N_FN_N8N_API_URL + /webhook", doc: "base URL that triggers function webhooks",
			field: func(c *Config) any { return &c.WebhookURL },
			derive: func(c *Config) {
				if c.WebhookURL == "" {
					c.WebhookURL = c.N8NAPIURL + "/webhook"
				}
			}},
		{name: "N8N_FN_REDIS_BUDGET_BYTES", def: "268435456", doc: "most bytes the payloads of all queued, unanswered calls may hold in Redis together (per `N8N_FN_PREFIX`, 256 MiB); a call that would pass it fails at once. The same on every sidecar",
			field: func(c *Config) any { return &c.RedisBudgetBytes }},
		{name: "N8N_FN_MAX_PARAMS_BYTES", shown: "16777216", doc: "largest params (plus inline binary data) of one call, bytes; refused before anything is queued. The same on every sidecar"},
		{name: "N8N_FN_MAX_RESULT_BYTES", shown: "16777216", doc: "largest result one function call returns, bytes; a bigger one fails the call with a clear error"},
		{name: "N8N_FN_MAX_CALL_ITEMS", shown: "10000", doc: "most input items of one call node task (each item is a call in `eachItem` mode)"},
		{name: "N8N_FN_MAX_JSON_DEPTH", shown: "128", doc: "deepest nesting of arrays/objects in params and JSON-text params, checked before anything recursive reads them"},
		{name: "N8N_FN_MAX_HEADER_BYTES", shown: "65536", doc: "largest directive header comment, bytes"},
		{name: "N8N_FN_EXECUTION_SLOTS", def: "auto", doc: "execution slots of the n8n process this sidecar serves (a worker's concurrency; `auto` = N8N_RUNNERS_MAX_CONCURRENCY), announced so a call node that would leave every slot to executions waiting for calls fails at once instead of deadlocking; `0` on the sidecar of a queue-mode main, which runs no production executions",
			field: func(c *Config) any { return &c.ExecutionSlots }, opt: optLower},
		{name: "N8N_FN_MAX_FRAME_DEPTH", def: "10000", doc: "deepest nesting of one task-runner protocol frame from n8n or a runner behind (encoding/json's own limit)",
			field: func(c *Config) any { return &c.MaxFrameDepth }},
		{name: "N8N_FN_SHUTDOWN_GRACE", def: "30s", doc: "on SIGTERM: how long in-flight tasks may take to finish",
			field: func(c *Config) any { return &c.ShutdownGrace }},
		{name: "N8N_FN_LOG_LEVEL", def: "info", doc: "`trace`, `debug`, `info`, `warn`, `error`",
			field: func(c *Config) any { return &c.LogLevel }, opt: optLower},
		{name: "N8N_FN_LOG_FORMAT", def: "text", doc: "`text` or `json`",
			field: func(c *Config) any { return &c.LogFormat }, opt: optLower},
		{name: "N8N_FN_TRACE_TTL", def: "1h", doc: "how long the trace records of each call (ids, workflow, worker, times, outcome; never params or results) stay in Redis for `n8n-fn trace` and the status page; `off`: none are written (saves about four Redis round trips per call)",
			field: func(c *Config) any { return &c.TraceTTL }, opt: optOff},
		{name: "N8N_FN_STATUS_PAGE", def: "false", doc: "`true`: also serve a status page at `/status` on the health address (functions, sidecars, queues, dead letters, recent calls and their trees; no external assets)",
			field: func(c *Config) any { return &c.StatusPage }, opt: optLower},
		{name: "N8N_FN_PPROF", def: "false", doc: "`true`: also serve Go's `/debug/pprof/` on the health address (profiling; keep it off in production)",
			field: func(c *Config) any { return &c.Pprof }, opt: optLower},
	}
}

func deriveID(c *Config) {
	if c.ID != "" {
		return
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "n8n-fn"
	}
	c.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
}

// EnvVar documents one environment variable for `n8n-fn run --help` and the README.
type EnvVar struct {
	Name        string
	Default     string // as people read it: a value, "(required)", "= OTHER_VAR", "—"
	Description string // may hold `backquoted` names (markdown)
}

// EnvVars lists every variable `n8n-fn run` reads, in the order --help prints them.
func EnvVars() []EnvVar {
	t := envTable()
	out := make([]EnvVar, len(t))
	for i, v := range t {
		out[i] = EnvVar{Name: v.name, Default: v.shownDefault(), Description: v.doc}
	}
	return out
}

func (v envVar) shownDefault() string {
	if v.shown != "" {
		return v.shown
	}
	return v.def
}

// EnvMarkdown is the README's configuration table (a markdown table, one row per variable).
func EnvMarkdown() string {
	var b strings.Builder
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	for _, v := range envTable() {
		def := v.shownDefault()
		if v.shown == "" && def != "" {
			def = "`" + def + "`" // a literal value; prose stays prose
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.name, def, v.doc)
	}
	return b.String()
}

// read sets the variable's field from getenv; an empty value leaves it for the default.
func (v envVar) read(c *Config, getenv func(string) string) error {
	if v.field == nil {
		return nil
	}
	s := getenv(v.name)
	if v.opt&optRaw == 0 {
		s = strings.TrimSpace(s)
	}
	if s == "" {
		return nil
	}
	return v.set(c, s)
}

// set parses s into the variable's field. Defaults go through it too, so a default is always a
// value the variable accepts (TestEnvDefaultsParse).
func (v envVar) set(c *Config, s string) error {
	if v.opt&optLower != 0 {
		s = strings.ToLower(s)
	}
	switch p := v.field(c).(type) {
	case *string:
		*p = s
	case *int:
		n, err := positive(v.name, s)
		*p = n
		return err
	case *int64:
		n, err := positive(v.name, s)
		*p = int64(n)
		return err
	case *time.Duration:
		return v.setDuration(p, s)
	case *[]string:
		*p = splitList(s, v.opt&optWords != 0)
	case *bool:
		switch s {
		case "false", "0":
			*p = false
		case "true", "1":
			*p = true
		default:
			return fmt.Errorf("%s=%q: want true or false", v.name, s)
		}
	default:
		return fmt.Errorf("%s: no parser for a field of type %T", v.name, p)
	}
	return nil
}

func (v envVar) setDuration(p *time.Duration, s string) error {
	if v.opt&optOff != 0 && strings.EqualFold(s, "off") {
		*p = -1 // not 0: the default would take its place
		return nil
	}
	if v.opt&optSeconds != 0 {
		n, err := positive(v.name, s)
		*p = time.Duration(n) * time.Second
		return err
	}
	// Go durations ("30s", "1m") and plain seconds ("30").
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		*p = time.Duration(n) * time.Second
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("%s=%q: want a positive duration like 30s or 2m (plain numbers are seconds)", v.name, s)
	}
	*p = d
	return nil
}

func positive(name, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive whole number", name, s)
	}
	return n, nil
}

func splitList(s string, words bool) []string {
	if words {
		return strings.Fields(s)
	}
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// isZero says whether the variable's field still has its zero value (the default applies).
func (v envVar) isZero(c *Config) bool {
	switch p := v.field(c).(type) {
	case *string:
		return *p == ""
	case *int:
		return *p == 0
	case *int64:
		return *p == 0
	case *time.Duration:
		return *p == 0
	case *[]string:
		return len(*p) == 0
	case *bool:
		return !*p
	}
	return false
}
