package registry

import (
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// payloadLen is the bytes a call takes in its stream entry (what the budget counts).
func payloadLen(t *testing.T, c Call) int64 {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(b))
}

func budgetUsed(t *testing.T, r *Registry) int64 {
	t.Helper()
	used, _, err := r.BudgetUsage(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return used
}

// TestBudget: the byte budget refuses a call that would pass it (with the figures, queueing
// nothing), and every way an entry leaves (answer, ack, cancel, dead letter) gives its bytes back;
// a replayed dead letter takes them again. Run as on standalone (one script per step) and as on
// Cluster (reserve and release beside the stream scripts).
func TestBudget(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		name := "standalone"
		if cluster {
			name = "cluster-steps"
		}
		t.Run(name, func(t *testing.T) {
			params := `{"blob":"` + strings.Repeat("x", 900) + `"}`
			r, _ := newTestRegistry(t, Config{BudgetBytes: 3000, MaxDeliveries: 1})
			if cluster {
				r.forceCluster()
			}
			ctx := ctxT(t)
			fn := fnKey("budget")
			mustEnsure(t, r, fn)

			var queued []Call
			var sum int64
			for range 3 {
				c := newCall(r, fn, "caller", params)
				if sum+payloadLen(t, c) > 3000 {
					break
				}
				mustAdd(t, r, c)
				queued = append(queued, c)
				sum += payloadLen(t, c)
			}
			if len(queued) != 2 {
				t.Fatalf("%d calls of ~1 KB fit a 3000-byte budget, want 2", len(queued))
			}
			if got := budgetUsed(t, r); got != sum {
				t.Fatalf("budget used = %d after queueing, want the payload bytes %d", got, sum)
			}
			over := newCall(r, fn, "caller", params)
			_, err := r.AddCall(ctx, over)
			var be *BudgetError
			if !errors.Is(err, ErrBudgetFull) || !errors.As(err, &be) {
				t.Fatalf("AddCall over the budget = %v, want ErrBudgetFull", err)
			}
			if be.Used != sum || be.Limit != 3000 || be.Need != payloadLen(t, over) {
				t.Fatalf("budget error figures = %+v, want used %d limit 3000 need %d", be, sum, payloadLen(t, over))
			}
			for _, want := range []string{"byte budget", "of 2.9 KiB (3000 bytes)", "nothing was queued"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
			}
			if n := xlen(t, r, r.k.calls(fn)); n != 2 {
				t.Fatalf("the refused call was queued: stream length %d", n)
			}
			if got := budgetUsed(t, r); got != sum {
				t.Fatalf("a refused call changed the budget: %d, want %d", got, sum)
			}

			// An answer gives the bytes back, once, however often Complete is repeated.
			ds := mustRead(t, r, "w", []FunctionKey{fn}, 2)
			if len(ds) != 2 {
				t.Fatalf("read %d deliveries", len(ds))
			}
			for range 2 {
				if err := r.Complete(ctx, ds[0], Reply{OK: true, Items: []byte(`[]`)}); err != nil {
					t.Fatal(err)
				}
			}
			if got, want := budgetUsed(t, r), payloadLen(t, queued[1]); got != want {
				t.Fatalf("budget after one answer (twice) = %d, want %d", got, want)
			}
			mustAdd(t, r, over) // fits now

			// Dead-lettering releases (the payload moves to the dead-letter stream), a replay
			// takes the bytes again, an ack releases.
			if err := r.DeadLetter(ctx, ds[1], "test"); err != nil {
				t.Fatal(err)
			}
			if got, want := budgetUsed(t, r), payloadLen(t, over); got != want {
				t.Fatalf("budget after a dead letter = %d, want %d", got, want)
			}
			dls, err := r.ListDeadLetters(ctx, fn, 10)
			if err != nil || len(dls) != 1 {
				t.Fatalf("dead letters = %v, %v", dls, err)
			}
			if _, err := r.ReplayDeadLetter(ctx, fn, dls[0].ID); err != nil {
				t.Fatal(err)
			}
			afterReplay := budgetUsed(t, r)
			if afterReplay <= payloadLen(t, over) {
				t.Fatalf("a replayed dead letter is not counted: %d", afterReplay)
			}
			rest := mustRead(t, r, "w", []FunctionKey{fn}, 10)
			if len(rest) != 2 {
				t.Fatalf("read %d deliveries, want the over-budget call and the replay", len(rest))
			}
			if err := r.Ack(ctx, fn, rest[0].EntryID); err != nil {
				t.Fatal(err)
			}
			// Cancelling the last one (pending) leaves nothing counted.
			if err := r.CancelCalls(ctx, fn, rest[1].EntryID); err != nil {
				t.Fatal(err)
			}
			if got := budgetUsed(t, r); got != 0 {
				t.Fatalf("budget after every call left = %d, want 0", got)
			}
			// A call bigger than the whole budget is refused on its own.
			huge := newCall(r, fn, "caller", `{"blob":"`+strings.Repeat("y", 4000)+`"}`)
			if _, err := r.AddCall(ctx, huge); !errors.Is(err, ErrBudgetFull) {
				t.Fatalf("a call bigger than the budget = %v", err)
			}
			if got := budgetUsed(t, r); got != 0 {
				t.Fatalf("a refused call left %d bytes reserved", got)
			}
		})
	}
}

