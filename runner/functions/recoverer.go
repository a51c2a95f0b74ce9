package functions

import (
	"context"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/runner/metrics"
)

// recoverer takes over calls whose dispatcher died or hung (idle past claimIdle), hands them to
// this sidecar's dispatcher, lets the registry dead-letter calls delivered too often (their
// callers are told), and trims finished entries.
type recoverer struct {
	log      *logrus.Entry
	reg      *registry.Registry
	served   func() []registry.FunctionKey // the functions whose streams it watches
	consumer string                        // the dispatcher's consumer name: reclaimed calls become its
	handoff  func(context.Context, registry.Delivery)

	claimIdle       time.Duration
	recoverInterval time.Duration
	trimInterval    time.Duration
	met             *metrics.Metrics

	cancel context.CancelFunc // set by start
}

type recovererParams struct {
	log                                      *logrus.Entry
	reg                                      *registry.Registry
	served                                   func() []registry.FunctionKey
	consumer                                 string
	handoff                                  func(context.Context, registry.Delivery)
	claimIdle, recoverInterval, trimInterval time.Duration
	met                                      *metrics.Metrics
}

func newRecoverer(p recovererParams) *recoverer {
	return &recoverer{log: p.log, reg: p.reg, served: p.served, consumer: p.consumer, handoff: p.handoff,
		claimIdle: p.claimIdle, recoverInterval: p.recoverInterval, trimInterval: p.trimInterval, met: p.met}
}

// start reclaims and trims every interval until shutdown; both goroutines are counted in wg.
func (r *recoverer) start(ctx context.Context, wg *sync.WaitGroup) {
	ctx, r.cancel = context.WithCancel(ctx)
	every(ctx, wg, r.recoverInterval, r.reclaim)
	every(ctx, wg, r.trimInterval, r.trim)
}

func (r *recoverer) shutdown() {
	if r.cancel != nil {
		r.cancel()
	}
}

func (r *recoverer) reclaim(ctx context.Context) {
	for _, k := range r.served() {
		ds, err := r.reg.Reclaim(ctx, k, r.consumer, r.claimIdle, 16)
		if err != nil {
			if ctx.Err() == nil {
				r.log.WithError(err).WithField("function", k.String()).Warn("reclaiming idle calls failed")
			}
			continue
		}
		for _, d := range ds {
			r.log.WithFields(map[string]any{"function": k.String(), "call": d.Call.ID, "deliveries": d.Deliveries}).Info("reclaimed an idle call; dispatching it again")
			r.met.Reclaimed(k.String())
			r.handoff(ctx, d)
		}
	}
}

func (r *recoverer) trim(ctx context.Context) {
	for _, k := range r.served() {
		if err := r.reg.Trim(ctx, k); err != nil && ctx.Err() == nil {
			r.log.WithError(err).WithField("function", k.String()).Warn("trimming the call stream failed")
		}
	}
}
