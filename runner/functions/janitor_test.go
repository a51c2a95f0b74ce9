package functions

import (
	"context"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/registry"
)

// TestJanitorRemovesUnpublishedFunctions: a function whose registration expired, that no live
// sidecar serves, loses its queue after the grace period, and the caller still waiting is told;
// functions served here or by another live sidecar stay, and nothing is removed while discovery
// does not work.
func TestJanitorRemovesUnpublishedFunctions(t *testing.T) {
	rs := redistest.Start(t)
	rt := newRuntime(t, rs, "sidecar-a", "http://127.0.0.1:1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	short, err := registry.New(rt.rdb, registry.Config{Prefix: rs.Prefix(), RegistrationTTL: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	gone := registry.FunctionKey{Scope: registry.ScopeGlobal, Name: "gone"}
	elsewhere := registry.FunctionKey{Scope: registry.ScopeGlobal, Name: "elsewhere"}
	kept := registry.FunctionKey{Scope: registry.ScopeGlobal, Name: "kept"}
	for _, k := range []registry.FunctionKey{gone, elsewhere} {
		if err := short.RegisterFunction(ctx, registry.FunctionRecord{Key: k, WorkflowID: "wf" + k.Name, WebhookPath: k.Name}); err != nil {
			t.Fatal(err)
		}
	}
	serve(t, rt, kept, "wfKept", 0)
	reply := rt.reg.ReplyKey("caller-1")
	if _, err := short.AddCall(ctx, registry.Call{ID: "c1", Function: gone, ReplyKey: reply, Deadline: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := rt.reg.Heartbeat(ctx, "sidecar-b", []registry.FunctionKey{elsewhere}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // the short registrations expire
	exists := func(k registry.FunctionKey) bool {
		st, err := rt.reg.FunctionStatus(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		return st.StreamExists
	}

	j := rt.jan
	now := time.Now()
	j.discovered = func() bool { return false }
	j.sweep(ctx, now)
	j.sweep(ctx, now.Add(time.Hour))
	if !exists(gone) {
		t.Fatal("removed a function while discovery was not working")
	}
	j.discovered = func() bool { return true }
	j.sweep(ctx, now)
	if !exists(gone) {
		t.Fatal("removed a function at first sight, without the grace period")
	}
	j.sweep(ctx, now.Add(rt.tun.janitorGrace/2))
	if !exists(gone) {
		t.Fatal("removed a function before the grace period ended")
	}
	j.sweep(ctx, now.Add(rt.tun.janitorGrace))
	if exists(gone) {
		t.Fatal("the unpublished function's stream is still there after the grace period")
	}
	got, err := rt.reg.WaitReplies(ctx, reply, []string{"c1"}, time.Now().Add(2*time.Second))
	if err != nil || got["c1"].ErrorKind != registry.ErrorKindRemoved {
		t.Fatalf("the waiting caller was not told its function was removed: %+v, %v", got, err)
	}
	for _, k := range []registry.FunctionKey{kept, elsewhere} {
		if !exists(k) {
			t.Errorf("%s was removed although a live sidecar serves it", k)
		}
	}
	if left, err := rt.reg.Unregistered(ctx); err != nil || len(left) != 1 || left[0] != elsewhere {
		t.Errorf("Unregistered after the sweep = %v, %v (want only %s, served elsewhere)", left, err, elsewhere)
	}
}
