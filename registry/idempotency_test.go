package registry

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestIdempotentResult(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("idem")

	if _, ok, err := r.IdempotentResult(ctx, fn, "order-1"); err != nil || ok {
		t.Fatalf("empty store: ok=%v err=%v, want nothing", ok, err)
	}
	want := Reply{CallID: "c1", OK: true, Items: json.RawMessage(`[{"json":{"sum":3}}]`)}
	if err := r.StoreIdempotentResult(ctx, fn, "order-1", want, time.Minute); err != nil {
		t.Fatalf("store: %v", err)
	}
	got, ok, err := r.IdempotentResult(ctx, fn, "order-1")
	if err != nil || !ok || got.CallID != "c1" || string(got.Items) != string(want.Items) {
		t.Fatalf("read back = %+v ok=%v err=%v, want %+v", got, ok, err, want)
	}
	// Another function with the same key is another result.
	if _, ok, _ := r.IdempotentResult(ctx, fnKey("other"), "order-1"); ok {
		t.Fatal("a key of another function answered")
	}
	// Failed replies are never stored: the call may be retried.
	if err := r.StoreIdempotentResult(ctx, fn, "order-2", Reply{CallID: "c2", Error: "boom"}, time.Minute); err != nil {
		t.Fatalf("store failed reply: %v", err)
	}
	if _, ok, _ := r.IdempotentResult(ctx, fn, "order-2"); ok {
		t.Fatal("a failed reply was stored")
	}
	// The result expires with its TTL.
	if err := r.StoreIdempotentResult(ctx, fn, "order-3", want, 50*time.Millisecond); err != nil {
		t.Fatalf("store: %v", err)
	}
	time.Sleep(120 * time.Millisecond)
	if _, ok, _ := r.IdempotentResult(ctx, fn, "order-3"); ok {
		t.Fatal("result outlived its TTL")
	}
	// Bad input names the problem.
	if _, _, err := r.IdempotentResult(ctx, fn, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty key: err=%v, want ErrInvalid", err)
	}
	// The key lives under the function's hash tag (cluster-safe).
	if got := r.k.idem(fn, "k"); KeySlot(got) != KeySlot(r.k.calls(fn)) {
		t.Fatalf("idem key %q is not in the function's slot", got)
	}
}
