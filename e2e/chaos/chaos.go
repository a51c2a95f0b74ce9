// Package chaos drives n8n-fn function calls through a real stack (scripts/stack.sh) while it
// kills and restarts the stack's processes the way a supervisor would (workers restarted fast or
// kept down, sidecars, Redis restarted, killed -9 or away for 10 s, n8n main), and counts for
// each experiment the calls answered correctly, answered with an explicit error (which), lost
// and answered wrong, and the function bodies that started or completed more than once. The
// function body reports each start and completion to a counter on loopback, so those counts are
// exact whatever n8n and n8n-fn report. `n8n-fn chaos` is the command.
package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/n8n-fn/n8n-fn/n8napi"
	"github.com/n8n-fn/n8n-fn/registry"
)

// Config is one run of the suite. Zero values take the defaults of Defaults (or ShortDefaults).
type Config struct {
	Experiments []string      // names, in order (default: every experiment but soak)
	Clients     int           // concurrent callers (8)
	Period      time.Duration // how long each experiment sends calls (40 s)
	FaultAt     time.Duration // when in the period the fault comes (10 s)
	Soak        time.Duration // length of the soak experiment: a random fault every Every (5 min)
	Every       time.Duration // soak: time between faults (10 s)
	BodyMin     time.Duration // the function body waits between BodyMin and BodyMax (1 s, 3 s)
	BodyMax     time.Duration
	CallTimeout time.Duration // the call node's and the function's timeoutMs (150 s)
	// ClientTimeout is the HTTP client's timeout of one call (CallTimeout + a fifth, at least
	// 10 s: 180 s; --short 150 s): a call without an answer by then is lost. It must be above
	// n8n's own worst case for answering a caller whose execution died with a worker (its
	// stalled-job handling answered after up to 114 s on a loaded machine), or a call n8n does
	// answer, late, counts as lost.
	ClientTimeout time.Duration
	// Settle is the wait after the last answer before the bodies are counted, so late runs of a
	// body (a re-run after the caller gave up) are seen (10 s).
	Settle time.Duration
	Seed   uint64 // random choices (0: time-based)
}

// Defaults are the full run's settings.
func Defaults() Config {
	return Config{
		Clients: 8, Period: 40 * time.Second, FaultAt: 10 * time.Second, Soak: 5 * time.Minute, Every: 10 * time.Second,
		BodyMin: time.Second, BodyMax: 3 * time.Second, CallTimeout: 150 * time.Second, Settle: 10 * time.Second,
	}
}

// ShortDefaults fit the whole run in about 3-5 minutes (the README's test command runs it): three
// experiments, a 45 s call timeout, and a client timeout long enough that only a call nobody
// answers counts as lost (see ClientTimeout).
func ShortDefaults() Config {
	return Config{
		Experiments: []string{"baseline", "redis-kill", "worker-restart"},
		Clients:     6, Period: 20 * time.Second, FaultAt: 5 * time.Second, Soak: time.Minute, Every: 10 * time.Second,
		BodyMin: time.Second, BodyMax: 2 * time.Second, CallTimeout: 45 * time.Second, ClientTimeout: 150 * time.Second,
		Settle: 5 * time.Second,
	}
}

func (c *Config) fill(def Config) {
	if len(c.Experiments) == 0 {
		c.Experiments = def.Experiments
	}
	if len(c.Experiments) == 0 {
		for _, e := range Experiments() {
			if e.Name != "soak" {
				c.Experiments = append(c.Experiments, e.Name)
			}
		}
	}
	setInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	setDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	setInt(&c.Clients, def.Clients)
	setDur(&c.Period, def.Period)
	setDur(&c.FaultAt, def.FaultAt)
	setDur(&c.Soak, def.Soak)
	setDur(&c.Every, def.Every)
	setDur(&c.BodyMin, def.BodyMin)
	setDur(&c.BodyMax, def.BodyMax)
	setDur(&c.CallTimeout, def.CallTimeout)
	// Above the call timeout by enough that n8n's own timeout error arrives before the client gives up.
	setDur(&c.ClientTimeout, max(def.ClientTimeout, c.CallTimeout+max(10*time.Second, c.CallTimeout/5)))
	setDur(&c.Settle, def.Settle)
	if c.BodyMax < c.BodyMin {
		c.BodyMax = c.BodyMin
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
}

// MarshalJSON writes the durations as Go duration strings ("40s"), as the flags take them.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{
		"experiments": c.Experiments, "clients": c.Clients, "period": c.Period.String(), "fault_at": c.FaultAt.String(),
		"soak": c.Soak.String(), "every": c.Every.String(), "body_min": c.BodyMin.String(), "body_max": c.BodyMax.String(),
		"call_timeout": c.CallTimeout.String(), "client_timeout": c.ClientTimeout.String(), "settle": c.Settle.String(),
		"seed": c.Seed,
	})
}

