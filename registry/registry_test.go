package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestConfigDefaultsAndValidate(t *testing.T) {
	c := Config{}
	c.setDefaults()
	if c.Prefix != "n8nfn:" || c.MaxDeliveries != 5 || c.ReplyTTL != DefaultReplyTTL {
		t.Fatalf("defaults not applied: %+v", c)
	}
	for name, bad := range map[string]Config{
		"brace prefix":  {Prefix: "a{b"},
		"negative len":  {MaxLen: -1},
		"negative dlq":  {DeadLetterMaxLen: -3},
		"negative idle": {ConsumerMaxIdle: -time.Second},
	} {
		if _, err := New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: New = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := New(nil, Config{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil client: %v", err)
	}
}

func TestFunctionKey(t *testing.T) {
	k, err := ParseFunctionKey("wf123/a/b c")
	if err != nil || k.Scope != "wf123" || k.Name != "a/b c" || k.String() != "wf123/a/b c" {
		t.Fatalf("ParseFunctionKey = %+v, %v", k, err)
	}
	for _, bad := range []string{"noslash", "/name", "global/", "a b/x", "g{x}/y", "global/a\nb"} {
		if _, err := ParseFunctionKey(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseFunctionKey(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

// TestCallCycle covers EnsureGroup, AddCall, one ReadCalls over several streams, LoadCall,
// Complete (publish + ack), PublishReply and WaitReplies with duplicate and unknown replies.
func TestCallCycle(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	add, mul := fnKey("add"), FunctionKey{Scope: "wfA", Name: "mul"}
	mustEnsure(t, r, add, mul)
	mustEnsure(t, r, add) // idempotent (BUSYGROUP)

	c1 := newCall(r, add, "caller1", `{"a":1,"b":2}`)
	c2 := newCall(r, mul, "caller1", `{"a":3,"b":4}`)
	c1.Stack = []string{"wfX/outer"}
	id1, id2 := mustAdd(t, r, c1), mustAdd(t, r, c2)

	ds := mustRead(t, r, "sidecar-1", []FunctionKey{add, mul}, 10)
	if len(ds) != 2 {
		t.Fatalf("ReadCalls got %d deliveries, want 2", len(ds))
	}
	byID := map[string]Delivery{} // entry ids are per stream: two streams can hand out the same id
	for _, d := range ds {
		byID[d.Function.Name+" "+d.EntryID] = d
		if d.Deliveries != 1 {
			t.Errorf("delivery %s count %d, want 1", d.EntryID, d.Deliveries)
		}
	}
	if d := byID["add "+id1]; d.Function != add || d.Call.ID != c1.ID || string(d.Call.Params) != `{"a":1,"b":2}` || d.Call.Stack[0] != "wfX/outer" {
		t.Fatalf("delivery 1 = %+v", d)
	}
	if d := byID["mul "+id2]; d.Function != mul || d.Call.ID != c2.ID {
		t.Fatalf("delivery 2 = %+v", d)
	}
	loaded, err := r.LoadCall(ctx, add, id1)
	if err != nil || loaded.ID != c1.ID || !loaded.Deadline.Equal(c1.Deadline) {
		t.Fatalf("LoadCall = %+v, %v", loaded, err)
	}
	if _, err := r.LoadCall(ctx, add, "1-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LoadCall missing = %v, want ErrNotFound", err)
	}
	if _, err := r.LoadCall(ctx, add, "bogus"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("LoadCall bogus id = %v, want ErrInvalid", err)
	}

	// A stale reply for a call nobody waits for, then the real ones, one of them twice.
	if err := r.PublishReply(ctx, c1.ReplyKey, Reply{CallID: "old-call", OK: true}); err != nil {
		t.Fatal(err)
	}
	if err := r.Complete(ctx, byID["add "+id1], Reply{OK: true, Items: json.RawMessage(`[{"json":{"sum":3}}]`)}); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	// An answered call leaves the stream at once; a late duplicate execution must not run it again.
	if _, err := r.LoadCall(ctx, add, id1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LoadCall after Complete = %v, want ErrNotFound (already answered)", err)
	}
	if err := r.PublishReply(ctx, c1.ReplyKey, Reply{CallID: c1.ID, OK: false, Error: "duplicate must be ignored"}); err != nil {
		t.Fatal(err)
	}
	if err := r.PublishReply(ctx, c2.ReplyKey, Reply{CallID: c2.ID, OK: false, Error: "boom", ErrorKind: "function_error"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Ack(ctx, mul, id2); err != nil {
		t.Fatal(err)
	}
	ttl, err := r.rdb.PTTL(ctx, c1.ReplyKey).Result()
	if err != nil || ttl <= 0 || ttl > DefaultReplyTTL {
		t.Fatalf("reply list TTL = %v, %v; want (0, %v]", ttl, err, DefaultReplyTTL)
	}
	got, err := r.WaitReplies(ctx, c1.ReplyKey, []string{c1.ID, c2.ID}, time.Now().Add(2*time.Second))
	if err != nil {
		t.Fatalf("WaitReplies: %v", err)
	}
	if rep := got[c1.ID]; !rep.OK || string(rep.Items) != `[{"json":{"sum":3}}]` {
		t.Fatalf("reply 1 = %+v", rep)
	}
	if rep := got[c2.ID]; rep.OK || rep.Error != "boom" || rep.ErrorKind != "function_error" {
		t.Fatalf("reply 2 = %+v", rep)
	}
	if len(got) != 2 {
		t.Fatalf("got %d replies, want 2 (stale one must be ignored)", len(got))
	}
	if p := pendingCount(t, r, add) + pendingCount(t, r, mul); p != 0 {
		t.Fatalf("pending after ack = %d", p)
	}
	// Nothing new: a non-blocking read returns nothing.
	if ds, err := r.ReadCalls(ctx, "sidecar-1", []FunctionKey{add, mul}, 10, 0); err != nil || len(ds) != 0 {
		t.Fatalf("empty ReadCalls = %v, %v", ds, err)
	}
}

func TestReadCallsBlocksUntilACallArrives(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("slow")
	mustEnsure(t, r, fn)
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, _ = r.AddCall(context.Background(), newCall(r, fn, "c", `{}`))
	}()
	start := time.Now()
	ds, err := r.ReadCalls(ctx, "s1", []FunctionKey{fn}, 1, 3*time.Second)
	if err != nil || len(ds) != 1 {
		t.Fatalf("ReadCalls = %v, %v", ds, err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("blocking read returned after %v, not when the call arrived", el)
	}
}

func TestAddCallErrors(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("never-served")
	_, err := r.AddCall(ctx, newCall(r, fn, "c", `{}`))
	if !errors.Is(err, ErrNoStream) {
		t.Fatalf("AddCall to unserved function = %v, want ErrNoStream", err)
	}
	var re *Error
	if !errors.As(err, &re) || re.Op != "add call" || re.Function != "global/never-served" ||
		!strings.Contains(err.Error(), "add call global/never-served") {
		t.Fatalf("error does not name operation and function: %v", err)
	}
	if _, err := r.AddCall(ctx, Call{Function: fn}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("AddCall without id = %v, want ErrInvalid", err)
	}
	if _, err := r.AddCall(ctx, Call{ID: "x", ReplyKey: "k", Function: FunctionKey{Name: "x"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("AddCall without scope = %v, want ErrInvalid", err)
	}
}

// TestAddCallBacklogFull: the length cap drops finished entries, never queued ones; when unfinished
// calls alone fill the stream the caller is refused.
func TestAddCallBacklogFull(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(map[bool]string{false: "modern", true: "redis<6.2"}[legacy], func(t *testing.T) {
			r, _ := newTestRegistry(t, Config{MaxLen: 10})
			if legacy {
				r.forceVersion([3]int{6, 0, 9})
			}
			ctx := ctxT(t)
			fn := fnKey("busy")
			mustEnsure(t, r, fn)
			for i := 0; i < 10; i++ {
				mustAdd(t, r, newCall(r, fn, "c", `{}`))
			}
			_, err := r.AddCall(ctx, newCall(r, fn, "c", `{}`))
			if !errors.Is(err, ErrBacklogFull) {
				t.Fatalf("11th call = %v, want ErrBacklogFull", err)
			}
			// Deliver 10, finish 4: adding must now succeed by removing finished entries only.
			ds := mustRead(t, r, "s1", []FunctionKey{fn}, 10)
			for _, d := range ds[:4] {
				if err := r.Ack(ctx, fn, d.EntryID); err != nil {
					t.Fatal(err)
				}
			}
			mustAdd(t, r, newCall(r, fn, "c", `{}`))
			for _, d := range ds[4:] {
				if _, err := r.LoadCall(ctx, fn, d.EntryID); err != nil {
					t.Fatalf("unfinished call %s lost: %v", d.EntryID, err)
				}
			}
			if n := xlen(t, r, r.k.calls(fn)); n > 10 {
				t.Fatalf("stream length %d > MaxLen", n)
			}
		})
	}
}

func TestWaitRepliesDeadline(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	key := r.ReplyKey("waiter")
	if err := r.PublishReply(ctx, key, Reply{CallID: "a", OK: true}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := r.WaitReplies(ctx, key, []string{"a", "b"}, time.Now().Add(300*time.Millisecond))
	el := time.Since(start)
	if !errors.Is(err, ErrTimeout) || len(got) != 1 || !got["a"].OK {
		t.Fatalf("WaitReplies = %v, %v; want reply a and ErrTimeout", got, err)
	}
	if el < 250*time.Millisecond || el > 1500*time.Millisecond {
		t.Fatalf("deadline of 300ms honoured after %v", el)
	}
	// Late arrival for an abandoned call, then a new wait: the late one is ignored.
	if err := r.PublishReply(ctx, key, Reply{CallID: "b", OK: true}); err != nil {
		t.Fatal(err)
	}
	if err := r.PublishReply(ctx, key, Reply{CallID: "c", OK: true}); err != nil {
		t.Fatal(err)
	}
	got, err = r.WaitReplies(ctx, key, []string{"c"}, time.Now().Add(time.Second))
	if err != nil || len(got) != 1 || !got["c"].OK {
		t.Fatalf("WaitReplies c = %v, %v", got, err)
	}
	// A cancelled context ends the wait.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.WaitReplies(cctx, key, []string{"z"}, time.Now().Add(time.Minute)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait = %v", err)
	}
	if err := r.PublishReply(ctx, "", Reply{CallID: "x"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("PublishReply without key = %v", err)
	}
}

func TestRegisterLookupList(t *testing.T) {
	r, _ := newTestRegistry(t, Config{RegistrationTTL: 300 * time.Millisecond})
	ctx := ctxT(t)
	add := fnKey("add")
	loc := FunctionKey{Scope: "wf9", Name: "local thing"}
	rec := FunctionRecord{Key: add, WorkflowID: "wf1", WebhookPath: "fn/add", WebhookMethod: "POST",
		Params: json.RawMessage(`[{"name":"a","type":"number"}]`), TimeoutMs: 5000, Owner: "sidecar-1"}
	if err := r.RegisterFunction(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := r.RegisterFunction(ctx, FunctionRecord{Key: loc, WorkflowID: "wf9"}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := r.LookupFunction(ctx, add)
	if err != nil || !ok || got.WebhookPath != "fn/add" || got.TimeoutMs != 5000 || got.UpdatedAt.IsZero() || string(got.Params) != string(rec.Params) {
		t.Fatalf("LookupFunction = %+v, %v, %v", got, ok, err)
	}
	// Registration creates the stream, so calls can be queued at once.
	mustAdd(t, r, newCall(r, add, "c", `{}`))
	list, err := r.ListFunctions(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListFunctions = %v, %v", list, err)
	}
	// Refresh only one; the other expires.
	time.Sleep(200 * time.Millisecond)
	if err := r.RegisterFunction(ctx, FunctionRecord{Key: loc, WorkflowID: "wf9"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, ok, err := r.LookupFunction(ctx, add); ok || err != nil {
		t.Fatalf("expired registration still found (ok=%v, err=%v)", ok, err)
	}
	if _, ok, _ := r.LookupFunction(ctx, loc); !ok {
		t.Fatal("refreshed registration expired")
	}
	list, err = r.ListFunctions(ctx)
	if err != nil || len(list) != 1 || list[0].Key != loc {
		t.Fatalf("ListFunctions after expiry = %v, %v", list, err)
	}
	// The expired function's stream survives (its pending calls are not lost) and Status still shows it.
	st, err := r.Status(ctx)
	if err != nil || len(st) != 2 {
		t.Fatalf("Status = %v, %v", st, err)
	}
}

func TestHeartbeatAndLiveConsumer(t *testing.T) {
	r, _ := newTestRegistry(t, Config{HeartbeatTTL: 400 * time.Millisecond})
	ctx := ctxT(t)
	add, mul := fnKey("add"), fnKey("mul")
	if live, err := r.HasLiveConsumer(ctx, add); err != nil || live {
		t.Fatalf("HasLiveConsumer before heartbeat = %v, %v", live, err)
	}
	if err := r.Heartbeat(ctx, "sc-1", []FunctionKey{add, mul}); err != nil {
		t.Fatal(err)
	}
	if err := r.Heartbeat(ctx, "sc-2", []FunctionKey{add}); err != nil {
		t.Fatal(err)
	}
	if live, err := r.HasLiveConsumer(ctx, mul); err != nil || !live {
		t.Fatalf("HasLiveConsumer = %v, %v", live, err)
	}
	ids, err := r.LiveSidecars(ctx, add)
	if err != nil || len(ids) != 2 {
		t.Fatalf("LiveSidecars = %v, %v", ids, err)
	}
	sc, err := r.ListSidecars(ctx)
	if err != nil || len(sc) != 2 {
		t.Fatalf("ListSidecars = %v, %v", sc, err)
	}
	if err := r.Leave(ctx, "sc-2", []FunctionKey{add}); err != nil {
		t.Fatal(err)
	}
	if ids, _ := r.LiveSidecars(ctx, add); len(ids) != 1 || ids[0] != "sc-1" {
		t.Fatalf("after Leave LiveSidecars = %v", ids)
	}
	time.Sleep(500 * time.Millisecond)
	if live, err := r.HasLiveConsumer(ctx, add); err != nil || live {
		t.Fatalf("HasLiveConsumer after TTL = %v, %v", live, err)
	}
	if sc, _ := r.ListSidecars(ctx); len(sc) != 0 {
		t.Fatalf("expired sidecars listed: %v", sc)
	}
	if err := r.Heartbeat(ctx, "", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Heartbeat without id = %v", err)
	}
}

func TestRemoveFunctionTellsCallers(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("gone")
	if err := r.RegisterFunction(ctx, FunctionRecord{Key: fn, WorkflowID: "wf"}); err != nil {
		t.Fatal(err)
	}
	pendingCall, queuedCall, doneCall := newCall(r, fn, "c", `{}`), newCall(r, fn, "c", `{}`), newCall(r, fn, "c", `{}`)
	mustAdd(t, r, doneCall)
	mustAdd(t, r, pendingCall)
	ds := mustRead(t, r, "s1", []FunctionKey{fn}, 2)
	if err := r.Ack(ctx, fn, ds[0].EntryID); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, r, queuedCall)
	if err := r.RemoveFunction(ctx, fn); err != nil {
		t.Fatal(err)
	}
	got, err := r.WaitReplies(ctx, r.ReplyKey("c"), []string{pendingCall.ID, queuedCall.ID}, time.Now().Add(time.Second))
	if err != nil || got[pendingCall.ID].ErrorKind != ErrorKindRemoved || got[queuedCall.ID].ErrorKind != ErrorKindRemoved {
		t.Fatalf("callers not told of removal: %v, %v", got, err)
	}
	n, err := r.rdb.Exists(ctx, r.k.functionKeys(fn)...).Result()
	if err != nil || n != 0 {
		t.Fatalf("%d keys of the removed function remain (%v)", n, err)
	}
	if st, _ := r.Status(ctx); len(st) != 0 {
		t.Fatalf("removed function still in status: %+v", st)
	}
	if _, err := r.AddCall(ctx, newCall(r, fn, "c", `{}`)); !errors.Is(err, ErrNoStream) {
		t.Fatalf("AddCall after removal = %v", err)
	}
}

func TestStatus(t *testing.T) {
	r, _ := newTestRegistry(t, Config{MaxDeliveries: 1})
	ctx := ctxT(t)
	fn := fnKey("st")
	if err := r.RegisterFunction(ctx, FunctionRecord{Key: fn, WorkflowID: "wf"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Heartbeat(ctx, "sc-1", []FunctionKey{fn}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		mustAdd(t, r, newCall(r, fn, "c", `{}`))
	}
	ds := mustRead(t, r, "consumer-a", []FunctionKey{fn}, 2)
	time.Sleep(60 * time.Millisecond)
	// Dead-letter one (delivered twice > MaxDeliveries 1).
	if rc, err := r.Reclaim(ctx, fn, "consumer-b", 20*time.Millisecond, 1); err != nil || len(rc) != 0 {
		t.Fatalf("Reclaim = %v, %v", rc, err)
	}
	st, err := r.Status(ctx)
	if err != nil || len(st) != 1 {
		t.Fatalf("Status = %v, %v", st, err)
	}
	s := st[0]
	// Length 2: the dead-lettered entry left the calls stream (its copy is the dead letter).
	if !s.Registered || !s.StreamExists || s.Length != 2 || s.Pending != 1 || s.DeadLetters != 1 || s.Lag != 1 {
		t.Fatalf("status = %+v", s)
	}
	if s.OldestPendingID != ds[1].EntryID || s.OldestPendingAge < 50*time.Millisecond {
		t.Fatalf("oldest pending = %s age %v, want %s and >= 50ms", s.OldestPendingID, s.OldestPendingAge, ds[1].EntryID)
	}
	if len(s.Consumers) != 2 || len(s.LiveSidecars) != 1 {
		t.Fatalf("consumers %+v live %v", s.Consumers, s.LiveSidecars)
	}
	for _, c := range s.Consumers {
		if c.Name == "consumer-a" && (c.Pending != 1 || c.Idle < 50*time.Millisecond) {
			t.Fatalf("consumer-a = %+v", c)
		}
	}
}

func TestNewClientURLs(t *testing.T) {
	for url, want := range map[string]string{
		"redis://127.0.0.1:6379/2":                              "*redis.Client",
		"rediss://u:p@127.0.0.1:6380/0":                         "*redis.Client",
		"redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001":    "*redis.ClusterClient",
		"redis+sentinel://127.0.0.1:26379?master_name=mymaster": "*redis.Client",
	} {
		c, err := NewClient(url, 8)
		if err != nil {
			t.Errorf("NewClient(%q): %v", url, err)
			continue
		}
		if got := fmt.Sprintf("%T", c); got != want {
			t.Errorf("NewClient(%q) = %s, want %s", url, got, want)
		}
		_ = c.Close()
	}
	for _, bad := range []string{"127.0.0.1:6379", "http://x", "redis+mesh://x", "redis+sentinel://127.0.0.1:26379"} {
		if _, err := NewClient(bad, 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewClient(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestReplyChunkFollowsReadTimeout(t *testing.T) {
	for rt, want := range map[time.Duration]time.Duration{0: time.Second, -1: time.Second, 3 * time.Second: time.Second, 500 * time.Millisecond: 250 * time.Millisecond, time.Millisecond: 10 * time.Millisecond} {
		if got := replyChunkFor(rt); got != want {
			t.Errorf("replyChunkFor(%v) = %v, want %v", rt, got, want)
		}
	}
	r, err := New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadTimeout: 400 * time.Millisecond}), Config{})
	if err != nil || r.replyChunk != 200*time.Millisecond {
		t.Fatalf("replyChunk = %v, %v", r.replyChunk, err)
	}
}

// TestCancelCalls: a withdrawn call is neither delivered (not read yet) nor loadable (read, its
// execution about to start), and leaves nothing pending.
func TestCancelCalls(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("slow")
	mustEnsure(t, r, fn)
	read := mustAdd(t, r, newCall(r, fn, "caller", `{}`))
	if ds := mustRead(t, r, "sidecar-1", []FunctionKey{fn}, 1); len(ds) != 1 || ds[0].EntryID != read {
		t.Fatalf("read %v", ds)
	}
	queued := mustAdd(t, r, newCall(r, fn, "caller", `{}`))
	kept := mustAdd(t, r, newCall(r, fn, "caller", `{}`))
	if err := r.CancelCalls(ctx, fn, read, queued); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadCall(ctx, fn, read); !errors.Is(err, ErrNotFound) {
		t.Errorf("LoadCall of a withdrawn, already read call = %v, want ErrNotFound", err)
	}
	ds := mustRead(t, r, "sidecar-1", []FunctionKey{fn}, 10)
	if len(ds) != 1 || ds[0].EntryID != kept {
		t.Errorf("after the withdrawal the consumer gets %v, want only %s", ds, kept)
	}
	st, err := r.FunctionStatus(ctx, fn)
	if err != nil || st.Length != 1 || st.Pending != 1 {
		t.Errorf("status %+v, %v: want the kept call only (length 1, pending 1)", st, err)
	}
	if err := r.CancelCalls(ctx, fn, "nope"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad id: %v", err)
	}
}

// TestRemoveUnregistered: a registered function is never removed; once its record expired it is,
// and its waiting caller is told.
func TestRemoveUnregistered(t *testing.T) {
	r, _ := newTestRegistry(t, Config{RegistrationTTL: 300 * time.Millisecond})
	ctx := ctxT(t)
	fn := fnKey("old")
	if err := r.RegisterFunction(ctx, FunctionRecord{Key: fn, WorkflowID: "wf"}); err != nil {
		t.Fatal(err)
	}
	c := newCall(r, fn, "caller", `{}`)
	mustAdd(t, r, c)
	if removed, err := r.RemoveUnregistered(ctx, fn); err != nil || removed {
		t.Fatalf("removed a registered function: %v, %v", removed, err)
	}
	if st, _ := r.FunctionStatus(ctx, fn); !st.StreamExists || st.Length != 1 {
		t.Fatalf("the registered function lost its queue: %+v", st)
	}
	time.Sleep(400 * time.Millisecond)
	if left, err := r.Unregistered(ctx); err != nil || len(left) != 1 || left[0] != fn {
		t.Fatalf("Unregistered = %v, %v", left, err)
	}
	if removed, err := r.RemoveUnregistered(ctx, fn); err != nil || !removed {
		t.Fatalf("RemoveUnregistered after expiry: %v, %v", removed, err)
	}
	got, err := r.WaitReplies(ctx, c.ReplyKey, []string{c.ID}, time.Now().Add(2*time.Second))
	if err != nil || got[c.ID].ErrorKind != ErrorKindRemoved {
		t.Fatalf("caller not told: %+v, %v", got, err)
	}
	if left, err := r.Unregistered(ctx); err != nil || len(left) != 0 {
		t.Fatalf("still indexed after removal: %v, %v", left, err)
	}
}