// TestBudgetConcurrentCallers: callers racing for the last room never take the counter past the
// budget: exactly as many calls as fit are queued.
func TestBudgetConcurrentCallers(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		r, _ := newTestRegistry(t, Config{BudgetBytes: 10_000})
		if cluster {
			r.forceCluster()
		}
		fn := fnKey("race")
		mustEnsure(t, r, fn)
		params := `{"blob":"` + strings.Repeat("z", 1000) + `"}`
		calls := make([]Call, 40)
		for i := range calls {
			calls[i] = newCall(r, fn, "caller", params)
			calls[i].ID = "race-call-00" // the same length for every call
			calls[i].Deadline = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		per := payloadLen(t, calls[0])
		var wg sync.WaitGroup
		errs := make([]error, len(calls))
		for i := range calls {
			wg.Go(func() { _, errs[i] = r.AddCall(ctxT(t), calls[i]) })
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrBudgetFull):
				t.Fatalf("cluster=%v: AddCall = %v", cluster, err)
			}
		}
		if want := int(10_000 / per); ok != want {
			t.Fatalf("cluster=%v: %d calls of %d bytes queued in a 10000-byte budget, want %d", cluster, ok, per, want)
		}
		if got := budgetUsed(t, r); got != int64(ok)*per || got > 10_000 {
			t.Fatalf("cluster=%v: budget used %d, want %d", cluster, got, int64(ok)*per)
		}
	}
}