// Validate checks the experiment names and the timings.
func (c Config) Validate() error {
	known := map[string]bool{}
	for _, e := range Experiments() {
		known[e.Name] = true
	}
	for _, n := range c.Experiments {
		if !known[n] {
			return fmt.Errorf("chaos: unknown experiment %q (known: %s)", n, strings.Join(ExperimentNames(), ", "))
		}
	}
	if c.FaultAt >= c.Period {
		return fmt.Errorf("chaos: the fault (at %s) must come within the period (%s)", c.FaultAt, c.Period)
	}
	if c.ClientTimeout <= c.CallTimeout {
		return fmt.Errorf("chaos: the client timeout (%s) must be above the call timeout (%s), or n8n's own timeout error is never seen", c.ClientTimeout, c.CallTimeout)
	}
	return nil
}

// Outcomes of one call, as the client sees it.
const (
	OutcomeOK    = "ok"    // HTTP 200, one item with the client's key, done and v = 2n
	OutcomeWrong = "wrong" // an answer that is neither right nor an error
	OutcomeError = "error" // an explicit error: the call node's (continued) error item, an n8n error status, or main refusing or dropping the connection
	OutcomeLost  = "lost"  // no answer within the client timeout
)

// callRecord is one client request.
type callRecord struct {
	Key     string
	Start   time.Time
	End     time.Time
	Outcome string
	Kind    string // error kind (normalized message) for OutcomeError / OutcomeWrong
}

// Result is one experiment's row of the table.
type Result struct {
	Experiment string `json:"experiment"`
	Calls      int    `json:"calls"`
	OK         int    `json:"ok"`
	Errors     int    `json:"errors"`
	// FnErrors: of Errors, those the caller's n8n-fn call node reported (not n8n failing the request).
	FnErrors   int            `json:"fn_errors"`
	Lost       int            `json:"lost"`
	Wrong      int            `json:"wrong"`
	ErrorKinds map[string]int `json:"error_kinds,omitempty"`
	// StartedTwice / CompletedTwice: keys whose body started / completed more than once.
	StartedTwice   int `json:"started_twice"`
	CompletedTwice int `json:"completed_twice"`
	// CompletedTwiceOK: of CompletedTwice, those whose caller got the right answer.
	CompletedTwiceOK int `json:"completed_twice_ok"`
	// TwiceKeys names (up to 20) the calls whose body completed twice, so their runs can be
	// found in the logs (the key is in the call's params).
	TwiceKeys []string `json:"completed_twice_keys,omitempty"`
	// RanForGone: calls without a right answer whose body completed after the client had its
	// error (a body running for nobody).
	RanForGone int `json:"ran_for_gone"`
	// NotRun: calls with an error whose body never started.
	NotRun int     `json:"not_run"`
	P50s   float64 `json:"p50_s"`
	P95s   float64 `json:"p95_s"`
	MaxS   float64 `json:"max_s"`
	// Faults is what the injector did, with the time into the experiment.
	Faults []string `json:"faults"`
	Note   string   `json:"note,omitempty"`
}

// Report is a whole run.
type Report struct {
	StartedAt  time.Time `json:"started_at"`
	Stack      string    `json:"stack"`
	Config     Config    `json:"config"`
	Results    []Result  `json:"results"`
	BadReports int       `json:"bad_counter_reports,omitempty"`
}

// Experiment is one fault scenario. Inject runs in its own goroutine FaultAt into the period and
// returns when the fault is over (the process is back, or the experiment says it stays down).
type Experiment struct {
	Name        string
	Description string
	Inject      func(ctx context.Context, r *run) error
	// Allowed says which errors Report.Check accepts: AllowNone (no fault: every call must get
	// the right answer), AllowN8N (a Redis blip: n8n itself may fail a caller's request or
	// execution, its queue lives in Redis, but n8n-fn must fail none: issue 12, a Redis restart
	// costs time only) or AllowAny (a worker, sidecar or main dies: n8n fails the executions it
	// ran, and the caller's own call node may be among them).
	Allowed ErrorsAllowed
}

