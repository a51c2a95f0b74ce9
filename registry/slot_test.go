package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestKeySlotVectors(t *testing.T) {
	if c := crc16("123456789"); c != 0x31C3 {
		t.Fatalf("crc16 check value = %#x, want 0x31c3", c)
	}
	// Values from the Redis CLUSTER KEYSLOT documentation.
	for key, want := range map[string]int{"somekey": 11058, "foo{hash_tag}": 2515, "bar{hash_tag}": 2515, "foo{}{bar}": KeySlot("foo{}{bar}")} {
		if got := KeySlot(key); got != want {
			t.Errorf("KeySlot(%q) = %d, want %d", key, got, want)
		}
	}
	if KeySlot("foo{}{bar}") == KeySlot("bar") {
		t.Error("an empty hash tag must hash the whole key")
	}
}

// TestFunctionKeysShareSlot: every key of a function hashes to one slot, whatever the name.
func TestFunctionKeysShareSlot(t *testing.T) {
	k := keys{prefix: "n8nfn:"}
	for _, fn := range []FunctionKey{fnKey("add"), {Scope: "Xy12abc", Name: "with } brace"}, {Scope: "w", Name: "{odd}"}, {Scope: "w", Name: "a/b/c"}} {
		ks := k.functionKeys(fn)
		for _, key := range ks[1:] {
			if KeySlot(key) != KeySlot(ks[0]) {
				t.Errorf("%s: %s (slot %d) and %s (slot %d) differ", fn, key, KeySlot(key), ks[0], KeySlot(ks[0]))
			}
		}
	}
	if got := k.calls(fnKey("add")); got != "n8nfn:{global/add}:calls" {
		t.Errorf("calls key = %q", got)
	}
}

// slotChecker is a go-redis hook that fails the test when one command (or one MULTI block) uses
// keys from more than one slot: exactly what Redis Cluster rejects with CROSSSLOT.
type slotChecker struct {
	mu         sync.Mutex
	violations []string
	multiKey   int // multi-key commands seen (to prove the check ran)
}

