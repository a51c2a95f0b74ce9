package registry

import (
	"testing"
	"time"
)

// One sidecar leads a function's reading at a time; it renews its own lease, a second one gets it
// only after the first dropped it or let it run out, and dropping someone else's lease does nothing.
func TestBatchLeadIsHeldByOneSidecar(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := FunctionKey{Scope: ScopeGlobal, Name: "batched"}
	hold := func(who string, ttl time.Duration) bool {
		t.Helper()
		ok, err := r.HoldBatchLead(ctx, fn, who, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !hold("a", 300*time.Millisecond) {
		t.Fatal("a could not take a free lead")
	}
	if hold("b", 300*time.Millisecond) {
		t.Fatal("b took a lead a holds")
	}
	// a renews before it runs out: b still has none after the first ttl.
	time.Sleep(200 * time.Millisecond)
	if !hold("a", 300*time.Millisecond) {
		t.Fatal("a could not renew its lead")
	}
	time.Sleep(200 * time.Millisecond)
	if hold("b", 300*time.Millisecond) {
		t.Fatal("b took a renewed lead")
	}
	if err := r.DropBatchLead(ctx, fn, "b"); err != nil {
		t.Fatal(err)
	}
	if hold("b", 300*time.Millisecond) {
		t.Fatal("b's drop of a's lead freed it")
	}
	if err := r.DropBatchLead(ctx, fn, "a"); err != nil {
		t.Fatal(err)
	}
	if !hold("b", 300*time.Millisecond) {
		t.Fatal("b could not take the lead a dropped")
	}
	time.Sleep(400 * time.Millisecond)
	if !hold("a", time.Second) {
		t.Fatal("a could not take the lead b let run out")
	}
	if _, err := r.HoldBatchLead(ctx, fn, "", time.Second); err == nil {
		t.Error("empty holder accepted")
	}
	if _, err := r.HoldBatchLead(ctx, FunctionKey{}, "a", time.Second); err == nil {
		t.Error("invalid function accepted")
	}
}
