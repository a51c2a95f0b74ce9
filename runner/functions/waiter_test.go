package functions

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/registry"
)

// A call node that would hold the last announced execution slot while it waits is refused at
// once, names the limit and what to change, and queues nothing; with a slot left it runs, and its
// lease counts while it waits and is given back when it is answered.
func TestCallRefusedWhenEveryExecutionSlotWaits(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	h.rt.cfg.ExecutionSlots = 3 // read by the call op only; the heartbeat was built without it
	ctx := context.Background()
	reg := h.rt.reg
	if err := reg.ReportExecutionSlots(ctx, "worker-x", 3); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"other-1", "other-2"} {
		if l, err := reg.AcquireWaiter(ctx, w, time.Minute); err != nil || !l.Taken {
			t.Fatalf("%s: %+v, %v", w, l, err)
		}
	}
	call := `/* @n8n-fn {"op":"call","function":"add","timeoutMs":10000} */`
	start := time.Now()
	_, err := h.call(t, call, false, `{"a":1}`)
	var oe *OpError
	if !errors.As(err, &oe) || !errors.Is(err, errSlotsExhausted) {
		t.Fatalf("with 2 of 3 slots waiting: %v, want the execution slot refusal", err)
	}
	for _, want := range []string{"execution slot limit", "2 of the 3 execution slots", "nothing was queued"} {
		if !strings.Contains(oe.Message, want) {
			t.Errorf("message lacks %q: %s", want, oe.Message)
		}
	}
	for _, want := range []string{"--concurrency", "N8N_CONCURRENCY_PRODUCTION_LIMIT", "N8N_RUNNERS_MAX_CONCURRENCY", "add workers"} {
		if !strings.Contains(oe.Description, want) {
			t.Errorf("description lacks %q: %s", want, oe.Description)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the refusal took %s", d)
	}
	if n := h.wf.calls.Load(); n != 0 {
		t.Fatalf("the refused call triggered the function %d times", n)
	}
	// continueOnFail: the refusal is the item's error.
	out, err := h.call(t, call, true, `{"a":1}`)
	if err != nil || !strings.Contains(gjson.GetBytes(out, "result.0.json.error").String(), "execution slot limit") {
		t.Fatalf("continueOnFail: %s, %v", out, err)
	}

	// One waiter leaves: the call runs, holding a lease while it waits.
	if err := reg.ReleaseWaiter(ctx, "other-2"); err != nil {
		t.Fatal(err)
	}
	h.wf.set(func(w *fnWorkflow) { w.delay = 700 * time.Millisecond })
	type res struct {
		out []byte
		err error
	}
	done := make(chan res, 1)
	go func() {
		out, err := h.call(t, call, false, `{"a":1,"b":2}`)
		done <- res{out, err}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := reg.Waiters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the running call's lease never counted (waiters %d)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := <-done
	if r.err != nil || gjson.GetBytes(r.out, "result.0.json.sum").Float() != 3 {
		t.Fatalf("with a slot left: %s, %v", r.out, r.err)
	}
	if n, err := reg.Waiters(ctx); err != nil || n != 1 {
		t.Fatalf("after the answer: %d waiters (%v), want 1: the call's lease is given back", n, err)
	}
}

// Without announced slots (a queue-mode main's sidecar: N8N_FN_EXECUTION_SLOTS=0) a call takes no
// lease, whatever the others hold.
func TestCallWithoutExecutionSlotsTakesNoLease(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	ctx := context.Background()
	if err := h.rt.reg.ReportExecutionSlots(ctx, "worker-x", 1); err != nil {
		t.Fatal(err)
	}
	out, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":10000} */`, false, `{"a":4}`)
	if err != nil || gjson.GetBytes(out, "result.0.json.sum").Float() != 4 {
		t.Fatalf("%s, %v", out, err)
	}
	if n, err := h.rt.reg.Waiters(ctx); err != nil || n != 0 {
		t.Fatalf("%d waiters, %v", n, err)
	}
}

// The heartbeat announces the execution slots with every beat, and takes them away on leaving.
func TestHeartbeatAnnouncesExecutionSlots(t *testing.T) {
	rs := redistest.Start(t)
	f := newRuntime(t, rs, "sidecar-slots", "http://127.0.0.1:1", nil)
	hb := newHeartbeat(heartbeatParams{log: f.log, reg: f.reg, id: "sidecar-slots", served: f.catalog.keys,
		interval: 50 * time.Millisecond, slots: 4})
	var wg sync.WaitGroup
	hb.start(context.Background(), &wg)
	ctx := context.Background()
	slots := func() int {
		l, err := f.reg.AcquireWaiter(ctx, "probe", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.reg.ReleaseWaiter(ctx, "probe"); err != nil {
			t.Fatal(err)
		}
		return l.Slots
	}
	deadline := time.Now().Add(5 * time.Second)
	for slots() != 4 {
		if time.Now().After(deadline) {
			t.Fatal("the heartbeat never announced 4 slots")
		}
		time.Sleep(20 * time.Millisecond)
	}
	hb.shutdown()
	wg.Wait()
	if n := slots(); n != 0 {
		t.Fatalf("after leaving: %d slots announced", n)
	}
}

// Each level's dispatcher collapses what came up to it, so a chain of any depth ends as the
// innermost error and the depth, whatever level did the collapsing.
func TestCollapseNested(t *testing.T) {
	inner := "n8n-fn call r: execution slot limit: 19 of the 20 execution slots ...; nothing was queued"
	// What the dispatcher of the call that waited for execution e reports, level by level.
	msg := inner + " (execution 30)"
	for e := 29; e >= 20; e-- {
		msg = collapseNested("n8n-fn call r: function r failed: " + msg + " (execution " + strconv.Itoa(e) + ")")
	}
	want := inner + " (execution 30) (through 10 nested calls, execution 20)"
	if msg != want {
		t.Fatalf("collapseNested:\n got %s\nwant %s", msg, want)
	}
	// A chain nobody collapsed on the way collapses at once.
	raw := inner + " (execution 30)"
	for e := 29; e >= 27; e-- {
		raw = "n8n-fn call r: function r failed: " + raw + " (execution " + strconv.Itoa(e) + ")"
	}
	if got, want := collapseNested(raw), inner+" (execution 30) (through 3 nested calls, execution 27)"; got != want {
		t.Fatalf("collapseNested of a raw chain:\n got %s\nwant %s", got, want)
	}
	// One level, or no call error at all, stays as it is.
	one := "n8n-fn call r: function r failed: boom (execution 5)"
	for _, m := range []string{one, "boom (execution 5)", "node X: the body threw"} {
		if got := collapseNested(m); got != m {
			t.Errorf("collapseNested(%q) = %q", m, got)
		}
	}
}

// n8n's TaskRunnerDisconnectedError (a sidecar or runner died under a node) is told apart from
// an error of the function's own code, which must not run again.
func TestRunnerLostError(t *testing.T) {
	cases := []struct {
		raw  string
		want bool
	}{
		{`{"data":{"resultData":{"error":{"message":"Node execution failed","description":"This can happen for various reasons. Please try executing the node again."}}}}`, true},
		{`{"data":{"resultData":{"error":{"message":"Node execution failed"}}}}`, true},
		{`{"data":{"resultData":{"error":{"message":"Node execution failed","description":"my own text"}}}}`, false},
		{`{"data":{"resultData":{"error":{"message":"boom","node":{"name":"Body"}}}}}`, false},
		{`{"data":{"resultData":{}}}`, false},
	}
	for _, c := range cases {
		if got := runnerLostError([]byte(c.raw)); got != c.want {
			t.Errorf("runnerLostError(%s) = %v, want %v", c.raw, got, c.want)
		}
	}
}

// A call whose queue entry Redis lost (kill -9 loses up to a second of writes) is queued again by
// its waiting caller, once, and answered; a call whose entry is still queued is not queued twice.
func TestWaitRepliesRequeuesALostCall(t *testing.T) {
	rs := redistest.Start(t)
	f := newRuntime(t, rs, "sidecar-lost", "http://127.0.0.1:1", func(tu *tunables) { tu.lostCheck = 150 * time.Millisecond })
	ctx := context.Background()
	key := registry.FunctionKey{Scope: "global", Name: "lost"}
	if err := f.reg.EnsureGroup(ctx, key); err != nil {
		t.Fatal(err)
	}
	replyKey := f.reg.ReplyKey("sidecar-lost:task-lost")
	deadline := time.Now().Add(10 * time.Second)
	calls := map[string]registry.Call{}
	entryOf := map[string]string{}
	for _, id := range []string{"call-lost", "call-kept"} {
		c := registry.Call{ID: id, Function: key, ReplyKey: replyKey, Params: json.RawMessage(`{}`), Deadline: deadline}
		e, err := f.reg.AddCall(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		calls[id], entryOf[id] = c, e
	}
	// Redis "loses" the first entry (Ack deletes it, as a restart from a short AOF would).
	if err := f.reg.Ack(ctx, key, entryOf["call-lost"]); err != nil {
		t.Fatal(err)
	}
	type res struct {
		reps map[string]registry.Reply
		err  error
	}
	done := make(chan res, 1)
	go func() {
		reps, err := f.waitReplies(ctx, key, replyKey, []string{"call-lost", "call-kept"}, calls, entryOf, deadline)
		done <- res{reps, err}
	}()
	// Several rounds pass: exactly two entries are queued (the kept one and the lost one again).
	time.Sleep(800 * time.Millisecond)
	ds, err := f.reg.ReadCalls(ctx, "tester", []registry.FunctionKey{key}, 10, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, d := range ds {
		ids[d.Call.ID]++
	}
	if len(ds) != 2 || ids["call-lost"] != 1 || ids["call-kept"] != 1 {
		t.Fatalf("queued entries %v, want call-lost (again) and call-kept once each", ids)
	}
	for _, d := range ds {
		if err := f.reg.Complete(ctx, d, registry.Reply{CallID: d.Call.ID, OK: true, Items: json.RawMessage(`[{"id":"` + d.Call.ID + `"}]`)}); err != nil {
			t.Fatal(err)
		}
	}
	r := <-done
	if r.err != nil || len(r.reps) != 2 || !r.reps["call-lost"].OK || !r.reps["call-kept"].OK {
		t.Fatalf("waitReplies = %v, %v", r.reps, r.err)
	}
	// Answered entries are gone now: nothing is queued again after the answers.
	if more, _ := f.reg.ReadCalls(ctx, "tester", []registry.FunctionKey{key}, 10, 300*time.Millisecond); len(more) != 0 {
		t.Fatalf("%d entries queued after the answers", len(more))
	}
}
