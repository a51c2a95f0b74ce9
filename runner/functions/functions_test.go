package functions

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/n8nproto"
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/runner/metrics"
	"github.com/n8n-fn/n8n-fn/workflows"
)

const testSecret = "test-secret-0123456789abcdef"

func testLogger(t testing.TB) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	return l.WithField("test", t.Name())
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fnWorkflow stands in for n8n running a function workflow on a webhook call: Webhook item ->
// function node (the real functionOp core) -> body -> return node (the real returnOp core), and
// answers like a "last node" webhook: 200 with the last node's items, 500 when a node failed.
type fnWorkflow struct {
	t        testing.TB
	mu       sync.Mutex // guards body, noReturn, delay (a late execution may still run)
	rt       *Runtime   // the runtime whose function/return ops run the nodes
	dir      *workflows.FunctionDirective
	workflow string
	body     func(items []json.RawMessage) ([]json.RawMessage, error) // nil = pass through
	noReturn bool
	// immediate answers 200 at once and runs the function afterwards, like a Webhook set to
	// "Respond: Immediately".
	immediate bool
	calls     atomic.Int32
	inFlight  atomic.Int32
	// hangOnce makes the next execution stop after the function node and never answer, calling
	// onHang first: its worker died.
	hangOnce atomic.Bool
	onHang   func()
	// holdOnce makes the next execution stop before its function node ran and hand its webhook
	// body to held: its worker died after taking the job, before the claim (it never answers), or
	// it is queued (the test runs it and sends the webhook's answer to unhold).
	holdOnce atomic.Bool
	held     chan []byte
	unhold   chan []byte
	maxSeen  atomic.Int32
	delay    time.Duration
	execSeq  *atomic.Int64 // n8n's execution ids (shared by copies)
	posted   []string      // one entry per webhook request
	bodies   [][]byte      // the webhook bodies, in order
	ran      atomic.Int32  // bodies that ran (the function node let them through)
}

// nextExec is the id n8n gives the next execution of this workflow.
func (w *fnWorkflow) nextExec() string {
	if w.execSeq == nil {
		w.mu.Lock()
		if w.execSeq == nil {
			w.execSeq = new(atomic.Int64)
		}
		w.mu.Unlock()
	}
	return w.workflow + "-exec-" + strconv.FormatInt(w.execSeq.Add(1), 10)
}

func (w *fnWorkflow) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.calls.Add(1)
	n := w.inFlight.Add(1)
	w.mu.Lock()
	w.posted = append(w.posted, r.Header.Get("X-Test-Replay"))
	w.mu.Unlock()
	defer w.inFlight.Add(-1)
	for {
		m := w.maxSeen.Load()
		if n <= m || w.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	w.mu.Lock()
	body, noReturn, delay, immediate := w.body, w.noReturn, w.delay, w.immediate
	w.mu.Unlock()
	b, _ := io.ReadAll(r.Body)
	w.mu.Lock()
	w.bodies = append(w.bodies, b)
	w.mu.Unlock()
	if immediate {
		rw.WriteHeader(http.StatusOK)
		_, _ = rw.Write([]byte(`{"message":"Workflow was started"}`))
		w.nextExec() // make sure the copy shares the sequence
		cp := &fnWorkflow{t: w.t, rt: w.rt, dir: w.dir, workflow: w.workflow, body: body, noReturn: noReturn, delay: delay, execSeq: w.execSeq}
		go cp.run(context.Background(), b, httptest.NewRecorder())
		return
	}
	w.run(r.Context(), b, rw)
}

