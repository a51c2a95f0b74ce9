// Package bench measures webhook round trips on the running n8n stack: sequential latency
// (p50/p95/p99) and throughput with concurrent clients, scenario by scenario, in one run, so that
// every figure is compared with the baselines measured next to it on the same machine.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/n8n-fn/n8n-fn/n8napi"
)

// Env is what a scenario may use while it deploys itself or waits until it is ready.
type Env struct {
	Client *n8napi.Client
	Stack  n8napi.StackEnv
}

// WorkflowFunc returns the JSON of one workflow of a scenario. path is the webhook path of this
// run; ids holds the ids of the scenario's workflows imported before this one (a caller needs its
// sub-workflow's id).
type WorkflowFunc func(path string, ids []string) ([]byte, error)

// Scenario is one thing to measure: workflows to import and publish, the webhook to call (POST
// <webhook URL>/<path>, where path is made unique per run), the body and the check of an answer.
type Scenario struct {
	Name        string
	Description string
	Workflows   []WorkflowFunc
	Body        []byte
	// Check decides whether one answer is correct; a wrong answer counts as an error.
	Check func(status int, body []byte) error
	// Ready, when set, is waited for after the workflows are published (e.g. until the n8n-fn
	// sidecars serve a function).
	Ready func(ctx context.Context, env Env) error
	// MaxSequential caps the sequential calls of a slow scenario (0 = Config.Sequential).
	MaxSequential int
	// Ref is the scenario this one is compared with (default Config.Ref).
	Ref string
}

// Config sets the load. Zero values take the defaults.
type Config struct {
	Warmup         int           // calls before each measurement (10)
	Sequential     int           // sequential calls (200)
	Clients        int           // concurrent clients (8)
	Duration       time.Duration // length of the concurrent phase (20s)
	RequestTimeout time.Duration // per call (15s); a hung keep-alive call must not hang the run
	Pause          time.Duration // between concurrent phases, to let the queue drain (3s)
	// Rounds repeats both phases of every scenario (1); the order of the scenarios flips every
	// round, so drift on a shared machine (other tenants, a growing database) hits all of them
	// alike. The summary holds the medians over the rounds.
	Rounds int
	// Ref is the scenario every other one is compared with in Report.Ratios (default
	// webhook-subworkflow, n8n's own Execute Workflow, when it is selected).
	Ref string
}

func (c *Config) setDefaults() {
	if c.Warmup <= 0 {
		c.Warmup = 10
	}
	if c.Sequential <= 0 {
		c.Sequential = 200
	}
	if c.Clients <= 0 {
		c.Clients = 8
	}
	if c.Duration <= 0 {
		c.Duration = 20 * time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 15 * time.Second
	}
	if c.Rounds <= 0 {
		c.Rounds = 1
	}
	if c.Pause < 0 {
		c.Pause = 0
	} else if c.Pause == 0 {
		c.Pause = 3 * time.Second
	}
}

// Result is one measured phase of one scenario. Latencies are client-side round trips in ms,
// over correct answers only.
type Result struct {
	Scenario   string         `json:"scenario"`
	Phase      string         `json:"phase"` // "sequential" or "concurrent"
	Clients    int            `json:"clients"`
	Requests   int            `json:"requests"`
	OK         int            `json:"ok"`
	Errors     int            `json:"errors"`
	Codes      map[string]int `json:"codes"`
	FirstError string         `json:"first_error,omitempty"`
	WallS      float64        `json:"wall_s"`
	RPS        float64        `json:"rps"`
	MeanMs     float64        `json:"mean_ms"`
	P50Ms      float64        `json:"p50_ms"`
	P90Ms      float64        `json:"p90_ms"`
	P95Ms      float64        `json:"p95_ms"`
	P99Ms      float64        `json:"p99_ms"`
	MinMs      float64        `json:"min_ms"`
	MaxMs      float64        `json:"max_ms"`
	Round      int            `json:"round,omitempty"`
	// CPUms is the CPU time of the stack's processes during the phase, in ms per request, by
	// process group (main, worker1, sidecar-worker1 with its runner, redis, postgres, ...) and
	// "total". Empty when the stack was not started by scripts/stack.sh on Linux.
	CPUms map[string]float64 `json:"cpu_ms_per_request,omitempty"`
}

