package functions

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/n8napi"
	"github.com/n8n-fn/n8n-fn/registry"
)

// fakeList serves GET /api/v1/workflows like n8n 2.41's public API (one page, the query
// recorded) and counts the listings: the load discovery puts on n8n main.
type fakeList struct {
	mu    sync.Mutex
	wfs   []string
	lists atomic.Int64
	query string
}

func (l *fakeList) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/workflows" || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	l.lists.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.query = r.URL.RawQuery
	fmt.Fprintf(w, `{"data":[%s],"nextCursor":null}`, strings.Join(l.wfs, ","))
}

func (l *fakeList) set(wfs ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.wfs = wfs
}

func functionWorkflow(id, name string) string {
	return `{"id":"` + id + `","name":"wf ` + name + `","active":true,"nodes":[
		{"name":"W","type":"n8n-nodes-base.webhook","typeVersion":2.1,"parameters":{"httpMethod":"POST","path":"fn-` + name + `","responseMode":"lastNode"}},
		{"name":"F","type":"n8n-nodes-base.code","typeVersion":2,"parameters":{"jsCode":"/* @n8n-fn {\"op\":\"function\",\"name\":\"` + name + `\"} */"}}],
		"connections":{"W":{"main":[[{"node":"F","type":"main","index":0}]]}}}`
}

func plainWorkflow(id string) string {
	return `{"id":"` + id + `","name":"plain","active":true,"nodes":[
		{"name":"W","type":"n8n-nodes-base.webhook","typeVersion":2.1,"parameters":{"httpMethod":"POST","path":"p-` + id + `"}}],"connections":{}}`
}

func newTestDiscovery(t *testing.T, rs *redistest.Server, id, apiURL string, interval time.Duration) *discovery {
	t.Helper()
	reg, err := registry.New(rs.Client(), registry.Config{Prefix: rs.Prefix()})
	if err != nil {
		t.Fatal(err)
	}
	return newDiscovery(discoveryParams{log: testLogger(t).WithField("sidecar", id), api: n8napi.New(apiURL, "key"), reg: reg,
		owner: id, catalog: newCatalog(), changed: func() {}, interval: interval, shared: true})
}

// TestSharedDiscoveryListsOncePerInterval: of two sidecars, one lists n8n's workflows per
// interval (the lease holder), the other serves the same functions from its snapshot, which
// holds only the workflows that define functions; a call to an unknown function still lists.
func TestSharedDiscoveryListsOncePerInterval(t *testing.T) {
	rs := redistest.Start(t)
	api := &fakeList{}
	api.set(functionWorkflow("w1", "one"), plainWorkflow("p1"), plainWorkflow("p2"))
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	const interval = time.Second
	a := newTestDiscovery(t, rs, "a", srv.URL, interval)
	b := newTestDiscovery(t, rs, "b", srv.URL, interval)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if err := a.run(ctx, false); err != nil { // takes the lease, lists, writes the snapshot
		t.Fatal(err)
	}
	if !strings.Contains(api.query, "active=true") || !strings.Contains(api.query, "excludePinnedData=true") {
		t.Errorf("listing query %q lacks active=true or excludePinnedData=true", api.query)
	}
	if err := b.run(ctx, false); err != nil { // lease held: reads the snapshot
		t.Fatal(err)
	}
	if got := api.lists.Load(); got != 1 {
		t.Fatalf("two sidecars in one interval listed %d times, want 1", got)
	}
	one := registry.FunctionKey{Scope: registry.ScopeGlobal, Name: "one"}
	if a.catalog.get(one) == nil || b.catalog.get(one) == nil {
		t.Fatalf("function one: served by a %v, by b %v", a.catalog.get(one) != nil, b.catalog.get(one) != nil)
	}
	snap, ok, err := a.reg.LoadDiscoverySnapshot(ctx, "")
	if err != nil || !ok || strings.Contains(string(snap.Data), `"p1"`) || !strings.Contains(string(snap.Data), `"w1"`) {
		t.Fatalf("snapshot must hold the function workflow only: %v %v %s", ok, err, snap.Data)
	}
	// Unchanged snapshot: b reads its hash only and keeps its catalog.
	if err := b.run(ctx, false); err != nil || b.catalog.get(one) == nil || api.lists.Load() != 1 {
		t.Fatalf("second snapshot round: %v, lists %d", err, api.lists.Load())
	}

	// A newly published function: a call on b names it; b lists at once (no waiting for a).
	api.set(functionWorkflow("w1", "one"), functionWorkflow("w2", "two"), plainWorkflow("p1"), plainWorkflow("p2"))
	if err := b.refreshNow(ctx); err != nil {
		t.Fatal(err)
	}
	two := registry.FunctionKey{Scope: registry.ScopeGlobal, Name: "two"}
	if b.catalog.get(two) == nil || api.lists.Load() != 2 {
		t.Fatalf("on-demand round: two served %v, lists %d (want 2)", b.catalog.get(two) != nil, api.lists.Load())
	}
	// a is still inside the lease b did not take: it reads b's newer snapshot.
	if err := a.run(ctx, false); err != nil || a.catalog.get(two) == nil {
		t.Fatalf("a after b's listing: %v, two served %v", err, a.catalog.get(two) != nil)
	}

	// The lease runs out: the next periodic round of either lists again.
	time.Sleep(interval)
	if err := a.run(ctx, false); err != nil || api.lists.Load() != 3 {
		t.Fatalf("after the lease: %v, lists %d (want 3)", err, api.lists.Load())
	}
}

// TestSharedDiscoveryListsItselfWithoutAFreshSnapshot: a follower whose lease holder stopped
// writing snapshots (died, cannot reach n8n) lists n8n itself once the snapshot is stale.
func TestSharedDiscoveryListsItselfWithoutAFreshSnapshot(t *testing.T) {
	rs := redistest.Start(t)
	api := &fakeList{}
	api.set(functionWorkflow("w1", "one"))
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	b := newTestDiscovery(t, rs, "b", srv.URL, 200*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Someone else holds the lease and wrote a snapshot long ago.
	if _, err := b.reg.TakeDiscoveryLease(ctx, "dead", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.reg.PutDiscoverySnapshot(ctx, []byte(`[]`), time.Now().Add(-time.Minute), "dead"); err != nil {
		t.Fatal(err)
	}
	if err := b.run(ctx, false); err != nil {
		t.Fatal(err)
	}
	if api.lists.Load() != 1 || b.catalog.get(registry.FunctionKey{Scope: registry.ScopeGlobal, Name: "one"}) == nil {
		t.Fatalf("stale snapshot: lists %d, want 1 and function one served", api.lists.Load())
	}
}

// TestDiscoveryTagNarrowsTheListing: with N8N_FN_DISCOVERY_TAG the listing asks n8n for the
// tagged workflows only.
func TestDiscoveryTagNarrowsTheListing(t *testing.T) {
	rs := redistest.Start(t)
	api := &fakeList{}
	api.set(functionWorkflow("w1", "one"))
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	d := newTestDiscovery(t, rs, "a", srv.URL, time.Second)
	d.tag = "n8n fn"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.refreshNow(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(api.query, "tags=n8n+fn") {
		t.Errorf("listing query %q lacks tags=n8n+fn", api.query)
	}
}
