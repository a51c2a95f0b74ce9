package registry

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Waiter leases leave one announced execution slot free: with 2 sidecars of 3 slots, 5 waiters
// get a lease and the 6th (it would hold the last slot) is refused, until one gives its lease back.
func TestWaiterLeases(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	// No sidecar announces slots: nothing is limited.
	if l, err := r.AcquireWaiter(ctx, "free", time.Minute); err != nil || !l.Taken || l.Slots != 0 {
		t.Fatalf("without announced slots: %+v, %v", l, err)
	}
	if err := r.ReleaseWaiter(ctx, "free"); err != nil {
		t.Fatal(err)
	}
	for _, sc := range []string{"w1", "w2"} {
		if err := r.ReportExecutionSlots(ctx, sc, 3); err != nil {
			t.Fatal(err)
		}
	}
	// Concurrent takers: exactly 5 leases, whatever the interleaving.
	var wg sync.WaitGroup
	taken := make([]bool, 8)
	for i := range taken {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := r.AcquireWaiter(ctx, fmt.Sprintf("c%d", i), time.Minute)
			if err != nil {
				t.Error(err)
			}
			taken[i] = l.Taken
		}()
	}
	wg.Wait()
	var holders []string
	for i, ok := range taken {
		if ok {
			holders = append(holders, fmt.Sprintf("c%d", i))
		}
	}
	if len(holders) != 5 {
		t.Fatalf("%d leases taken of 6 slots, want 5 (one left for the functions)", len(holders))
	}
	l, err := r.AcquireWaiter(ctx, "late", time.Minute)
	if err != nil || l.Taken || l.Waiters != 5 || l.Slots != 6 {
		t.Fatalf("6th waiter: %+v, %v; want refused with 5 waiters of 6 slots", l, err)
	}
	// A holder renews its own lease even when full.
	if l, err := r.AcquireWaiter(ctx, holders[0], time.Minute); err != nil || !l.Taken || l.Waiters != 5 {
		t.Fatalf("renewing a held lease: %+v, %v", l, err)
	}
	if err := r.ReleaseWaiter(ctx, holders[0]); err != nil {
		t.Fatal(err)
	}
	if l, err := r.AcquireWaiter(ctx, "late", time.Minute); err != nil || !l.Taken {
		t.Fatalf("after a release: %+v, %v", l, err)
	}
	if n, err := r.Waiters(ctx); err != nil || n != 5 {
		t.Fatalf("Waiters = %d, %v", n, err)
	}
	// A sidecar that leaves takes its slots with it: 3 slots, 5 waiters, nobody new gets one.
	if err := r.Leave(ctx, "w2", nil); err != nil {
		t.Fatal(err)
	}
	if l, err := r.AcquireWaiter(ctx, "after-leave", time.Minute); err != nil || l.Taken || l.Slots != 3 {
		t.Fatalf("after w2 left: %+v, %v", l, err)
	}
	// slots <= 0 withdraws the announcement: no limit again.
	if err := r.ReportExecutionSlots(ctx, "w1", 0); err != nil {
		t.Fatal(err)
	}
	if l, err := r.AcquireWaiter(ctx, "after-leave", time.Minute); err != nil || !l.Taken || l.Slots != 0 {
		t.Fatalf("without announcements: %+v, %v", l, err)
	}
	if _, err := r.AcquireWaiter(ctx, "", time.Minute); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty holder: %v", err)
	}
}

// Leases and announcements expire: a crashed caller's lease and a dead sidecar's slots stop counting.
func TestWaiterLeasesExpire(t *testing.T) {
	r, _ := newTestRegistry(t, Config{HeartbeatTTL: 300 * time.Millisecond})
	ctx := ctxT(t)
	if err := r.ReportExecutionSlots(ctx, "w1", 2); err != nil {
		t.Fatal(err)
	}
	if l, err := r.AcquireWaiter(ctx, "short", 100*time.Millisecond); err != nil || !l.Taken {
		t.Fatalf("%+v, %v", l, err)
	}
	if l, err := r.AcquireWaiter(ctx, "second", time.Minute); err != nil || l.Taken {
		t.Fatalf("second of 2 slots: %+v, %v", l, err)
	}
	time.Sleep(150 * time.Millisecond)
	if l, err := r.AcquireWaiter(ctx, "second", time.Minute); err != nil || !l.Taken || l.Waiters != 1 || l.Slots != 2 {
		t.Fatalf("after the first lease expired: %+v, %v", l, err)
	}
	if l, err := r.AcquireWaiter(ctx, "third", time.Minute); err != nil || l.Taken {
		t.Fatalf("third of 2 slots: %+v, %v", l, err)
	}
	// w1 stops announcing (it died): its slots stop counting, and nothing limits the waiters.
	time.Sleep(400 * time.Millisecond)
	if l, err := r.AcquireWaiter(ctx, "third", time.Minute); err != nil || !l.Taken || l.Slots != 0 {
		t.Fatalf("after w1's announcement expired: %+v, %v", l, err)
	}
}
