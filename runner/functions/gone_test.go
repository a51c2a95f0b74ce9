package functions

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// goneHarness is a sidecar whose n8n connection the test controls (up) with the watch timings of
// the real sidecar except a shorter tick, so only the found-gone paths can re-run a call early
// (workerLostAfter stays 20 s).
func goneHarness(t *testing.T, rs *redistest.Server) (*harness, *atomic.Bool) {
	t.Helper()
	return goneHarnessWith(t, rs, nil)
}

// goneHarnessWith is goneHarness with more tunables changed by extra.
func goneHarnessWith(t *testing.T, rs *redistest.Server, extra func(*tunables)) (*harness, *atomic.Bool) {
	t.Helper()
	wf := &fnWorkflow{t: t, workflow: "wfFn", body: addBody, held: make(chan []byte, 1), unhold: make(chan []byte, 1)}
	srv := httptest.NewServer(wf)
	t.Cleanup(srv.Close)
	up := new(atomic.Bool)
	up.Store(true)
	rt := newRuntimeDeps(t, rs, "sidecar-a", srv.URL, func(tu *tunables) {
		tu.heartbeatInterval = 100 * time.Millisecond
		tu.workerWatchInterval = 100 * time.Millisecond
		tu.unclaimedGrace = 300 * time.Millisecond
		if extra != nil {
			extra(tu)
		}
	}, Deps{N8NConnected: up.Load})
	wf.rt = rt
	wf.dir = parseDirective(t, addFunction, workflows.ParseFunction)
	key := keyOf(wf.dir.Ref("wfFn"))
	serve(t, rt, key, "wfFn", 0)
	startRuntime(t, rt)
	return &harness{rt: rt, wf: wf, srv: srv, key: key}, up
}

const goneCall = `/* @n8n-fn {"op":"call","function":"add","timeoutMs":15000} */`

// TestFastRestartedWorkerCallRunsAgain: the worker running the function's execution is killed
// after the function node claimed the call and comes back at once (the sidecar is never without
// n8n for long, so the 20 s rule cannot fire); its sidecar found the old process gone (a refused
// reconnect), and the dispatcher runs the call again within its watch instead of after n8n's
// stalled-job handling.
func TestFastRestartedWorkerCallRunsAgain(t *testing.T) {
	rs := redistest.Start(t)
	h, _ := goneHarness(t, rs)
	h.wf.onHang = func() { h.rt.N8NGone(time.Now()) } // killed mid-body, restarted: only the refused reconnect tells
	h.wf.hangOnce.Store(true)
	start := time.Now()
	out, err := h.call(t, goneCall, false, `{"a":2,"b":3}`)
	if err != nil {
		t.Fatal(err)
	}
	if sum := gjson.GetBytes(out, "result.0.json.sum").Float(); sum != 5 {
		t.Fatalf("result %s", out)
	}
	if n := h.wf.calls.Load(); n != 2 {
		t.Fatalf("the function was triggered %d times, want 2 (the dead execution and the re-run)", n)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("answered after %s: the dispatcher did not notice the gone process", d)
	}
}

// TestBlipDoesNotRunAgain: a body slower than the watch, while its sidecar's n8n connection
// drops and comes back (a blip: the broker kept listening, so nothing reports a gone process), and
// after a gone report that predates the claim (an earlier restart of the same worker), runs once.
func TestBlipDoesNotRunAgain(t *testing.T) {
	rs := redistest.Start(t)
	h, up := goneHarness(t, rs)
	h.rt.N8NGone(time.Now().Add(-time.Second)) // the process this execution runs in started after it
	h.wf.set(func(w *fnWorkflow) {
		w.delay = 1500 * time.Millisecond
		w.body = func(items []json.RawMessage) ([]json.RawMessage, error) { return addBody(items) }
	})
	go func() {
		time.Sleep(300 * time.Millisecond)
		up.Store(false)
		time.Sleep(700 * time.Millisecond) // several heartbeats and watch ticks without n8n
		up.Store(true)
	}()
	out, err := h.call(t, goneCall, false, `{"a":1,"b":1}`)
	if err != nil {
		t.Fatal(err)
	}
	if sum := gjson.GetBytes(out, "result.0.json.sum").Float(); sum != 2 {
		t.Fatalf("result %s", out)
	}
	if n := h.wf.calls.Load(); n != 1 {
		t.Fatalf("the function was triggered %d times, want 1: a blip must not run a live body again", n)
	}
}

