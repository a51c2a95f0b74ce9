package functions

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/registry"
)

// TestHeartbeatRewritesAfterMasterChange: when the master the client talks to changes (a Sentinel
// failover; here a Redis restarted without its data, which has a new run id and no live sets) the
// heartbeat writes the live set again within about a second, not at its next beat a minute later,
// and asks discovery to register again. Before, callers saw "no live sidecar" until the next beat.
func TestHeartbeatRewritesAfterMasterChange(t *testing.T) {
	rs := redistest.Start(t)
	if !rs.CanRestart() {
		t.Skip("SKIP: needs a redis-server of its own to restart")
	}
	reg, err := registry.New(rs.Client(), registry.Config{Prefix: rs.Prefix(), WaitReplicas: 1,
		WaitTimeout: 5 * time.Millisecond, FailoverWindow: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !reg.FollowsFailovers() {
		t.Fatal("a registry with WaitReplicas on a plain client must follow failovers")
	}
	key := registry.FunctionKey{Scope: registry.ScopeGlobal, Name: "hb"}
	var switched atomic.Int32
	h := newHeartbeat(heartbeatParams{
		log: logrus.NewEntry(logrus.New()), reg: reg, id: "sidecar-hb",
		served:   func() []registry.FunctionKey { return []registry.FunctionKey{key} },
		interval: time.Minute, watchInterval: 100 * time.Millisecond,
		switched: func() { switched.Add(1) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	h.start(ctx, &wg)
	defer func() { h.shutdown(); wg.Wait() }()
	live := func() bool {
		ok, err := reg.HasLiveConsumer(ctx, key)
		return err == nil && ok
	}
	waitFor := func(what string, d time.Duration, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > d {
				t.Fatalf("%s: not within %s", what, d)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	waitFor("first heartbeat", 5*time.Second, live)
	rs.Kill() // nothing saved: the server comes back empty, under a new run id
	rs.Resume()
	took := waitFor("live set after the master changed", 5*time.Second, live)
	t.Logf("live set back %s after the new master answered", took.Round(time.Millisecond))
	if switched.Load() == 0 {
		t.Fatal("discovery was not asked to register again")
	}
}
