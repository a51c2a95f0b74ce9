package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/n8n-fn/n8n-fn/n8napi"
	"github.com/n8n-fn/n8n-fn/registry"
)

// The scale benchmark: how the sidecars and n8n main fare as the number of published functions
// grows. For each level it publishes functions until the level is reached, waits until every
// sidecar serves all of them, watches the idle stack for a window (Redis connections per sidecar,
// CPU, RSS, main's CPU, which is mostly the sidecars' discovery), measures sequential calls of one
// function, and measures how long a newly published function takes to become callable.

// ScaleConfig sets the scale benchmark. Zero values take the defaults.
type ScaleConfig struct {
	Levels     []int         // numbers of published functions, ascending (1, 100, 500)
	Plain      int           // published workflows that are not functions, added before the first level
	Calls      int           // sequential calls measured per level (100)
	Warmup     int           // calls before the measurement (10)
	Idle       time.Duration // window over which idle CPU is measured (20 s)
	Parallel   int           // concurrent create/publish/delete requests while deploying (4)
	Timeout    time.Duration // per call (15 s)
	ServeWait  time.Duration // how long every sidecar may take to serve a level (5 min)
	SkipProbes bool          // do not measure the publish-to-callable delay
}

func (c *ScaleConfig) setDefaults() {
	if len(c.Levels) == 0 {
		c.Levels = []int{1, 100, 500}
	}
	sort.Ints(c.Levels)
	if c.Calls <= 0 {
		c.Calls = 100
	}
	if c.Warmup <= 0 {
		c.Warmup = 10
	}
	if c.Idle <= 0 {
		c.Idle = 20 * time.Second
	}
	if c.Parallel <= 0 {
		c.Parallel = 4
	}
	if c.Timeout <= 0 {
		c.Timeout = 15 * time.Second
	}
	if c.ServeWait <= 0 {
		c.ServeWait = 5 * time.Minute
	}
}

// ParseLevels reads "1,100,500".
func ParseLevels(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("scale level %q: want a number of functions >= 1 (e.g. --scale 1,100,500)", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("--scale needs at least one level, e.g. --scale 1,100,500")
	}
	return out, nil
}

// SidecarScale is one sidecar at one level, over the idle window.
type SidecarScale struct {
	Name string `json:"name"` // sidecar-main, sidecar-worker1, ...
	// RedisConns is the number of the sidecar's connections Redis lists (CLIENT LIST, matched by
	// the sidecar process's socket addresses); Blocked how many of them sit in a blocking read.
	RedisConns int `json:"redis_connections"`
	Blocked    int `json:"blocked_reads"`
	// IdleCPUPct is the CPU the sidecar (with its JS runner) used over the idle window, in % of one core.
	IdleCPUPct float64 `json:"idle_cpu_pct"`
	RSSMB      float64 `json:"rss_mb"` // the sidecar process alone
}

// ScaleLevel is the result of one level.
type ScaleLevel struct {
	Functions int `json:"functions"`
	Workflows int `json:"published_workflows"` // functions and plain workflows, callers included
	// ServedAfterS is how long after the last publish of the level every sidecar served all functions.
	ServedAfterS float64        `json:"served_after_s"`
	Sidecars     []SidecarScale `json:"sidecars"`
	// MainIdleCPUPct is n8n main's CPU over the idle window (% of one core): with nothing called,
	// that is mostly answering the sidecars' discovery (listing the published workflows).
	MainIdleCPUPct float64 `json:"main_idle_cpu_pct"`
	// RedisClients is every connection Redis has (n8n's own included).
	RedisClients int    `json:"redis_clients"`
	Call         Result `json:"call"`
	// CallableAfterMs is the time from publishing a new function (its caller already published)
	// to its first correct answer; 0 when not measured.
	CallableAfterMs float64 `json:"callable_after_ms,omitempty"`
}

