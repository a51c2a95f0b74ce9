package runner

import (
	"context"
	"sync"
	"time"
)

// heartbeat tells the registry every tunables.heartbeatInterval that this sidecar is alive and which
// functions it serves; callers fail fast when no live sidecar serves their function.
type heartbeat struct {
	f    *functions
	kick chan struct{}
}

func newHeartbeat(f *functions) *heartbeat { return &heartbeat{f: f, kick: make(chan struct{}, 1)} }

// beatNow asks for a heartbeat at once (after discovery changed the served set).
func (h *heartbeat) beatNow() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

func (h *heartbeat) start(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(h.f.tun.heartbeatInterval)
		defer t.Stop()
		failing := false
		for {
			err := h.f.reg.Heartbeat(ctx, h.f.cfg.ID, h.f.catalog.keys())
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				h.f.log.WithError(err).Warn("heartbeat failed; callers will see no live sidecar for this one's functions until it works again")
				failing = true
			case err == nil && failing:
				h.f.log.Info("heartbeat works again")
				failing = false
			}
			select {
			case <-ctx.Done():
				// A clean stop: callers stop counting on this sidecar at once.
				lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				_ = h.f.reg.Leave(lctx, h.f.cfg.ID, h.f.catalog.keys())
				cancel()
				return
			case <-t.C:
			case <-h.kick:
			}
		}
	}()
}
