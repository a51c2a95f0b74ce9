package functions

import (
	"context"
	"sync"
)

// recoverer takes over calls whose dispatcher died or hung (idle past claimIdle), hands them to
// this sidecar's dispatcher, lets the registry dead-letter calls delivered too often (their
// callers are told), and trims finished entries.
type recoverer struct{ f *Runtime }

func newRecoverer(f *Runtime) *recoverer { return &recoverer{f: f} }

func (r *recoverer) start(ctx context.Context, wg *sync.WaitGroup) {
	every(ctx, wg, r.f.tun.recoverInterval, r.reclaim)
	every(ctx, wg, r.f.tun.trimInterval, r.trim)
}

func (r *recoverer) reclaim(ctx context.Context) {
	f := r.f
	for _, k := range f.catalog.keys() {
		ds, err := f.reg.Reclaim(ctx, k, f.disp.consumer, f.tun.claimIdle, 16)
		if err != nil {
			if ctx.Err() == nil {
				f.log.WithError(err).WithField("function", k.String()).Warn("reclaiming idle calls failed")
			}
			continue
		}
		for _, d := range ds {
			f.log.WithFields(map[string]any{"function": k.String(), "call": d.Call.ID, "deliveries": d.Deliveries}).Info("reclaimed an idle call; dispatching it again")
			f.disp.handoff(ctx, d)
		}
	}
}

func (r *recoverer) trim(ctx context.Context) {
	f := r.f
	for _, k := range f.catalog.keys() {
		if err := f.reg.Trim(ctx, k); err != nil && ctx.Err() == nil {
			f.log.WithError(err).WithField("function", k.String()).Warn("trimming the call stream failed")
		}
	}
}
