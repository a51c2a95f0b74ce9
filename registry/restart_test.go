package registry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRedisRestart: Redis goes away in the middle of a test; operations fail with a typed error that
// names the operation and function; after Redis is back the same Registry (same client, no process
// restart) works again and no queued call was lost.
func TestRedisRestart(t *testing.T) {
	r, srv := newTestRegistry(t, Config{})
	if !srv.CanRestart() {
		t.Skip("Redis is shared (REDIS_URL): cannot restart it; unset REDIS_URL to run this test")
	}
	ctx := ctxT(t)
	fn := fnKey("durable")
	mustEnsure(t, r, fn)
	before := newCall(r, fn, "caller", `{"i":1}`)
	mustAdd(t, r, before)

	srv.Stop()
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := r.AddCall(short, newCall(r, fn, "caller", `{}`))
	cancel()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("AddCall while Redis is down = %v, want ErrUnavailable", err)
	}
	var re *Error
	if !errors.As(err, &re) || re.Op != "add call" || re.Function != fn.String() || !strings.Contains(err.Error(), "redis unavailable") {
		t.Fatalf("outage error does not name op/function: %v", err)
	}
	if _, err := r.ReadCalls(ctx, "s1", []FunctionKey{fn}, 10, 50*time.Millisecond); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ReadCalls while down = %v", err)
	}
	if _, err := r.WaitReplies(ctx, r.ReplyKey("caller"), []string{"x"}, time.Now().Add(200*time.Millisecond)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("WaitReplies while down = %v", err)
	}
	srv.Resume()

	after := newCall(r, fn, "caller", `{"i":2}`)
	mustAdd(t, r, after)
	ds := mustRead(t, r, "s1", []FunctionKey{fn}, 10)
	if len(ds) != 2 || ds[0].Call.ID != before.ID || ds[1].Call.ID != after.ID {
		t.Fatalf("after restart read %+v, want the call queued before the outage and the new one", ds)
	}
	for _, d := range ds {
		if err := r.Complete(ctx, d, Reply{OK: true}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := r.WaitReplies(ctx, before.ReplyKey, []string{before.ID, after.ID}, time.Now().Add(time.Second))
	if err != nil || len(got) != 2 {
		t.Fatalf("replies after restart = %v, %v", got, err)
	}
}

// TestWaiterSurvivesRestart: a caller blocked in WaitReplies while Redis restarts either gets its
// reply (the client reconnects and re-issues the wait) or a typed outage error, never a hang.
func TestWaiterSurvivesRestart(t *testing.T) {
	r, srv := newTestRegistry(t, Config{})
	if !srv.CanRestart() {
		t.Skip("Redis is shared (REDIS_URL): cannot restart it; unset REDIS_URL to run this test")
	}
	ctx := ctxT(t)
	key := r.ReplyKey("w")
	done := make(chan error, 1)
	go func() {
		_, err := r.WaitReplies(ctx, key, []string{"late"}, time.Now().Add(10*time.Second))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	srv.Restart()
	if err := r.PublishReply(ctx, key, Reply{CallID: "late", OK: true}); err != nil {
		t.Fatalf("PublishReply after restart: %v", err)
	}
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("waiter across restart = %v, want success or ErrUnavailable", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("waiter hung across a Redis restart")
	}
}

// TestGroupRecreatedAfterDataLoss: a Redis that comes back empty (no persistence) loses the groups;
// the next read recreates them instead of failing forever with NOGROUP.
func TestGroupRecreatedAfterDataLoss(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("volatile")
	mustEnsure(t, r, fn)
	if err := r.rdb.Del(ctx, r.k.calls(fn)).Err(); err != nil { // what an empty restarted Redis looks like
		t.Fatal(err)
	}
	if ds, err := r.ReadCalls(ctx, "s1", []FunctionKey{fn}, 1, 50*time.Millisecond); err != nil || len(ds) != 0 {
		t.Fatalf("ReadCalls after data loss = %v, %v", ds, err)
	}
	mustAdd(t, r, newCall(r, fn, "c", `{}`))
	if ds := mustRead(t, r, "s1", []FunctionKey{fn}, 1); len(ds) != 1 {
		t.Fatalf("read after group recreation: %d", len(ds))
	}
}
