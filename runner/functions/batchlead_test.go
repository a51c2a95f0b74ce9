package functions

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// nagleSidecars starts three sidecars that serve one batching function whose body takes delay;
// the function and return nodes run on the first (the worker of every execution here).
func nagleSidecars(t *testing.T, rs *redistest.Server, directive string, delay time.Duration) ([]*Runtime, *fnWorkflow) {
	t.Helper()
	wf := &fnWorkflow{t: t, workflow: "wfFn", body: addBody, delay: delay}
	srv := httptest.NewServer(wf)
	t.Cleanup(srv.Close)
	dir := parseDirective(t, directive, workflows.ParseFunction)
	key := keyOf(dir.Ref("wfFn"))
	var rts []*Runtime
	for _, id := range []string{"sc-1", "sc-2", "sc-3"} {
		rt := newRuntime(t, rs, id, srv.URL, func(tu *tunables) { tu.batchLeadInterval = 100 * time.Millisecond })
		rt.lineage = oneToOneLineage
		serve(t, rt, key, "wfFn", 0)
		s := rt.catalog.get(key)
		s.Def = workflows.FunctionDef{Ref: dir.Ref("wfFn"), WorkflowID: "wfFn", Node: "Function", Function: dir,
			WebhookPath: s.Record.WebhookPath, WebhookMethod: "POST", LastNodeResponse: true}
		startRuntime(t, rt)
		rt.hb.beatNow()
		rts = append(rts, rt)
	}
	wf.rt, wf.dir = rts[0], dir
	return rts, wf
}

// callWave makes n single-item calls, one every gap, each from one of rts in turn (like n
// closed-loop clients' caller executions on different workers), and checks every result.
func callWave(t *testing.T, rts []*Runtime, n int, gap time.Duration, tag string) {
	t.Helper()
	d := parseDirective(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":20000} */`, workflows.ParseCall)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		rt := rts[i%len(rts)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := &taskData{WorkflowID: "wfC", NodeName: "Call", ExecutionID: fmt.Sprintf("%s-%d", tag, i),
				Items: []item{{JSON: json.RawMessage(fmt.Sprintf(`{"a":%d,"b":1}`, i))}}}
			out, err := joined(rt.runCall(context.Background(), data, d, callOptions{taskID: fmt.Sprintf("t%s%d", tag, i), started: time.Now()}))
			if err == nil {
				if got := gjson.GetBytes(out, "result.0.json.sum").Int(); got != int64(i+1) {
					err = fmt.Errorf("got %s, want sum %d", out, i+1)
				}
			}
			errs[i] = err
		}()
		time.Sleep(gap)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s call %d: %v", tag, i, err)
		}
	}
}

// With batch.parallel 1, single calls arriving one by one from three sidecars' callers meet in
// one leader's batches (a partial batch waits while one runs), so they take a few executions;
// the same calls without parallel are dispatched each on its own. When the leader stops, another
// sidecar leads and the calls go on.
func TestBatchParallelGathersSingleCalls(t *testing.T) {
	const calls, gap, body = 16, 25 * time.Millisecond, 200 * time.Millisecond
	t.Run("without parallel", func(t *testing.T) {
		rs := redistest.Start(t)
		rts, wf := nagleSidecars(t, rs, `/* @n8n-fn {"op":"function","name":"add","batch":{"max":8,"waitMs":5},"params":[{"name":"a","type":"number"},{"name":"b","type":"number"}]} */`, body)
		callWave(t, rts, calls, gap, "plain")
		if n := wf.calls.Load(); n < calls*3/4 {
			t.Fatalf("%d single calls took only %d executions without parallel: the control does not show what parallel changes", calls, n)
		}
		t.Logf("without parallel: %d calls, %d executions", calls, wf.calls.Load())
	})
	t.Run("parallel 1", func(t *testing.T) {
		rs := redistest.Start(t)
		rts, wf := nagleSidecars(t, rs, `/* @n8n-fn {"op":"function","name":"add","batch":{"max":8,"waitMs":5,"parallel":1},"params":[{"name":"a","type":"number"},{"name":"b","type":"number"}]} */`, body)
		waitFor(t, "a batch leader", 2*time.Second, func() bool { return leaders(rts) == 1 })
		callWave(t, rts, calls, gap, "nagle")
		n := wf.calls.Load()
		// 16 calls over 400 ms against a 200 ms body: the first alone, then what arrived while
		// the previous batch ran (about 8 each), so 3-4 executions; 6 leaves room for a slow machine.
		if n > 6 {
			t.Fatalf("%d single calls took %d executions with parallel 1, want them gathered into at most 6", calls, n)
		}
		if leaders(rts) != 1 {
			t.Fatalf("%d sidecars lead the function, want 1", leaders(rts))
		}
		t.Logf("parallel 1: %d calls, %d executions, at most %d at once", calls, n, wf.maxSeen.Load())

		// The leader stops: one of the others takes over, and the calls go on.
		var leader *Runtime
		var rest []*Runtime
		for _, rt := range rts {
			if leader == nil && leaders([]*Runtime{rt}) == 1 {
				leader = rt
				continue
			}
			rest = append(rest, rt)
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		leader.Shutdown(sctx)
		cancel()
		if wf.rt.cfg.ID != rest[0].cfg.ID && wf.rt.cfg.ID != rest[1].cfg.ID {
			wf.mu.Lock()
			wf.rt = rest[0] // the worker whose sidecar stopped is gone with it
			wf.mu.Unlock()
		}
		waitFor(t, "a new batch leader", 2*time.Second, func() bool { return leaders(rest) == 1 })
		callWave(t, rest, 8, gap, "after")
	})
}

// leaders counts the sidecars of rts that hold a batch lead.
func leaders(rts []*Runtime) int {
	n := 0
	for _, rt := range rts {
		rt.disp.mu.Lock()
		if len(rt.disp.leads) > 0 {
			n++
		}
		rt.disp.mu.Unlock()
	}
	return n
}
