package registry

import (
	"testing"
	"time"
)

func TestDiscoveryLeaseIsExclusiveUntilItExpires(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	if ok, err := r.TakeDiscoveryLease(ctx, "a", 300*time.Millisecond); err != nil || !ok {
		t.Fatalf("first take: %v %v", ok, err)
	}
	if ok, err := r.TakeDiscoveryLease(ctx, "b", 300*time.Millisecond); err != nil || ok {
		t.Fatalf("second take while held: %v %v", ok, err)
	}
	time.Sleep(400 * time.Millisecond)
	if ok, err := r.TakeDiscoveryLease(ctx, "b", 300*time.Millisecond); err != nil || !ok {
		t.Fatalf("take after expiry: %v %v", ok, err)
	}
	if _, err := r.TakeDiscoveryLease(ctx, "", time.Second); err == nil {
		t.Error("empty holder accepted")
	}
}

func TestDiscoverySnapshotRoundTripAndUnchangedSum(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	if _, ok, err := r.LoadDiscoverySnapshot(ctx, ""); err != nil || ok {
		t.Fatalf("empty: %v %v", ok, err)
	}
	at := time.Now().Truncate(time.Millisecond)
	sum, err := r.PutDiscoverySnapshot(ctx, []byte(`[{"id":"1"}]`), at, "a")
	if err != nil || sum == "" {
		t.Fatalf("put: %q %v", sum, err)
	}
	s, ok, err := r.LoadDiscoverySnapshot(ctx, "")
	if err != nil || !ok || s.Sum != sum || string(s.Data) != `[{"id":"1"}]` || !s.At.Equal(at) || s.By != "a" {
		t.Fatalf("load: %+v %v %v", s, ok, err)
	}
	// Same content, later listing: same sum, no data transferred for a reader that has it.
	sum2, err := r.PutDiscoverySnapshot(ctx, []byte(`[{"id":"1"}]`), at.Add(time.Second), "b")
	if err != nil || sum2 != sum {
		t.Fatalf("put same: %q %v", sum2, err)
	}
	s, ok, err = r.LoadDiscoverySnapshot(ctx, sum)
	if err != nil || !ok || s.Data != nil || !s.At.Equal(at.Add(time.Second)) || s.By != "b" {
		t.Fatalf("load known: %+v %v %v", s, ok, err)
	}
	// Changed content: new sum, new data.
	sum3, err := r.PutDiscoverySnapshot(ctx, []byte(`[]`), at, "a")
	if err != nil || sum3 == sum {
		t.Fatalf("put changed: %q %v", sum3, err)
	}
	s, ok, err = r.LoadDiscoverySnapshot(ctx, sum)
	if err != nil || !ok || s.Sum != sum3 || string(s.Data) != `[]` {
		t.Fatalf("load changed: %+v %v %v", s, ok, err)
	}
}
