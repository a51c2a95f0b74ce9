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
	"time"

	"github.com/n8n-fn/n8n-fn/bench"
	"github.com/n8n-fn/n8n-fn/n8napi"
)

// benchCmd measures the running stack: every scenario (baselines + n8n-fn) in one run, so each
// figure is compared with the baselines measured next to it.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	envPath := fs.String("env", "", "stack env file (default $N8N_FN_CACHE/stack/stack.env, written by scripts/stack.sh up)")
	out := fs.String("out", "", "JSON report file (default $N8N_FN_CACHE/bench/bench-<UTC time>.json; '-' = stdout only)")
	scenarios := fs.String("scenarios", "", "comma-separated scenario names (default: all; see --list)")
	list := fs.Bool("list", false, "list the scenarios and exit")
	var cfg bench.Config
	fs.IntVar(&cfg.Warmup, "warmup", 10, "warm-up calls before each phase")
	fs.IntVar(&cfg.Sequential, "seq", 200, "sequential calls per scenario")
	fs.IntVar(&cfg.Clients, "clients", 8, "concurrent clients")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "length of the concurrent phase")
	fs.DurationVar(&cfg.RequestTimeout, "timeout", 15*time.Second, "timeout of one call")
	fs.DurationVar(&cfg.Pause, "pause", 3*time.Second, "pause between concurrent phases (queue drain)")
	fs.IntVar(&cfg.Rounds, "rounds", 1, "repeat both phases this often, flipping the scenario order each round; the table shows medians")
	fs.StringVar(&cfg.Ref, "ref", bench.ScenarioSubWorkflow, "scenario the others are compared with (ratios)")
	scale := fs.String("scale", "", "run the scale benchmark instead of the scenarios: comma-separated numbers of published functions, e.g. 1,100,500")
	var scfg bench.ScaleConfig
	fs.IntVar(&scfg.Plain, "scale-plain", 0, "scale: published workflows that are not functions, added before the first level")
	fs.IntVar(&scfg.Calls, "scale-calls", 100, "scale: sequential calls measured per level")
	fs.DurationVar(&scfg.Idle, "scale-idle", 20*time.Second, "scale: window over which idle CPU is measured")
	fs.BoolVar(&scfg.SkipProbes, "scale-no-probe", false, "scale: do not measure how long a newly published function takes to become callable")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: n8n-fn bench [flags]\n       n8n-fn bench --scale 1,100,500 [--scale-plain N]\n\n"+
			"Imports its own workflows into the running stack through n8n's public API, measures\n"+
			"sequential latency and concurrent throughput of each scenario, prints a table, writes a JSON\n"+
			"report and removes its workflows. With --scale it publishes that many functions level by level\n"+
			"and reports per sidecar Redis connections, idle CPU and RSS, n8n main's idle CPU, a call's\n"+
			"p50/p95 and how long a newly published function takes to answer.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	if *scale != "" {
		levels, err := bench.ParseLevels(*scale)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		scfg.Levels, scfg.Warmup, scfg.Timeout = levels, cfg.Warmup, cfg.RequestTimeout
	}
	if *list {
		for _, s := range bench.All() {
			fmt.Fprintf(stdout, "%-24s %s\n", s.Name, s.Description)
		}
		return nil
	}
	selected, err := bench.Select(bench.All(), *scenarios)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *envPath == "" {
		if *envPath, err = n8napi.DefaultStackEnvPath(); err != nil {
			return err
		}
	}
	stack, err := n8napi.LoadStackEnv(*envPath)
	if err != nil {
		return fmt.Errorf("bench needs the running stack: %w", err)
	}
	if *scale != "" {
		return benchScale(ctx, stack, scfg, *envPath, *out, stdout, stderr)
	}
	rep, runErr := bench.Run(ctx, bench.Env{Client: stack.Client(), Stack: stack}, selected, cfg, stderr)
	if len(rep.Results) > 0 {
		fmt.Fprintln(stdout)
		rep.Table(stdout)
	}
	if runErr != nil {
		return runErr
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	return writeBenchReport(stdout, b, *out, *envPath, "bench-"+rep.StartedAt.Format("20060102T150405Z"))
}

// benchScale runs the scale benchmark and writes its table and JSON report.
func benchScale(ctx context.Context, stack n8napi.StackEnv, cfg bench.ScaleConfig, envPath, out string, stdout, stderr io.Writer) error {
	rep, runErr := bench.RunScale(ctx, bench.Env{Client: stack.Client(), Stack: stack}, cfg, stderr)
	if len(rep.Levels) > 0 {
		fmt.Fprintln(stdout)
		rep.Table(stdout)
	}
	if runErr != nil {
		return runErr
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	return writeBenchReport(stdout, b, out, envPath, "scale-"+rep.StartedAt.Format("20060102T150405Z"))
}

// writeBenchReport writes a JSON report to out ('-': stdout; "": $N8N_FN_CACHE/bench/<name>.json).
func writeBenchReport(stdout io.Writer, b []byte, out, envPath, name string) error {
	if out == "-" {
		_, err := fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	if out == "" {
		out = filepath.Join(filepath.Dir(filepath.Dir(envPath)), "bench", name+".json")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Fprintf(stdout, "\nreport: %s\n", out)
	return nil
}
