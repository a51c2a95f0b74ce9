package n8napi

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrNoStackEnv is wrapped when the stack env file does not exist (the stack was never started).
var ErrNoStackEnv = errors.New("stack env file not found (start the stack with `make up` or scripts/stack.sh up)")

// StackEnv is what scripts/stack.sh writes to $N8N_FN_CACHE/stack/stack.env for tests and tools.
type StackEnv struct {
	BaseURL           string // N8N_BASE_URL
	WebhookURL        string // N8N_WEBHOOK_URL
	APIKey            string // N8N_API_KEY
	RedisURL          string // REDIS_URL
	RunnersAuthToken  string // N8N_RUNNERS_AUTH_TOKEN
	FnSecret          string // N8N_FN_SECRET
	MainBrokerPort    int    // N8N_MAIN_BROKER_PORT
	WorkerBrokerPorts []int  // N8N_WORKER_BROKER_PORTS (comma list)
	FnBin             string // N8N_FN_BIN
	LogDir            string // N8N_STACK_LOG_DIR
	RunnerKind        string // N8N_STACK_RUNNER_KIND: official | sidecar
	Vars              map[string]string
	Path              string
}

// Client returns an API client for this stack.
func (e StackEnv) Client() *Client {
	c := New(e.BaseURL, e.APIKey)
	if e.WebhookURL != "" {
		c.WebhookURL = strings.TrimRight(e.WebhookURL, "/")
	}
	return c
}

// DefaultStackEnvPath is $N8N_FN_CACHE/stack/stack.env, or ~/.cache/n8n-fn/stack/stack.env.
func DefaultStackEnvPath() (string, error) {
	cache := os.Getenv("N8N_FN_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("stack env path: no N8N_FN_CACHE and no home directory: %w", err)
		}
		cache = filepath.Join(home, ".cache", "n8n-fn")
	}
	return filepath.Join(cache, "stack", "stack.env"), nil
}

// LoadStackEnv reads KEY=VALUE lines (blank lines and # comments ignored, values may be single-
// or double-quoted) and checks that the keys every client needs are there.
func LoadStackEnv(path string) (StackEnv, error) {
	vars, err := readEnvFile(path)
	if err != nil {
		return StackEnv{}, fmt.Errorf("load stack env %s: %w", path, err)
	}
	var missing []string
	for _, k := range []string{"N8N_BASE_URL", "N8N_API_KEY"} {
		if vars[k] == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return StackEnv{}, fmt.Errorf("load stack env %s: missing %s (re-run scripts/stack.sh up)", path, strings.Join(missing, ", "))
	}
	e := StackEnv{
		BaseURL:          strings.TrimRight(vars["N8N_BASE_URL"], "/"),
		WebhookURL:       vars["N8N_WEBHOOK_URL"],
		APIKey:           vars["N8N_API_KEY"],
		RedisURL:         vars["REDIS_URL"],
		RunnersAuthToken: vars["N8N_RUNNERS_AUTH_TOKEN"],
		FnSecret:         vars["N8N_FN_SECRET"],
		FnBin:            vars["N8N_FN_BIN"],
		LogDir:           vars["N8N_STACK_LOG_DIR"],
		RunnerKind:       vars["N8N_STACK_RUNNER_KIND"],
		Vars:             vars,
		Path:             path,
	}
	if e.WebhookURL == "" {
		e.WebhookURL = e.BaseURL + "/webhook"
	}
	if err := e.readBrokerPorts(); err != nil {
		return StackEnv{}, fmt.Errorf("load stack env %s: %w", path, err)
	}
	return e, nil
}

// readEnvFile reads the KEY=VALUE lines of an env file into a map (a later key wins).
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoStackEnv
		}
		return nil, err
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("line %d is not KEY=VALUE: %q", n, line)
		}
		vars[strings.TrimSpace(k)] = unquote(strings.TrimSpace(v))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return vars, nil
}

// unquote takes one pair of matching single or double quotes off v, as a shell would read it.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// readBrokerPorts sets the broker ports from their variables (unset: none).
func (e *StackEnv) readBrokerPorts() error {
	if s := e.Vars["N8N_MAIN_BROKER_PORT"]; s != "" {
		p, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("N8N_MAIN_BROKER_PORT=%q is not a port: %w", s, err)
		}
		e.MainBrokerPort = p
	}
	if s := e.Vars["N8N_WORKER_BROKER_PORTS"]; s != "" {
		for _, part := range strings.Split(s, ",") {
			p, err := strconv.Atoi(strings.TrimSpace(part))
			if err != nil {
				return fmt.Errorf("N8N_WORKER_BROKER_PORTS=%q: %w", s, err)
			}
			e.WorkerBrokerPorts = append(e.WorkerBrokerPorts, p)
		}
	}
	return nil
}