// run executes the function workflow for one webhook body and writes the "last node" answer.
func (w *fnWorkflow) run(ctx context.Context, b []byte, rw http.ResponseWriter) {
	w.mu.Lock()
	body, noReturn, delay := w.body, w.noReturn, w.delay
	w.mu.Unlock()
	fail := func(err error) {
		rw.WriteHeader(http.StatusInternalServerError)
		_, _ = rw.Write([]byte(`{"message":"Error in workflow"}`))
	}
	if w.holdOnce.CompareAndSwap(true, false) {
		w.held <- b
		select {
		case <-ctx.Done():
		case answer := <-w.unhold:
			_, _ = rw.Write(answer)
		}
		return
	}
	webhookItem := json.RawMessage(`{"headers":{},"params":{},"query":{},"body":` + string(b) + `}`)
	exec := w.nextExec()
	out, err := joined(w.rt.runFunction(ctx, &taskData{WorkflowID: w.workflow, NodeName: "Function", ExecutionID: exec, Items: []item{{JSON: webhookItem}}}, w.dir))
	if err != nil {
		fail(err)
		return
	}
	if got := gjson.GetBytes(out, "customData.n8nfn_servedBy").String(); got != w.rt.cfg.ID {
		w.t.Errorf("function output's customData.n8nfn_servedBy = %q, want the sidecar id %q", got, w.rt.cfg.ID)
	}
	items := resultItems(w.t, out)
	w.ran.Add(1)
	if w.hangOnce.CompareAndSwap(true, false) {
		if w.onHang != nil {
			w.onHang()
		}
		<-ctx.Done()
		return
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if body != nil {
		if items, err = body(items); err != nil {
			fail(err)
			return
		}
	}
	if noReturn || len(items) == 0 {
		// Like n8n: the last node's items are the answer; a node without output runs nothing after it.
		last, _ := json.Marshal(items)
		if len(items) == 0 {
			last = []byte(`[]`)
		}
		_, _ = rw.Write(last)
		return
	}
	// Binary data stays on items the body maps one to one (like Edit Fields).
	bins := gjson.GetBytes(out, "result.#.binary").Array()
	in := make([]item, len(items))
	for i, j := range items {
		in[i] = item{JSON: j}
		if len(bins) == len(items) && bins[i].IsObject() {
			in[i].Binary = json.RawMessage(bins[i].Raw)
		}
	}
	ret, err := joined(w.rt.runReturn(ctx, &taskData{WorkflowID: w.workflow, NodeName: "Return", ExecutionID: exec, Items: in}, &workflows.ReturnDirective{}))
	if err != nil {
		fail(err)
		return
	}
	_, _ = rw.Write(ret)
}

// set changes the workflow's behaviour under the lock.
func (w *fnWorkflow) set(fn func(w *fnWorkflow)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fn(w)
}

// joined is an op's result as the one JSON value n8n receives.
func joined(p n8nproto.Parts, err error) (json.RawMessage, error) { return p.JSON(), err }

func resultItems(t testing.TB, out json.RawMessage) []json.RawMessage {
	t.Helper()
	var res struct {
		Result []struct {
			JSON json.RawMessage `json:"json"`
		} `json:"result"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("result %s: %v", out, err)
	}
	var items []json.RawMessage
	for _, r := range res.Result {
		items = append(items, r.JSON)
	}
	return items
}

func parseDirective[T any](t *testing.T, code string, parse func(string, *workflows.Header) (T, error)) T {
	t.Helper()
	h, err := workflows.ParseHeader(code)
	if err != nil || h == nil {
		t.Fatalf("header %q: %v", code, err)
	}
	d, err := parse("Node", h)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// newRuntime builds a function runtime on a real Redis with short intervals. Its duties run
// until the test ends.
func newRuntime(t *testing.T, rs *redistest.Server, id, webhookURL string, tweak func(*tunables)) *Runtime {
	t.Helper()
	return newRuntimeDeps(t, rs, id, webhookURL, tweak, Deps{})
}

// newRuntimeDeps is newRuntime with the runtime's dependencies (the logger is the test's).
func newRuntimeDeps(t *testing.T, rs *redistest.Server, id, webhookURL string, tweak func(*tunables), deps Deps) *Runtime {
	t.Helper()
	return newRuntimeCfg(t, rs, id, webhookURL, tweak, deps, nil)
}

// newRuntimeCfg is newRuntimeDeps with a change to the runtime's Config (nil: none).
func newRuntimeCfg(t *testing.T, rs *redistest.Server, id, webhookURL string, tweak func(*tunables), deps Deps, cfgTweak func(*Config)) *Runtime {
	t.Helper()
	cfg := Config{ID: id, Secret: testSecret, TaskTimeout: 60 * time.Second, WebhookURL: webhookURL,
		RedisURL: rs.URL(), Prefix: rs.Prefix(), MaxConcurrency: 10, TraceTTL: time.Minute}
	if cfgTweak != nil {
		cfgTweak(&cfg)
	}
	tun := defaultTunables()
	tun.readBlock = 200 * time.Millisecond
	tun.heartbeatInterval = 200 * time.Millisecond
	if tweak != nil {
		tweak(&tun)
	}
	deps.Log = testLogger(t).WithField("sidecar", id)
	f, err := build(cfg, deps, tun)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Shutdown(context.Background()) }) // closes its Redis client; idempotent after startRuntime's
	return f
}

func startRuntime(t *testing.T, f *Runtime) {
	t.Helper()
	f.Start(context.Background())
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		f.Shutdown(sctx)
	})
}

// serve registers fn as served by f at the stand-in webhook path.
func serve(t *testing.T, f *Runtime, key registry.FunctionKey, workflowID string, maxConc int) {
	t.Helper()
	rec := registry.FunctionRecord{Key: key, WorkflowID: workflowID, WebhookPath: "fn/" + key.Name, WebhookMethod: "POST", MaxConcurrency: maxConc, Owner: f.cfg.ID}
	if err := f.reg.RegisterFunction(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	next := map[registry.FunctionKey]*served{}
	for _, k := range f.catalog.keys() {
		next[k] = f.catalog.get(k)
	}
	next[key] = &served{Key: key, Record: rec}
	f.catalog.replace(next)
	f.hb.beatNow()
}

const addFunction = `/* @n8n-fn {"op":"function","name":"add","params":[{"name":"a","type":"number","required":true},{"name":"b","type":"number","default":0}]} */`

func addBody(items []json.RawMessage) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(items))
	for i, it := range items {
		sum := gjson.GetBytes(it, "a").Float() + gjson.GetBytes(it, "b").Float()
		j, err := setField(it, "sum", json.RawMessage(strings.TrimSpace(string(mustJSON(sum)))))
		if err != nil {
			return nil, err
		}
		out[i] = j
	}
	return out, nil
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// harness is one sidecar runtime serving one function through a stand-in webhook.
type harness struct {
	rt  *Runtime
	wf  *fnWorkflow
	srv *httptest.Server
	key registry.FunctionKey
}

func newHarness(t *testing.T, rs *redistest.Server, fnCode string, maxConc int, tweak func(*tunables)) *harness {
	t.Helper()
	return newHarnessCfg(t, rs, fnCode, maxConc, tweak, nil)
}

// newHarnessCfg is newHarness with a change to the runtime's Config.
func newHarnessCfg(t *testing.T, rs *redistest.Server, fnCode string, maxConc int, tweak func(*tunables), cfgTweak func(*Config)) *harness {
	t.Helper()
	h := &harness{}
	h.wf = &fnWorkflow{t: t, workflow: "wfFn", body: addBody}
	h.srv = httptest.NewServer(h.wf)
	t.Cleanup(h.srv.Close)
	h.rt = newRuntimeCfg(t, rs, "sidecar-a", h.srv.URL, tweak, Deps{}, cfgTweak)
	h.wf.rt = h.rt
	h.wf.dir = parseDirective(t, fnCode, workflows.ParseFunction)
	h.key = keyOf(h.wf.dir.Ref("wfFn"))
	serve(t, h.rt, h.key, "wfFn", maxConc)
	startRuntime(t, h.rt)
	return h
}

func (h *harness) call(t *testing.T, code string, cof bool, items ...string) (json.RawMessage, error) {
	t.Helper()
	return h.callIn(t, "1", code, cof, items...)
}

// callIn runs a call node in the n8n execution execID.
func (h *harness) callIn(t *testing.T, execID, code string, cof bool, items ...string) (json.RawMessage, error) {
	t.Helper()
	data := &taskData{WorkflowID: "wfCaller", NodeName: "Call", ExecutionID: execID}
	for _, it := range items {
		data.Items = append(data.Items, item{JSON: json.RawMessage(it)})
	}
	return h.callData(t, code, cof, data)
}

func (h *harness) callData(t *testing.T, code string, cof bool, data *taskData) (json.RawMessage, error) {
	t.Helper()
	d := parseDirective(t, code, workflows.ParseCall)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return joined(h.rt.runCall(ctx, data, d, callOptions{taskID: "task1", continueOnFail: cof, started: time.Now()}))
}

func TestCallFunctionReturnThroughDispatcher(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	out, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":5000} */`, false,
		`{"a":1,"b":2}`, `{"a":"3","b":"4"}`, `{"a":10}`)
	if err != nil {
		t.Fatal(err)
	}
	res := gjson.GetBytes(out, "result")
	if n := len(res.Array()); n != 3 {
		t.Fatalf("want 3 items, got %s", out)
	}
	for i, want := range []float64{3, 7, 10} {
		it := res.Array()[i]
		if it.Get("json.sum").Float() != want || it.Get("pairedItem.item").Int() != int64(i) {
			t.Errorf("item %d: %s, want sum %v paired to %d", i, it.Raw, want, i)
		}
		if it.Get("json._functionCall").Exists() {
			t.Errorf("item %d still carries the callee's _functionCall: %s", i, it.Raw)
		}
	}
	if h.wf.calls.Load() != 3 {
		t.Errorf("webhook triggered %d times, want 3", h.wf.calls.Load())
	}

	// resultField keeps the input item and merges the single returned item under it.
	out, err = h.call(t, `/* @n8n-fn {"op":"call","function":"add","resultField":"r"} */`, false, `{"a":1,"b":1,"keep":"x"}`)
	if err != nil {
		t.Fatal(err)
	}
	if j := gjson.GetBytes(out, "result.0.json"); j.Get("keep").String() != "x" || j.Get("r.sum").Float() != 2 {
		t.Fatalf("resultField output: %s", out)
	}
}

func TestCallErrorsReachTheCallerAtOnce(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	call := `/* @n8n-fn {"op":"call","function":"add","timeoutMs":10000} */`

	// Params the function refuses: the function op answers the caller itself.
	start := time.Now()
	_, err := h.call(t, call, false, `{"b":1}`)
	if err == nil || !strings.Contains(err.Error(), `"a" is required`) || !strings.Contains(err.Error(), "add") {
		t.Fatalf("missing param: %v", err)
	}
	// continueOnFail: an error item paired with the input, the other items succeed.
	out, err := h.call(t, call, true, `{"a":1}`, `{"a":"x"}`)
	if err != nil {
		t.Fatal(err)
	}
	res := gjson.GetBytes(out, "result").Array()
	if len(res) != 2 || res[0].Get("json.sum").Float() != 1 || !strings.Contains(res[1].Get("json.error").String(), "expected a number") || res[1].Get("pairedItem.item").Int() != 1 {
		t.Fatalf("continueOnFail output: %s", out)
	}

	// The execution fails in the body: the dispatcher sees the failed answer and tells the caller.
	h.wf.set(func(w *fnWorkflow) {
		w.body = func([]json.RawMessage) ([]json.RawMessage, error) { return nil, errors.New("boom") }
	})
	_, err = h.call(t, call, false, `{"a":1}`)
	if err == nil || !strings.Contains(err.Error(), "failed") || !strings.Contains(err.Error(), "HTTP 500") {
		t.Fatalf("failed execution: %v", err)
	}
	// The execution ends without reaching return.
	h.wf.set(func(w *fnWorkflow) { w.body, w.noReturn = addBody, true })
	_, err = h.call(t, call, false, `{"a":1}`)
	if err == nil || !strings.Contains(err.Error(), "without reaching a return node") {
		t.Fatalf("no return: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("errors took %s: they must not wait for the call timeout", time.Since(start))
	}
}

// TestCallRefusedByFullRedisBudget: a call whose payload would take the unanswered calls' bytes in
// Redis past N8N_FN_REDIS_BUDGET_BYTES fails at once, saying how full the budget is and what to
// raise, and queues nothing; a call that fits still runs, and the answered calls leave nothing
// counted.
func TestCallRefusedByFullRedisBudget(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarnessCfg(t, rs, addFunction, 0, nil, func(c *Config) { c.RedisBudgetBytes = 4096 })
	call := `/* @n8n-fn {"op":"call","function":"add","timeoutMs":10000} */`
	out, err := h.call(t, call, false, `{"a":1,"b":2}`)
	if err != nil || gjson.GetBytes(out, "result.0.json.sum").Float() != 3 {
		t.Fatalf("a call that fits: %s, %v", out, err)
	}
	start := time.Now()
	_, err = h.call(t, call, false, `{"a":1,"pad":"`+strings.Repeat("p", 5000)+`"}`)
	if err == nil {
		t.Fatal("a call over the 4096-byte budget was queued")
	}
	t.Logf("refused: %v", err)
	for _, want := range []string{"the call was not queued", "of the 4.0 KiB Redis budget", "% full", "raise N8N_FN_REDIS_BUDGET_BYTES (now 4096 bytes) on every sidecar"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("budget error %q does not say %q", err, want)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the refusal took %s: it must be at once", d)
	}
	if got := h.wf.calls.Load(); got != 1 {
		t.Errorf("webhook triggered %d times, want 1 (the refused call must not run)", got)
	}
	used, limit, err := h.rt.reg.BudgetUsage(context.Background())
	if err != nil || used != 0 || limit != 4096 {
		t.Fatalf("budget after the answered and the refused call: %d of %d (%v), want 0 of 4096", used, limit, err)
	}
}

func TestCallTimeoutAndRetry(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	h.wf.set(func(w *fnWorkflow) { w.delay = 700 * time.Millisecond })
	_, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":300} */`, false, `{"a":1}`)
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms") {
		t.Fatalf("timeout: %v", err)
	}
	// Fails once, then succeeds on the retry.
	var n atomic.Int32
	h.wf.set(func(w *fnWorkflow) {
		w.delay = 0
		w.body = func(items []json.RawMessage) ([]json.RawMessage, error) {
			if n.Add(1) == 1 {
				return nil, errors.New("transient")
			}
			return addBody(items)
		}
	})
	out, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","retries":2,"retryBackoffMs":50} */`, false, `{"a":2,"b":2}`)
	if err != nil {
		t.Fatal(err)
	}
	if gjson.GetBytes(out, "result.0.json.sum").Float() != 4 || n.Load() != 2 {
		t.Fatalf("retry: %s after %d runs", out, n.Load())
	}
}

func TestCallFailsFastWithoutFunctionOrLiveSidecar(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	start := time.Now()
	_, err := h.call(t, `/* @n8n-fn {"op":"call","function":"nope"} */`, false, `{}`)
	if err == nil || !strings.Contains(err.Error(), `"nope" is not registered in scope global`) {
		t.Fatalf("unknown function: %v", err)
	}
	// Registered, but nobody heartbeats for it.
	ghost := registry.FunctionKey{Scope: "global", Name: "ghost"}
	if err := h.rt.reg.RegisterFunction(context.Background(), registry.FunctionRecord{Key: ghost, WorkflowID: "wfX", WebhookPath: "x"}); err != nil {
		t.Fatal(err)
	}
	_, err = h.call(t, `/* @n8n-fn {"op":"call","function":"ghost","waitForLive":300} */`, false, `{}`)
	if err == nil || !strings.Contains(err.Error(), "no live n8n-fn sidecar serves function ghost") {
		t.Fatalf("no live sidecar: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("fail-fast took %s", d)
	}
	// Local scope: the caller's workflow is not the function's.
	_, err = h.call(t, `/* @n8n-fn {"op":"call","function":"add","scope":"workflow"} */`, false, `{"a":1}`)
	if err == nil || !strings.Contains(err.Error(), "scope of workflow wfCaller") {
		t.Fatalf("local scope: %v", err)
	}
}

func TestNestedCallTakesItsChainFromTheExecution(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	var seen atomic.Value
	h.wf.set(func(w *fnWorkflow) {
		w.body = func(items []json.RawMessage) ([]json.RawMessage, error) {
			seen.Store(gjson.GetBytes(items[0], "_functionCall").Raw)
			return addBody(items)
		}
	})
	ctx := context.Background()
	// The caller's execution serves call "outer1" of global/pipeline (its function node claimed it).
	outer := registry.ExecCall{Function: registry.FunctionKey{Scope: "global", Name: "pipeline"}, CallID: "outer1", EntryID: "1-1",
		ReplyKey: "rk", Deadline: time.Now().Add(time.Minute), Depth: 1}
	if err := h.rt.reg.BindExecution(ctx, "exec-pipeline", []registry.ExecCall{outer}, time.Minute); err != nil {
		t.Fatal(err)
	}
	// The items carry nothing: Edit Fields dropped every field but a and b.
	out, err := h.callIn(t, "exec-pipeline", `/* @n8n-fn {"op":"call","function":"add"} */`, false, `{"a":5,"b":1}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := gjson.GetBytes(out, "result.0.json"); got.Get("sum").Float() != 6 || got.Get("_functionCall").Exists() {
		t.Fatalf("nested call output: %s", out)
	}
	inner := gjson.Parse(seen.Load().(string))
	if inner.Get("depth").Int() != 2 || inner.Get("stack.0.callId").String() != "outer1" || inner.Get("stack.0.function").String() != "global/pipeline" {
		t.Fatalf("the nested call's chain must come from the execution's call: %s", inner.Raw)
	}
	// A top-level caller's _functionCall field is just data: no error, and no chain from it.
	out, err = h.call(t, `/* @n8n-fn {"op":"call","function":"add"} */`, false, `{"a":1,"_functionCall":"whatever"}`, `{"a":2,"_functionCall":{"callId":"x","depth":7}}`)
	if err != nil || len(gjson.GetBytes(out, "result").Array()) != 2 {
		t.Fatalf("_functionCall in top-level data: %s %v", out, err)
	}
	if d := gjson.Parse(seen.Load().(string)).Get("depth").Int(); d != 1 {
		t.Fatalf("top-level call depth = %d, want 1", d)
	}
	// Depth limit: an execution already at the limit cannot call deeper; the error names the chain.
	deep := registry.ExecCall{Function: registry.FunctionKey{Scope: "global", Name: "fact"}, CallID: "d", EntryID: "1-1", ReplyKey: "rk", Deadline: outer.Deadline}
	for i := 0; i < workflows.DefaultMaxDepth-1; i++ {
		deep.Stack = append(deep.Stack, "p:global/fact")
	}
	deep.Depth = len(deep.Stack) + 1
	if err := h.rt.reg.BindExecution(ctx, "exec-deep", []registry.ExecCall{deep}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := h.callIn(t, "exec-deep", `/* @n8n-fn {"op":"call","function":"add"} */`, false, `{"a":1}`); err == nil || !strings.Contains(err.Error(), "fact -> fact") {
		t.Fatalf("depth limit: %v", err)
	}
}

func TestFunctionRefusesForgedOrTamperedReferences(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	run := func(body string) error {
		webhookItem := json.RawMessage(`{"headers":{},"body":` + body + `}`)
		_, err := h.rt.runFunction(context.Background(), &taskData{WorkflowID: "wfFn", Items: []item{{JSON: webhookItem}}}, h.wf.dir)
		return err
	}
	if err := run(`{"a":1,"b":2}`); err == nil || !strings.Contains(err.Error(), "not a valid n8n-fn call reference") {
		t.Fatalf("plain body: %v", err)
	}
	ref := workflows.CallRef{Function: "global/add", EntryID: "1-1", CallID: "c1", Dispatch: 1, Exp: time.Now().Add(time.Minute).UnixMilli()}
	ref.Sign(h.rt.signer)
	ref.EntryID = "2-2"
	if err := run(string(mustJSON(ref))); err == nil || !strings.Contains(err.Error(), "signature does not match") {
		t.Fatalf("tampered reference: %v", err)
	}
	other, _ := workflows.NewSigner([]byte("another-secret-0123456789"))
	ref.Sign(other)
	if err := run(string(mustJSON(ref))); err == nil || !strings.Contains(err.Error(), "different secret") {
		t.Fatalf("other secret: %v", err)
	}
	ref = workflows.CallRef{Function: "global/add", EntryID: "1-1", CallID: "c1", Dispatch: 1, Exp: time.Now().Add(-time.Second).UnixMilli()}
	ref.Sign(h.rt.signer)
	if err := run(string(mustJSON(ref))); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired reference: %v", err)
	}
	// A valid reference to an entry that does not exist (already answered and trimmed).
	ref = workflows.CallRef{Function: "global/add", EntryID: "1-1", CallID: "c1", Dispatch: 1, Exp: time.Now().Add(time.Minute).UnixMilli()}
	ref.Sign(h.rt.signer)
	if err := run(string(mustJSON(ref))); err == nil || !strings.Contains(err.Error(), "no longer queued") {
		t.Fatalf("missing entry: %v", err)
	}
}

func TestReturnAnswersOnlyItsOwnExecutionsCall(t *testing.T) {
	rs := redistest.Start(t)
	rt := newRuntime(t, rs, "s", "http://127.0.0.1:1", nil)
	_, err := rt.runReturn(context.Background(), &taskData{ExecutionID: "77", Items: []item{{JSON: json.RawMessage(`{"x":1}`)}}}, &workflows.ReturnDirective{})
	if err == nil || !strings.Contains(err.Error(), "execution 77 was not started by an n8n-fn call") {
		t.Fatalf("return without a call: %v", err)
	}
	// A signed context copied into the items of another execution answers nothing.
	cc := &workflows.CallContext{CallID: "victim", ReplyKey: rt.reg.ReplyKey("victim-caller"), Function: "global/add", EntryID: "1-1",
		Deadline: time.Now().Add(time.Minute).UnixMilli(), Depth: 1, Stack: []workflows.CallFrame{}}
	cc.Sign(rt.signer)
	j, _ := workflows.WithContext(json.RawMessage(`{"result":"forged"}`), cc)
	_, err = rt.runReturn(context.Background(), &taskData{ExecutionID: "78", Items: []item{{JSON: j}}}, &workflows.ReturnDirective{})
	if err == nil || !strings.Contains(err.Error(), "a call context copied into items answers nothing") {
		t.Fatalf("copied context: %v", err)
	}
	if n, _ := rt.rdb.LLen(context.Background(), cc.ReplyKey).Result(); n != 0 {
		t.Fatalf("the victim's reply list got %d replies", n)
	}
}

func TestDispatcherHonoursMaxConcurrency(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 2, nil)
	h.wf.set(func(w *fnWorkflow) { w.delay = 150 * time.Millisecond })
	items := make([]string, 6)
	for i := range items {
		items[i] = `{"a":1}`
	}
	out, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":10000} */`, false, items...)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(gjson.GetBytes(out, "result").Array()); n != 6 {
		t.Fatalf("want 6 results, got %d", n)
	}
	if m := h.wf.maxSeen.Load(); m > 2 || m < 1 {
		t.Fatalf("max in-flight executions %d, want at most maxConcurrency 2", m)
	}
}

// A sidecar read a call and died before triggering the webhook: another sidecar's recoverer
// reclaims the idle entry and dispatches it; the caller gets exactly one result.
func TestDeadDispatcherCallIsReclaimed(t *testing.T) {
	rs := redistest.Start(t)
	wf := &fnWorkflow{t: t, workflow: "wfFn", body: addBody}
	srv := httptest.NewServer(wf)
	defer srv.Close()
	caller := newRuntime(t, rs, "caller", srv.URL, nil)
	wf.rt, wf.dir = caller, parseDirective(t, addFunction, workflows.ParseFunction)
	key := registry.FunctionKey{Scope: "global", Name: "add"}
	ctx := context.Background()
	if err := caller.reg.RegisterFunction(ctx, registry.FunctionRecord{Key: key, WorkflowID: "wfFn", WebhookPath: "fn/add"}); err != nil {
		t.Fatal(err)
	}
	if err := caller.reg.Heartbeat(ctx, "dead", []registry.FunctionKey{key}); err != nil {
		t.Fatal(err)
	}
	type res struct {
		out json.RawMessage
		err error
	}
	done := make(chan res, 1)
	go func() {
		d := parseDirective(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":15000} */`, workflows.ParseCall)
		out, err := joined(caller.runCall(ctx, &taskData{WorkflowID: "wfC", Items: []item{{JSON: json.RawMessage(`{"a":20,"b":22}`)}}}, d,
			callOptions{taskID: "t", started: time.Now()}))
		done <- res{out, err}
	}()
	var got []registry.Delivery
	for deadline := time.Now().Add(5 * time.Second); len(got) == 0 && time.Now().Before(deadline); {
		ds, err := caller.reg.ReadCalls(ctx, "dead", []registry.FunctionKey{key}, 1, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		got = ds
	}
	if len(got) != 1 {
		t.Fatal("the call was never queued")
	}
	// The "dead" consumer never dispatches. A live sidecar with a short claim time takes over.
	met := metrics.New()
	live := newRuntimeDeps(t, rs, "live", srv.URL, func(tn *tunables) {
		tn.claimIdle, tn.recoverInterval = 300*time.Millisecond, 100*time.Millisecond
	}, Deps{Metrics: met})
	serve(t, live, key, "wfFn", 0)
	startRuntime(t, live)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if gjson.GetBytes(r.out, "result.0.json.sum").Float() != 42 || len(gjson.GetBytes(r.out, "result").Array()) != 1 {
		t.Fatalf("reclaimed call result: %s", r.out)
	}
	if wf.calls.Load() != 1 {
		t.Fatalf("function ran %d times, want 1", wf.calls.Load())
	}
	// The live sidecar's metrics: one reclaim, one dispatch, no re-run (the dead one never triggered it).
	sc := scrapeOf(t, met)
	for name, want := range map[string]float64{"n8n_fn_calls_reclaimed_total": 1, "n8n_fn_function_dispatches_total": 1, "n8n_fn_function_reruns_total": 0} {
		if got := metricValue(sc, name, "function=global/add"); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// BenchmarkCallRoundTrip measures n8n-fn's own part of a function call, without n8n: call op ->
// Redis stream -> dispatcher -> webhook (stand-in) -> function op -> return op -> reply -> caller.
// On the real stack n8n adds a queued execution and three task round trips on top.
func BenchmarkCallRoundTrip(b *testing.B) {
	rs := redistest.Start(b)
	wf := &fnWorkflow{workflow: "wfFn", body: addBody}
	srv := httptest.NewServer(wf)
	defer srv.Close()
	cfg := Config{ID: "bench", Secret: testSecret, TaskTimeout: 60 * time.Second, WebhookURL: srv.URL,
		RedisURL: rs.URL(), Prefix: rs.Prefix(), MaxConcurrency: 10, TraceTTL: time.Minute}
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	tun := defaultTunables()
	tun.readBlock = 200 * time.Millisecond
	f, err := build(cfg, Deps{Log: logrus.NewEntry(quiet)}, tun)
	if err != nil {
		b.Fatal(err)
	}
	h, _ := workflows.ParseHeader(addFunction)
	wf.rt, wf.t = f, b
	if wf.dir, err = workflows.ParseFunction("Function", h); err != nil {
		b.Fatal(err)
	}
	key := registry.FunctionKey{Scope: "global", Name: "add"}
	rec := registry.FunctionRecord{Key: key, WorkflowID: "wfFn", WebhookPath: "fn/add", WebhookMethod: "POST"}
	if err := f.reg.RegisterFunction(context.Background(), rec); err != nil {
		b.Fatal(err)
	}
	f.catalog.replace(map[registry.FunctionKey]*served{key: {Key: key, Record: rec}})
	ctx := context.Background()
	f.Start(ctx)
	defer f.Shutdown(ctx)
	ch, _ := workflows.ParseHeader(`/* @n8n-fn {"op":"call","function":"add","timeoutMs":5000} */`)
	d, err := workflows.ParseCall("Call", ch)
	if err != nil {
		b.Fatal(err)
	}
	data := &taskData{WorkflowID: "wfC", Items: []item{{JSON: json.RawMessage(`{"a":1,"b":2}`)}}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := joined(f.runCall(ctx, data, d, callOptions{taskID: "t", started: time.Now()}))
		if err != nil || gjson.GetBytes(out, "result.0.json.sum").Float() != 3 {
			b.Fatalf("call %d: %s %v", i, out, err)
		}
	}
}

func TestCallIdempotencyKeyRunsOnce(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	call := `/* @n8n-fn {"op":"call","function":"add","idempotencyKey":"order.id"} */`
	for i := 0; i < 3; i++ {
		out, err := h.call(t, call, false, `{"a":2,"b":3,"order":{"id":"o-1"}}`)
		if err != nil {
			t.Fatal(err)
		}
		if gjson.GetBytes(out, "result.0.json.sum").Float() != 5 {
			t.Fatalf("call %d: %s", i, out)
		}
	}
	if n := h.wf.calls.Load(); n != 1 {
		t.Fatalf("function ran %d times for one idempotency key, want 1", n)
	}
	// Another key runs; an item without the key's field is refused before anything is queued.
	if _, err := h.call(t, call, false, `{"a":1,"order":{"id":"o-2"}}`); err != nil {
		t.Fatal(err)
	}
	if _, err := h.call(t, call, false, `{"a":1}`); err == nil || !strings.Contains(err.Error(), "idempotencyKey") {
		t.Fatalf("missing key field: %v", err)
	}
	if n := h.wf.calls.Load(); n != 2 {
		t.Fatalf("function ran %d times, want 2", n)
	}
}

// A function whose Webhook answers at once: the dispatcher keeps the call alive until return
// answers it, instead of reporting that the function never reached return.
func TestImmediateWebhookWaitsForReturn(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	h.wf.set(func(w *fnWorkflow) { w.immediate, w.delay = true, 1500*time.Millisecond })
	ns := *h.rt.catalog.get(h.key)
	ns.Def.WebhookPath, ns.Def.LastNodeResponse = ns.Record.WebhookPath, false
	h.rt.catalog.replace(map[registry.FunctionKey]*served{h.key: &ns})
	out, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":8000} */`, false, `{"a":4,"b":5}`)
	if err != nil {
		t.Fatal(err)
	}
	if gjson.GetBytes(out, "result.0.json.sum").Float() != 9 {
		t.Fatalf("result: %s", out)
	}
}

// Redis down: the call fails at once with a message that says so, nothing hangs; after Redis is
// back, calls work again without a restart.
func TestCallWithRedisDown(t *testing.T) {
	rs := redistest.Start(t)
	if !rs.CanRestart() {
		t.Skip("SKIP: shared REDIS_URL server cannot be stopped")
	}
	h := newHarness(t, rs, addFunction, 0, nil)
	call := `/* @n8n-fn {"op":"call","function":"add","timeoutMs":5000} */`
	if _, err := h.call(t, call, false, `{"a":1}`); err != nil {
		t.Fatal(err)
	}
	rs.Stop()
	start := time.Now()
	_, err := h.call(t, call, false, `{"a":1}`)
	if err == nil || !strings.Contains(err.Error(), "redis unavailable") {
		t.Fatalf("call with Redis down: %v", err)
	}
	// A restart costs time (the call's reads wait out up to resolveOutageWait, 15 s); Redis down
	// for longer fails the call then, before anything is queued.
	if d := time.Since(start); d > resolveOutageWait+5*time.Second {
		t.Errorf("the failure took %s", d)
	}
	rs.Resume()
	var out json.RawMessage
	for deadline := time.Now().Add(15 * time.Second); ; {
		if out, err = h.call(t, call, false, `{"a":6,"b":1}`); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || gjson.GetBytes(out, "result.0.json.sum").Float() != 7 {
		t.Fatalf("after Redis came back: %s %v", out, err)
	}
}

// TestCancelledCallIsWithdrawn: n8n cancels the caller's task (the user stopped the execution)
// while its call still waits in the queue behind a busy function: the call is withdrawn and never
// runs, instead of running later for nobody.
func TestCancelledCallIsWithdrawn(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 1, nil)
	// Longer than one reply wait (the caller notices a cancelled task within about a second).
	h.wf.set(func(w *fnWorkflow) { w.delay = 2500 * time.Millisecond })
	code := `/* @n8n-fn {"op":"call","function":"add","timeoutMs":10000} */`
	busy := make(chan error, 1)
	go func() { _, err := h.call(t, code, false, `{"a":1}`); busy <- err }()
	waitFor(t, "the first call running", 5*time.Second, func() bool { return h.wf.calls.Load() == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error, 1)
	go func() {
		d := parseDirective(t, code, workflows.ParseCall)
		data := &taskData{WorkflowID: "wfCaller", NodeName: "Call", ExecutionID: "2", Items: []item{{JSON: json.RawMessage(`{"a":2}`)}}}
		_, err := h.rt.runCall(ctx, data, d, callOptions{taskID: "task2", started: time.Now()})
		cancelled <- err
	}()
	waitFor(t, "the second call queued", 5*time.Second, func() bool {
		st, err := h.rt.reg.FunctionStatus(context.Background(), h.key)
		return err == nil && st.Length == 2
	})
	cancel()
	if err := <-cancelled; err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("cancelled call: %v", err)
	}
	if err := <-busy; err != nil {
		t.Fatalf("first call: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // the dispatcher's slot is free again: it would take the second call now
	if n := h.wf.calls.Load(); n != 1 {
		t.Fatalf("the function ran %d times; the cancelled call must not run", n)
	}
	if st, err := h.rt.reg.FunctionStatus(context.Background(), h.key); err != nil || st.Pending != 0 {
		t.Fatalf("status after the withdrawal: %+v, %v (want nothing pending)", st, err)
	}
}

// TestDeadWorkerCallRunsAgainEarly: the function's execution stops answering because its worker
// died; the sidecar attached to that worker reports its lost n8n process, and the dispatcher runs
// the call again at once instead of waiting for n8n to fail the stalled job.
func TestDeadWorkerCallRunsAgainEarly(t *testing.T) {
	rs := redistest.Start(t)
	h, up := goneHarnessWith(t, rs, func(tu *tunables) {
		tu.heartbeatInterval = 50 * time.Millisecond
		tu.workerWatchInterval = 50 * time.Millisecond
		tu.workerLostAfter = 300 * time.Millisecond
		tu.unclaimedGrace = defaultTunables().unclaimedGrace // only the 20 s rule (shortened) may fire here
	})
	wf := h.wf

	wf.onHang = func() { up.Store(false) } // the worker dies mid-function
	wf.hangOnce.Store(true)
	start := time.Now()
	out, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":15000} */`, false, `{"a":2,"b":3}`)
	if err != nil {
		t.Fatal(err)
	}
	if sum := gjson.GetBytes(out, "result.0.json.sum").Float(); sum != 5 {
		t.Fatalf("result %s", out)
	}
	if n := wf.calls.Load(); n != 2 {
		t.Fatalf("the function ran %d times, want 2 (the lost one and the rerun)", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the rerun came after %s: the dispatcher did not notice the lost worker", d)
	}
}

// TestSlowFunctionOnLiveWorkerIsNotRunAgain: a function slower than workerLostAfter on a worker
// that is still connected runs once.
func TestSlowFunctionOnLiveWorkerIsNotRunAgain(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, func(tu *tunables) {
		tu.workerWatchInterval = 50 * time.Millisecond
		tu.workerLostAfter = 100 * time.Millisecond
	})
	h.wf.set(func(w *fnWorkflow) { w.delay = 800 * time.Millisecond })
	if _, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":15000} */`, false, `{"a":1}`); err != nil {
		t.Fatal(err)
	}
	if n := h.wf.calls.Load(); n != 1 {
		t.Fatalf("the function ran %d times, want 1", n)
	}
}