// Report is the whole run.
type Report struct {
	StartedAt  time.Time `json:"started_at"`
	BaseURL    string    `json:"n8n_base_url"`
	RunnerKind string    `json:"runner_kind"`
	GoVersion  string    `json:"go_version"`
	CPUs       int       `json:"cpus"`
	// Load averages (/proc/loadavg) at the start and the end: on a shared machine they say how
	// much the figures were disturbed.
	LoadStart string `json:"loadavg_start,omitempty"`
	LoadEnd   string `json:"loadavg_end,omitempty"`
	Config    struct {
		Warmup         int     `json:"warmup"`
		Sequential     int     `json:"sequential"`
		Clients        int     `json:"clients"`
		DurationS      float64 `json:"duration_s"`
		RequestTimeout float64 `json:"request_timeout_s"`
		Rounds         int     `json:"rounds"`
	} `json:"config"`
	Scenarios []ScenarioInfo `json:"scenarios"`
	Results   []Result       `json:"results"`
	// Summary has one row per scenario and phase: medians over the rounds (requests and errors
	// summed). With one round it repeats Results.
	Summary []Result `json:"summary"`
	// Ratios compares every scenario with the reference, round by round.
	Ratios []Ratio `json:"ratios,omitempty"`
}

// ScenarioInfo describes a scenario in the report.
type ScenarioInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

type sample struct {
	ms     float64
	status int
	err    error
}

type deployed struct {
	sc   Scenario
	path string
	ids  []string
}

// Run deploys every scenario, measures the sequential phase of each, then the concurrent phase of
// each, and removes the workflows it created (also on error). Progress goes to logw.
func Run(ctx context.Context, env Env, scenarios []Scenario, cfg Config, logw io.Writer) (rep Report, err error) {
	cfg.setDefaults()
	rep = Report{StartedAt: time.Now().UTC(), BaseURL: env.Client.BaseURL, RunnerKind: env.Stack.RunnerKind,
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), LoadStart: loadAvg()}
	defer func() { rep.LoadEnd = loadAvg() }()
	rep.Config.Warmup, rep.Config.Sequential, rep.Config.Clients = cfg.Warmup, cfg.Sequential, cfg.Clients
	rep.Config.DurationS, rep.Config.RequestTimeout = cfg.Duration.Seconds(), cfg.RequestTimeout.Seconds()
	rep.Config.Rounds = cfg.Rounds
	defer func() {
		rep.Summary, rep.Ratios = summarizeRounds(rep.Results), ratios(rep.Results, cfg.Ref, scenarios)
	}()
	if len(scenarios) == 0 {
		return rep, errors.New("bench: no scenarios selected")
	}

	// Load client: keep-alive connections and a deadline on every call.
	load := *env.Client
	load.HTTP = &http.Client{Timeout: cfg.RequestTimeout, Transport: n8napi.NewTransport()}

	runID := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffff)
	var deps []deployed
	defer func() {
		// Clean up with a fresh context: the run's context may be the reason we are leaving.
		cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for _, d := range deps {
			for i := len(d.ids) - 1; i >= 0; i-- {
				if err := env.Client.DeleteWorkflow(cctx, d.ids[i]); err != nil {
					fmt.Fprintf(logw, "bench: cleanup of %s: %v\n", d.sc.Name, err)
				}
			}
		}
	}()
	for _, sc := range scenarios {
		rep.Scenarios = append(rep.Scenarios, ScenarioInfo{Name: sc.Name, Description: sc.Description})
		d := deployed{sc: sc, path: "bench-" + sc.Name + "-" + runID}
		err := deploy(ctx, env, &d)
		deps = append(deps, d) // partial deployments are cleaned up too
		if err != nil {
			return rep, err
		}
		fmt.Fprintf(logw, "bench: deployed %s (POST /webhook/%s)\n", sc.Name, d.path)
	}

	cpu := cpuGroups{}
	if dir := env.Stack.Vars["N8N_STACK_DIR"]; dir != "" {
		cpu.pidDir = filepath.Join(dir, "pids")
	}
	for round := 1; round <= cfg.Rounds; round++ {
		order := append([]deployed(nil), deps...)
		if round%2 == 0 {
			slices.Reverse(order)
		}
		tag := ""
		if cfg.Rounds > 1 {
			tag = fmt.Sprintf(" [round %d/%d]", round, cfg.Rounds)
		}
		for _, d := range order {
			if err := warmup(ctx, &load, d, cfg.Warmup); err != nil {
				return rep, err
			}
			n := cfg.Sequential
			if d.sc.MaxSequential > 0 {
				n = min(n, d.sc.MaxSequential)
			}
			r := measure(ctx, &load, d, cpu, 1, n, 0)
			r.Round = round
			rep.Results = append(rep.Results, r)
			fmt.Fprintf(logw, "bench: %-22s sequential x%d: p50 %.1f ms, p95 %.1f ms, errors %d%s\n", d.sc.Name, r.Requests, r.P50Ms, r.P95Ms, r.Errors, tag)
			if err := ctx.Err(); err != nil {
				return rep, fmt.Errorf("bench: %w", err)
			}
		}
		for _, d := range order {
			select {
			case <-ctx.Done():
				return rep, fmt.Errorf("bench: %w", ctx.Err())
			case <-time.After(cfg.Pause): // let the previous phase's queue drain
			}
			if err := warmup(ctx, &load, d, cfg.Warmup); err != nil {
				return rep, err
			}
			r := measure(ctx, &load, d, cpu, cfg.Clients, 0, cfg.Duration)
			r.Round = round
			rep.Results = append(rep.Results, r)
			fmt.Fprintf(logw, "bench: %-22s %d clients x %s: %.1f req/s, p50 %.1f ms, errors %d, CPU %.1f ms/req%s\n", d.sc.Name, cfg.Clients, cfg.Duration, r.RPS, r.P50Ms, r.Errors, r.CPUms["total"], tag)
			if err := ctx.Err(); err != nil {
				return rep, fmt.Errorf("bench: %w", err)
			}
		}
	}
	return rep, nil
}

