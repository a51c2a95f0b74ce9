package functions

import (
	"context"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/registry"
)

// TestShutdownStopsTheDutiesAndLeaves: Shutdown returns only when every duty's goroutine has
// ended (the runtime's WaitGroup), the heartbeat has left the registry on its way out (callers
// stop counting on this sidecar at once instead of after the heartbeat TTL) and the Redis client
// is closed, by Shutdown itself rather than by a goroutine left behind.
func TestShutdownStopsTheDutiesAndLeaves(t *testing.T) {
	rs := redistest.Start(t)
	rt := newRuntime(t, rs, "sidecar-a", "http://127.0.0.1:1", nil)
	key := registry.FunctionKey{Scope: registry.ScopeGlobal, Name: "add"}
	serve(t, rt, key, "wfAdd", 0)
	rt.Start(context.Background())
	other, err := registry.New(rs.Client(), registry.Config{Prefix: rs.Prefix()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	waitFor(t, "the heartbeat announcing the function", 5*time.Second, func() bool {
		live, err := other.HasLiveConsumer(ctx, key)
		return err == nil && live
	})

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	rt.Shutdown(sctx)
	if sctx.Err() != nil {
		t.Fatalf("Shutdown used up its %s: a duty did not stop", 5*time.Second)
	}
	done := make(chan struct{})
	go func() {
		rt.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(100 * time.Millisecond):
		t.Fatal("duties still running after Shutdown returned")
	}
	if live, err := other.HasLiveConsumer(ctx, key); err != nil || live {
		t.Fatalf("after Shutdown the sidecar still serves %s (live %v, %v): the heartbeat did not leave", key, live, err)
	}
	if err := rt.reg.Ping(ctx); err == nil {
		t.Fatal("the runtime's Redis client still works after Shutdown")
	}
	t.Logf("shutdown took %s", time.Since(start).Round(time.Millisecond))
}
