package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/redis/go-redis/v9"
)

var callSeq atomic.Int64

func newTestRegistry(t testing.TB, cfg Config) (*Registry, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	cfg.Prefix = srv.Prefix()
	r, err := New(srv.Client(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r, srv
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func fnKey(name string) FunctionKey { return FunctionKey{Scope: ScopeGlobal, Name: name} }

func newCall(r *Registry, fn FunctionKey, caller string, params string) Call {
	return Call{
		ID:       fmt.Sprintf("c%d", callSeq.Add(1)),
		Function: fn,
		ReplyKey: r.ReplyKey(caller),
		Params:   json.RawMessage(params),
		Deadline: time.Now().Add(time.Minute).UTC(),
		Caller:   caller,
	}
}

func mustEnsure(t testing.TB, r *Registry, fns ...FunctionKey) {
	t.Helper()
	for _, fn := range fns {
		if err := r.EnsureGroup(context.Background(), fn); err != nil {
			t.Fatalf("EnsureGroup %s: %v", fn, err)
		}
	}
}

func mustAdd(t testing.TB, r *Registry, c Call) string {
	t.Helper()
	id, err := r.AddCall(context.Background(), c)
	if err != nil {
		t.Fatalf("AddCall %s: %v", c.ID, err)
	}
	return id
}

func mustRead(t testing.TB, r *Registry, consumer string, fns []FunctionKey, count int64) []Delivery {
	t.Helper()
	d, err := r.ReadCalls(context.Background(), consumer, fns, count, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("ReadCalls: %v", err)
	}
	return d
}

func xlen(t testing.TB, r *Registry, key string) int64 {
	t.Helper()
	n, err := r.rdb.XLen(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("XLEN %s: %v", key, err)
	}
	return n
}

func pendingCount(t testing.TB, r *Registry, fn FunctionKey) int64 {
	t.Helper()
	p, err := r.rdb.XPending(context.Background(), r.k.calls(fn), GroupName).Result()
	if err != nil {
		t.Fatalf("XPENDING: %v", err)
	}
	return p.Count
}

var _ redis.UniversalClient = (*redis.Client)(nil)
