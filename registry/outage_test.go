package registry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// waitResult is the outcome of a WaitReplies run in the background.
type waitResult struct {
	got  map[string]Reply
	err  error
	took time.Duration
}

func waitAsync(r *Registry, replyKey string, ids []string, deadline time.Time) <-chan waitResult {
	res := make(chan waitResult, 1)
	go func() {
		t0 := time.Now()
		got, err := r.WaitReplies(context.Background(), replyKey, ids, deadline)
		res <- waitResult{got, err, time.Since(t0)}
	}()
	return res
}

// waitingBLPOP waits until a client is blocked in BLPOP on the server: the wait is really in the
// middle of a Redis command when the test pulls Redis away.
func waitingBLPOP(t *testing.T, r *Registry) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		info, err := r.rdb.Info(context.Background(), "clients").Result()
		if err == nil && !strings.Contains(info, "blocked_clients:0") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no client blocked in BLPOP within 5 s")
}

func expectReplies(t *testing.T, res <-chan waitResult, within time.Duration, ids ...string) waitResult {
	t.Helper()
	select {
	case w := <-res:
		if w.err != nil {
			t.Fatalf("WaitReplies after the outage = %v (got %d replies in %s), want every reply", w.err, len(w.got), w.took)
		}
		for _, id := range ids {
			if rep, ok := w.got[id]; !ok || !rep.OK {
				t.Fatalf("reply %s missing or wrong: %+v", id, w.got)
			}
		}
		return w
	case <-time.After(within):
		t.Fatalf("WaitReplies did not return within %s", within)
	}
	return waitResult{}
}

// A Redis restart (SHUTDOWN SAVE, down 2 s, started again) in the middle of a wait costs the
// caller time only: the wait goes on through the outage and returns both the reply that arrived
// before and the one published after. Before the outage retries, the wait failed at once with
// "wait replies: redis unavailable".
func TestWaitRepliesSurvivesRedisRestart(t *testing.T) {
	r, srv := newTestRegistry(t, Config{})
	if !srv.CanRestart() {
		t.Skip("Redis is shared (REDIS_URL): cannot restart it")
	}
	ctx := ctxT(t)
	key := r.ReplyKey("restart-caller")
	res := waitAsync(r, key, []string{"before", "after"}, time.Now().Add(20*time.Second))
	if err := r.PublishReply(ctx, key, Reply{CallID: "before", OK: true}); err != nil {
		t.Fatal(err)
	}
	waitingBLPOP(t, r)
	srv.Stop()
	time.Sleep(2 * time.Second)
	srv.Resume()
	if err := r.PublishReply(ctx, key, Reply{CallID: "after", OK: true}); err != nil {
		t.Fatal(err)
	}
	w := expectReplies(t, res, 10*time.Second, "before", "after")
	t.Logf("wait returned %s after it started (Redis away 2 s)", w.took.Round(time.Millisecond))
}

