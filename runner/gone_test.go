package runner

import (
	"context"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/registry"
)

// TestSidecarReportsGoneN8NProcess: when the n8n process next to the sidecar goes away (its task
// broker's port refuses connections), the sidecar records it in the registry, so dispatchers run
// that process's function executions again; while n8n is up nothing is recorded.
func TestSidecarReportsGoneN8NProcess(t *testing.T) {
	rs := redistest.Start(t)
	s, n8n, _ := testSidecar(t, func(c *Config) {
		c.RunnerMode = ModeNone
		c.Secret, c.RedisURL, c.Prefix = "0123456789abcdef0123", rs.URL(), rs.Prefix()
	})
	reg, err := registry.New(rs.Client(), registry.Config{Prefix: rs.Prefix()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	time.Sleep(300 * time.Millisecond)
	if st, err := reg.N8NState(ctx, s.cfg.ID); err != nil || !st.GoneAt.IsZero() {
		t.Fatalf("while n8n is up: %+v, %v", st, err)
	}
	killed := time.Now()
	n8n.srv.Listener.Close() // the process dies: its port refuses ...
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Millisecond)
	_ = n8n.broker.Drain(dctx) // ... and its connections drop
	dcancel()
	var st registry.N8NState
	waitFor(t, "the gone n8n process on record", 10*time.Second, func() bool {
		st, _ = reg.N8NState(ctx, s.cfg.ID)
		return !st.GoneAt.IsZero()
	})
	if st.GoneAt.Before(killed.Add(-time.Millisecond)) || time.Since(killed) > 3*time.Second {
		t.Fatalf("gone at %v, n8n killed at %v, on record after %s", st.GoneAt, killed, time.Since(killed))
	}
	if latest, err := reg.LatestN8NGone(ctx); err != nil || !latest.Equal(st.GoneAt) {
		t.Fatalf("LatestN8NGone = %v, %v; want %v", latest, err, st.GoneAt)
	}
}
