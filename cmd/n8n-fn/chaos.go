package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/n8n-fn/n8n-fn/e2e/chaos"
	"github.com/n8n-fn/n8n-fn/n8napi"
)

// chaosCmd runs the chaos suite against the running stack of scripts/stack.sh: it kills and
// restarts the stack's processes while calls run and prints what every fault cost.
func chaosCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, opt := chaosFlags(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	if opt.list {
		for _, e := range chaos.Experiments() {
			fmt.Fprintf(stdout, "%-15s %s\n", e.Name, e.Description)
		}
		return nil
	}
	cfg := opt.cfg
	cfg.Experiments = splitExperiments(opt.experiments)
	def := chaos.Defaults()
	if opt.short {
		def = chaos.ShortDefaults()
	}
	envPath, stack, api, err := chaosStack(opt.envPath, opt.script)
	if err != nil {
		return err
	}
	rep, runErr := chaos.Run(ctx, chaos.Env{Stack: stack, Client: api}, cfg, def, stderr)
	if len(rep.Results) > 0 {
		fmt.Fprintln(stdout)
		rep.Table(stdout)
	}
	if runErr != nil {
		return runErr
	}
	return writeChaosReport(stdout, rep, opt.out, envPath, opt.check)
}

// chaosOptions are chaosCmd's flags beyond the chaos.Config ones.
type chaosOptions struct {
	envPath, script, out, experiments string
	short, list, check                bool
	cfg                               chaos.Config
}

// chaosFlags defines chaosCmd's flags (zero Config fields take the run's defaults).
func chaosFlags(stderr io.Writer) (*flag.FlagSet, *chaosOptions) {
	opt := &chaosOptions{}
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&opt.envPath, "env", "", "stack env file (default $N8N_FN_CACHE/stack/stack.env, written by scripts/stack.sh up)")
	fs.StringVar(&opt.script, "stack-script", "scripts/stack.sh", "the stack script that restarts what a fault stopped (run from the repository root)")
	fs.StringVar(&opt.out, "out", "", "JSON report file (default $N8N_FN_CACHE/chaos/chaos-<UTC time>.json; '-' = stdout only)")
	fs.BoolVar(&opt.short, "short", false, "the short run (about 3 minutes): baseline, redis-kill, worker-restart with a 45 s call timeout")
	fs.StringVar(&opt.experiments, "experiments", "", "comma-separated experiments, in order (default: all but soak; see --list)")
	fs.BoolVar(&opt.list, "list", false, "list the experiments and exit")
	fs.BoolVar(&opt.check, "check", false, "exit with an error when a call was lost or answered wrong, a body completed twice for a caller that got its answer, "+
		"a fault could not be injected, baseline had any error, or a Redis experiment (redis-*) had an error from n8n-fn's call node (the README's test command runs --short --check)")
	cfg := &opt.cfg
	fs.IntVar(&cfg.Clients, "clients", 0, "concurrent callers (default 8; --short 6)")
	fs.DurationVar(&cfg.Period, "period", 0, "how long each experiment sends calls (default 40s; --short 20s)")
	fs.DurationVar(&cfg.FaultAt, "fault-at", 0, "when in the period the fault comes (default 10s; --short 5s)")
	fs.DurationVar(&cfg.Soak, "soak", 0, "length of the soak experiment (default 5m)")
	fs.DurationVar(&cfg.Every, "every", 0, "soak: time between faults (default 10s)")
	fs.DurationVar(&cfg.BodyMin, "body-min", 0, "shortest function body (default 1s)")
	fs.DurationVar(&cfg.BodyMax, "body-max", 0, "longest function body (default 3s; --short 2s)")
	fs.DurationVar(&cfg.CallTimeout, "call-timeout", 0, "timeoutMs of the call and the function (default 150s; --short 45s)")
	fs.DurationVar(&cfg.ClientTimeout, "client-timeout", 0, "HTTP timeout of one call: no answer by then counts as lost (default call timeout + a fifth, at least 10s)")
	fs.DurationVar(&cfg.Settle, "settle", 0, "wait before counting the bodies, for late runs (default 10s; --short 5s)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the random choices (default: from the clock)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: n8n-fn chaos [flags]\n\nDeploys a function (whose body reports each start and completion to a counter on\n"+
			"loopback) and its caller into the running stack, calls it from concurrent clients while it kills\n"+
			"and restarts workers, sidecars, Redis and main through the stack's pid files and scripts/stack.sh,\n"+
			"and prints per experiment: right answers, explicit errors (which), lost and wrong answers, bodies\n"+
			"started or completed more than once. It disturbs the stack: run it on a stack of your own.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs, opt
}

// splitExperiments is the --experiments list without empty entries (nil: the default set).
func splitExperiments(list string) []string {
	var out []string
	if list == "" {
		return out
	}
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// chaosStack loads the stack env (the default path when envPath is "") and the stack it describes,
// with an API client whose requests may take a minute (n8n is slow while its processes restart).
func chaosStack(envPath, script string) (string, *chaos.Stack, *n8napi.Client, error) {
	var err error
	if envPath == "" {
		if envPath, err = n8napi.DefaultStackEnvPath(); err != nil {
			return "", nil, nil, err
		}
	}
	env, err := n8napi.LoadStackEnv(envPath)
	if err != nil {
		return "", nil, nil, fmt.Errorf("chaos needs the running stack: %w", err)
	}
	stack, err := chaos.NewStack(env, script)
	if err != nil {
		return "", nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	api := env.Client()
	api.HTTP.Timeout = time.Minute
	return envPath, stack, api, nil
}

// writeChaosReport writes the JSON report to stdout (out "-") or to a file (out, default next to
// the stack's cache) and, with check, fails when the report breaks a promise.
func writeChaosReport(stdout io.Writer, rep chaos.Report, out, envPath string, check bool) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if out == "-" {
		if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
			return err
		}
		if check {
			return rep.Check()
		}
		return nil
	}
	if out == "" {
		out = filepath.Join(filepath.Dir(filepath.Dir(envPath)), "chaos", "chaos-"+rep.StartedAt.Format("20060102T150405Z")+".json")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Fprintf(stdout, "\nreport: %s\n", out)
	if check {
		if err := rep.Check(); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "check: no call lost or wrong, no body completed twice for an answered caller, no error where none is allowed (baseline: none; redis-*: none from n8n-fn)")
	}
	return nil
}