// ErrorsAllowed is which errors an experiment may end in (Experiment.Allowed).
type ErrorsAllowed int

const (
	AllowAny  ErrorsAllowed = iota // any error
	AllowN8N                       // only n8n's own failures of the caller (an error status, main unreachable), none from n8n-fn
	AllowNone                      // none
)

// fnErrorPrefix starts the kind of an error the caller's n8n-fn call node reported (an error item),
// as opposed to n8n failing the caller's request or execution itself.
const fnErrorPrefix = "call failed: "

// Experiments lists every experiment in the default order.
func Experiments() []Experiment {
	return []Experiment{
		{"baseline", "no fault", func(context.Context, *run) error { return nil }, AllowNone},
		{"worker-restart", "kill -9 the worker running the most bodies, start it again 2 s later", func(ctx context.Context, r *run) error {
			return r.killAndRestart(ctx, r.busiestWorker(), syscall.SIGKILL, 2*time.Second)
		}, AllowAny},
		{"worker-down", "kill -9 the worker running the most bodies, keep it down 40 s", func(ctx context.Context, r *run) error {
			return r.killAndRestart(ctx, r.busiestWorker(), syscall.SIGKILL, 40*time.Second)
		}, AllowAny},
		{"sidecar-kill", "kill -9 the n8n-fn sidecar of the worker running the most bodies, start it again 2 s later", func(ctx context.Context, r *run) error {
			return r.killAndRestart(ctx, "sidecar-"+r.busiestWorker(), syscall.SIGKILL, 2*time.Second)
		}, AllowAny},
		{"redis-restart", "stop Redis (SIGTERM: it writes its AOF and exits), start it again", func(ctx context.Context, r *run) error {
			return r.killAndRestart(ctx, "redis", syscall.SIGTERM, 0)
		}, AllowN8N},
		{"redis-kill", "kill -9 Redis, start it again at once", func(ctx context.Context, r *run) error {
			return r.killAndRestart(ctx, "redis", syscall.SIGKILL, 0)
		}, AllowN8N},
		{"redis-outage", "kill -9 Redis, keep it down 10 s", func(ctx context.Context, r *run) error {
			return r.killAndRestart(ctx, "redis", syscall.SIGKILL, 10*time.Second)
		}, AllowN8N},
		{"main-kill", "kill -9 n8n main, start it again 2 s later", func(ctx context.Context, r *run) error {
			return r.killAndRestart(ctx, "main", syscall.SIGKILL, 2*time.Second)
		}, AllowAny},
		{"soak", "calls for --soak with a random fault (worker, sidecar, Redis or main, killed -9, back 2 s later) every --every", func(ctx context.Context, r *run) error {
			return r.soak(ctx)
		}, AllowAny},
	}
}

// ExperimentNames lists the experiment names.
func ExperimentNames() []string {
	var out []string
	for _, e := range Experiments() {
		out = append(out, e.Name)
	}
	return out
}

func experiment(name string) Experiment {
	for _, e := range Experiments() {
		if e.Name == name {
			return e
		}
	}
	return Experiment{}
}

// Env is what the suite runs against.
type Env struct {
	Stack  *Stack
	Client *n8napi.Client // API client (deploys the workflows)
}

// run is the state of one suite run.
type run struct {
	cfg     Config
	stack   *Stack
	api     *n8napi.Client
	calls   *n8napi.Client // webhook client without keep-alive: a dead main is seen as refused, not as a reset kept-alive socket
	counter *counter
	name    string
	log     io.Writer
	rnd     *rand.Rand
	rndMu   sync.Mutex

	expStart time.Time
	mu       sync.Mutex
	faults   []string
	records  map[string][]callRecord // by experiment
}

