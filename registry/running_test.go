package registry

import (
	"testing"
	"time"
)

// TestRunningAndN8NLost: the running map says which sidecar runs a call until the call is
// acknowledged; a sidecar's report of a lost n8n process is read back with its liveness.
func TestRunningAndN8NLost(t *testing.T) {
	r, _ := newTestRegistry(t, Config{HeartbeatTTL: 2 * time.Second})
	ctx := ctxT(t)
	fn := fnKey("watched")
	mustEnsure(t, r, fn)
	id := mustAdd(t, r, newCall(r, fn, "caller", `{}`))
	ds := mustRead(t, r, "dispatcher", []FunctionKey{fn}, 1)
	if on, err := r.RunningOn(ctx, fn, id); err != nil || on != "" {
		t.Fatalf("RunningOn before any mark = %q, %v", on, err)
	}
	if err := r.MarkRunning(ctx, fn, id, "worker2"); err != nil {
		t.Fatal(err)
	}
	if on, err := r.RunningOn(ctx, fn, id); err != nil || on != "worker2" {
		t.Fatalf("RunningOn = %q, %v", on, err)
	}
	if err := r.Complete(ctx, ds[0], Reply{OK: true}); err != nil {
		t.Fatal(err)
	}
	if on, _ := r.RunningOn(ctx, fn, id); on != "" {
		t.Errorf("an answered call still shows as running on %q", on)
	}
	if err := r.MarkRunning(ctx, fn, "bogus", "worker2"); err == nil {
		t.Error("MarkRunning took a bad entry id")
	}

	if lost, alive, err := r.N8NLost(ctx, "worker2"); err != nil || alive || lost != 0 {
		t.Fatalf("unknown sidecar: lost %v alive %v err %v", lost, alive, err)
	}
	if err := r.Heartbeat(ctx, "worker2", []FunctionKey{fn}); err != nil {
		t.Fatal(err)
	}
	if err := r.ReportN8N(ctx, "worker2", 25*time.Second); err != nil {
		t.Fatal(err)
	}
	if lost, alive, err := r.N8NLost(ctx, "worker2"); err != nil || !alive || lost != 25*time.Second {
		t.Fatalf("lost worker: lost %v alive %v err %v", lost, alive, err)
	}
	if err := r.ReportN8N(ctx, "worker2", 0); err != nil {
		t.Fatal(err)
	}
	if lost, alive, _ := r.N8NLost(ctx, "worker2"); !alive || lost != 0 {
		t.Fatalf("reconnected worker: lost %v alive %v", lost, alive)
	}
	if sc, err := r.ListSidecars(ctx); err != nil || len(sc) != 1 {
		t.Errorf("ListSidecars must see heartbeats only: %v, %v", sc, err)
	}
}
