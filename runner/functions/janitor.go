package functions

import (
	"context"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/n8n-fn/n8n-fn/registry"
)

// janitor recounts the Redis byte budget (registry.ReconcileBudget) and removes what Redis holds
// for functions nobody publishes any more. A function whose
// workflow was unpublished or deleted keeps its call stream, group and dead letters, and calls
// still queued for it would only run into their timeouts. Once its registration has expired, no
// live sidecar serves it and this sidecar's own discovery is working and does not find it either,
// for a whole grace period, the janitor removes its keys and tells the callers still waiting that
// the function was removed (registry.RemoveUnregistered, which backs off when a sidecar registers
// it again at that moment). Several sidecars may do this at once: the removal is idempotent.
type janitor struct {
	log *logrus.Entry
	reg *registry.Registry
	// servedHere says whether this sidecar serves k: the next discovery round registers it again.
	servedHere func(k registry.FunctionKey) bool
	// discovered says whether this sidecar's last discovery round succeeded: without it an
	// unreachable n8n API would make every function look unpublished.
	discovered func() bool
	interval   time.Duration
	grace      time.Duration // how long a function must look unpublished before it is removed

	suspects map[registry.FunctionKey]time.Time // first seen unpublished
	cancel   context.CancelFunc                 // set by start
}

type janitorParams struct {
	log             *logrus.Entry
	reg             *registry.Registry
	servedHere      func(registry.FunctionKey) bool
	discovered      func() bool
	interval, grace time.Duration
}

func newJanitor(p janitorParams) *janitor {
	return &janitor{log: p.log, reg: p.reg, servedHere: p.servedHere, discovered: p.discovered,
		interval: p.interval, grace: p.grace, suspects: map[registry.FunctionKey]time.Time{}}
}

// start sweeps every interval until shutdown; its goroutine is counted in wg.
func (j *janitor) start(ctx context.Context, wg *sync.WaitGroup) {
	ctx, j.cancel = context.WithCancel(ctx)
	every(ctx, wg, j.interval, func(ctx context.Context) { j.sweep(ctx, time.Now()) })
}

func (j *janitor) shutdown() {
	if j.cancel != nil {
		j.cancel()
	}
}

func (j *janitor) sweep(ctx context.Context, now time.Time) {
	// The byte budget's counter is repaired from what the streams hold, whatever else happens:
	// a sidecar that died between reserving and queueing (Cluster), or a function removed with its
	// queue, leaves it off until then, never for longer.
	if _, err := j.reg.ReconcileBudget(ctx); err != nil && ctx.Err() == nil {
		j.log.WithError(err).Warn("janitor: recounting the Redis byte budget failed")
	}
	if !j.discovered() {
		clear(j.suspects) // start over: what looked unpublished may just not have been seen
		return
	}
	gone, err := j.reg.Unregistered(ctx)
	if err != nil {
		if ctx.Err() == nil {
			j.log.WithError(err).Warn("janitor: listing unregistered functions failed")
		}
		return
	}
	seen := make(map[registry.FunctionKey]bool, len(gone))
	for _, k := range gone {
		if j.servedHere(k) {
			continue // served here: the next discovery round registers it again
		}
		if live, err := j.reg.HasLiveConsumer(ctx, k); err != nil || live {
			continue // another sidecar still serves it (its discovery is behind, or ours is)
		}
		seen[k] = true
		first, ok := j.suspects[k]
		if !ok {
			j.suspects[k] = now
			continue
		}
		if now.Sub(first) < j.grace {
			continue
		}
		removed, err := j.reg.RemoveUnregistered(ctx, k)
		if err != nil {
			if ctx.Err() == nil {
				j.log.WithError(err).WithField("function", k.String()).Warn("janitor: removing an unpublished function failed")
			}
			continue
		}
		delete(j.suspects, k)
		if !removed {
			continue // registered again meanwhile
		}
		j.log.WithField("function", k.String()).Info("removed the call queue of a function no longer published; callers still waiting were told")
	}
	for k := range j.suspects {
		if !seen[k] {
			delete(j.suspects, k) // published again, or served somewhere
		}
	}
}
