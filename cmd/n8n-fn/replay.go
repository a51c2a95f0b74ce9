package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/n8n-fn/n8n-fn/n8napi"
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/workflows"
	"github.com/n8n-fn/n8n-fn/workflows/replay"
)

// replayCmd imports the test workflows into a running n8n, runs their cases and reports.
func replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keep := fs.Bool("keep", false, "leave the imported workflows in n8n after the run")
	filter := fs.String("filter", "", "run only cases whose \"file/case name\" contains this text")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of a table")
	envPath := fs.String("env", "", "stack env file (default $N8N_FN_CACHE/stack/stack.env; used when --api-url/--api-key are not given)")
	apiURL := fs.String("api-url", os.Getenv("N8N_FN_N8N_API_URL"), "n8n base URL (env N8N_FN_N8N_API_URL)")
	apiKey := fs.String("api-key", os.Getenv("N8N_FN_N8N_API_KEY"), "n8n public API key (env N8N_FN_N8N_API_KEY)")
	webhookURL := fs.String("webhook-url", os.Getenv("N8N_FN_WEBHOOK_URL"), "webhook base URL (env N8N_FN_WEBHOOK_URL; default API URL + /webhook)")
	redisURL := fs.String("redis-url", os.Getenv("N8N_FN_REDIS_URL"), "Redis of the sidecars, to wait until they serve the functions (env N8N_FN_REDIS_URL; default from the stack env)")
	prefix := fs.String("prefix", envOr("N8N_FN_PREFIX", "n8nfn:"), "Redis key prefix of the sidecars (env N8N_FN_PREFIX)")
	readyTimeout := fs.Duration("ready-timeout", 90*time.Second, "how long to wait until the sidecars serve the imported functions")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: n8n-fn replay [flags] [dir]\n\nImports the workflows in dir (default test-workflows) into n8n through its public API,\n"+
			"replacing workflows of the same name, publishes them, waits until the n8n-fn sidecars serve\n"+
			"their functions, runs every case of the X.cases.json files and prints a table. The imported\n"+
			"workflows are removed afterwards unless --keep. Exit status 1 when a case failed.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	// Flags may come before or after the directory (n8n-fn replay test-workflows --keep).
	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	dir := "test-workflows"
	switch len(positional) {
	case 0:
	case 1:
		dir = positional[0]
	default:
		return fmt.Errorf("%w: one directory at most, got %v", errUsage, positional)
	}
	suites, err := replay.Load(dir)
	if err != nil {
		return err
	}

	var client *n8napi.Client
	if *apiURL != "" && *apiKey != "" {
		client = n8napi.New(*apiURL, *apiKey)
	} else {
		p := *envPath
		if p == "" {
			if p, err = n8napi.DefaultStackEnvPath(); err != nil {
				return err
			}
		}
		env, err := n8napi.LoadStackEnv(p)
		if err != nil {
			return fmt.Errorf("%w (or give --api-url and --api-key)", err)
		}
		client = env.Client()
		if *redisURL == "" {
			*redisURL = env.RedisURL
		}
	}
	if *webhookURL != "" {
		client.WebhookURL = strings.TrimRight(*webhookURL, "/")
	}
	client.HTTP.Timeout = 0 // each request has its own deadline (replay.Options.RequestTimeout)

	opt := replay.Options{Filter: *filter, Keep: *keep, Progress: stderr}
	if !*asJSON {
		opt.Progress = stdout
	}
	if *redisURL != "" {
		ready, closeFn, err := registryReadiness(*redisURL, *prefix, *readyTimeout)
		if err != nil {
			return err
		}
		defer closeFn()
		opt.WaitReady = ready
	} else {
		fmt.Fprintln(stderr, "n8n-fn replay: no Redis URL (--redis-url or the stack env): not waiting for the sidecars to discover the functions")
	}
	rep, runErr := replay.Run(ctx, apiAdapter{client}, suites, opt)
	if *asJSON {
		b, err := replay.MarshalReport(rep)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(b))
	} else if rep != nil && len(rep.Results) > 0 {
		replay.WriteTable(stdout, rep)
	}
	return runErr
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// apiAdapter gives the replay engine the n8napi client in the engine's own terms.
type apiAdapter struct{ c *n8napi.Client }

