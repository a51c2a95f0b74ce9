package registry

import (
	"testing"
	"time"
)

// TestN8NLost: a sidecar's report of a lost n8n process is read back with its liveness.
func TestN8NLost(t *testing.T) {
	r, _ := newTestRegistry(t, Config{HeartbeatTTL: 2 * time.Second})
	ctx := ctxT(t)
	fn := fnKey("watched")
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