// ScaleReport is the whole scale run.
type ScaleReport struct {
	StartedAt time.Time    `json:"started_at"`
	BaseURL   string       `json:"n8n_base_url"`
	GoVersion string       `json:"go_version"`
	CPUs      int          `json:"cpus"`
	LoadStart string       `json:"loadavg_start,omitempty"`
	LoadEnd   string       `json:"loadavg_end,omitempty"`
	Plain     int          `json:"plain_workflows"`
	IdleS     float64      `json:"idle_window_s"`
	Levels    []ScaleLevel `json:"levels"`
	P50Ratio  float64      `json:"p50_ratio_last_to_first,omitempty"`
}

// scaleRun holds what a scale run created, for the cleanup.
type scaleRun struct {
	env       Env
	cfg       ScaleConfig
	logw      io.Writer
	runID     string
	pidDir    string // scripts/stack.sh's pid files, "" when the stack has none
	redisPort int    // to tell the sidecars' Redis connections from their others
	cpu       cpuGroups
	mu        sync.Mutex
	ids       []string // every workflow created, in order
	fnames    []string // every function name published (the measured one first)
}

// RunScale runs the scale benchmark and removes everything it created (also on error).
func RunScale(ctx context.Context, env Env, cfg ScaleConfig, logw io.Writer) (rep ScaleReport, err error) {
	cfg.setDefaults()
	rep = ScaleReport{StartedAt: time.Now().UTC(), BaseURL: env.Client.BaseURL, GoVersion: runtime.Version(),
		CPUs: runtime.NumCPU(), LoadStart: loadAvg(), Plain: cfg.Plain, IdleS: cfg.Idle.Seconds()}
	defer func() { rep.LoadEnd = loadAvg() }()
	if env.Stack.RedisURL == "" {
		return rep, errors.New("bench: the stack env has no REDIS_URL")
	}
	rdb, err := registry.NewClient(env.Stack.RedisURL, 4)
	if err != nil {
		return rep, fmt.Errorf("bench: REDIS_URL: %w", err)
	}
	defer rdb.Close()
	reg, err := registry.New(rdb, registry.Config{Prefix: env.Stack.Vars["N8N_FN_PREFIX"]})
	if err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	r := &scaleRun{env: env, cfg: cfg, logw: logw, runID: fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff),
		redisPort: redisPort(env.Stack.RedisURL), pidDir: stackPIDDir(env.Stack)}
	r.cpu = cpuGroups{pidDir: r.pidDir}
	defer func() {
		t0 := time.Now()
		r.cleanup()
		fmt.Fprintf(logw, "bench: scale: removed %d workflows in %.0f s\n", len(r.ids), time.Since(t0).Seconds())
	}()

	load := *env.Client
	load.HTTP = &http.Client{Timeout: cfg.Timeout, Transport: n8napi.NewTransport()}
	measured, err := r.deployMeasured(ctx)
	if err != nil {
		return rep, err
	}
	if err := r.publishPlain(ctx); err != nil {
		return rep, err
	}
	for _, level := range cfg.Levels {
		lv, err := r.prepareLevel(ctx, level, reg, rdb)
		if err != nil {
			return rep, err
		}
		if err := scaleWarmup(ctx, &load, measured, cfg.Warmup); err != nil {
			rep.Levels = append(rep.Levels, lv) // what the idle stack showed still counts
			return rep, err
		}
		if err := r.measureLevel(ctx, &load, measured, &lv); err != nil {
			return rep, err
		}
		rep.Levels = append(rep.Levels, lv)
	}
	if n := len(rep.Levels); n > 1 && rep.Levels[0].Call.P50Ms > 0 {
		rep.P50Ratio = div(rep.Levels[n-1].Call.P50Ms, rep.Levels[0].Call.P50Ms)
	}
	return rep, nil
}