// loadAvg returns the three load averages, or "" where /proc/loadavg does not exist.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func deploy(ctx context.Context, env Env, d *deployed) error {
	for i, wf := range d.sc.Workflows {
		body, err := wf(d.path, d.ids)
		if err != nil {
			return fmt.Errorf("bench: scenario %s: build workflow %d: %w", d.sc.Name, i, err)
		}
		id, err := env.Client.CreateWorkflow(ctx, body)
		if err != nil {
			return fmt.Errorf("bench: scenario %s: %w", d.sc.Name, err)
		}
		d.ids = append(d.ids, id)
		if err := env.Client.PublishWorkflow(ctx, id); err != nil {
			return fmt.Errorf("bench: scenario %s: %w", d.sc.Name, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := env.Client.WaitWebhook(wctx, http.MethodPost, d.path); err != nil {
		return fmt.Errorf("bench: scenario %s: %w", d.sc.Name, err)
	}
	if d.sc.Ready != nil {
		if err := d.sc.Ready(ctx, env); err != nil {
			return fmt.Errorf("bench: scenario %s: not ready: %w", d.sc.Name, err)
		}
	}
	return nil
}

func call(ctx context.Context, c *n8napi.Client, d deployed) sample {
	t0 := time.Now()
	resp, err := c.CallWebhook(ctx, http.MethodPost, d.path, d.sc.Body)
	ms := float64(time.Since(t0).Microseconds()) / 1000
	if err != nil {
		return sample{ms: ms, err: err}
	}
	if d.sc.Check != nil {
		if cerr := d.sc.Check(resp.Status, resp.Body); cerr != nil {
			return sample{ms: ms, status: resp.Status, err: cerr}
		}
	} else if resp.Status != http.StatusOK {
		return sample{ms: ms, status: resp.Status, err: fmt.Errorf("HTTP %d: %.200s", resp.Status, resp.Body)}
	}
	return sample{ms: ms, status: resp.Status}
}

// warmup fails the run when the scenario does not work at all: measuring a broken scenario would
// only produce a table of errors.
func warmup(ctx context.Context, c *n8napi.Client, d deployed, n int) error {
	for i := 0; i < n; i++ {
		if s := call(ctx, c, d); s.err != nil {
			return fmt.Errorf("bench: scenario %s: warm-up call %d failed: %w", d.sc.Name, i+1, s.err)
		}
	}
	return nil
}

// measure runs clients loops, each making n calls (n > 0) or calling until dur has passed.
func measure(ctx context.Context, c *n8napi.Client, d deployed, cpu cpuGroups, clients, n int, dur time.Duration) Result {
	per := make([][]sample, clients)
	before := cpu.snapshot()
	var wg sync.WaitGroup
	t0 := time.Now()
	end := t0.Add(dur)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for k := 0; ctx.Err() == nil; k++ {
				if (n > 0 && k >= n) || (n == 0 && !time.Now().Before(end)) {
					return
				}
				per[i] = append(per[i], call(ctx, c, d))
			}
		}(i)
	}
	wg.Wait()
	wall := time.Since(t0).Seconds()
	after := cpu.snapshot()
	var all []sample
	for _, p := range per {
		all = append(all, p...)
	}
	phase := "sequential"
	if clients > 1 || n == 0 {
		phase = "concurrent"
	}
	r := summarize(d.sc.Name, phase, clients, all, wall)
	r.CPUms = perRequest(before, after, r.Requests)
	return r
}

