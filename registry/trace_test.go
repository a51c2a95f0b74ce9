package registry

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// A chain of three executions on a real Redis: root execution "x1" calls outer (c1) and add (c3);
// outer's execution "x2" calls inner (c2), served by "x3". A trace from any id of the chain is the
// same tree from the top; its records carry the TTL and no params.
func TestTraceBuildsTheWholeChain(t *testing.T) {
	r, srv := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	ttl := time.Minute
	t0 := time.UnixMilli(time.Now().UnixMilli())
	queued := func(id, fn, callerExec, callerWF, parent string, size int) {
		t.Helper()
		c := TraceCall{ID: id, Function: fn, ParamsBytes: size, Attempt: 1, CallerExecution: callerExec, CallerWorkflow: callerWF,
			CallerNode: "Call", CallerSidecar: "sc-" + callerExec, Parent: parent, Queued: t0, Deadline: t0.Add(time.Minute)}
		if err := r.TraceQueued(ctx, c, "wf "+callerWF, ttl); err != nil {
			t.Fatal(err)
		}
	}
	claimed := func(id, exec, wf string) {
		t.Helper()
		if err := r.TraceDispatched(ctx, id, "dispatcher-a", t0.Add(5*time.Millisecond), ttl); err != nil {
			t.Fatal(err)
		}
		if err := r.TraceClaimed(ctx, id, TraceExecution{ID: exec, WorkflowID: wf, WorkflowName: "wf " + wf, Worker: "sc-" + exec}, t0.Add(8*time.Millisecond), ttl); err != nil {
			t.Fatal(err)
		}
	}
	queued("c1", "global/outer", "x1", "wfRoot", "", 12)
	claimed("c1", "x2", "wfOuter")
	queued("c2", "global/inner", "x2", "wfOuter", "c1", 7)
	claimed("c2", "x3", "wfInner")
	// c2's function ran twice (its first worker died).
	if err := r.TraceDispatched(ctx, "c2", "dispatcher-b", t0.Add(50*time.Millisecond), ttl); err != nil {
		t.Fatal(err)
	}
	if err := r.TraceFinished(ctx, map[string]string{"c2": "ok"}, t0.Add(60*time.Millisecond), ttl); err != nil {
		t.Fatal(err)
	}
	if err := r.TraceFinished(ctx, map[string]string{"c1": "ok"}, t0.Add(70*time.Millisecond), ttl); err != nil {
		t.Fatal(err)
	}
	queued("c3", "global/add", "x1", "wfRoot", "", 3) // queued, never dispatched
	if err := r.TraceFinished(ctx, map[string]string{"c3": "timeout"}, t0.Add(time.Second), ttl); err != nil {
		t.Fatal(err)
	}

	for _, from := range []string{"x1", "c1", "x2", "c2", "x3", "c3"} {
		tree, err := r.Trace(ctx, from)
		if err != nil {
			t.Fatalf("trace %s: %v", from, err)
		}
		if tree.ID != "x1" || tree.WorkflowID != "wfRoot" || tree.WorkflowName != "wf wfRoot" || tree.Worker != "sc-x1" || len(tree.CallTree) != 2 {
			t.Fatalf("trace %s: top %+v", from, tree.TraceExecution)
		}
		c1, c3 := tree.CallTree[0], tree.CallTree[1]
		if c1.ID != "c1" || c1.Function != "global/outer" || c1.ParamsBytes != 12 || c1.Outcome != "ok" || c1.Dispatches != 1 ||
			!c1.Dispatched.Equal(t0.Add(5*time.Millisecond)) || !c1.Finished.Equal(t0.Add(70*time.Millisecond)) || c1.Served == nil {
			t.Fatalf("trace %s: c1 %+v", from, c1.TraceCall)
		}
		x2 := c1.Served
		if x2.ID != "x2" || x2.WorkflowID != "wfOuter" || x2.Worker != "sc-x2" || x2.Served != "c1" || len(x2.CallTree) != 1 {
			t.Fatalf("trace %s: x2 %+v", from, x2.TraceExecution)
		}
		c2 := x2.CallTree[0]
		if c2.Parent != "c1" || c2.Dispatches != 2 || c2.Dispatcher != "dispatcher-b" || !c2.LastDispatched.Equal(t0.Add(50*time.Millisecond)) ||
			c2.Served == nil || c2.Served.ID != "x3" || len(c2.Served.CallTree) != 0 {
			t.Fatalf("trace %s: c2 %+v served %+v", from, c2.TraceCall, c2.Served)
		}
		if c3.Outcome != "timeout" || c3.Dispatches != 0 || c3.Served != nil {
			t.Fatalf("trace %s: c3 %+v", from, c3.TraceCall)
		}
	}
	tree, _ := r.Trace(ctx, "c2")
	tree.SetLinks("http://n8n.example:5678/")
	if got := tree.CallTree[0].Served.CallTree[0].Served.URL; got != "http://n8n.example:5678/workflow/wfInner/executions/x3" {
		t.Errorf("link: %q", got)
	}

	if _, err := r.Trace(ctx, "nothing-here"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "N8N_FN_TRACE_TTL") {
		t.Errorf("unknown id: %v", err)
	}
	recent, err := r.RecentCalls(ctx, 10)
	if err != nil || strings.Join(recent, ",") != "c3,c2,c1" {
		t.Errorf("recent calls: %v %v", recent, err)
	}
	// Every trace key expires; none holds params.
	rdb := srv.Client()
	for _, k := range []string{r.k.traceCall("c1"), r.k.traceExec("x1"), r.k.traceExecCalls("x1"), r.k.traceRecent()} {
		if d := rdb.PTTL(ctx, k).Val(); d <= 0 || d > ttl {
			t.Errorf("%s: TTL %s, want (0, %s]", k, d, ttl)
		}
	}
}

// A chain deeper than traceMaxDepth or wider than the budget is cut, not read without end.
func TestTraceIsBounded(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	ttl := time.Minute
	// A loop of records (x0 serves c0, whose caller is x0): the walk up must stop.
	if err := r.TraceQueued(ctx, TraceCall{ID: "c0", Function: "global/f", CallerExecution: "x0", Queued: time.Now()}, "", ttl); err != nil {
		t.Fatal(err)
	}
	if err := r.TraceClaimed(ctx, "c0", TraceExecution{ID: "x0"}, time.Now(), ttl); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Trace(ctx, "c0")
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, ErrTraceCut) {
			t.Fatalf("looping records: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a trace of looping records did not end")
	}
}
