package registry

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestClaimBindsOneExecutionPerDispatch(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("claims")
	mustEnsure(t, r, fn)
	c := newCall(r, fn, "caller-claims", `{"a":1}`)
	entry := mustAdd(t, r, c)

	if err := r.ClaimCall(ctx, fn, c.ID, 1, "exec-1", "sc-a", time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim before any dispatch: got %v, want ErrNotFound", err)
	}
	n, err := r.NextDispatch(ctx, fn, c.ID, time.Minute)
	if err != nil || n != 1 {
		t.Fatalf("NextDispatch = %d, %v; want 1", n, err)
	}
	if err := r.ClaimCall(ctx, fn, c.ID, 1, "exec-1", "sc-a", time.Minute); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if err := r.ClaimCall(ctx, fn, c.ID, 1, "exec-1", "sc-a", time.Minute); err != nil {
		t.Fatalf("the same execution claims again (a retried node): %v", err)
	}
	// A reference posted again while the call runs: a second execution presents dispatch 1.
	if err := r.ClaimCall(ctx, fn, c.ID, 1, "exec-replay", "sc-b", time.Minute); !errors.Is(err, ErrClaimed) {
		t.Fatalf("replayed reference: got %v, want ErrClaimed", err)
	}
	exec, sc, d, err := r.ClaimOf(ctx, fn, c.ID)
	if err != nil || exec != "exec-1" || sc != "sc-a" || d != 1 {
		t.Fatalf("ClaimOf = %q %q %d %v", exec, sc, d, err)
	}
	// The dispatcher runs it again (dead worker): dispatch 2; the old reference is stale.
	if n, _ := r.NextDispatch(ctx, fn, c.ID, time.Minute); n != 2 {
		t.Fatalf("second dispatch = %d", n)
	}
	if err := r.ClaimCall(ctx, fn, c.ID, 1, "exec-late", "sc-b", time.Minute); !errors.Is(err, ErrStaleDispatch) {
		t.Fatalf("stale reference: got %v, want ErrStaleDispatch", err)
	}
	if err := r.ClaimCall(ctx, fn, c.ID, 2, "exec-2", "sc-b", time.Minute); err != nil {
		t.Fatalf("claim of the re-run: %v", err)
	}

	call := ExecCall{Function: fn, CallID: c.ID, EntryID: entry, ReplyKey: c.ReplyKey, Deadline: c.Deadline, Depth: 1}
	// An execution that never claimed the call cannot answer it.
	if err := r.CompleteClaimed(ctx, call, "exec-replay", Reply{CallID: c.ID, OK: true}); !errors.Is(err, ErrNotClaimant) {
		t.Fatalf("answer from a non-claimant: got %v", err)
	}
	// The first execution was alive after all: its answer counts (first answer wins).
	if err := r.CompleteClaimed(ctx, call, "exec-1", Reply{CallID: c.ID, OK: true, Items: []byte(`[{"r":1}]`)}); err != nil {
		t.Fatalf("answer from the first claimant: %v", err)
	}
	if err := r.CompleteClaimed(ctx, call, "exec-2", Reply{CallID: c.ID, OK: true}); !errors.Is(err, ErrAnswered) {
		t.Fatalf("second answer: got %v, want ErrAnswered", err)
	}
	// The first execution answering again (a retry after a lost reply) is allowed.
	if err := r.CompleteClaimed(ctx, call, "exec-1", Reply{CallID: c.ID, OK: true, Items: []byte(`[{"r":1}]`)}); err != nil {
		t.Fatalf("the answering execution retries: %v", err)
	}
	if err := r.ClaimCall(ctx, fn, c.ID, 2, "exec-3", "sc-c", time.Minute); !errors.Is(err, ErrAnswered) {
		t.Fatalf("claim of an answered call: got %v", err)
	}
	got, err := r.WaitReplies(ctx, c.ReplyKey, []string{c.ID}, time.Now().Add(5*time.Second))
	if err != nil || string(got[c.ID].Items) != `[{"r":1}]` {
		t.Fatalf("caller got %+v, %v", got, err)
	}
	if st, err := r.FunctionStatus(ctx, fn); err != nil || st.Pending != 0 {
		t.Fatalf("the answer must acknowledge the entry: %+v %v", st, err)
	}
}

func TestClaimRaceHasOneWinner(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("race")
	if _, err := r.NextDispatch(ctx, fn, "call-1", time.Minute); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.ClaimCall(ctx, fn, "call-1", 1, "exec-"+string(rune('a'+i)), "sc", time.Minute)
			switch {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, ErrClaimed):
				t.Errorf("claim %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d executions claimed one dispatch, want 1", wins.Load())
	}
}