func summarize(name, phase string, clients int, all []sample, wall float64) Result {
	r := Result{Scenario: name, Phase: phase, Clients: clients, Requests: len(all), Codes: map[string]int{}, WallS: round(wall)}
	var ok []float64
	for _, s := range all {
		code := fmt.Sprint(s.status)
		if s.status == 0 {
			code = "transport"
		}
		r.Codes[code]++
		if s.err != nil {
			r.Errors++
			if r.FirstError == "" {
				r.FirstError = s.err.Error()
			}
			continue
		}
		ok = append(ok, s.ms)
	}
	r.OK = len(ok)
	if wall > 0 {
		r.RPS = round(float64(len(all)) / wall)
	}
	if len(ok) == 0 {
		return r
	}
	sort.Float64s(ok)
	sum := 0.0
	for _, v := range ok {
		sum += v
	}
	r.MeanMs = round(sum / float64(len(ok)))
	r.P50Ms, r.P90Ms, r.P95Ms, r.P99Ms = pct(ok, 50), pct(ok, 90), pct(ok, 95), pct(ok, 99)
	r.MinMs, r.MaxMs = round(ok[0]), round(ok[len(ok)-1])
	return r
}

// pct is the nearest-rank percentile of sorted values.
func pct(sorted []float64, p float64) float64 {
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return round(sorted[i])
}

func round(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

// Table writes a short human-readable table: one row per scenario and phase (medians over the
// rounds), CPU per request where it was measured, then each scenario against the reference.
func (r Report) Table(w io.Writer) {
	rows := r.Summary
	if rows == nil {
		rows = summarizeRounds(r.Results)
	}
	if r.Config.Rounds > 1 {
		fmt.Fprintf(w, "medians over %d rounds\n", r.Config.Rounds)
	}
	fmt.Fprintf(w, "%-26s %-11s %7s %6s %8s %8s %8s %8s %8s %9s\n", "scenario", "phase", "reqs", "errs", "req/s", "p50 ms", "p95 ms", "p99 ms", "mean ms", "CPU ms/req")
	fmt.Fprintln(w, strings.Repeat("-", 109))
	for _, x := range rows {
		phase := "seq"
		if x.Phase == "concurrent" {
			phase = fmt.Sprintf("%d clients", x.Clients)
		}
		cpu := "-"
		if t, ok := x.CPUms["total"]; ok {
			cpu = fmt.Sprintf("%.1f", t)
		}
		fmt.Fprintf(w, "%-26s %-11s %7d %6d %8.1f %8.1f %8.1f %8.1f %8.1f %9s\n", x.Scenario, phase, x.Requests, x.Errors, x.RPS, x.P50Ms, x.P95Ms, x.P99Ms, x.MeanMs, cpu)
	}
	for _, x := range r.Ratios {
		fmt.Fprintf(w, "%s / %s: seq p50 %.2f, seq p95 %.2f, throughput %.2f", x.Scenario, x.Ref, x.SeqP50Median, x.SeqP95Median, x.RPSMedian)
		if x.CPUMedian > 0 {
			fmt.Fprintf(w, ", CPU per request %.2f", x.CPUMedian)
		}
		if len(x.RPS) > 1 {
			fmt.Fprintf(w, " (throughput by round %v)", x.RPS)
		}
		fmt.Fprintln(w)
	}
	if r.LoadStart != "" {
		fmt.Fprintf(w, "(%d CPUs; load average %s at the start, %s at the end)\n", r.CPUs, r.LoadStart, r.LoadEnd)
	}
}