// TestUnclaimedCallAfterWorkerGoneRunsAgain: the worker took the function's job and died before
// the function node claimed the call. After a gone report and unclaimedGrace, the dispatcher
// fences the unclaimed dispatch and triggers the call again; the first execution, had it been
// alive after all, claims nothing and cannot answer, so the body runs once.
func TestUnclaimedCallAfterWorkerGoneRunsAgain(t *testing.T) {
	rs := redistest.Start(t)
	h, _ := goneHarness(t, rs)
	h.wf.holdOnce.Store(true)
	var late []byte
	go func() {
		late = <-h.wf.held
		h.rt.N8NGone(time.Now()) // the worker that took the job went away
	}()
	start := time.Now()
	out, err := h.call(t, goneCall, false, `{"a":4,"b":5}`)
	if err != nil {
		t.Fatal(err)
	}
	if sum := gjson.GetBytes(out, "result.0.json.sum").Float(); sum != 9 {
		t.Fatalf("result %s", out)
	}
	if n, ran := h.wf.calls.Load(), h.wf.ran.Load(); n != 2 || ran != 1 {
		t.Fatalf("triggered %d times, %d bodies ran; want 2 and 1", n, ran)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("answered after %s", d)
	}
	// The held execution resumes with its stale reference: the function node refuses it.
	hook := json.RawMessage(`{"headers":{},"params":{},"query":{},"body":` + string(late) + `}`)
	_, err = h.rt.runFunction(context.Background(), &taskData{WorkflowID: "wfFn", NodeName: "Function", ExecutionID: "late-exec", Items: []item{{JSON: hook}}}, h.wf.dir)
	if !errors.Is(err, registry.ErrStaleDispatch) && !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("the fenced execution's function node: %v, want a stale dispatch (or the call gone)", err)
	}
}

// TestUnclaimedSlowStartIsNotFencedWithoutLoss: an execution that takes longer than
// unclaimedGrace to claim its call (queued behind others) is not triggered again when no worker
// went away since the dispatch (only a gone report from before it exists).
func TestUnclaimedSlowStartIsNotFencedWithoutLoss(t *testing.T) {
	rs := redistest.Start(t)
	h, _ := goneHarness(t, rs)
	h.rt.N8NGone(time.Now().Add(-time.Second))
	time.Sleep(300 * time.Millisecond) // the report is on record
	h.wf.holdOnce.Store(true)
	go func() {
		b := <-h.wf.held
		time.Sleep(time.Second) // > unclaimedGrace + a watch tick
		// Queued, not dead: it starts now. Re-posting the same body runs it in this test's n8n.
		hook := json.RawMessage(`{"headers":{},"params":{},"query":{},"body":` + string(b) + `}`)
		out, err := h.rt.runFunction(context.Background(), &taskData{WorkflowID: "wfFn", NodeName: "Function", ExecutionID: "slow-exec", Items: []item{{JSON: hook}}}, h.wf.dir)
		if err != nil {
			t.Errorf("the slow execution's function node: %v (it was fenced without a loss)", err)
			return
		}
		items, _ := addBody(resultItems(t, out.JSON()))
		ret, err := h.rt.runReturn(context.Background(), &taskData{WorkflowID: "wfFn", NodeName: "Return", ExecutionID: "slow-exec", Items: []item{{JSON: items[0]}}}, &workflows.ReturnDirective{})
		if err != nil {
			t.Errorf("the slow execution's return: %v", err)
		}
		h.wf.unhold <- ret.JSON()
	}()
	out, err := h.call(t, goneCall, false, `{"a":1,"b":6}`)
	if err != nil {
		t.Fatal(err)
	}
	if sum := gjson.GetBytes(out, "result.0.json.sum").Float(); sum != 7 {
		t.Fatalf("result %s", out)
	}
	if n := h.wf.calls.Load(); n != 1 {
		t.Fatalf("triggered %d times, want 1", n)
	}
}

// TestRedisDataLossDoesNotRunLiveBodiesAgain: a Redis restarted without its data (kill -9, no
// persistence) has lost every sidecar's heartbeat; the sidecar running the body writes its own
// again within its heartbeat interval. The dispatcher's watch sees the heartbeat missing in
// between and must not take that for a dead sidecar (it did: the soak ran 9 live bodies twice).
func TestRedisDataLossDoesNotRunLiveBodiesAgain(t *testing.T) {
	rs := redistest.Start(t)
	h, _ := goneHarnessWith(t, rs, func(tu *tunables) { tu.heartbeatInterval = 300 * time.Millisecond })
	h.wf.set(func(w *fnWorkflow) { w.delay = 1500 * time.Millisecond })
	wiped := make(chan int, 1)
	go func() {
		time.Sleep(400 * time.Millisecond) // the function node has claimed the call
		ctx := context.Background()
		keys, err := rs.Client().Keys(ctx, "*sidecar:sidecar-a").Result()
		if err == nil && len(keys) > 0 {
			err = rs.Client().Del(ctx, keys...).Err()
		}
		if err != nil {
			t.Error(err)
		}
		wiped <- len(keys)
	}()
	out, err := h.call(t, goneCall, false, `{"a":4,"b":1}`)
	if err != nil {
		t.Fatal(err)
	}
	if n := <-wiped; n == 0 {
		t.Fatal("no heartbeat key to wipe: the test does not show anything")
	}
	if sum := gjson.GetBytes(out, "result.0.json.sum").Float(); sum != 5 {
		t.Fatalf("result %s", out)
	}
	if n := h.wf.calls.Load(); n != 1 {
		t.Fatalf("the function was triggered %d times, want 1: a heartbeat lost with Redis's data is not a dead sidecar", n)
	}
}
