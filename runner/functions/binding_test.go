package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// A call reference posted again while its call runs claims nothing: the body does not run a
// second time and the replay gets an error, while the real caller gets its own result.
func TestReplayedReferenceRunsNothing(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	h.wf.set(func(w *fnWorkflow) { w.delay = 600 * time.Millisecond })
	type res struct {
		out json.RawMessage
		err error
	}
	done := make(chan res, 1)
	go func() {
		out, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":10000} */`, false, `{"a":1,"b":2}`)
		done <- res{out, err}
	}()
	var body []byte
	waitFor(t, "the dispatcher's webhook request", 5*time.Second, func() bool {
		h.wf.mu.Lock()
		defer h.wf.mu.Unlock()
		if len(h.wf.bodies) > 0 {
			body = h.wf.bodies[0]
		}
		return body != nil
	})
	waitFor(t, "the body to start", 5*time.Second, func() bool { return h.wf.ran.Load() == 1 })
	// An attacker who captured the webhook body (it is in the execution's data) posts it again.
	resp, err := http.Post(h.srv.URL+"/fn/add", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("replayed reference: HTTP %d, want the function node to fail", resp.StatusCode)
	}
	r := <-done
	if r.err != nil || gjson.GetBytes(r.out, "result.0.json.sum").Float() != 3 {
		t.Fatalf("the real caller: %s %v", r.out, r.err)
	}
	if n := h.wf.ran.Load(); n != 1 {
		t.Fatalf("the body ran %d times, want 1", n)
	}
	// The replay after the answer is refused too (the entry is no longer pending).
	resp, err = http.Post(h.srv.URL+"/fn/add", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || h.wf.ran.Load() != 1 {
		t.Fatalf("replay after the answer: HTTP %d, ran %d", resp.StatusCode, h.wf.ran.Load())
	}
}

// The function node refuses a reference whose dispatch was superseded, and one posted again.
func TestClaimErrorsSayWhatHappened(t *testing.T) {
	rs := redistest.Start(t)
	h := &harness{rt: newRuntime(t, rs, "s", "http://127.0.0.1:1", nil), wf: &fnWorkflow{dir: parseDirective(t, addFunction, workflows.ParseFunction)},
		key: registry.FunctionKey{Scope: "global", Name: "add"}}
	ctx := context.Background()
	c := registry.Call{ID: "c-claim", Function: h.key, ReplyKey: h.rt.reg.ReplyKey("x"), Params: json.RawMessage(`{"a":1}`), Deadline: time.Now().Add(time.Minute)}
	// Queued on a function no dispatcher serves: it is read by a consumer that never dispatches.
	if err := h.rt.reg.EnsureGroup(ctx, h.key); err != nil {
		t.Fatal(err)
	}
	entry, err := h.rt.reg.AddCall(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.reg.ReadCalls(ctx, "nobody", []registry.FunctionKey{h.key}, 1, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	run := func(dispatch int64, exec string) error {
		ref := workflows.CallRef{Function: h.key.String(), EntryID: entry, CallID: c.ID, Dispatch: dispatch, Exp: time.Now().Add(time.Minute).UnixMilli()}
		ref.Sign(h.rt.signer)
		webhookItem := json.RawMessage(`{"headers":{},"body":` + string(mustJSON(ref)) + `}`)
		_, err := h.rt.runFunction(ctx, &taskData{WorkflowID: "wfFn", NodeName: "Function", ExecutionID: exec, Items: []item{{JSON: webhookItem}}}, h.wf.dir)
		return err
	}
	if err := run(1, "e1"); err == nil || !strings.Contains(err.Error(), "was never dispatched") {
		t.Fatalf("undispatched: %v", err)
	}
	if _, err := h.rt.reg.NextDispatch(ctx, h.key, c.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := run(1, "e1"); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if err := run(1, "e2"); err == nil || !strings.Contains(err.Error(), "posted again (a replay)") {
		t.Fatalf("replay: %v", err)
	}
	if _, err := h.rt.reg.NextDispatch(ctx, h.key, c.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := run(1, "e3"); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Fatalf("stale: %v", err)
	}
	if err := run(2, ""); err == nil || !strings.Contains(err.Error(), "no execution id") {
		t.Fatalf("no execution id: %v", err)
	}
}

// A function whose items run out before return answers zero items: no output items for that
// input, or null under resultField.
func TestZeroItemResult(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	h.wf.set(func(w *fnWorkflow) {
		w.body = func([]json.RawMessage) ([]json.RawMessage, error) { return nil, nil }
	})
	out, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":5000} */`, false, `{"a":1}`, `{"a":2}`)
	if err != nil || len(gjson.GetBytes(out, "result").Array()) != 0 {
		t.Fatalf("zero items: %s %v", out, err)
	}
	out, err = h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":5000,"resultField":"found"} */`, false, `{"a":1}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := gjson.GetBytes(out, "result.0.json"); got.Raw == "" || !got.Get("found").Exists() || got.Get("found").Type != gjson.Null || got.Get("a").Int() != 1 {
		t.Fatalf("zero items under resultField: %s", out)
	}
	// Items that end on a node other than return are still an error (a path without return).
	h.wf.set(func(w *fnWorkflow) { w.body, w.noReturn = addBody, true })
	if _, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":5000} */`, false, `{"a":1}`); err == nil || !strings.Contains(err.Error(), "ended without reaching a return node") {
		t.Fatalf("no return: %v", err)
	}
}

// Binary data goes to the function with the params and comes back with the result items.
func TestBinaryTravelsBothWays(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	data := &taskData{WorkflowID: "wfCaller", NodeName: "Call", ExecutionID: "bin-1", Items: []item{
		{JSON: json.RawMessage(`{"a":1}`), Binary: json.RawMessage(`{"file":{"data":"aGVsbG8=","mimeType":"text/plain","fileName":"a.txt"}}`)},
		{JSON: json.RawMessage(`{"a":2}`)},
	}}
	out, err := h.callData(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":5000} */`, false, data)
	if err != nil {
		t.Fatal(err)
	}
	res := gjson.GetBytes(out, "result").Array()
	if len(res) != 2 || res[0].Get("binary.file.data").String() != "aGVsbG8=" || res[0].Get("binary.file.fileName").String() != "a.txt" || res[1].Get("binary").Exists() {
		t.Fatalf("binary result: %s", out)
	}
	// Over the limit: refused before anything is queued.
	big := `{"file":{"data":"` + strings.Repeat("A", workflows.DefaultMaxParamsBytes) + `"}}`
	data.Items = []item{{JSON: json.RawMessage(`{"a":1}`), Binary: json.RawMessage(big)}}
	if _, err := h.callData(t, `/* @n8n-fn {"op":"call","function":"add"} */`, false, data); err == nil || !strings.Contains(err.Error(), "params and binary data are") {
		t.Fatalf("oversized binary: %v", err)
	}
}

// Two calls with one idempotency key sent at once: one execution, identical answers.
func TestIdempotencyCoversCallsInFlight(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	h.wf.set(func(w *fnWorkflow) { w.delay = 300 * time.Millisecond })
	code := `/* @n8n-fn {"op":"call","function":"add","timeoutMs":10000,"idempotencyKey":"order"} */`
	outs := make([]json.RawMessage, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = h.callIn(t, "idem-"+string(rune('a'+i)), code, false, `{"order":"o-1","a":1,"b":`+string(rune('1'+i))+`}`)
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
	}
	if n := h.wf.ran.Load(); n != 1 {
		t.Fatalf("the function ran %d times for one idempotency key, want 1", n)
	}
	if a, b := gjson.GetBytes(outs[0], "result.0.json").Raw, gjson.GetBytes(outs[1], "result.0.json").Raw; a != b || a == "" {
		t.Fatalf("answers differ: %s / %s", a, b)
	}
	// A leader that fails lets the follower run the function itself.
	h.wf.set(func(w *fnWorkflow) {
		w.body = func([]json.RawMessage) ([]json.RawMessage, error) { return nil, errBoom }
	})
	if _, err := h.call(t, code, false, `{"order":"o-2","a":1}`); err == nil {
		t.Fatal("a failing body must fail the call")
	}
	h.wf.set(func(w *fnWorkflow) { w.body = addBody })
	if out, err := h.call(t, code, false, `{"order":"o-2","a":1}`); err != nil || gjson.GetBytes(out, "result.0.json.sum").Float() != 1 {
		t.Fatalf("after a failed leader: %s %v", out, err)
	}
}

var errBoom = &OpError{Message: "boom"}

// globalConcurrency bounds the executions across every sidecar: three sidecars, one slot.
func TestGlobalConcurrencyAcrossThreeSidecars(t *testing.T) {
	rs := redistest.Start(t)
	wf := &fnWorkflow{t: t, workflow: "wfFn", body: addBody, delay: 120 * time.Millisecond}
	srv := httptest.NewServer(wf)
	t.Cleanup(srv.Close)
	key := registry.FunctionKey{Scope: "global", Name: "add"}
	var rts []*Runtime
	for _, id := range []string{"sc-1", "sc-2", "sc-3"} {
		rt := newRuntime(t, rs, id, srv.URL, nil)
		rec := registry.FunctionRecord{Key: key, WorkflowID: "wfFn", WebhookPath: "fn/add", WebhookMethod: "POST", GlobalConcurrency: 1, Owner: id}
		if err := rt.reg.RegisterFunction(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
		rt.catalog.replace(map[registry.FunctionKey]*served{key: {Key: key, Record: rec}})
		startRuntime(t, rt)
		rt.hb.beatNow()
		rts = append(rts, rt)
	}
	wf.rt, wf.dir = rts[0], parseDirective(t, addFunction, workflows.ParseFunction)
	d := parseDirective(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":20000} */`, workflows.ParseCall)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, rt := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := &taskData{WorkflowID: "wfC", ExecutionID: "g-" + rt.cfg.ID, Items: []item{{JSON: json.RawMessage(`{"a":1}`)}, {JSON: json.RawMessage(`{"a":2}`)}}}
			_, errs[i] = rt.runCall(context.Background(), data, d, callOptions{taskID: "t" + rt.cfg.ID, started: time.Now()})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	if got := wf.ran.Load(); got != 6 {
		t.Fatalf("%d executions, want 6", got)
	}
	if m := wf.maxSeen.Load(); m != 1 {
		t.Fatalf("%d executions ran at once across three sidecars, globalConcurrency is 1", m)
	}
	waitFor(t, "the global slot to be given back", 2*time.Second, func() bool {
		n, err := rts[0].reg.SlotsInUse(context.Background(), key)
		return err == nil && n == 0
	})
}

// A function name that two published workflows define is an error naming both, for new calls and
// for calls already queued.
func TestAmbiguousFunctionFailsNamingBoth(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	rec := h.rt.catalog.get(h.key).Record
	rec.Conflicts = []string{`"Add A" (wfA) node "F"`, `"Add B" (wfB) node "F"`}
	if err := h.rt.reg.RegisterFunction(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	h.rt.catalog.replace(map[registry.FunctionKey]*served{h.key: {Key: h.key, Record: rec}})
	_, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":5000} */`, false, `{"a":1}`)
	if err == nil || !strings.Contains(err.Error(), "is ambiguous") || !strings.Contains(err.Error(), "wfA") || !strings.Contains(err.Error(), "wfB") {
		t.Fatalf("ambiguous call: %v", err)
	}
	if w := h.rt.Warnings(); len(w) != 1 || !strings.Contains(w[0], "wfA") {
		t.Fatalf("warnings: %q", w)
	}
	if h.wf.ran.Load() != 0 {
		t.Fatal("an ambiguous function ran")
	}
}

// One blocking read per sidecar for every function it serves: with 150 served functions the
// sidecar holds one XREADGROUP (not 150) and a call still answers promptly.
func TestOneReadForAllFunctions(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	for i := range 149 {
		serve(t, h.rt, registry.FunctionKey{Scope: "global", Name: fmt.Sprintf("idle-%03d", i)}, "wfIdle", 0)
	}
	start := time.Now()
	out, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":10000} */`, false, `{"a":2,"b":3}`)
	if err != nil || gjson.GetBytes(out, "result.0.json.sum").Float() != 5 {
		t.Fatalf("call with 150 served functions: %s %v", out, err)
	}
	t.Logf("answered in %s with 150 functions served", time.Since(start).Round(time.Millisecond))
	waitFor(t, "the reader to block again", 3*time.Second, func() bool { return blockedReads(t, h.rt) == 1 })
	for range 10 { // the per-function readers of before held 150 at any moment
		if n := blockedReads(t, h.rt); n > 1 {
			t.Fatalf("%d connections of one sidecar are blocked in XREADGROUP for 150 functions, want 1", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// blockedReads counts the Redis clients blocked in XREADGROUP now (CLIENT LIST flag b).
func blockedReads(t *testing.T, rt *Runtime) int {
	t.Helper()
	list, err := rt.rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, "cmd=xreadgroup") && strings.Contains(line, " flags=b ") {
			n++
		}
	}
	return n
}
