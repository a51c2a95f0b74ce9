package registry

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

var versions = []struct {
	name string
	v    [3]int // zero: the real server's
}{{"server", [3]int{}}, {"redis<6.2", [3]int{6, 0, 9}}}

// TestReclaimFromDeadConsumer: a consumer reads and dies; another takes the entry over after
// min-idle, with the delivery count going up. Both XAUTOCLAIM and the XPENDING+XCLAIM fallback.
func TestReclaimFromDeadConsumer(t *testing.T) {
	for _, tc := range versions {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newTestRegistry(t, Config{})
			if tc.v != [3]int{} {
				r.forceVersion(tc.v)
			}
			ctx := ctxT(t)
			fn := fnKey("work")
			mustEnsure(t, r, fn)
			c := newCall(r, fn, "caller", `{"n":1}`)
			id := mustAdd(t, r, c)
			if ds := mustRead(t, r, "dead-sidecar", []FunctionKey{fn}, 1); len(ds) != 1 {
				t.Fatalf("read %d", len(ds))
			}
			// Not idle long enough yet: nothing to take.
			if ds, err := r.Reclaim(ctx, fn, "live-sidecar", time.Second, 10); err != nil || len(ds) != 0 {
				t.Fatalf("early Reclaim = %v, %v", ds, err)
			}
			time.Sleep(120 * time.Millisecond)
			ds, err := r.Reclaim(ctx, fn, "live-sidecar", 100*time.Millisecond, 10)
			if err != nil || len(ds) != 1 {
				t.Fatalf("Reclaim = %v, %v", ds, err)
			}
			if d := ds[0]; d.EntryID != id || d.Call.ID != c.ID || d.Deliveries != 2 || d.Function != fn {
				t.Fatalf("reclaimed delivery = %+v", d)
			}
			// It is owned by the new consumer now: a second reclaim right away finds nothing.
			if again, err := r.Reclaim(ctx, fn, "third", 100*time.Millisecond, 10); err != nil || len(again) != 0 {
				t.Fatalf("second Reclaim = %v, %v", again, err)
			}
			if err := r.Complete(ctx, ds[0], Reply{OK: true}); err != nil {
				t.Fatal(err)
			}
			got, err := r.WaitReplies(ctx, c.ReplyKey, []string{c.ID}, time.Now().Add(time.Second))
			if err != nil || !got[c.ID].OK {
				t.Fatalf("caller's reply = %v, %v", got, err)
			}
			if p := pendingCount(t, r, fn); p != 0 {
				t.Fatalf("pending = %d", p)
			}
		})
	}
}

// TestKeepAlivePreventsReclaim: a live owner that keeps its entry fresh is never reclaimed from;
// once it stops, the entry is taken over, and the old owner's keep-alive reports the loss.
func TestKeepAlivePreventsReclaim(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("slow")
	mustEnsure(t, r, fn)
	mustAdd(t, r, newCall(r, fn, "caller", `{}`))
	d := mustRead(t, r, "owner", []FunctionKey{fn}, 1)[0]

	// Generous against a loaded machine: the keep-alive runs ten times per claim window.
	const minIdle = time.Second
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var kaErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(minIdle / 10)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if err := r.KeepAlive(context.Background(), fn, "owner", []string{d.EntryID}); err != nil {
					kaErr = err
					return
				}
			}
		}
	}()
	deadline := time.Now().Add(3 * minIdle)
	for time.Now().Before(deadline) {
		ds, err := r.Reclaim(ctx, fn, "thief", minIdle, 10)
		if err != nil || len(ds) != 0 {
			t.Fatalf("entry reclaimed from a live owner: %v, %v", ds, err)
		}
		time.Sleep(minIdle / 5)
	}
	close(stop)
	wg.Wait()
	if kaErr != nil {
		t.Fatalf("KeepAlive: %v", kaErr)
	}
	// Keep-alive does not count as a delivery.
	time.Sleep(minIdle + 30*time.Millisecond)
	ds, err := r.Reclaim(ctx, fn, "thief", minIdle, 10)
	if err != nil || len(ds) != 1 || ds[0].Deliveries != 2 {
		t.Fatalf("Reclaim after the owner stopped = %+v, %v (want one entry, 2 deliveries)", ds, err)
	}
	err = r.KeepAlive(ctx, fn, "owner", []string{d.EntryID})
	var re *Error
	if !errors.Is(err, ErrNotOwner) || !errors.As(err, &re) || len(re.IDs) != 1 || re.IDs[0] != d.EntryID {
		t.Fatalf("KeepAlive by the old owner = %v, want ErrNotOwner naming %s", err, d.EntryID)
	}
	// And it did not steal the entry back.
	if err := r.KeepAlive(ctx, fn, "thief", []string{d.EntryID}); err != nil {
		t.Fatalf("KeepAlive by the new owner: %v", err)
	}
}