// Run deploys the suite's workflows, runs the experiments one after another, removes the
// workflows and returns the report. Progress goes to logw.
func Run(ctx context.Context, env Env, cfg Config, def Config, logw io.Writer) (Report, error) {
	cfg.fill(def)
	rep := Report{StartedAt: time.Now().UTC(), Stack: env.Stack.Env.BaseURL, Config: cfg}
	if err := cfg.Validate(); err != nil {
		return rep, err
	}
	cnt, err := startCounter()
	if err != nil {
		return rep, err
	}
	defer cnt.Close()
	calls := *env.Client
	tr := n8napi.NewTransport()
	tr.DisableKeepAlives = true
	calls.HTTP = &http.Client{Timeout: cfg.ClientTimeout, Transport: tr}
	r := &run{cfg: cfg, stack: env.Stack, api: env.Client, calls: &calls, counter: cnt,
		name: "chaos-" + randomSuffix(), log: logw, rnd: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed>>1|1)),
		records: map[string][]callRecord{}}
	r.logf("stack %s, experiments %s, %d clients, body %s-%s, call timeout %s, seed %d",
		env.Stack.Env.BaseURL, strings.Join(cfg.Experiments, ","), cfg.Clients, cfg.BodyMin, cfg.BodyMax, cfg.CallTimeout, cfg.Seed)
	ids, err := r.deploy(ctx)
	defer r.cleanup(ids)
	if err != nil {
		return rep, err
	}
	faults := map[string][]string{}
	for _, name := range cfg.Experiments {
		if ctx.Err() != nil {
			break
		}
		f, err := r.experiment(ctx, experiment(name))
		faults[name] = f
		if err != nil {
			rep.Results = r.results(cfg.Experiments, faults)
			return rep, err
		}
	}
	r.logf("settling %s for late body runs", cfg.Settle)
	sleepCtx(ctx, cfg.Settle)
	rep.Results = r.results(cfg.Experiments, faults)
	rep.BadReports = cnt.badReports()
	return rep, ctx.Err()
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "[chaos %s] %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// fault notes what the injector did, with the time into the experiment.
func (r *run) fault(format string, args ...any) {
	r.mu.Lock()
	msg := fmt.Sprintf("t+%.1fs %s", time.Since(r.expStart).Seconds(), fmt.Sprintf(format, args...))
	r.faults = append(r.faults, msg)
	r.mu.Unlock()
	r.logf("%s", msg)
}

func (r *run) deploy(ctx context.Context) ([]string, error) {
	timeoutMs := r.cfg.CallTimeout.Milliseconds()
	fn, err := functionWorkflow(r.name, r.counter.url, timeoutMs)
	if err != nil {
		return nil, err
	}
	caller, err := callerWorkflow(r.name, timeoutMs)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, wf := range [][]byte{fn, caller} {
		id, err := r.api.CreateWorkflow(ctx, wf)
		if err != nil {
			return ids, fmt.Errorf("chaos: deploy: %w", err)
		}
		ids = append(ids, id)
		if err := r.api.PublishWorkflow(ctx, id); err != nil {
			return ids, fmt.Errorf("chaos: deploy: %w", err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, p := range []string{r.name, r.name + "-fn"} {
		if err := r.api.WaitWebhook(wctx, http.MethodPost, p); err != nil {
			return ids, fmt.Errorf("chaos: deploy: %w", err)
		}
	}
	if err := r.ready(ctx); err != nil {
		return ids, err
	}
	r.logf("deployed function %s and its caller (workflows %s)", r.name, strings.Join(ids, ", "))
	return ids, nil
}

func (r *run) cleanup(ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, id := range ids {
		if err := r.api.DeleteWorkflow(ctx, id); err != nil {
			r.logf("cleanup: %v", err)
		}
	}
}

// ready waits until a sidecar serves the function and a probe call gets the right answer: the
// stack has recovered from the last experiment.
func (r *run) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	rdb, err := registry.NewClient(r.stack.Env.RedisURL, 0)
	if err != nil {
		return fmt.Errorf("chaos: REDIS_URL: %w", err)
	}
	defer rdb.Close()
	reg, err := registry.New(rdb, registry.Config{Prefix: r.stack.Env.Vars["N8N_FN_PREFIX"]})
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	key := registry.FunctionKey{Scope: registry.ScopeGlobal, Name: r.name}
	last := "no sidecar serves the function yet"
	for i := 0; ; i++ {
		_, ok, err := reg.LookupFunction(ctx, key)
		if err == nil && ok {
			ok, err = reg.HasLiveConsumer(ctx, key)
		}
		if err != nil {
			last = err.Error()
		}
		if err == nil && ok {
			rec := r.call(ctx, fmt.Sprintf("probe-%s-%d", randomSuffix(), i), 100*time.Millisecond, 7)
			if rec.Outcome == OutcomeOK {
				return nil
			}
			last = rec.Outcome + ": " + rec.Kind
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("chaos: the stack did not recover within 4 min (last: %s)", last)
		case <-time.After(time.Second):
		}
	}
}

// experiment runs one experiment: clients call for the period (soak: for Soak), the fault comes
// at FaultAt; then it waits for the calls in flight, brings the stack back up and waits until it
// serves calls again.
func (r *run) experiment(ctx context.Context, e Experiment) ([]string, error) {
	period := r.cfg.Period
	if e.Name == "soak" {
		period = r.cfg.Soak
	}
	r.mu.Lock()
	r.expStart, r.faults = time.Now(), nil
	r.mu.Unlock()
	r.logf("experiment %s (%s): %d clients for %s", e.Name, e.Description, r.cfg.Clients, period)
	end := time.Now().Add(period)
	var wg sync.WaitGroup
	for c := range r.cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.client(ctx, e.Name, c, end)
		}()
	}
	injDone := make(chan struct{})
	go func() {
		defer close(injDone)
		if !sleepCtx(ctx, r.cfg.FaultAt) {
			return
		}
		if err := e.Inject(ctx, r); err != nil {
			r.fault("fault failed: %v", err)
		}
	}()
	wg.Wait()
	<-injDone
	// Whatever the fault left down comes back, as a supervisor would bring it.
	if err := r.stack.Up(ctx); err != nil {
		return r.faultLog(), err
	}
	if err := r.ready(ctx); err != nil {
		return r.faultLog(), err
	}
	res := r.summary(e.Name)
	r.logf("experiment %s done: %d calls, %d ok, %d errors, %d lost, %d wrong", e.Name, res.Calls, res.OK, res.Errors, res.Lost, res.Wrong)
	return r.faultLog(), nil
}