// redisPort is the port of a redis:// (or redis+sentinel://...) URL, 0 when it has none.
func redisPort(redisURL string) int {
	port := 0
	if u, err := url.Parse(strings.Replace(redisURL, "redis+", "", 1)); err == nil {
		port, _ = strconv.Atoi(u.Port())
	}
	return port
}

// stackPIDDir is where scripts/stack.sh keeps the stack's pid files, "" for a stack it did not start.
func stackPIDDir(stack n8napi.StackEnv) string {
	if dir := stack.Vars["N8N_STACK_DIR"]; dir != "" {
		return filepath.Join(dir, "pids")
	}
	return ""
}

// deployMeasured publishes the measured function and its caller: the fn-call scenario.
func (r *scaleRun) deployMeasured(ctx context.Context) (deployed, error) {
	measured := deployed{sc: functionCallScenario(ScenarioFunctionCall, "lastNode", "scale: the measured call"), path: "bs" + r.runID + "-m"}
	err := deploy(ctx, r.env, &measured)
	r.add(measured.ids...)
	if err != nil {
		return measured, err
	}
	r.fnames = append(r.fnames, measured.path)
	return measured, nil
}

// publishPlain publishes cfg.Plain workflows that are no functions, before the first level.
func (r *scaleRun) publishPlain(ctx context.Context) error {
	if r.cfg.Plain <= 0 {
		return nil
	}
	t0 := time.Now()
	if err := r.publishMany(ctx, r.cfg.Plain, r.plainWorkflow); err != nil {
		return err
	}
	fmt.Fprintf(r.logw, "bench: scale: published %d plain workflows in %.0f s\n", r.cfg.Plain, time.Since(t0).Seconds())
	return nil
}

// prepareLevel publishes functions up to level, waits until every sidecar serves them, and
// watches the idle stack for cfg.Idle: everything of the level but the call.
func (r *scaleRun) prepareLevel(ctx context.Context, level int, reg *registry.Registry, rdb redis.UniversalClient) (ScaleLevel, error) {
	lv := ScaleLevel{Functions: level}
	if add := level - len(r.fnames); add > 0 {
		t0 := time.Now()
		if err := r.publishMany(ctx, add, r.functionWorkflow); err != nil {
			return lv, err
		}
		fmt.Fprintf(r.logw, "bench: scale: published %d more functions (%d) in %.0f s\n", add, len(r.fnames), time.Since(t0).Seconds())
	}
	t0 := time.Now()
	if err := r.waitServed(ctx, reg, r.pidDir); err != nil {
		return lv, err
	}
	lv.ServedAfterS = round(time.Since(t0).Seconds())
	lv.Functions = len(r.fnames)
	lv.Workflows = len(r.ids)
	fmt.Fprintf(r.logw, "bench: scale: %d functions served by every sidecar after %.1f s; idle window %s\n", lv.Functions, lv.ServedAfterS, r.cfg.Idle)
	return lv, r.idleWindow(ctx, rdb, &lv)
}

// idleWindow watches the idle stack for cfg.Idle: main's and each sidecar's CPU over it, then
// Redis's connections and each sidecar's share of them and its RSS.
func (r *scaleRun) idleWindow(ctx context.Context, rdb redis.UniversalClient, lv *ScaleLevel) error {
	before := r.cpu.snapshot()
	select {
	case <-ctx.Done():
		return fmt.Errorf("bench: %w", ctx.Err())
	case <-time.After(r.cfg.Idle):
	}
	after := r.cpu.snapshot()
	pct := func(group string) float64 {
		if before == nil || after == nil {
			return 0
		}
		return round(float64(after[group]-before[group]) * 1000 / clockTicks / float64(r.cfg.Idle.Milliseconds()) * 100)
	}
	lv.MainIdleCPUPct = pct("main")
	clients, err := rdb.ClientList(ctx).Result()
	if err != nil {
		return fmt.Errorf("bench: CLIENT LIST: %w", err)
	}
	conns := parseClientList(clients)
	lv.RedisClients = len(conns)
	peers := tcpPeers()
	lv.Sidecars = sidecarScales(stackPIDs(r.pidDir), conns, pct, func(pid int) map[int]bool {
		return localPortsTo(pid, r.redisPort, peers)
	})
	return nil
}