// TestDeadLetterAfterMaxDeliveries: the (N+1)th delivery goes to the dead-letter stream, the caller
// is told, and the dead letter can be listed, replayed and purged.
func TestDeadLetterAfterMaxDeliveries(t *testing.T) {
	for _, tc := range versions {
		t.Run(tc.name, func(t *testing.T) {
			var told []string // Config.OnDeadLetter: what the sidecar's metrics count
			r, _ := newTestRegistry(t, Config{MaxDeliveries: 2, OnDeadLetter: func(fn FunctionKey, callID string) { told = append(told, fn.String()+" "+callID) }})
			if tc.v != [3]int{} {
				r.forceVersion(tc.v)
			}
			ctx := ctxT(t)
			fn := fnKey("flaky")
			mustEnsure(t, r, fn)
			c := newCall(r, fn, "caller", `{"x":1}`)
			id := mustAdd(t, r, c)
			mustRead(t, r, "w1", []FunctionKey{fn}, 1) // delivery 1
			time.Sleep(30 * time.Millisecond)
			ds, err := r.Reclaim(ctx, fn, "w2", 20*time.Millisecond, 10) // delivery 2: still allowed
			if err != nil || len(ds) != 1 || ds[0].Deliveries != 2 {
				t.Fatalf("Reclaim 2 = %+v, %v", ds, err)
			}
			time.Sleep(30 * time.Millisecond)
			ds, err = r.Reclaim(ctx, fn, "w3", 20*time.Millisecond, 10) // delivery 3: dead-lettered
			if err != nil || len(ds) != 0 {
				t.Fatalf("Reclaim 3 = %+v, %v (want dead-lettered)", ds, err)
			}
			if len(told) != 1 || told[0] != fn.String()+" "+c.ID {
				t.Fatalf("OnDeadLetter was told %v, want the one dead-lettered call", told)
			}
			got, err := r.WaitReplies(ctx, c.ReplyKey, []string{c.ID}, time.Now().Add(time.Second))
			if err != nil || got[c.ID].OK || got[c.ID].ErrorKind != ErrorKindDeadLetter || !strings.Contains(got[c.ID].Error, "delivered 3 times") {
				t.Fatalf("caller told = %+v, %v", got, err)
			}
			if p := pendingCount(t, r, fn); p != 0 {
				t.Fatalf("dead-lettered entry still pending (%d)", p)
			}
			dls, err := r.ListDeadLetters(ctx, fn, 10)
			if err != nil || len(dls) != 1 {
				t.Fatalf("ListDeadLetters = %v, %v", dls, err)
			}
			dl := dls[0]
			if dl.EntryID != id || dl.Deliveries != 3 || dl.Call.ID != c.ID || !strings.Contains(dl.Reason, "limit 2") || dl.At.IsZero() {
				t.Fatalf("dead letter = %+v", dl)
			}
			newID, err := r.ReplayDeadLetter(ctx, fn, dl.ID)
			if err != nil {
				t.Fatalf("ReplayDeadLetter: %v", err)
			}
			if dls, _ := r.ListDeadLetters(ctx, fn, 10); len(dls) != 0 {
				t.Fatalf("replayed dead letter still listed: %v", dls)
			}
			rd := mustRead(t, r, "w4", []FunctionKey{fn}, 1)
			if len(rd) != 1 || rd[0].EntryID != newID || rd[0].Call.ID != c.ID || rd[0].Call.Attempt != 1 || time.Until(rd[0].Call.Deadline) < time.Minute {
				t.Fatalf("replayed call = %+v", rd)
			}
			if _, err := r.ReplayDeadLetter(ctx, fn, dl.ID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("second replay = %v, want ErrNotFound", err)
			}
			// Explicit dead-lettering (e.g. a function that fails permanently), then purge.
			if err := r.DeadLetter(ctx, rd[0], "bad params: a must be a number"); err != nil {
				t.Fatal(err)
			}
			if err := r.DeadLetter(ctx, rd[0], "again"); err != nil { // no longer pending: no-op
				t.Fatal(err)
			}
			if n := xlen(t, r, r.k.dead(fn)); n != 1 {
				t.Fatalf("dead letters = %d, want 1", n)
			}
			n, err := r.PurgeDeadLetters(ctx, fn)
			if err != nil || n != 1 || xlen(t, r, r.k.dead(fn)) != 0 {
				t.Fatalf("PurgeDeadLetters = %d, %v", n, err)
			}
		})
	}
}

func TestMalformedEntryIsDeadLettered(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	fn := fnKey("m")
	mustEnsure(t, r, fn)
	if err := r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: r.k.calls(fn), Values: []any{"c", "{not json"}}).Err(); err != nil {
		t.Fatal(err)
	}
	good := newCall(r, fn, "c", `{}`)
	mustAdd(t, r, good)
	ds := mustRead(t, r, "s", []FunctionKey{fn}, 10)
	if len(ds) != 1 || ds[0].Call.ID != good.ID {
		t.Fatalf("ReadCalls = %+v, want only the good call", ds)
	}
	dls, err := r.ListDeadLetters(ctx, fn, 10)
	if err != nil || len(dls) != 1 || dls[0].Raw != "{not json" || !strings.Contains(dls[0].Reason, "malformed") {
		t.Fatalf("dead letters = %+v, %v", dls, err)
	}
	if _, err := r.ReplayDeadLetter(ctx, fn, dls[0].ID); !errors.Is(err, ErrInvalid) {
		t.Fatalf("replay of a malformed entry = %v, want ErrInvalid", err)
	}
	if n, err := r.PurgeDeadLetters(ctx, fn, dls[0].ID); err != nil || n != 1 {
		t.Fatalf("purge by id = %d, %v", n, err)
	}
}
