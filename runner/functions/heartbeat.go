package functions

import (
	"context"
	"sync"
	"time"
)

// heartbeat tells the registry every tunables.heartbeatInterval that this sidecar is alive, which
// functions it serves (callers fail fast when no live sidecar serves theirs) and, while it has no
// connection to its n8n process, for how long (dispatchers then run that worker's calls again).
type heartbeat struct {
	f    *Runtime
	kick chan struct{}
}

func newHeartbeat(f *Runtime) *heartbeat { return &heartbeat{f: f, kick: make(chan struct{}, 1)} }

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
		var lostSince time.Time // when this sidecar was first seen without its n8n process
		reported := false
		for {
			err := h.f.reg.Heartbeat(ctx, h.f.cfg.ID, h.f.catalog.keys())
			if err == nil && h.f.n8nConnected != nil {
				var lostFor time.Duration
				if h.f.n8nConnected() {
					lostSince = time.Time{}
				} else {
					if lostSince.IsZero() {
						lostSince = time.Now()
					}
					lostFor = max(time.Since(lostSince), time.Millisecond)
				}
				if lostFor > 0 || reported {
					if err = h.f.reg.ReportN8N(ctx, h.f.cfg.ID, lostFor); err == nil {
						reported = lostFor > 0
					}
				}
			}
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