func (r *run) faultLog() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.faults)
}

// client calls until end; after an error it pauses a second so a dead main is not hammered.
func (r *run) client(ctx context.Context, exp string, id int, end time.Time) {
	for seq := 0; time.Now().Before(end) && ctx.Err() == nil; seq++ {
		r.rndMu.Lock()
		ms := r.cfg.BodyMin + time.Duration(r.rnd.Int64N(int64(r.cfg.BodyMax-r.cfg.BodyMin)+1))
		n := r.rnd.IntN(1000)
		r.rndMu.Unlock()
		rec := r.call(ctx, fmt.Sprintf("%s-%s-c%d-%d", r.name, exp, id, seq), ms, n)
		r.mu.Lock()
		r.records[exp] = append(r.records[exp], rec)
		r.mu.Unlock()
		if rec.Outcome != OutcomeOK {
			sleepCtx(ctx, time.Second)
		}
	}
}

// call makes one request and classifies its answer.
func (r *run) call(ctx context.Context, key string, ms time.Duration, n int) callRecord {
	body, _ := json.Marshal(map[string]any{"key": key, "ms": ms.Milliseconds(), "n": n}) // strings and numbers
	rec := callRecord{Key: key, Start: time.Now()}
	resp, err := r.calls.CallWebhook(ctx, http.MethodPost, r.name, body)
	rec.End = time.Now()
	if err != nil {
		rec.Outcome, rec.Kind = classifyTransport(err)
		return rec
	}
	rec.Outcome, rec.Kind = classify(resp.Status, resp.Body, key, n)
	return rec
}