// kill -9 of Redis during a wait, down 2 s: the wait survives, and a reply published while Redis is
// down (PublishReply retries too) reaches it once Redis is back. A reply pushed before the kill to a
// list nobody popped yet is lost with Redis's memory (no persistence here): its wait ends at its
// deadline with ErrTimeout. That is why the stack runs Redis with appendonly yes: Redis writes
// the AOF before it answers, so a kill -9 of the process loses no acknowledged push.
func TestWaitRepliesSurvivesRedisKill(t *testing.T) {
	r, srv := newTestRegistry(t, Config{})
	if !srv.CanRestart() {
		t.Skip("Redis is shared (REDIS_URL): cannot kill it")
	}
	ctx := ctxT(t)
	key := r.ReplyKey("kill-caller")
	lostKey := r.ReplyKey("kill-unread")
	if err := r.PublishReply(ctx, lostKey, Reply{CallID: "unread", OK: true}); err != nil {
		t.Fatal(err)
	}
	res := waitAsync(r, key, []string{"during"}, time.Now().Add(20*time.Second))
	waitingBLPOP(t, r)
	srv.Kill()
	published := make(chan error, 1)
	go func() {
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		published <- r.PublishReply(pctx, key, Reply{CallID: "during", OK: true})
	}()
	time.Sleep(2 * time.Second)
	select {
	case err := <-published:
		t.Fatalf("PublishReply returned while Redis was down: %v", err)
	case w := <-res:
		t.Fatalf("WaitReplies returned while Redis was down: %v", w.err)
	default:
	}
	srv.Resume()
	if err := <-published; err != nil {
		t.Fatalf("PublishReply across the outage = %v", err)
	}
	w := expectReplies(t, res, 10*time.Second, "during")
	t.Logf("wait returned %s after it started (Redis killed, away 2 s)", w.took.Round(time.Millisecond))

	got, err := r.WaitReplies(ctx, lostKey, []string{"unread"}, time.Now().Add(300*time.Millisecond))
	if !errors.Is(err, ErrTimeout) || len(got) != 0 {
		t.Fatalf("the unread reply pushed before the kill: %v, %v; want it lost (no persistence) and ErrTimeout", got, err)
	}
}

// Complete (the return node's reply + acknowledgement) across a kill -9 and restart: it retries
// until Redis is back, the caller gets the result, and the entry is acknowledged, so the call is
// not reclaimed and run a second time.
func TestCompleteSurvivesRedisOutage(t *testing.T) {
	r, srv := newTestRegistry(t, Config{})
	if !srv.CanRestart() {
		t.Skip("Redis is shared (REDIS_URL): cannot restart it")
	}
	ctx := ctxT(t)
	fn := fnKey("blip")
	mustEnsure(t, r, fn)
	c := newCall(r, fn, "complete-caller", `{}`)
	mustAdd(t, r, c)
	ds := mustRead(t, r, "s1", []FunctionKey{fn}, 1)
	if len(ds) != 1 {
		t.Fatalf("read %d calls, want 1", len(ds))
	}
	// Saved first, so the pending entry is still there after the kill (as with a persisted Redis).
	srv.Restart()
	res := waitAsync(r, c.ReplyKey, []string{c.ID}, time.Now().Add(20*time.Second))
	waitingBLPOP(t, r)
	srv.Kill()
	done := make(chan error, 1)
	go func() { done <- r.Complete(ctx, ds[0], Reply{OK: true}) }()
	time.Sleep(3 * time.Second) // longer than go-redis's own retries (~1.3 s)
	srv.Resume()
	if err := <-done; err != nil {
		t.Fatalf("Complete across the outage = %v", err)
	}
	expectReplies(t, res, 10*time.Second, c.ID)
	pend, err := r.rdb.XPending(ctx, r.k.calls(fn), GroupName).Result()
	if err != nil || pend.Count != 0 {
		t.Fatalf("pending after Complete = %+v, %v; want the entry acknowledged", pend, err)
	}
}

// A Redis that stays away: the wait ends at the caller's deadline (not before, not long after) with
// an error that is a timeout and says Redis was unavailable; PublishReply gives up at its context's
// deadline with ErrUnavailable.
func TestWaitRepliesOutageLastsPastDeadline(t *testing.T) {
	r, srv := newTestRegistry(t, Config{})
	if !srv.CanRestart() {
		t.Skip("Redis is shared (REDIS_URL): cannot stop it")
	}
	key := r.ReplyKey("gone-caller")
	if _, err := r.ServerVersion(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	t0 := time.Now()
	got, err := r.WaitReplies(context.Background(), key, []string{"x"}, t0.Add(1500*time.Millisecond))
	took := time.Since(t0)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrUnavailable) || len(got) != 0 {
		t.Fatalf("WaitReplies with Redis gone = %v, %v; want ErrTimeout and ErrUnavailable", got, err)
	}
	if took < 1400*time.Millisecond || took > 3*time.Second {
		t.Fatalf("WaitReplies returned after %s, want at its deadline (1.5 s)", took)
	}
	if !strings.Contains(err.Error(), "redis unavailable for the last") {
		t.Fatalf("error does not say Redis was away: %v", err)
	}
	// go-redis itself spends ~1.3 s on one command against a refused port (5 dials 100 ms apart, 3
	// command retries): 4 s gives our retries room, and the last attempt ends with the context.
	pctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	err = r.PublishReply(pctx, key, Reply{CallID: "x", OK: true})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "gave up after") {
		t.Fatalf("PublishReply with Redis gone = %v, want ErrUnavailable after retries", err)
	}
	// Errors that are not outages are not retried: an empty reply key fails at once.
	if _, err := r.WaitReplies(context.Background(), "", []string{"x"}, time.Now().Add(time.Minute)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty reply key = %v, want ErrInvalid", err)
	}
	srv.Resume()
}

