package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartSetGetRestart(t *testing.T) {
	s := Start(t)
	c := s.Client()
	ctx := context.Background()
	key := s.Prefix() + "k"
	if err := c.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if s.Version() == "" {
		t.Fatal("empty redis_version")
	}
	if !s.CanRestart() {
		t.Skip("shared server: restart not tested")
	}
	s.Stop()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := c.Ping(short).Err()
	cancel()
	if err == nil {
		t.Fatal("PING succeeded while the server was stopped")
	}
	s.Resume()
	// The same client reconnects by itself; the data survived (saved on Stop).
	got, err := c.Get(ctx, key).Result()
	if err != nil || got != "v" {
		t.Fatalf("after restart GET = %q, %v; want v", got, err)
	}
}

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start is slow; skipped with -short")
	}
	cl := StartCluster(t, 3)
	c := cl.Client()
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := c.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return m.Ping(ctx).Err()
	})
	if err != nil {
		t.Fatalf("ForEachMaster: %v", err)
	}
	info, err := c.ClusterInfo(ctx).Result()
	if err != nil || !containsLine(info, "cluster_known_nodes:3") {
		t.Fatalf("CLUSTER INFO = %q, %v; want 3 known nodes", info, err)
	}
}