func TestExecutionCalls(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	if calls, err := r.ExecutionCalls(ctx, "nobody"); err != nil || calls != nil {
		t.Fatalf("unknown execution: %v %v", calls, err)
	}
	in := []ExecCall{{Function: fnKey("f"), CallID: "c1", EntryID: "1-0", Depth: 2, Stack: []string{"c0:global/g"}, Dispatch: 1},
		{Function: fnKey("f"), CallID: "c2", EntryID: "2-0", Depth: 1, Dispatch: 3}}
	if err := r.BindExecution(ctx, "42", in, time.Minute); err != nil {
		t.Fatal(err)
	}
	out, err := r.ExecutionCalls(ctx, "42")
	if err != nil || len(out) != 2 || out[0].CallID != "c1" || out[0].Stack[0] != "c0:global/g" || out[1].Dispatch != 3 {
		t.Fatalf("ExecutionCalls = %+v, %v", out, err)
	}
}

func TestGlobalSlots(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("limited")
	for i, want := range []bool{true, true, false} {
		ok, err := r.AcquireSlot(ctx, fn, "h"+string(rune('0'+i)), 2, time.Minute)
		if err != nil || ok != want {
			t.Fatalf("acquire %d = %v, %v; want %v", i, ok, err, want)
		}
	}
	if ok, _ := r.AcquireSlot(ctx, fn, "h0", 2, time.Minute); !ok {
		t.Fatal("a holder renews its own slot")
	}
	if err := r.ReleaseSlot(ctx, fn, "h0"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.AcquireSlot(ctx, fn, "h2", 2, time.Minute); !ok {
		t.Fatal("a released slot is free again")
	}
	// A dead holder's lease runs out.
	if ok, _ := r.AcquireSlot(ctx, fnKey("short"), "dead", 1, 150*time.Millisecond); !ok {
		t.Fatal("first lease")
	}
	if ok, _ := r.AcquireSlot(ctx, fnKey("short"), "next", 1, time.Minute); ok {
		t.Fatal("slot taken while the lease runs")
	}
	time.Sleep(250 * time.Millisecond)
	if ok, _ := r.AcquireSlot(ctx, fnKey("short"), "next", 1, time.Minute); !ok {
		t.Fatal("an expired lease frees its slot")
	}
	if n, err := r.SlotsInUse(ctx, fn); err != nil || n != 2 {
		t.Fatalf("SlotsInUse = %d, %v", n, err)
	}
}

func TestIdempotentInFlight(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("idem")
	owner, err := r.StartIdempotent(ctx, fn, "order-1", "c1", time.Minute)
	if err != nil || owner != "c1" {
		t.Fatalf("first start = %q, %v", owner, err)
	}
	if owner, _ := r.StartIdempotent(ctx, fn, "order-1", "c2", time.Minute); owner != "c1" {
		t.Fatalf("second start = %q, want the running call c1", owner)
	}
	if err := r.FinishIdempotent(ctx, fn, "order-1", "c2"); err != nil {
		t.Fatal(err)
	}
	if id, _ := r.IdempotentRunner(ctx, fn, "order-1"); id != "c1" {
		t.Fatalf("a non-owner must not clear the mark, runner = %q", id)
	}
	if err := r.FinishIdempotent(ctx, fn, "order-1", "c1"); err != nil {
		t.Fatal(err)
	}
	if id, _ := r.IdempotentRunner(ctx, fn, "order-1"); id != "" {
		t.Fatalf("runner after finish = %q", id)
	}
}

// TestClaimRecordsItsTime: a claim records when it was made (the claiming sidecar's clock), so a
// dispatcher can tell whether that sidecar's n8n process went away after it.
func TestClaimRecordsItsTime(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("claimtime")
	mustEnsure(t, r, fn)
	c := newCall(r, fn, "caller-ct", `{}`)
	mustAdd(t, r, c)
	if _, err := r.NextDispatch(ctx, fn, c.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if st, err := r.ClaimState(ctx, fn, c.ID); err != nil || st.Exec != "" || !st.At.IsZero() || st.Dispatch != 1 {
		t.Fatalf("unclaimed: %+v, %v", st, err)
	}
	before := time.Now().Add(-time.Millisecond)
	if err := r.ClaimCall(ctx, fn, c.ID, 1, "exec-1", "sc-a", time.Minute); err != nil {
		t.Fatal(err)
	}
	after := time.Now().Add(time.Millisecond)
	st, err := r.ClaimState(ctx, fn, c.ID)
	if err != nil || st.Exec != "exec-1" || st.Sidecar != "sc-a" || st.Dispatch != 1 {
		t.Fatalf("claimed: %+v, %v", st, err)
	}
	if st.At.Before(before) || st.At.After(after) {
		t.Fatalf("claim time %v outside [%v, %v]", st.At, before, after)
	}
	// A re-dispatch hides the old claim: the latest dispatch is unclaimed.
	if _, err := r.NextDispatch(ctx, fn, c.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.ClaimState(ctx, fn, c.ID); st.Exec != "" || st.Dispatch != 2 || !st.At.IsZero() {
		t.Fatalf("after the re-dispatch: %+v", st)
	}
}

// TestFenceDispatch: a dispatch nobody claimed can be retired; a late execution of it then claims
// nothing and cannot answer, so triggering the call again runs it once. A claimed, answered or
// superseded dispatch is left alone.
func TestFenceDispatch(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("fence")
	mustEnsure(t, r, fn)
	c := newCall(r, fn, "caller-fence", `{}`)
	entry := mustAdd(t, r, c)
	if ok, err := r.FenceDispatch(ctx, fn, c.ID, 1); err != nil || ok {
		t.Fatalf("fence of a call never dispatched = %v, %v; want false", ok, err)
	}
	if n, _ := r.NextDispatch(ctx, fn, c.ID, time.Minute); n != 1 {
		t.Fatalf("dispatch %d", n)
	}
	if ok, err := r.FenceDispatch(ctx, fn, c.ID, 2); err != nil || ok {
		t.Fatalf("fence of a dispatch that is not the latest = %v, %v; want false", ok, err)
	}
	if ok, err := r.FenceDispatch(ctx, fn, c.ID, 1); err != nil || !ok {
		t.Fatalf("fence of the unclaimed dispatch 1 = %v, %v; want true", ok, err)
	}
	if ok, _ := r.FenceDispatch(ctx, fn, c.ID, 1); ok {
		t.Fatal("dispatch 1 fenced twice")
	}
	// The execution of dispatch 1 was alive after all (slow, queued): it claims nothing ...
	if err := r.ClaimCall(ctx, fn, c.ID, 1, "exec-late", "sc-a", time.Minute); !errors.Is(err, ErrStaleDispatch) {
		t.Fatalf("claim of the fenced dispatch: %v, want ErrStaleDispatch", err)
	}
	// ... and cannot answer.
	call := ExecCall{Function: fn, CallID: c.ID, EntryID: entry, ReplyKey: c.ReplyKey, Deadline: c.Deadline, Depth: 1, Dispatch: 1}
	if err := r.CompleteClaimed(ctx, call, "exec-late", Reply{CallID: c.ID, OK: true}); !errors.Is(err, ErrNotClaimant) {
		t.Fatalf("answer of the fenced dispatch's execution: %v, want ErrNotClaimant", err)
	}
	// The dispatcher triggers it again under a new number: that one runs and answers.
	n, err := r.NextDispatch(ctx, fn, c.ID, time.Minute)
	if err != nil || n != 3 {
		t.Fatalf("dispatch after the fence = %d, %v; want 3 (2 was the fence)", n, err)
	}
	if err := r.ClaimCall(ctx, fn, c.ID, 3, "exec-3", "sc-b", time.Minute); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.FenceDispatch(ctx, fn, c.ID, 3); err != nil || ok {
		t.Fatalf("fence of a claimed dispatch = %v, %v; want false", ok, err)
	}
	call.Dispatch = 3
	if err := r.CompleteClaimed(ctx, call, "exec-3", Reply{CallID: c.ID, OK: true}); err != nil {
		t.Fatal(err)
	}
	// Answered: nothing to fence even on a new, unclaimed number.
	if n, _ := r.NextDispatch(ctx, fn, c.ID, time.Minute); n != 4 {
		t.Fatalf("dispatch %d", n)
	}
	if ok, _ := r.FenceDispatch(ctx, fn, c.ID, 4); ok {
		t.Fatal("an answered call's dispatch was fenced")
	}
}

// TestFenceRacesClaim: a fence and a claim of the same dispatch at once have one winner: either
// the execution claimed it (no fence) or it was fenced (the claim is stale), never both.
func TestFenceRacesClaim(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("fencerace")
	mustEnsure(t, r, fn)
	fenced, claimed := 0, 0
	for i := range 40 {
		c := newCall(r, fn, "caller-fr", `{}`)
		mustAdd(t, r, c)
		if _, err := r.NextDispatch(ctx, fn, c.ID, time.Minute); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var ok bool
		var fenceErr, claimErr error
		start := make(chan struct{})
		wg.Add(2)
		go func() { defer wg.Done(); <-start; ok, fenceErr = r.FenceDispatch(ctx, fn, c.ID, 1) }()
		go func() {
			defer wg.Done()
			<-start
			claimErr = r.ClaimCall(ctx, fn, c.ID, 1, "exec-race", "sc", time.Minute)
		}()
		close(start)
		wg.Wait()
		if fenceErr != nil {
			t.Fatal(fenceErr)
		}
		switch {
		case ok && errors.Is(claimErr, ErrStaleDispatch):
			fenced++
		case !ok && claimErr == nil:
			claimed++
		default:
			t.Fatalf("round %d: fenced %v and claim %v: both or neither won", i, ok, claimErr)
		}
	}
	t.Logf("fence won %d, claim won %d", fenced, claimed)
}