func (a apiAdapter) ListWorkflows(ctx context.Context) ([]replay.Workflow, error) {
	wfs, err := a.c.ListWorkflows(ctx, false)
	if err != nil {
		return nil, err
	}
	out := make([]replay.Workflow, len(wfs))
	for i, w := range wfs {
		out[i] = replay.Workflow{ID: w.ID, Name: w.Name}
	}
	return out, nil
}

func (a apiAdapter) CreateWorkflow(ctx context.Context, wf []byte) (string, error) {
	return a.c.CreateWorkflow(ctx, wf)
}

func (a apiAdapter) PublishWorkflow(ctx context.Context, id string) error {
	return a.c.PublishWorkflow(ctx, id)
}

func (a apiAdapter) UnpublishWorkflow(ctx context.Context, id string) error {
	return a.c.UnpublishWorkflow(ctx, id)
}

func (a apiAdapter) DeleteWorkflow(ctx context.Context, id string) error {
	return a.c.DeleteWorkflow(ctx, id)
}

func (a apiAdapter) WaitWebhook(ctx context.Context, method, path string) error {
	return a.c.WaitWebhook(ctx, method, path)
}

func (a apiAdapter) CallWebhook(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	r, err := a.c.CallWebhook(ctx, method, path, body)
	return r.Status, r.Body, err
}

func (a apiAdapter) ListExecutions(ctx context.Context, workflowID string, limit int) ([]replay.Execution, error) {
	exs, err := a.c.ListExecutions(ctx, workflowID, limit)
	if err != nil {
		return nil, err
	}
	out := make([]replay.Execution, len(exs))
	for i, e := range exs {
		t, _ := time.Parse(time.RFC3339Nano, e.StartedAt)
		out[i] = replay.Execution{ID: e.ID, Status: e.Status, StartedAt: t}
	}
	return out, nil
}

func (a apiAdapter) ExecutionData(ctx context.Context, id string) ([]byte, error) {
	e, err := a.c.GetExecution(ctx, id, true)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(e.Raw), nil
}

// registryReadiness waits until the registry has a record and a live sidecar for every function
// the imported workflows define (the sidecars discover published workflows periodically, or at
// once when a call names an unknown function).
func registryReadiness(redisURL, prefix string, timeout time.Duration) (func(context.Context, []replay.Imported) error, func(), error) {
	rdb, err := registry.NewClient(redisURL, 0)
	if err != nil {
		return nil, nil, err
	}
	reg, err := registry.New(rdb, registry.Config{Prefix: prefix})
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	wait := func(ctx context.Context, imported []replay.Imported) error {
		var raws [][]byte
		for _, im := range imported {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(im.Suite.Workflow, &m); err != nil {
				return fmt.Errorf("%s: %w", im.Suite.File, err)
			}
			m["id"], _ = json.Marshal(im.ID)
			b, err := json.Marshal(m)
			if err != nil {
				return err
			}
			raws = append(raws, b)
		}
		defs, _ := workflows.Discover(raws)
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		for {
			var missing []string
			for _, d := range defs {
				k := registry.FunctionKey{Scope: d.Ref.Scope, Name: d.Ref.Name}
				rec, ok, err := reg.LookupFunction(ctx, k)
				// A record of a replaced workflow (same name, old id) does not count.
				if err == nil && ok && rec.WorkflowID == d.WorkflowID {
					ok, err = reg.HasLiveConsumer(ctx, k)
				}
				if err != nil || !ok || rec.WorkflowID != d.WorkflowID {
					missing = append(missing, d.Ref.Display())
				}
			}
			if len(missing) == 0 {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("after %s, no live sidecar serves %s: are the sidecars running with N8N_FN_N8N_API_KEY set (discovery) and the same Redis/prefix (%s, %s)?",
					timeout, strings.Join(missing, ", "), redisURL, prefix)
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return wait, func() { rdb.Close() }, nil
}
