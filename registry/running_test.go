package registry

import (
	"errors"
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

// TestN8NGone: a sidecar's report that its n8n process went away is kept as the latest time
// reported (an older report changes nothing), per sidecar and as the latest of any sidecar, and
// read back with the sidecar's liveness.
func TestN8NGone(t *testing.T) {
	r, _ := newTestRegistry(t, Config{HeartbeatTTL: 2 * time.Second})
	ctx := ctxT(t)
	if st, err := r.N8NState(ctx, "worker1"); err != nil || !st.GoneAt.IsZero() || st.Alive {
		t.Fatalf("unknown sidecar: %+v, %v", st, err)
	}
	if at, err := r.LatestN8NGone(ctx); err != nil || !at.IsZero() {
		t.Fatalf("LatestN8NGone before any report = %v, %v", at, err)
	}
	t1 := time.UnixMilli(time.Now().UnixMilli())
	if err := r.ReportN8NGone(ctx, "worker1", t1); err != nil {
		t.Fatal(err)
	}
	if err := r.ReportN8NGone(ctx, "worker1", t1.Add(-time.Minute)); err != nil { // a late, older report
		t.Fatal(err)
	}
	if st, err := r.N8NState(ctx, "worker1"); err != nil || !st.GoneAt.Equal(t1) {
		t.Fatalf("worker1 after reports at t1 and t1-1m: %+v, %v (want GoneAt %v)", st, err, t1)
	}
	t2 := t1.Add(-10 * time.Second)
	if err := r.ReportN8NGone(ctx, "worker2", t2); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.N8NState(ctx, "worker2"); !st.GoneAt.Equal(t2) {
		t.Fatalf("worker2: %+v, want GoneAt %v (each sidecar has its own record)", st, t2)
	}
	if at, err := r.LatestN8NGone(ctx); err != nil || !at.Equal(t1) {
		t.Fatalf("LatestN8NGone = %v, %v; want the latest of both, %v", at, err, t1)
	}
	t3 := t1.Add(5 * time.Second)
	if err := r.ReportN8NGone(ctx, "worker2", t3); err != nil {
		t.Fatal(err)
	}
	if at, _ := r.LatestN8NGone(ctx); !at.Equal(t3) {
		t.Fatalf("LatestN8NGone = %v, want %v", at, t3)
	}
}

// TestN8NGoneOutlivesHeartbeats: the record of a gone process expires (a stale one must not
// outlive every call), and a sidecar beating again with its n8n back does not clear it: it dates
// the claims that process's executions made.
func TestN8NGoneOutlivesHeartbeats(t *testing.T) {
	r, rs := newTestRegistry(t, Config{HeartbeatTTL: 2 * time.Second})
	ctx := ctxT(t)
	t1 := time.UnixMilli(time.Now().UnixMilli())
	if err := r.ReportN8NGone(ctx, "worker1", t1); err != nil {
		t.Fatal(err)
	}
	// The records expire (a stale one must not outlive every call), and a heartbeat does not clear them.
	if ttl := rs.Client().PTTL(ctx, r.k.n8nGone("worker1")).Val(); ttl <= time.Hour {
		t.Fatalf("TTL of the gone record = %v, want about n8nGoneTTL", ttl)
	}
	if err := r.Heartbeat(ctx, "worker1", nil); err != nil {
		t.Fatal(err)
	}
	if err := r.ReportN8N(ctx, "worker1", 0); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.N8NState(ctx, "worker1"); !st.Alive || !st.GoneAt.Equal(t1) || st.LostFor != 0 {
		t.Fatalf("worker1 beating again: %+v (the gone time stays: it dates the claims it killed)", st)
	}
	if err := r.ReportN8NGone(ctx, "", t1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("report without a sidecar id: %v, want ErrInvalid", err)
	}
}
