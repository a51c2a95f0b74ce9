package runner

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// Returning a big payload's memory. A sidecar relays and reads payloads of hundreds of MB (up to
// N8N_RUNNERS_MAX_PAYLOAD): reading one websocket message costs twice its size for a moment, and
// with Go's default GOGC the garbage of one payload may still be there when the next one arrives,
// so two 200 MB payloads a few seconds apart peaked at 670 MB instead of 430. The memory returner
// looks at the heap twice a second and, when more than returnGarbageMin of it is garbage or unused,
// collects it and gives it back to the OS at once (debug.FreeOSMemory: one GC, milliseconds at a
// sidecar's live heap), so each payload starts from the idle size. Small traffic never reaches
// the threshold and costs nothing but the two metric reads.
const (
	returnEvery      = 500 * time.Millisecond
	returnGarbageMin = 64 << 20
)

// startMemoryReturner runs the returner until ctx ends; its goroutine is counted in wg.
func startMemoryReturner(ctx context.Context, wg *sync.WaitGroup) {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"}, // live + not yet collected
		{Name: "/gc/heap/live:bytes"},                // live at the last GC
		{Name: "/memory/classes/heap/free:bytes"},    // free, not yet returned to the OS
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(returnEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			metrics.Read(samples)
			objects, live, free := samples[0].Value.Uint64(), samples[1].Value.Uint64(), samples[2].Value.Uint64()
			if objects-min(objects, live)+free >= returnGarbageMin {
				debug.FreeOSMemory()
			}
		}
	}()
}