// TestReconcileBudget: a counter that drifted either way (a sidecar died between reserving and
// queueing, entries removed behind the registry's back) is set back to what the streams hold.
func TestReconcileBudget(t *testing.T) {
	r, _ := newTestRegistry(t, Config{})
	ctx := ctxT(t)
	a, b := fnKey("rec-a"), fnKey("rec-b")
	mustEnsure(t, r, a, b)
	var want int64
	for i := range 150 { // more than one counting batch
		fn := a
		if i%3 == 0 {
			fn = b
		}
		c := newCall(r, fn, "caller", `{"n":"`+strings.Repeat("q", i)+`"}`)
		mustAdd(t, r, c)
		want += payloadLen(t, c)
	}
	if got := budgetUsed(t, r); got != want {
		t.Fatalf("budget = %d, want %d", got, want)
	}
	for _, wrong := range []int64{want * 7, 0} {
		if err := r.rdb.Set(ctx, r.k.budget(), wrong, 0).Err(); err != nil {
			t.Fatal(err)
		}
		got, err := r.ReconcileBudget(ctx)
		if err != nil || got != want || budgetUsed(t, r) != want {
			t.Fatalf("reconcile from %d = %d, %v (counter %d), want %d", wrong, got, err, budgetUsed(t, r), want)
		}
	}
	// A function removed with its queue: its bytes leave the count at the next reconcile.
	if err := r.RemoveFunction(ctx, b); err != nil {
		t.Fatal(err)
	}
	got, err := r.ReconcileBudget(ctx)
	if err != nil || got >= want || got == 0 {
		t.Fatalf("reconcile after removing a function = %d, %v (was %d)", got, err, want)
	}
	// Answer everything: nothing is counted.
	for {
		ds, err := r.ReadCalls(ctx, "w", []FunctionKey{a}, 100, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			break
		}
		for _, d := range ds {
			if err := r.Complete(ctx, d, Reply{OK: true}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if used := budgetUsed(t, r); used != 0 {
		t.Fatalf("budget after answering every call = %d", used)
	}
	if got, err := r.ReconcileBudget(ctx); err != nil || got != 0 {
		t.Fatalf("reconcile of empty streams = %d, %v", got, err)
	}
}

// encodeReply/decodeReply (the reply codec that writes and reads items without extra copies) agree
// with encoding/json.
func TestReplyCodec(t *testing.T) {
	for _, rep := range []Reply{
		{CallID: "c1", OK: true, Items: json.RawMessage(`[{"a":1,"s":"x y"},{"b":[1,2]}]`), Binaries: []json.RawMessage{json.RawMessage(`null`), json.RawMessage(`{"data":{"id":"k"}}`)}},
		{CallID: "c2", ErrorKind: ErrorKindFailed, Error: "boom \"quoted\" <b>"},
		{CallID: "c3", OK: true},
		{CallID: "c4", OK: true, ItemList: []json.RawMessage{json.RawMessage(`{"a":1,"s":"x y"}`), json.RawMessage(`{"b":[1,2]}`)},
			Binaries: []json.RawMessage{json.RawMessage(`null`), json.RawMessage(`{"data":{"id":"k"}}`)}},
		{CallID: "c5", OK: true, ItemList: []json.RawMessage{}},
	} {
		if rep.ItemList != nil {
			if got, want := rep.ItemsSize(), len(mustJoin(rep.ItemList)); got != want {
				t.Fatalf("ItemsSize of %s = %d, want %d", mustJoin(rep.ItemList), got, want)
			}
		}
		b, err := encodeReply(rep)
		if err != nil {
			t.Fatal(err)
		}
		if enc, items, err := EncodeReply(rep); err != nil || string(enc) != string(b) || len(items) != len(rep.ItemList) {
			t.Fatalf("EncodeReply of %s: %s, %d items, %v", rep.CallID, enc, len(items), err)
		} else {
			for k, it := range items {
				if string(it) != string(rep.ItemList[k]) || cap(it) != len(it) {
					t.Fatalf("EncodeReply item %d is %s (cap %d), want %s", k, it, cap(it), rep.ItemList[k])
				}
			}
			if again, _ := encodeReply(Reply{CallID: "ignored", Encoded: enc}); string(again) != string(enc) {
				t.Fatalf("a reply with Encoded set is not pushed as it is")
			}
		}
		var std, got Reply
		if err := json.Unmarshal(b, &std); err != nil {
			t.Fatalf("encodeReply wrote invalid JSON %s: %v", b, err)
		}
		if err := decodeReply(string(b), &got); err != nil {
			t.Fatal(err)
		}
		if rep.ItemList != nil { // what it stands for: Items, joined
			rep.Items, rep.ItemList = mustJoin(rep.ItemList), nil
		}
		want, _ := json.Marshal(rep)
		g1, _ := json.Marshal(std)
		g2, _ := json.Marshal(got)
		if string(g1) != string(want) || string(g2) != string(want) {
			t.Fatalf("round trip of %s:\n encoding/json %s\n decodeReply   %s", want, g1, g2)
		}
	}
	if _, err := encodeReply(Reply{CallID: "bad", Items: json.RawMessage(`[1,`)}); err == nil {
		t.Fatal("encodeReply took invalid items")
	}
	for _, bad := range [][]json.RawMessage{{json.RawMessage(`{"a":1}`), json.RawMessage(`[1,`)}, {nil}} {
		if _, err := encodeReply(Reply{CallID: "bad", ItemList: bad}); err == nil {
			t.Fatalf("encodeReply took the item list %q", bad)
		}
	}
	if err := decodeReply(`{"callId":`, &Reply{}); err == nil {
		t.Fatal("decodeReply took invalid JSON")
	}
}

func mustJoin(list []json.RawMessage) json.RawMessage {
	b, err := json.Marshal(list)
	if err != nil {
		panic(err)
	}
	return b
}

// A big result is copied once on its way into the stored reply: from the items where they are
// (slices of n8n's data response) straight into the reply, not joined into an array first.
func TestEncodeReplyCopiesItemsOnce(t *testing.T) {
	const n = 32 << 20
	big := json.RawMessage(`{"s":"` + strings.Repeat("r", n) + `"}`)
	list := []json.RawMessage{big, json.RawMessage(`{"i":2}`)}
	var b []byte
	allocs := testing.AllocsPerRun(3, func() {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var err error
		if b, err = encodeReply(Reply{CallID: "c1", OK: true, ItemList: list}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > n+n/50 {
			t.Errorf("encoding a reply of %d MiB allocated %.1f MiB, want about its size", n>>20, float64(alloc)/(1<<20))
		}
	})
	if allocs > 10 {
		t.Errorf("encodeReply made %.0f allocations", allocs)
	}
	var got Reply
	if err := decodeReply(string(b), &got); err != nil || len(got.Items) != len(big)+len(`[,{"i":2}]`) {
		t.Fatalf("decoded %d bytes of items, %v", len(got.Items), err)
	}
}
