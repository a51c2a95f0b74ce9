package runner

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := ConfigFromEnv(envOf(map[string]string{
		"N8N_RUNNERS_AUTH_TOKEN": "tok",
		"N8N_FN_RUNNER_MODE":     "external",
	}))
	if err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"BrokerURI", cfg.BrokerURI, "http://127.0.0.1:5679"},
		{"MaxConcurrency", cfg.MaxConcurrency, 10},
		{"MaxPayload", cfg.MaxPayload, int64(1073741824)},
		{"TaskTimeout", cfg.TaskTimeout, 300 * time.Second},
		{"BrokerListen", cfg.BrokerListen, "127.0.0.1:5700"},
		{"BrokerAuthToken", cfg.BrokerAuthToken, "tok"},
		{"HealthListen", cfg.HealthListen, "127.0.0.1:5701"},
		{"RunnerCommand", cfg.RunnerCommand, "node"},
		{"RunnerArgs", strings.Join(cfg.RunnerArgs, " "), defaultRunnerArgs},
		{"RedisURL", cfg.RedisURL, "redis://127.0.0.1:6379/0"},
		{"Prefix", cfg.Prefix, "n8nfn:"},
		{"N8NAPIURL", cfg.N8NAPIURL, "http://127.0.0.1:5678"},
		{"WebhookURL", cfg.WebhookURL, "http://127.0.0.1:5678/webhook"},
		{"ShutdownGrace", cfg.ShutdownGrace, 30 * time.Second},
		{"TaskTypes", strings.Join(cfg.TaskTypes, ","), "javascript"},
		{"runnerTaskTimeout", cfg.runnerTaskTimeout(), 295},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if cfg.ID == "" {
		t.Error("ID has no default")
	}
}