func (c *slotChecker) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *slotChecker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.check([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (c *slotChecker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		tx := len(cmds) > 0 && strings.EqualFold(cmds[0].Name(), "multi")
		if tx {
			c.check(cmds) // a MULTI block is one unit
		} else {
			for _, cmd := range cmds {
				c.check([]redis.Cmder{cmd})
			}
		}
		return next(ctx, cmds)
	}
}

func (c *slotChecker) check(cmds []redis.Cmder) {
	var ks []string
	for _, cmd := range cmds {
		ks = append(ks, cmdKeys(cmd.Args())...)
	}
	if len(ks) < 2 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.multiKey++
	for _, k := range ks[1:] {
		if KeySlot(k) != KeySlot(ks[0]) {
			c.violations = append(c.violations, fmt.Sprintf("%v", cmds))
			return
		}
	}
}

// cmdKeys returns the keys of the commands the registry sends.
func cmdKeys(args []any) []string {
	s := make([]string, len(args))
	for i, a := range args {
		s[i] = fmt.Sprint(a)
	}
	name := strings.ToLower(s[0])
	switch name {
	case "eval", "evalsha", "eval_ro", "evalsha_ro":
		var n int
		fmt.Sscan(s[2], &n)
		return s[3 : 3+n]
	case "del", "unlink", "exists", "mget", "touch":
		return s[1:]
	case "blpop", "brpop":
		return s[1 : len(s)-1]
	case "xreadgroup", "xread":
		for i, a := range s {
			if strings.EqualFold(a, "streams") {
				rest := s[i+1:]
				return rest[:len(rest)/2]
			}
		}
	case "multi", "exec", "ping", "info", "scan", "time":
		return nil
	}
	if len(s) > 1 {
		return s[1:2]
	}
	return nil
}

// TestNoCrossSlotCommands runs every operation as on Cluster (slot grouping on) and checks each
// command's keys with the hook above.
func TestNoCrossSlotCommands(t *testing.T) {
	r, _ := newTestRegistry(t, Config{MaxDeliveries: 1, MaxLen: 3})
	chk := &slotChecker{}
	r.rdb.AddHook(chk)
	r.forceCluster()
	ctx := ctxT(t)
	fns := []FunctionKey{fnKey("a"), fnKey("b"), fnKey("c"), {Scope: "wf1", Name: "d"}}
	if len(r.SlotGroups(fns)) < 2 {
		t.Fatal("test functions should span several slots")
	}
	for _, fn := range fns {
		if err := r.RegisterFunction(ctx, FunctionRecord{Key: fn, WorkflowID: "wf"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Heartbeat(ctx, "sc", fns); err != nil {
		t.Fatal(err)
	}
	if err := r.ReportExecutionSlots(ctx, "sc", 3); err != nil {
		t.Fatal(err)
	}
	goneOps(ctx, t, r, "sc")
	if l, err := r.AcquireWaiter(ctx, "w1", time.Minute); err != nil || !l.Taken {
		t.Fatalf("AcquireWaiter = %+v, %v", l, err)
	}
	if err := r.RefreshWaiter(ctx, "w1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := r.ReleaseWaiter(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	var calls []Call
	for _, fn := range fns {
		c := newCall(r, fn, "caller", `{}`)
		calls = append(calls, c)
		mustAdd(t, r, c)
		mustAdd(t, r, newCall(r, fn, "caller", `{}`))
		withdrawn := mustAdd(t, r, newCall(r, fn, "caller", `{}`))
		if err := r.CancelCalls(ctx, fn, withdrawn); err != nil {
			t.Fatal(err)
		}
		if _, err := r.LoadCall(ctx, fn, withdrawn); !errors.Is(err, ErrNotFound) {
			t.Fatalf("LoadCall of a withdrawn call: %v", err)
		}
		mustAdd(t, r, newCall(r, fn, "caller", `{}`))
	}
	ds, err := r.ReadCalls(ctx, "s1", fns, 1, 50*time.Millisecond)
	if err != nil || len(ds) != len(fns) {
		t.Fatalf("ReadCalls across slots = %d deliveries, %v", len(ds), err)
	}
	for _, d := range ds {
		if err := r.KeepAlive(ctx, d.Function, "s1", []string{d.EntryID}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.NextDispatch(ctx, d.Function, d.Call.ID, time.Minute); err != nil {
			t.Fatal(err)
		}
		fenceAndClaim(ctx, t, r, d, "exec-"+d.Call.ID)
		if _, err := r.AcquireSlot(ctx, d.Function, d.Call.ID, 1, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := r.RefreshSlots(ctx, d.Function, []string{d.Call.ID}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := r.ReleaseSlot(ctx, d.Function, d.Call.ID); err != nil {
			t.Fatal(err)
		}
		ec := ExecCall{Function: d.Function, CallID: d.Call.ID, EntryID: d.EntryID, ReplyKey: d.Call.ReplyKey, Deadline: d.Call.Deadline, Depth: 1, Dispatch: 3}
		if err := r.BindExecution(ctx, "exec-"+d.Call.ID, []ExecCall{ec}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := r.CompleteClaimed(ctx, ec, "exec-"+d.Call.ID, Reply{OK: true}); err != nil {
			t.Fatal(err)
		}
	}
	// Backlog-cap path (trim inside AddCall) and a dead letter + replay + trim per function.
	for _, fn := range fns {
		mustAdd(t, r, newCall(r, fn, "caller", `{}`))
		d := mustRead(t, r, "s2", []FunctionKey{fn}, 1)
		time.Sleep(5 * time.Millisecond)
		if _, err := r.Reclaim(ctx, fn, "s3", time.Millisecond, 10); err != nil {
			t.Fatal(err)
		}
		dls, err := r.ListDeadLetters(ctx, fn, 10)
		if err != nil || len(dls) == 0 {
			t.Fatalf("no dead letters for %s (%v, read %d)", fn, err, len(d))
		}
		if _, err := r.ReplayDeadLetter(ctx, fn, dls[0].ID); err != nil {
			t.Fatal(err)
		}
		if err := r.Trim(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.WaitReplies(ctx, r.ReplyKey("caller"), []string{calls[0].ID}, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Status(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ListFunctions(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Unregistered(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveFunction(ctx, fns[0]); err != nil {
		t.Fatal(err)
	}
	chk.mu.Lock()
	defer chk.mu.Unlock()
	if chk.multiKey == 0 {
		t.Fatal("the hook saw no multi-key command; the check did not run")
	}
	for _, v := range chk.violations {
		t.Errorf("CROSSSLOT on Cluster: %s", v)
	}
	t.Logf("%d multi-key commands checked", chk.multiKey)
}

// goneOps runs the operations of a gone n8n process (TestNoCrossSlotCommands).
func goneOps(ctx context.Context, t *testing.T, r *Registry, sidecar string) {
	t.Helper()
	if err := r.ReportN8NGone(ctx, sidecar, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.N8NState(ctx, sidecar); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LatestN8NGone(ctx); err != nil {
		t.Fatal(err)
	}
}

// fenceAndClaim fences dispatch 1 of a delivered call, dispatches it again (3) and claims that
// for execID (TestNoCrossSlotCommands).
func fenceAndClaim(ctx context.Context, t *testing.T, r *Registry, d Delivery, execID string) {
	t.Helper()
	if ok, err := r.FenceDispatch(ctx, d.Function, d.Call.ID, 1); err != nil || !ok {
		t.Fatalf("FenceDispatch = %v, %v", ok, err)
	}
	if _, err := r.NextDispatch(ctx, d.Function, d.Call.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := r.ClaimCall(ctx, d.Function, d.Call.ID, 3, execID, "s1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ClaimState(ctx, d.Function, d.Call.ID); err != nil {
		t.Fatal(err)
	}
}

// TestSlotCheckerCatchesCrossSlot proves the hook would notice a CROSSSLOT command.
func TestSlotCheckerCatchesCrossSlot(t *testing.T) {
	chk := &slotChecker{}
	chk.check([]redis.Cmder{redis.NewIntCmd(context.Background(), "del", "n8nfn:{global/a}:calls", "n8nfn:{global/b}:calls")})
	chk.check([]redis.Cmder{redis.NewIntCmd(context.Background(), "evalsha", "sha", 2, "n8nfn:{global/a}:calls", "n8nfn:{global/a}:dead")})
	if len(chk.violations) != 1 || chk.multiKey != 2 {
		t.Fatalf("violations %v, multi-key %d; want 1 and 2", chk.violations, chk.multiKey)
	}
}
