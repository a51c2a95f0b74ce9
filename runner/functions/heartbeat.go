package functions

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/n8n-fn/n8n-fn/registry"
)

// heartbeat tells the registry every interval that this sidecar is alive, which functions it
// serves (callers fail fast when no live sidecar serves theirs), while it has no connection to
// its n8n process for how long, and at once when it found that process gone (dispatchers then run
// that worker's calls again).
type heartbeat struct {
	log          *logrus.Entry
	reg          *registry.Registry
	id           string                        // this sidecar
	served       func() []registry.FunctionKey // what it announces (the catalog's keys)
	n8nConnected func() bool                   // nil: the connection to n8n is not reported
	interval     time.Duration
	// On a Sentinel deployment the heartbeat checks every watchInterval which master the client
	// talks to; when a failover switched it, it beats at once and calls switched (discovery
	// registers the functions again), since the new master may lack the last writes of the old.
	watchInterval time.Duration
	switched      func()
	slots         int // execution slots of this sidecar's n8n process, announced with every beat (0: none)

	// goneAt is when this sidecar last found its n8n process gone (unix ms; 0: not since start),
	// written to the registry by the next beat (n8nReport).
	goneAt atomic.Int64

	kick   chan struct{}
	cancel context.CancelFunc // set by start
}

type heartbeatParams struct {
	log          *logrus.Entry
	reg          *registry.Registry
	id           string
	served       func() []registry.FunctionKey
	n8nConnected func() bool
	interval     time.Duration
	// watchInterval (0: none) and switched (nil: nothing) follow failovers; see heartbeat.
	watchInterval time.Duration
	switched      func()
	slots         int
}

func newHeartbeat(p heartbeatParams) *heartbeat {
	return &heartbeat{log: p.log, reg: p.reg, id: p.id, served: p.served, n8nConnected: p.n8nConnected,
		interval: p.interval, watchInterval: p.watchInterval, switched: p.switched, slots: p.slots, kick: make(chan struct{}, 1)}
}

// beatNow asks for a heartbeat at once (after discovery changed the served set).
func (h *heartbeat) beatNow() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// start beats until shutdown (or ctx ends); its goroutine is counted in wg. On the way out it
// leaves the registry, so callers stop counting on this sidecar at once.
func (h *heartbeat) start(ctx context.Context, wg *sync.WaitGroup) {
	ctx, h.cancel = context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(h.interval)
		defer t.Stop()
		var watch <-chan time.Time
		if h.watchInterval > 0 && h.reg.FollowsFailovers() {
			w := time.NewTicker(h.watchInterval)
			defer w.Stop()
			watch = w.C
		}
		var n8n n8nReport
		failing := false
		master := "" // the master the last beat went to ("" unknown)
		for {
			if watch != nil {
				if id, err := h.reg.MasterID(ctx); err == nil {
					master = id
				}
			}
			err := h.reg.Heartbeat(ctx, h.id, h.served())
			if err == nil {
				err = n8n.report(ctx, h)
			}
			if err == nil && h.slots > 0 {
				err = h.reg.ReportExecutionSlots(ctx, h.id, h.slots)
			}
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				h.log.WithError(err).Warn("heartbeat failed; callers will see no live sidecar for this one's functions until it works again")
				failing = true
			case err == nil && failing:
				h.log.Info("heartbeat works again")
				failing = false
			}
			if !h.wait(ctx, t.C, watch, master) {
				lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				_ = h.reg.Leave(lctx, h.id, h.served())
				cancel()
				return
			}
		}
	}()
}

// wait returns when the next heartbeat is due: at the tick, when asked (beatNow), or when the
// master the client talks to is no longer master, the one the last beat went to (a failover
// switched it). false when ctx ended.
func (h *heartbeat) wait(ctx context.Context, tick, watch <-chan time.Time, master string) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick:
			return true
		case <-h.kick:
			return true
		case <-watch:
			id, err := h.reg.MasterID(ctx)
			if err != nil || id == master {
				continue
			}
			if master != "" {
				h.log.WithFields(map[string]any{"master": id, "was": master}).Info("the functions' Redis master changed (failover): heartbeat and registrations written again now")
				if h.switched != nil {
					h.switched()
				}
			}
			return true
		}
	}
}

// n8nGone records that the n8n process was found gone at `at` and beats at once, so dispatchers
// waiting for that process's executions learn it within their next watch.
func (h *heartbeat) n8nGone(at time.Time) {
	ms := at.UnixMilli()
	for {
		cur := h.goneAt.Load()
		if ms <= cur || h.goneAt.CompareAndSwap(cur, ms) {
			break
		}
	}
	h.beatNow()
}

// shutdown ends the heartbeat (it leaves the registry on its way out).
func (h *heartbeat) shutdown() {
	if h.cancel != nil {
		h.cancel()
	}
}

// n8nReport tracks how long this sidecar has been without its n8n process, for ReportN8N, and
// which gone process it has told the registry of (ReportN8NGone).
type n8nReport struct {
	lostSince time.Time // when the connection was first seen lost; zero while connected
	reported  bool      // a loss is on record in the registry (it must be cleared when back)
	goneSent  int64     // the goneAt (unix ms) on record; a later one is sent
}

func (r *n8nReport) report(ctx context.Context, h *heartbeat) error {
	if g := h.goneAt.Load(); g > r.goneSent {
		if err := h.reg.ReportN8NGone(ctx, h.id, time.UnixMilli(g)); err != nil {
			return err
		}
		r.goneSent = g
		h.log.WithField("at", time.UnixMilli(g).UTC().Format(time.RFC3339Nano)).Info("told the registry that this sidecar's n8n process is gone: dispatchers run its function executions again")
	}
	if h.n8nConnected == nil {
		return nil
	}
	var lostFor time.Duration
	if h.n8nConnected() {
		r.lostSince = time.Time{}
	} else {
		if r.lostSince.IsZero() {
			r.lostSince = time.Now()
		}
		lostFor = max(time.Since(r.lostSince), time.Millisecond)
	}
	if lostFor == 0 && !r.reported {
		return nil
	}
	if err := h.reg.ReportN8N(ctx, h.id, lostFor); err != nil {
		return err
	}
	r.reported = lostFor > 0
	return nil
}