// classify judges one HTTP answer to the caller's webhook.
func classify(status int, body []byte, key string, n int) (outcome, kind string) {
	if status != http.StatusOK {
		var e struct {
			Message string `json:"message"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			msg = e.Message
		}
		return OutcomeError, fmt.Sprintf("HTTP %d: %s", status, normalize(msg))
	}
	var items []map[string]any
	if err := json.Unmarshal(body, &items); err != nil {
		// n8n main answers 200 with this text while it starts, before it runs any webhook.
		if strings.Contains(string(body), "n8n is starting up") {
			return OutcomeError, "main starting up: " + normalize(string(body))
		}
		return OutcomeWrong, "not a JSON array of items: " + normalize(string(body))
	}
	if len(items) != 1 {
		return OutcomeWrong, fmt.Sprintf("%d items, want 1", len(items))
	}
	it := items[0]
	if msg, ok := it["error"].(string); ok {
		return OutcomeError, fnErrorPrefix + normalize(msg)
	}
	v, _ := it["v"].(float64)
	switch {
	case it["key"] != key:
		return OutcomeWrong, fmt.Sprintf("answer for key %v", it["key"])
	case it["done"] != true:
		return OutcomeWrong, "answer without done=true"
	case v != float64(2*n):
		return OutcomeWrong, fmt.Sprintf("v=%v, want %d", it["v"], 2*n)
	}
	return OutcomeOK, ""
}

// classifyTransport names a request that got no HTTP answer.
func classifyTransport(err error) (outcome, kind string) {
	var ne interface{ Timeout() bool }
	msg := err.Error()
	switch {
	case errors.Is(err, context.Canceled):
		return OutcomeError, "run interrupted"
	case errors.As(err, &ne) && ne.Timeout():
		return OutcomeLost, "no answer within the client timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return OutcomeError, "main unreachable (connection refused)"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		strings.Contains(msg, "connection reset"), strings.Contains(msg, "EOF"):
		return OutcomeError, "main dropped the connection"
	}
	return OutcomeError, "transport: " + normalize(msg)
}

// normalize shortens a message and replaces the parts that differ from call to call (numbers,
// ids) so equal errors count together: a word of digits becomes N, a word of 8 or more letters and
// digits with at least two digits (a call id, an execution id, a key) becomes <id>.
func normalize(s string) string {
	var b strings.Builder
	start := -1 // where the current word began, -1 between words
	for i, c := range s {
		if isWordRune(c) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			b.WriteString(normalizeWord(s[start:i]))
			start = -1
		}
		b.WriteRune(c)
	}
	if start >= 0 {
		b.WriteString(normalizeWord(s[start:]))
	}
	out := strings.Join(strings.Fields(b.String()), " ")
	if len(out) > 160 {
		out = strings.ToValidUTF8(out[:160], "") + "..."
	}
	return out
}

// isWordRune: ids and numbers are made of ASCII letters, digits, '-' and '_'.
func isWordRune(c rune) bool {
	return c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// normalizeWord is N for a number, <id> for what looks like an id (8 or more characters, at least
// two digits, no '_': env variable names such as N8N_RUNNERS_TASK_TIMEOUT stay), else the word.
func normalizeWord(w string) string {
	digits := 0
	for _, c := range w {
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	switch {
	case digits > 0 && digits == len(w):
		return "N"
	case len(w) >= 8 && digits >= 2 && !strings.Contains(w, "_"):
		return "<id>"
	}
	return w
}

// busiestWorker is the worker running the most function bodies now (worker1 when none runs).
func (r *run) busiestWorker() string {
	running := r.counter.running(time.Now(), r.cfg.BodyMax+5*time.Second)
	w := busiest(running)
	workers := r.stack.Workers()
	if w == "" || !slices.Contains(workers, w) {
		if len(workers) == 0 {
			return "worker1"
		}
		return workers[0]
	}
	return w
}

// killAndRestart signals a stack process, waits until it is gone, keeps it down for down, then
// starts it again with scripts/stack.sh up (which waits until it is ready).
func (r *run) killAndRestart(ctx context.Context, name string, sig syscall.Signal, down time.Duration) error {
	running := r.counter.running(time.Now(), r.cfg.BodyMax+5*time.Second)
	sigName := map[syscall.Signal]string{syscall.SIGKILL: "kill -9", syscall.SIGTERM: "SIGTERM"}[sig]
	pid, ok := r.stack.Pid(name)
	if !ok {
		// Not ours (or something else stopped it): a supervisor starts it; the fault is skipped.
		r.fault("%s is not running: starting what is missing instead of the fault", name)
		t0 := time.Now()
		if err := r.stack.Up(ctx); err != nil {
			return err
		}
		r.fault("stack back (stack.sh up took %.1fs)", time.Since(t0).Seconds())
		return nil
	}
	if err := r.stack.Signal(name, sig); err != nil {
		return err
	}
	r.fault("%s %s (pid %d; bodies running by worker: %v)", sigName, name, pid, running)
	if err := r.stack.WaitGone(ctx, name, 20*time.Second); err != nil {
		return err
	}
	if down > 0 && !sleepCtx(ctx, down) {
		return ctx.Err()
	}
	t0 := time.Now()
	if err := r.stack.Up(ctx); err != nil {
		return err
	}
	r.fault("%s back (stack.sh up took %.1fs)", name, time.Since(t0).Seconds())
	return nil
}

// soak injects a random fault every Every (from one fault's start to the next; when bringing a
// process back takes longer, the next fault follows at once) until the soak period is over.
func (r *run) soak(ctx context.Context) error {
	end := r.expStart.Add(r.cfg.Soak)
	for next := time.Now(); next.Add(r.cfg.Every).Before(end); {
		if wait := time.Until(next); wait > 0 && !sleepCtx(ctx, wait) {
			return ctx.Err()
		}
		next = time.Now().Add(r.cfg.Every)
		r.rndMu.Lock()
		pick := r.rnd.IntN(4)
		r.rndMu.Unlock()
		var err error
		switch pick {
		case 0:
			err = r.killAndRestart(ctx, r.busiestWorker(), syscall.SIGKILL, 2*time.Second)
		case 1:
			err = r.killAndRestart(ctx, "sidecar-"+r.busiestWorker(), syscall.SIGKILL, 2*time.Second)
		case 2:
			err = r.killAndRestart(ctx, "redis", syscall.SIGKILL, 2*time.Second)
		case 3:
			err = r.killAndRestart(ctx, "main", syscall.SIGKILL, 2*time.Second)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// summary computes one experiment's row from its call records and the counter.
func (r *run) summary(exp string) Result {
	r.mu.Lock()
	recs := slices.Clone(r.records[exp])
	r.mu.Unlock()
	res := Result{Experiment: exp, Calls: len(recs), ErrorKinds: map[string]int{}}
	var lat []float64
	for _, rec := range recs {
		bc := r.counter.count(rec.Key)
		switch rec.Outcome {
		case OutcomeOK:
			res.OK++
			lat = append(lat, rec.End.Sub(rec.Start).Seconds())
		case OutcomeError:
			res.Errors++
			res.ErrorKinds[rec.Kind]++
			if strings.HasPrefix(rec.Kind, fnErrorPrefix) {
				res.FnErrors++
			}
		case OutcomeLost:
			res.Lost++
			res.ErrorKinds["lost: "+rec.Kind]++
		case OutcomeWrong:
			res.Wrong++
			res.ErrorKinds["wrong: "+rec.Kind]++
		}
		if bc.Started > 1 {
			res.StartedTwice++
		}
		if bc.Completed > 1 {
			res.CompletedTwice++
			if len(res.TwiceKeys) < 20 {
				res.TwiceKeys = append(res.TwiceKeys, fmt.Sprintf("%s (%s)", rec.Key, rec.Outcome))
			}
			if rec.Outcome == OutcomeOK {
				res.CompletedTwiceOK++
			}
		}
		if rec.Outcome != OutcomeOK && bc.LastDone.After(rec.End) {
			res.RanForGone++
		}
		if rec.Outcome == OutcomeError && bc.Started == 0 {
			res.NotRun++
		}
	}
	sort.Float64s(lat)
	res.P50s, res.P95s = pct(lat, 50), pct(lat, 95)
	if len(lat) > 0 {
		res.MaxS = round1(lat[len(lat)-1])
	}
	return res
}

func (r *run) results(names []string, faults map[string][]string) []Result {
	var out []Result
	for _, n := range names {
		r.mu.Lock()
		_, ran := r.records[n]
		r.mu.Unlock()
		if !ran {
			continue
		}
		res := r.summary(n)
		res.Faults = faults[n]
		out = append(out, res)
	}
	return out
}

func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return round1(sorted[i])
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

// sleepCtx sleeps d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Table prints the report as one table, then the error kinds and the faults of each experiment.
func (rep Report) Table(w io.Writer) {
	fmt.Fprintf(w, "%-15s %6s %6s %6s %5s %5s %9s %9s %8s %7s %6s %6s %6s\n",
		"experiment", "calls", "ok", "errors", "lost", "wrong", "started2+", "done2+", "ran4gone", "not-run", "p50 s", "p95 s", "max s")
	var tot Result
	for _, r := range rep.Results {
		fmt.Fprintf(w, "%-15s %6d %6d %6d %5d %5d %9d %9s %8d %7d %6.1f %6.1f %6.1f\n",
			r.Experiment, r.Calls, r.OK, r.Errors, r.Lost, r.Wrong, r.StartedTwice,
			fmt.Sprintf("%d(%d ok)", r.CompletedTwice, r.CompletedTwiceOK), r.RanForGone, r.NotRun, r.P50s, r.P95s, r.MaxS)
		tot.Calls += r.Calls
		tot.OK += r.OK
		tot.Errors += r.Errors
		tot.Lost += r.Lost
		tot.Wrong += r.Wrong
		tot.StartedTwice += r.StartedTwice
		tot.CompletedTwice += r.CompletedTwice
		tot.CompletedTwiceOK += r.CompletedTwiceOK
		tot.RanForGone += r.RanForGone
		tot.NotRun += r.NotRun
	}
	fmt.Fprintf(w, "%-15s %6d %6d %6d %5d %5d %9d %9s %8d %7d\n", "total", tot.Calls, tot.OK, tot.Errors, tot.Lost, tot.Wrong,
		tot.StartedTwice, fmt.Sprintf("%d(%d ok)", tot.CompletedTwice, tot.CompletedTwiceOK), tot.RanForGone, tot.NotRun)
	fmt.Fprintln(w, "\nstarted2+/done2+: calls whose function body started/completed more than once (counted by the body itself);")
	fmt.Fprintln(w, "(N ok): of those, calls whose caller got the right answer; ran4gone: calls without a right answer whose body")
	fmt.Fprintln(w, "completed after the client had its error; not-run: errors whose body never started; p50/p95/max: right answers.")
	for _, r := range rep.Results {
		if len(r.ErrorKinds) == 0 && len(r.Faults) == 0 && len(r.TwiceKeys) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", r.Experiment)
		for _, f := range r.Faults {
			fmt.Fprintf(w, "  fault   %s\n", f)
		}
		for _, k := range r.TwiceKeys {
			fmt.Fprintf(w, "  done2+  %s\n", k)
		}
		kinds := make([]string, 0, len(r.ErrorKinds))
		for k := range r.ErrorKinds {
			kinds = append(kinds, k)
		}
		sort.Slice(kinds, func(i, j int) bool {
			if r.ErrorKinds[kinds[i]] != r.ErrorKinds[kinds[j]] {
				return r.ErrorKinds[kinds[i]] > r.ErrorKinds[kinds[j]]
			}
			return kinds[i] < kinds[j]
		})
		for _, k := range kinds {
			fmt.Fprintf(w, "  %4d×   %s\n", r.ErrorKinds[k], k)
		}
	}
}

// Check holds the run to the targets a test can hold it to (issue 12): no call lost, none answered
// wrong, no body completed twice for a caller that got its answer, no bad report to the counter,
// every fault injected, no error at all without a fault, and no error from n8n-fn in a Redis
// blip (Experiment.Allowed). nil when all hold, else one error naming each miss.
func (rep Report) Check() error {
	var miss []string
	if rep.BadReports > 0 {
		miss = append(miss, fmt.Sprintf("%d malformed reports reached the body counter", rep.BadReports))
	}
	for _, r := range rep.Results {
		e := experiment(r.Experiment)
		if r.Lost > 0 {
			miss = append(miss, fmt.Sprintf("%s: %d of %d calls lost (no answer at all)", r.Experiment, r.Lost, r.Calls))
		}
		if r.Wrong > 0 {
			miss = append(miss, fmt.Sprintf("%s: %d of %d calls answered wrong", r.Experiment, r.Wrong, r.Calls))
		}
		if r.CompletedTwiceOK > 0 {
			miss = append(miss, fmt.Sprintf("%s: %d bodies completed twice for a caller that got its answer", r.Experiment, r.CompletedTwiceOK))
		}
		switch {
		case e.Allowed == AllowNone && r.Errors > 0:
			miss = append(miss, fmt.Sprintf("%s: %d of %d calls ended in an error, and this experiment allows none", r.Experiment, r.Errors, r.Calls))
		case e.Allowed == AllowN8N && r.FnErrors > 0:
			miss = append(miss, fmt.Sprintf("%s: %d of %d calls failed in n8n-fn (an error item from the call node), and this experiment allows only n8n's own failures", r.Experiment, r.FnErrors, r.Calls))
		}
		for _, f := range r.Faults {
			if strings.Contains(f, "fault failed") {
				miss = append(miss, fmt.Sprintf("%s: %s", r.Experiment, f))
			}
		}
	}
	if len(miss) == 0 {
		return nil
	}
	return fmt.Errorf("chaos: %d targets missed: %s", len(miss), strings.Join(miss, "; "))
}
