package functions

import (
	"context"
	"time"

	"github.com/n8n-fn/n8n-fn/registry"
)

// Batch leadership (a function's "batch":{"parallel":N}): spread over every sidecar's reader,
// concurrent single calls rarely meet (each reader takes one call per round and dispatches it at
// once). With parallel, one sidecar at a time reads the function (a Redis lease each sidecar
// tries to take or renew every batchLeadInterval), and a batch that is not full waits while N
// batches of the function run, gathering what arrives meanwhile; with fewer running it goes at
// once (no waitMs). Under load the batches grow by themselves, idle a call pays no wait: Nagle's
// algorithm for calls. The
// executions still run on any worker: the leader only posts their webhooks.

// leadTTL is how long a lead lives unrenewed: a dead leader's functions are read by another
// sidecar after at most this long (its delivered calls are reclaimed as usual).
func (d *dispatcher) leadTTL() time.Duration { return 3 * d.f.tun.batchLeadInterval }

// nagled reports whether fn's calls are read by one leader and held while its batches run.
func (d *dispatcher) nagled(fn registry.FunctionKey) int {
	if b := d.batchOf(fn); b != nil {
		return b.Parallel
	}
	return 0
}

// holdLeads takes or renews the lead of every served function with batch.parallel and gives
// up the leads of functions no longer served that way.
func (d *dispatcher) holdLeads(ctx context.Context) {
	want := map[registry.FunctionKey]bool{}
	for _, k := range d.f.catalog.keys() {
		if d.nagled(k) > 0 {
			want[k] = true
		}
	}
	d.mu.Lock()
	held := make([]registry.FunctionKey, 0, len(d.leads))
	for k := range d.leads {
		held = append(held, k)
	}
	d.mu.Unlock()
	for _, k := range held {
		if !want[k] {
			d.dropLead(ctx, k)
		}
	}
	for k := range want {
		ok, err := d.f.reg.HoldBatchLead(ctx, k, d.consumer, d.leadTTL())
		if err != nil {
			// Keep what we had until the lease runs out: another sidecar takes over then.
			d.f.log.WithError(err).WithField("function", k.String()).Debug("could not renew the batch lead")
			continue
		}
		d.mu.Lock()
		if ok {
			d.leads[k] = true
		} else {
			delete(d.leads, k)
		}
		d.mu.Unlock()
	}
}

func (d *dispatcher) dropLead(ctx context.Context, k registry.FunctionKey) {
	d.mu.Lock()
	delete(d.leads, k)
	d.mu.Unlock()
	if err := d.f.reg.DropBatchLead(ctx, k, d.consumer); err != nil {
		d.f.log.WithError(err).WithField("function", k.String()).Debug("could not give the batch lead up (it runs out by itself)")
	}
}

// dropLeads gives every lead up (at shutdown), so another sidecar reads at its next renewal.
func (d *dispatcher) dropLeads() {
	d.mu.Lock()
	held := make([]registry.FunctionKey, 0, len(d.leads))
	for k := range d.leads {
		held = append(held, k)
	}
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, k := range held {
		d.dropLead(ctx, k)
	}
}

// readsHere says whether this sidecar's reader may read fn now: a function with batch.parallel
// only by its leader. Called with d.mu held.
func (d *dispatcher) readsHere(fn registry.FunctionKey) bool {
	return d.nagled(fn) == 0 || d.leads[fn]
}

// mustHold says whether a partial batch of fn waits for a running one (d.mu held).
func (d *dispatcher) mustHold(fn registry.FunctionKey) bool {
	p := d.nagled(fn)
	return p > 0 && d.running[fn] >= p
}

// batchEnded counts a launched batch of fn as ended and launches the partial batch that was
// held for it, if any.
func (d *dispatcher) batchEnded(fn registry.FunctionKey) {
	d.mu.Lock()
	d.running[fn]--
	if d.running[fn] <= 0 {
		delete(d.running, fn)
	}
	pb := d.batches[fn]
	if pb == nil || !pb.due || d.mustHold(fn) {
		d.mu.Unlock()
		return
	}
	delete(d.batches, fn)
	pb.stopTimer()
	d.mu.Unlock()
	d.launchBatch(pb)
}
