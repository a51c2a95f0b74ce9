package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// BenchmarkCallCycle measures the full call cycle through Redis on loopback:
// caller AddCall -> dispatcher ReadCalls -> Complete (reply push + expire + XACK) -> caller
// WaitReplies. Callers each loop over their own reply key; two dispatcher goroutines read batches.
// Reported: cycles/s (b.N over wall time) and p50/p99 of the per-cycle latency seen by the caller.
func BenchmarkCallCycle(b *testing.B) {
	for _, callers := range []int{1, 16} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) { benchCycle(b, callers) })
	}
}

func benchCycle(b *testing.B, callers int) {
	srv := redistest.Start(b)
	opt, err := redis.ParseURL(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	// Every waiting caller and every dispatcher holds a connection while blocked.
	opt.PoolSize = 2*callers + 16
	client := redis.NewClient(opt)
	defer client.Close()
	r, err := New(client, Config{Prefix: srv.Prefix()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fn := fnKey("bench")
	if err := r.EnsureGroup(ctx, fn); err != nil {
		b.Fatal(err)
	}
	items := json.RawMessage(`[{"json":{"sum":3}}]`)

	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func(consumer string) {
			defer wg.Done()
			for ctx.Err() == nil {
				ds, err := r.ReadCalls(ctx, consumer, []FunctionKey{fn}, 64, 50*time.Millisecond)
				if err != nil {
					if ctx.Err() == nil {
						b.Errorf("ReadCalls: %v", err)
					}
					return
				}
				for _, d := range ds {
					if err := r.Complete(ctx, d, Reply{OK: true, Items: items}); err != nil && ctx.Err() == nil {
						b.Errorf("Complete: %v", err)
						return
					}
				}
			}
		}(fmt.Sprintf("d%d", i))
	}

	var next atomic.Int64
	lat := make([][]time.Duration, callers)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var cw sync.WaitGroup
	for c := 0; c < callers; c++ {
		cw.Add(1)
		go func(c int) {
			defer cw.Done()
			replyKey := r.ReplyKey(fmt.Sprintf("bench-caller-%d", c))
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				call := Call{ID: fmt.Sprintf("%d-%d", c, t0.UnixNano()), Function: fn, ReplyKey: replyKey,
					Params: json.RawMessage(`{"a":1,"b":2}`), Deadline: t0.Add(10 * time.Second)}
				if _, err := r.AddCall(ctx, call); err != nil {
					b.Errorf("AddCall: %v", err)
					return
				}
				got, err := r.WaitReplies(ctx, replyKey, []string{call.ID}, call.Deadline)
				if err != nil || !got[call.ID].OK {
					b.Errorf("WaitReplies: %v %v", got, err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}(c)
	}
	cw.Wait()
	el := time.Since(start)
	b.StopTimer()
	cancel()
	wg.Wait()

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		b.Fatal(errors.New("no cycle completed"))
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(len(all))/el.Seconds(), "cycles/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}