func TestConfigValues(t *testing.T) {
	dir := t.TempDir()
	cfg, err := ConfigFromEnv(envOf(map[string]string{
		"N8N_RUNNERS_AUTH_TOKEN":      "tok",
		"N8N_RUNNERS_TASK_TIMEOUT":    "10",
		"N8N_RUNNERS_MAX_CONCURRENCY": "3",
		"N8N_FN_BROKER_AUTH_TOKEN":    "other",
		"N8N_FN_RUNNER_MODE":          "spawn",
		"N8N_FN_RUNNER_DIR":           dir,
		"N8N_FN_RUNNER_ARGS":          "/bin/true",
		"N8N_FN_SHUTDOWN_GRACE":       "2m",
		"N8N_FN_NO_RUNNER_WAIT":       "1",
		"N8N_FN_N8N_API_URL":          "http://n8n:5678/",
		"N8N_FN_HEALTH_LISTEN":        "127.0.0.1:0",
	}))
	if err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	if cfg.BrokerAuthToken != "other" || cfg.MaxConcurrency != 3 || cfg.ShutdownGrace != 2*time.Minute ||
		cfg.NoRunnerWait != time.Second || cfg.WebhookURL != "http://n8n:5678/webhook" || cfg.runnerTaskTimeout() != 8 {
		t.Errorf("unexpected config: %+v (runner timeout %d)", cfg, cfg.runnerTaskTimeout())
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"N8N_FN_RUNNER_MODE": "none"}, []string{"N8N_RUNNERS_AUTH_TOKEN is not set"}},
		{map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t"}, []string{"N8N_FN_RUNNER_DIR is not set"}},
		{map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t", "N8N_FN_RUNNER_MODE": "spawn", "N8N_FN_RUNNER_DIR": "/nonexistent/x"}, []string{`N8N_FN_RUNNER_DIR="/nonexistent/x" is not a directory`}},
		{map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t", "N8N_FN_RUNNER_MODE": "sometimes"}, []string{`N8N_FN_RUNNER_MODE="sometimes"`}},
		{map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t", "N8N_FN_RUNNER_MODE": "none", "N8N_RUNNERS_MAX_CONCURRENCY": "ten"}, []string{`N8N_RUNNERS_MAX_CONCURRENCY="ten": want a positive whole number`}},
		{map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t", "N8N_FN_RUNNER_MODE": "none", "N8N_FN_EXECUTION_SLOTS": "-2"}, []string{`N8N_FN_EXECUTION_SLOTS="-2": want auto or a whole number`}},
		{map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t", "N8N_FN_RUNNER_MODE": "none", "N8N_FN_SHUTDOWN_GRACE": "soon"}, []string{`N8N_FN_SHUTDOWN_GRACE="soon"`}},
		{map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t", "N8N_FN_RUNNER_MODE": "none", "N8N_RUNNERS_TASK_BROKER_URI": "ws://x"}, []string{"N8N_RUNNERS_TASK_BROKER_URI"}},
		{map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t", "N8N_FN_RUNNER_MODE": "none", "N8N_FN_TASK_TYPES": "python"}, []string{"must include javascript", "python tasks could never run"}},
		{map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t", "N8N_FN_RUNNER_MODE": "none", "N8N_FN_LOG_FORMAT": "xml", "N8N_FN_LOG_LEVEL": "loud"}, []string{"N8N_FN_LOG_FORMAT", "N8N_FN_LOG_LEVEL"}},
		{map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t", "N8N_FN_RUNNER_MODE": "none", "N8N_FN_BROKER_LISTEN": "5700"}, []string{"N8N_FN_BROKER_LISTEN"}},
		{map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t", "N8N_FN_RUNNER_MODE": "none", "N8N_FN_DISCOVERY_TAG": "a,b"}, []string{`N8N_FN_DISCOVERY_TAG="a,b": one tag name`}},
	}
	for _, c := range cases {
		_, err := ConfigFromEnv(envOf(c.env))
		if err == nil {
			t.Errorf("%v: no error", c.env)
			continue
		}
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%v: error does not wrap ErrConfig: %v", c.env, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not mention %q", c.env, err, w)
			}
		}
	}
}

// TestEnvTableCoversConfig: every Config field is set by exactly one variable of the table, so
// nothing is configurable that --help and the README do not list, and every variable is documented.
func TestEnvTableCoversConfig(t *testing.T) {
	var c Config
	fields := map[uintptr]string{}
	rv := reflect.ValueOf(&c).Elem()
	for i := 0; i < rv.NumField(); i++ {
		fields[rv.Field(i).Addr().Pointer()] = rv.Type().Field(i).Name
	}
	setBy := map[string]string{}
	names := map[string]bool{}
	for _, v := range envTable() {
		if names[v.name] {
			t.Errorf("%s listed twice", v.name)
		}
		names[v.name] = true
		if v.doc == "" {
			t.Errorf("%s has no description", v.name)
		}
		if v.field == nil {
			continue
		}
		f, ok := fields[reflect.ValueOf(v.field(&c)).Pointer()]
		if !ok {
			t.Errorf("%s points at no field of Config", v.name)
			continue
		}
		if other, dup := setBy[f]; dup {
			t.Errorf("Config.%s is set by both %s and %s", f, other, v.name)
		}
		setBy[f] = v.name
	}
	// Limits is read as a whole by workflows.LimitsFromEnv (its variables are in the table, without a field).
	setBy["Limits"] = "workflows.LimitsFromEnv"
	for _, f := range fields {
		if _, ok := setBy[f]; !ok {
			t.Errorf("Config.%s is set by no environment variable", f)
		}
	}
}

// TestEnvDefaultsParse: each literal default is a value its variable accepts (setDefaults relies
// on it), and the documented default is what a Config gets.
func TestEnvDefaultsParse(t *testing.T) {
	for _, v := range envTable() {
		if v.field == nil || v.def == "" {
			continue
		}
		var c Config
		if err := v.set(&c, v.def); err != nil {
			t.Errorf("%s: its default %q does not parse: %v", v.name, v.def, err)
		}
		var d Config
		d.setDefaults()
		if got, want := reflect.ValueOf(v.field(&d)).Elem().Interface(), reflect.ValueOf(v.field(&c)).Elem().Interface(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: setDefaults gives %v, the documented default %q means %v", v.name, got, v.def, want)
		}
	}
}

// N8N_FN_EXECUTION_SLOTS: auto follows N8N_RUNNERS_MAX_CONCURRENCY, 0 announces none.
func TestExecutionSlots(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want int
	}{
		{map[string]string{}, 10},
		{map[string]string{"N8N_RUNNERS_MAX_CONCURRENCY": "4"}, 4},
		{map[string]string{"N8N_FN_EXECUTION_SLOTS": "AUTO", "N8N_RUNNERS_MAX_CONCURRENCY": "6"}, 6},
		{map[string]string{"N8N_FN_EXECUTION_SLOTS": "0"}, 0},
		{map[string]string{"N8N_FN_EXECUTION_SLOTS": "25"}, 25},
	} {
		env := map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t", "N8N_FN_RUNNER_MODE": "none"}
		for k, v := range c.env {
			env[k] = v
		}
		cfg, err := ConfigFromEnv(envOf(env))
		if err != nil {
			t.Fatalf("%v: %v", c.env, err)
		}
		if got := cfg.functionsConfig().ExecutionSlots; got != c.want {
			t.Errorf("%v: %d execution slots, want %d", c.env, got, c.want)
		}
	}
}

// The Redis URL forms the registry takes are accepted by `n8n-fn run` too (they were refused).
func TestConfigAcceptsEveryRedisURLForm(t *testing.T) {
	for _, u := range []string{"redis://r:6379/0", "rediss://r:6380/1", "redis+cluster://r1:7000?addr=r2:7001", "redis+sentinel://s:26379?master_name=mymaster"} {
		if _, err := ConfigFromEnv(envOf(map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t", "N8N_FN_RUNNER_MODE": "none", "N8N_FN_REDIS_URL": u})); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	_, err := ConfigFromEnv(envOf(map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t", "N8N_FN_RUNNER_MODE": "none", "N8N_FN_REDIS_URL": "redis+sentinel://s:26379"}))
	if err == nil || !strings.Contains(err.Error(), "N8N_FN_REDIS_URL") || !strings.Contains(err.Error(), "master_name") {
		t.Errorf("a sentinel URL without master_name: %v", err)
	}
}

func TestSpawnEnvIsAllowListed(t *testing.T) {
	t.Setenv("GENERIC_TIMEZONE", "Europe/Berlin")
	t.Setenv("N8N_RUNNERS_AUTH_TOKEN", "secret-upstream")
	t.Setenv("N8N_FN_SECRET", "secret-hmac")
	t.Setenv("NODE_FUNCTION_ALLOW_BUILTIN", "crypto")
	cfg := Config{ID: "sc1", MaxConcurrency: 4, MaxPayload: 1024, TaskTimeout: 60 * time.Second}
	sp := newSpawner(cfg, "http://127.0.0.1:5700", nil, nil)
	env := strings.Join(sp.env("GRANT"), "\n")
	for _, want := range []string{"GENERIC_TIMEZONE=Europe/Berlin", "NODE_FUNCTION_ALLOW_BUILTIN=crypto", "N8N_RUNNERS_TASK_BROKER_URI=http://127.0.0.1:5700",
		"N8N_RUNNERS_GRANT_TOKEN=GRANT", "N8N_RUNNERS_MAX_CONCURRENCY=4", "N8N_RUNNERS_TASK_TIMEOUT=55", "N8N_RUNNERS_ID=sc1-js"} {
		if !strings.Contains(env, want) {
			t.Errorf("spawned runner env lacks %s", want)
		}
	}
	for _, secret := range []string{"secret-upstream", "secret-hmac"} {
		if strings.Contains(env, secret) {
			t.Errorf("spawned runner env leaks %s", secret)
		}
	}
}

// N8N_FN_TRACE_TTL: 1h by default, a duration, or off (no trace records); nonsense is refused.
func TestTraceTTL(t *testing.T) {
	base := map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "t", "N8N_FN_RUNNER_MODE": "none", "N8N_FN_HEALTH_LISTEN": "127.0.0.1:0"}
	for value, want := range map[string]time.Duration{"": time.Hour, "15m": 15 * time.Minute, "90": 90 * time.Second, "off": -1, "OFF": -1} {
		env := map[string]string{"N8N_FN_TRACE_TTL": value}
		for k, v := range base {
			env[k] = v
		}
		cfg, err := ConfigFromEnv(envOf(env))
		if err != nil {
			t.Fatalf("N8N_FN_TRACE_TTL=%q: %v", value, err)
		}
		if cfg.TraceTTL != want || cfg.functionsConfig().TraceTTL != want {
			t.Errorf("N8N_FN_TRACE_TTL=%q: %s, want %s", value, cfg.TraceTTL, want)
		}
	}
	env := map[string]string{"N8N_FN_TRACE_TTL": "forever"}
	for k, v := range base {
		env[k] = v
	}
	if _, err := ConfigFromEnv(envOf(env)); err == nil || !strings.Contains(err.Error(), `N8N_FN_TRACE_TTL="forever"`) {
		t.Errorf("N8N_FN_TRACE_TTL=forever: %v", err)
	}
}