// A transaction that a loading Redis discarded (MULTI accepted, each queued command refused with
// LOADING, EXEC answering EXECABORT) is an outage, retried like one; one discarded for a bad
// command is not.
func TestTxOutageSeesLoadingBehindExecAbort(t *testing.T) {
	abort := errors.New("EXECABORT Transaction discarded because of previous errors.")
	loading := redis.NewStatusCmd(context.Background(), "rpush", "k", "v")
	loading.SetErr(errors.New("LOADING Redis is loading the dataset in memory"))
	wrongType := redis.NewStatusCmd(context.Background(), "rpush", "k", "v")
	wrongType.SetErr(errors.New("WRONGTYPE Operation against a key holding the wrong kind of value"))
	ok := redis.NewStatusCmd(context.Background(), "pexpire", "k", "1")

	err := txOutage([]redis.Cmder{loading, ok}, abort)
	if !isOutage(err) || !strings.Contains(err.Error(), "LOADING") {
		t.Fatalf("EXECABORT after LOADING = %v, want an outage naming LOADING", err)
	}
	if err := txOutage([]redis.Cmder{wrongType, ok}, abort); isOutage(err) || err != abort {
		t.Fatalf("EXECABORT after WRONGTYPE = %v, want it unchanged and not an outage", err)
	}
	if err := txOutage([]redis.Cmder{loading}, nil); err != nil {
		t.Fatalf("no error = %v", err)
	}
	// And retryOutage waits it out.
	n := 0
	err = retryOutage(context.Background(), time.Now().Add(5*time.Second), func() error {
		if n++; n < 3 {
			return txOutage([]redis.Cmder{loading}, abort)
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("retryOutage = %v after %d attempts, want success on the third", err, n)
	}
}

// RetryOutage (for the runtime's own repeatable reads) waits out a real Redis restart, and does not
// retry an error that is not an outage.
func TestRetryOutageAcrossRestart(t *testing.T) {
	r, srv := newTestRegistry(t, Config{})
	if !srv.CanRestart() {
		t.Skip("Redis is shared (REDIS_URL): cannot restart it")
	}
	fn := fnKey("retried")
	mustEnsure(t, r, fn)
	srv.Stop()
	resumed := make(chan struct{})
	go func() {
		defer close(resumed)
		time.Sleep(2 * time.Second)
		srv.Resume()
	}()
	// Resume checks the new server for a while after it answers: the retry below can succeed
	// before Resume returns, and the test must not end (and stop the server) under it.
	defer func() { <-resumed }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	attempts := 0
	var live bool
	err := RetryOutage(ctx, time.Time{}, func() error {
		attempts++
		var err error
		live, err = r.HasLiveConsumer(ctx, fn)
		return err
	})
	if err != nil || attempts < 2 || live {
		t.Fatalf("RetryOutage = %v after %d attempts (live %v), want success after Redis came back", err, attempts, live)
	}
	attempts = 0
	err = RetryOutage(ctx, time.Time{}, func() error { attempts++; return ErrInvalid })
	if !errors.Is(err, ErrInvalid) || attempts != 1 {
		t.Fatalf("a non-outage error: %v after %d attempts, want it once", err, attempts)
	}
}