// sidecarScales is one row per sidecar of the stack (its pid file is sidecar-*), by name: its idle
// CPU (pct of its group), RSS, and the Redis connections whose client port it holds (ports).
func sidecarScales(pids map[string]int, conns []clientConn, pct func(group string) float64, ports func(pid int) map[int]bool) []SidecarScale {
	names := make([]string, 0, len(pids))
	for n := range pids {
		if strings.HasPrefix(n, "sidecar-") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var out []SidecarScale
	for _, n := range names {
		s := SidecarScale{Name: n, IdleCPUPct: pct(n), RSSMB: round(float64(rssKB(pids[n])) / 1024)}
		own := ports(pids[n])
		for _, c := range conns {
			if own[c.port] {
				s.RedisConns++
				if c.blocked {
					s.Blocked++
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// measureLevel measures the sequential calls of the warmed-up function and, unless
// cfg.SkipProbes, how long a newly published function takes to answer.
func (r *scaleRun) measureLevel(ctx context.Context, load *n8napi.Client, measured deployed, lv *ScaleLevel) error {
	lv.Call = measure(ctx, load, measured, r.cpu, 1, r.cfg.Calls, 0)
	fmt.Fprintf(r.logw, "bench: scale: %d functions: call p50 %.1f ms, p95 %.1f ms, errors %d\n", lv.Functions, lv.Call.P50Ms, lv.Call.P95Ms, lv.Call.Errors)
	if r.cfg.SkipProbes {
		return nil
	}
	ms, err := r.probeCallable(ctx, load)
	if err != nil {
		return err
	}
	lv.CallableAfterMs = ms
	fmt.Fprintf(r.logw, "bench: scale: %d functions: a newly published function answered after %.0f ms\n", lv.Functions, ms)
	return nil
}

// scaleWarmup makes n warm-up calls and fails only when none answers: with hundreds of workflows on
// a loaded SQLite stack n8n answers the odd call with an error (SQLITE_BUSY), which the measured
// calls count as errors instead of ending the run.
func scaleWarmup(ctx context.Context, c *n8napi.Client, d deployed, n int) error {
	var last error
	ok := 0
	for i := 0; i < n; i++ {
		if s := call(ctx, c, d); s.err != nil {
			last = s.err
		} else {
			ok++
		}
	}
	if ok == 0 && n > 0 {
		return fmt.Errorf("bench: scale: none of %d warm-up calls answered: %w", n, last)
	}
	return nil
}

func (r *scaleRun) add(ids ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, ids...)
}

// functionWorkflow is the i-th filler function: the same body as the measured one, its own name.
func (r *scaleRun) functionWorkflow(i int) ([]byte, string, error) {
	name := fmt.Sprintf("bs%s-f%d", r.runID, i)
	sc := functionCallScenario(name, "lastNode", "")
	b, err := sc.Workflows[0](name, nil)
	return b, name, err
}

// plainWorkflow is a published workflow that is no function (Webhook -> Code -> NoOp), the
// bulk of a real installation that discovery has to read through.
func (r *scaleRun) plainWorkflow(i int) ([]byte, string, error) {
	path := fmt.Sprintf("bs%s-p%d", r.runID, i)
	b, err := chain("bench "+path, webhookNode(path),
		codeNode("Code", "return $input.all().map(item => ({ json: { ...item.json.body, plain: true } }));"),
		node("No Operation", "n8n-nodes-base.noOp", 1, map[string]any{}))
	return b, "", err
}

// publishMany creates and publishes n workflows, cfg.Parallel at a time.
func (r *scaleRun) publishMany(ctx context.Context, n int, build func(i int) ([]byte, string, error)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	base := len(r.ids)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for w := 0; w < r.cfg.Parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := r.publishOne(ctx, build, base+i); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

func (r *scaleRun) publishOne(ctx context.Context, build func(i int) ([]byte, string, error), i int) error {
	b, name, err := build(i)
	if err != nil {
		return fmt.Errorf("bench: scale: build workflow %d: %w", i, err)
	}
	id, err := r.env.Client.CreateWorkflow(ctx, b)
	if err != nil {
		return fmt.Errorf("bench: scale: %w", err)
	}
	r.add(id)
	if err := r.env.Client.PublishWorkflow(ctx, id); err != nil {
		return fmt.Errorf("bench: scale: %w", err)
	}
	if name != "" {
		r.mu.Lock()
		r.fnames = append(r.fnames, name)
		r.mu.Unlock()
	}
	return nil
}

// waitServed waits until every sidecar of the stack serves every function published so far
// (their heartbeats list what they serve).
func (r *scaleRun) waitServed(ctx context.Context, reg *registry.Registry, pidDir string) error {
	want := 0
	for n := range stackPIDs(pidDir) {
		if strings.HasPrefix(n, "sidecar-") {
			want++
		}
	}
	if want == 0 {
		want = 1 // no pid files: at least one sidecar
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ServeWait)
	defer cancel()
	last := ""
	for {
		sidecars, err := reg.ListSidecars(ctx)
		if err == nil {
			full := 0
			for _, s := range sidecars {
				serves := map[string]bool{}
				for _, k := range s.Serves {
					serves[k.Name] = true
				}
				missing := 0
				for _, n := range r.fnames {
					if !serves[n] {
						missing++
					}
				}
				if missing == 0 {
					full++
				}
			}
			if full >= want {
				return nil
			}
			last = fmt.Sprintf("%d of %d sidecars serve all %d functions", full, want, len(r.fnames))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: scale: the sidecars do not serve the published functions after %s (%s)", r.cfg.ServeWait, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// probeCallable publishes a caller, then a new function, and calls until the first correct
// answer: the delay a user sees between publishing a function and its first successful call.
func (r *scaleRun) probeCallable(ctx context.Context, load *n8napi.Client) (float64, error) {
	name := fmt.Sprintf("bs%s-probe%d", r.runID, len(r.ids))
	sc := functionCallScenario(name, "lastNode", "")
	caller, err := sc.Workflows[1](name, nil)
	if err != nil {
		return 0, err
	}
	fn, err := sc.Workflows[0](name, nil)
	if err != nil {
		return 0, err
	}
	var probeIDs []string
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for _, id := range probeIDs {
			if err := r.env.Client.DeleteWorkflow(cctx, id); err != nil {
				fmt.Fprintf(r.logw, "bench: scale: cleanup of probe %s: %v\n", id, err)
			}
		}
	}()
	for _, step := range []struct {
		body []byte
		wait bool
	}{{caller, true}, {fn, false}} {
		id, err := r.env.Client.CreateWorkflow(ctx, step.body)
		if err != nil {
			return 0, fmt.Errorf("bench: scale: probe: %w", err)
		}
		probeIDs = append(probeIDs, id)
		if !step.wait {
			break // the clock starts before the function is published
		}
		if err := r.env.Client.PublishWorkflow(ctx, id); err != nil {
			return 0, fmt.Errorf("bench: scale: probe: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = r.env.Client.WaitWebhook(wctx, http.MethodPost, name)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("bench: scale: probe: %w", err)
		}
	}
	t0 := time.Now()
	if err := r.env.Client.PublishWorkflow(ctx, probeIDs[1]); err != nil {
		return 0, fmt.Errorf("bench: scale: probe: %w", err)
	}
	d := deployed{sc: sc, path: name}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s := call(ctx, load, d)
		if s.err == nil {
			return round(float64(time.Since(t0).Microseconds()) / 1000), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("bench: scale: a newly published function is not callable after 2 min: %w", s.err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cleanup deletes every workflow the run created, cfg.Parallel at a time, with a fresh context.
func (r *scaleRun) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r.mu.Lock()
	ids := append([]string(nil), r.ids...)
	r.mu.Unlock()
	ch := make(chan string)
	var wg sync.WaitGroup
	for w := 0; w < r.cfg.Parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ch {
				if err := r.env.Client.DeleteWorkflow(ctx, id); err != nil && !errors.Is(err, n8napi.ErrNotFound) {
					fmt.Fprintf(r.logw, "bench: scale: cleanup of workflow %s: %v\n", id, err)
				}
			}
		}()
	}
	for i := len(ids) - 1; i >= 0; i-- {
		ch <- ids[i]
	}
	close(ch)
	wg.Wait()
}

// clientConn is one line of CLIENT LIST, the parts the benchmark needs.
type clientConn struct {
	port    int
	blocked bool
}

// parseClientList reads CLIENT LIST output: the client's port and whether it is blocked (flag b).
func parseClientList(s string) []clientConn {
	var out []clientConn
	for _, line := range strings.Split(s, "\n") {
		var c clientConn
		seen := false
		for _, f := range strings.Fields(line) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			switch k {
			case "addr":
				if i := strings.LastIndexByte(v, ':'); i >= 0 {
					c.port, _ = strconv.Atoi(v[i+1:])
					seen = true
				}
			case "flags":
				c.blocked = strings.Contains(v, "b")
			}
		}
		if seen {
			out = append(out, c)
		}
	}
	return out
}

// Table writes the scale table: one row per level and sidecar.
func (r ScaleReport) Table(w io.Writer) {
	fmt.Fprintf(w, "%-9s %-9s %-16s %6s %7s %8s %7s %9s %8s %8s %10s\n", "functions", "workflows", "sidecar", "redis", "blocked", "idle CPU", "RSS MB", "main CPU", "p50 ms", "p95 ms", "callable")
	fmt.Fprintln(w, strings.Repeat("-", 111))
	for _, lv := range r.Levels {
		for i, s := range lv.Sidecars {
			p50, p95, main, callable := "", "", "", ""
			if i == 0 {
				p50, p95 = fmt.Sprintf("%.1f", lv.Call.P50Ms), fmt.Sprintf("%.1f", lv.Call.P95Ms)
				main = fmt.Sprintf("%.1f%%", lv.MainIdleCPUPct)
				if lv.CallableAfterMs > 0 {
					callable = fmt.Sprintf("%.0f ms", lv.CallableAfterMs)
				}
			}
			fmt.Fprintf(w, "%-9d %-9d %-16s %6d %7d %7.1f%% %7.1f %9s %8s %8s %10s\n", lv.Functions, lv.Workflows, s.Name, s.RedisConns, s.Blocked, s.IdleCPUPct, s.RSSMB, main, p50, p95, callable)
		}
		if len(lv.Sidecars) == 0 {
			fmt.Fprintf(w, "%-9d %-9d %-16s %6s %7s %8s %7s %8.1f%% %8.1f %8.1f %10.0f\n", lv.Functions, lv.Workflows, "-", "-", "-", "-", "-", lv.MainIdleCPUPct, lv.Call.P50Ms, lv.Call.P95Ms, lv.CallableAfterMs)
		}
	}
	if r.P50Ratio > 0 {
		fmt.Fprintf(w, "call p50 at %d functions / at %d: %.2f\n", r.Levels[len(r.Levels)-1].Functions, r.Levels[0].Functions, r.P50Ratio)
	}
	fmt.Fprintf(w, "(idle window %.0f s; CPU in %% of one core; %d CPUs; load average %s at the start, %s at the end)\n", r.IdleS, r.CPUs, r.LoadStart, r.LoadEnd)
}
