package functions

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// Call batching (a function's "batch":{"max":N,"waitMs":M}): the dispatcher that read a call of
// such a function gathers up to N-1 more calls of it that its reader reads within M ms, and
// triggers one execution for all of them ({"batch":[ref, ...]}, one item per call out of the function node).
// The return node answers each caller with the items that derive from its own item (lineage).
// A batch is one optimistic attempt: every call it left unanswered (the execution failed, its
// worker died, it ended early or timed out) is then dispatched on its own, the usual way, so one
// bad call fails alone. A function without "batch" never gets more than one call per execution.

// batchOf returns the function's batch setting when its calls may be batched here: it asks for
// it and its Webhook answers when the execution ends (with "Respond: Immediately" the dispatcher
// could not tell which calls the execution left unanswered without waiting for each).
func (d *dispatcher) batchOf(fn registry.FunctionKey) *workflows.Batch {
	s := d.f.catalog.get(fn)
	if s == nil || s.Def.Function == nil || s.Def.Function.Batch == nil || !s.Def.LastNodeResponse {
		return nil
	}
	return s.Def.Function.Batch
}

// pendingBatch is a batch being gathered: the calls read so far and the slot it holds.
type pendingBatch struct {
	l     *fnLoop
	calls []registry.Delivery
	max   int
	timer *time.Timer
	due   bool // it waits for a running batch of its function to end (batch.parallel)
}

// stopTimer stops the batch's waitMs timer (none with batch.parallel: it waits for batchEnded).
func (pb *pendingBatch) stopTimer() {
	if pb.timer != nil {
		pb.timer.Stop()
	}
}

// gather adds a call of a batching function to the batch being gathered, or opens one with the
// slot l the reader took for it (nil: read into a batch that was dispatched meanwhile). It
// reports whether it kept l. The reader goes on reading the function into the open batch without
// taking more slots; the batch is dispatched when it is full or its wait is over. Only the
// reader reads the function's stream, so no second reader competes for the calls.
func (d *dispatcher) gather(ctx context.Context, l *fnLoop, dl registry.Delivery, b *workflows.Batch) bool {
	if ctx.Err() != nil {
		// Shutting down: no new batch after flushBatches; the call stays pending for a recoverer.
		return false
	}
	d.mu.Lock()
	trackIn(d.inflight, dl.Function, dl.EntryID, true)
	if pb := d.batches[dl.Function]; pb != nil {
		pb.calls = append(pb.calls, dl)
		full := len(pb.calls) >= pb.max
		if full {
			delete(d.batches, dl.Function)
			pb.stopTimer()
		}
		d.mu.Unlock()
		if full {
			d.launchBatch(pb)
		}
		return false
	}
	if l == nil {
		// Read into a batch that was dispatched meanwhile: open a new one with a free slot, or,
		// with every slot busy, wait for one like a reclaimed call.
		if loop := d.loops[dl.Function]; loop != nil {
			select {
			case loop.slots <- struct{}{}:
				l = loop
			default:
			}
		}
		if l == nil {
			trackIn(d.inflight, dl.Function, dl.EntryID, false)
			d.mu.Unlock()
			d.handoff(ctx, dl)
			return false
		}
	}
	pb := &pendingBatch{l: l, calls: []registry.Delivery{dl}, max: b.Max}
	d.mu.Unlock()
	// Take what is queued already in one read (a call node queues all its calls at once), so the
	// batch does not depend on the reader's one-call-per-round pace.
	if b.Max > 1 {
		more, err := d.f.reg.ReadCalls(ctx, d.consumer, []registry.FunctionKey{dl.Function}, int64(b.Max-1), 0)
		if err != nil && ctx.Err() == nil {
			d.f.log.WithError(err).WithField("function", dl.Function.String()).Warn("reading the queued calls for a batch failed; the batch takes what comes next")
		}
		pb.calls = append(pb.calls, more...)
	}
	d.mu.Lock()
	for _, m := range pb.calls[1:] {
		trackIn(d.inflight, m.Function, m.EntryID, true)
	}
	fn := dl.Function
	if len(pb.calls) >= pb.max || (b.Parallel > 0 && !d.mustHold(fn)) {
		// Full, or (batch.parallel, Nagle's rule) none of the function's batches is running
		// that this one could wait for: it goes now, with what was queued already.
		d.mu.Unlock()
		d.launchBatch(pb)
		return true
	}
	d.batches[fn] = pb
	if b.Parallel > 0 {
		// Batches run: gather until one of them ends (batchEnded launches this one).
		pb.due = true
		d.mu.Unlock()
		return true
	}
	pb.timer = time.AfterFunc(time.Duration(b.WaitMs)*time.Millisecond, func() {
		d.mu.Lock()
		mine := d.batches[fn] == pb
		if mine {
			delete(d.batches, fn)
		}
		d.mu.Unlock()
		if mine {
			d.launchBatch(pb) // whoever takes the batch out of the map dispatches it
		}
	})
	d.mu.Unlock()
	return true
}

// flushBatches dispatches every batch being gathered (at shutdown).
func (d *dispatcher) flushBatches() {
	d.mu.Lock()
	var all []*pendingBatch
	for fn, pb := range d.batches {
		pb.stopTimer()
		delete(d.batches, fn)
		all = append(all, pb)
	}
	d.mu.Unlock()
	for _, pb := range all {
		d.launchBatch(pb)
	}
}

// launchBatch dispatches a gathered batch in its own goroutine; it gives the batch's slot back.
func (d *dispatcher) launchBatch(pb *pendingBatch) {
	fn := pb.calls[0].Function
	d.mu.Lock()
	d.running[fn]++
	d.mu.Unlock()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.batchEnded(fn) // after the slot is back: a held batch may go now
		defer d.slotFreed()
		defer func() { <-pb.l.slots }()
		defer func() {
			for _, dl := range pb.calls {
				d.track(dl, false)
			}
		}()
		d.dispatchBatch(context.Background(), pb.calls)
	}()
}

// dispatchBatch runs the calls of a batch in one execution, then each call it left unanswered
// on its own.
func (d *dispatcher) dispatchBatch(ctx context.Context, batch []registry.Delivery) {
	if len(batch) > 1 {
		batch = d.tryBatch(ctx, batch)
	} else if len(batch) == 1 {
		// A call that found no company: its dispatch counts as usual, the histogram shows it
		// as a batch of one (what tells an operator that batching does not pay here).
		d.f.met.BatchSize(batch[0].Function.String(), 1)
	}
	for _, dl := range batch {
		d.dispatch(ctx, dl)
	}
}

// tryBatch triggers one execution for the batch and returns the calls still unanswered afterwards.
func (d *dispatcher) tryBatch(ctx context.Context, batch []registry.Delivery) []registry.Delivery {
	f := d.f
	fn := batch[0].Function
	s := f.catalog.get(fn)
	if s == nil {
		return nil // not served here any more: the calls stay pending for another sidecar's recoverer
	}
	if ambiguous(fn, s.Record) != nil {
		return batch // each fails on its own with the reason
	}
	log := f.log.WithFields(map[string]any{"function": fn.String(), "batch": len(batch)})
	jobs := make([]*dispatchJob, 0, len(batch))
	var deadline time.Time
	for _, dl := range batch {
		j := &dispatchJob{d: d, dl: dl, s: s, log: log.WithField("call", dl.Call.ID)}
		if !j.prepare(ctx) {
			continue // expired: answered by prepare
		}
		if deadline.IsZero() || j.deadline.Before(deadline) {
			deadline = j.deadline
		}
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 {
		return nil
	}
	rctx, cancel := context.WithDeadline(ctx, deadline.Add(webhookGrace))
	defer cancel()
	refs := make([]*workflows.CallRef, 0, len(jobs))
	for _, j := range jobs {
		var n int64
		err := registry.RetryOutage(rctx, j.deadline, func() (err error) {
			n, err = f.reg.NextDispatch(rctx, fn, j.dl.Call.ID, claimTTL(j.deadline, time.Now()))
			return err
		})
		if err != nil {
			log.WithError(err).Warn("could not start a batch dispatch; dispatching the calls one by one")
			return pendingOf(jobs)
		}
		ref := &workflows.CallRef{Function: fn.String(), EntryID: j.dl.EntryID, CallID: j.dl.Call.ID, Dispatch: n, Exp: j.deadline.UnixMilli()}
		ref.Sign(f.signer)
		refs = append(refs, ref)
	}
	queued := make([]time.Duration, len(jobs))
	for i, j := range jobs {
		queued[i] = time.Duration(sinceEntry(j.dl.EntryID, time.Now())) * time.Millisecond
	}
	f.met.Batched(fn.String(), len(jobs), queued)
	body, err := json.Marshal(map[string]any{workflows.BatchField: refs})
	if err != nil {
		log.WithError(err).Warn("could not encode the batch; dispatching the calls one by one")
		return pendingOf(jobs)
	}
	method := s.Record.WebhookMethod
	if method == "" {
		method = http.MethodPost
	}
	url := strings.TrimRight(f.cfg.WebhookURL, "/") + "/" + strings.TrimLeft(s.Record.WebhookPath, "/")
	start := time.Now()
	pctx, lost := context.WithCancelCause(rctx)
	stopWatch := d.watchWorker(pctx, lost, fn, jobs[0].dl.Call.ID, map[string]bool{})
	status, _, err := d.post(pctx, method, url, body, deadline, jobs[0].dl.Call.ID, false)
	stopWatch()
	cause := context.Cause(pctx)
	lost(nil)
	var left []registry.Delivery
	for _, j := range jobs {
		if d.stillPending(ctx, j.dl) {
			left = append(left, j.dl)
		}
	}
	fields := map[string]any{"status": status, "webhook_ms": time.Since(start).Milliseconds(), "calls": len(jobs), "unanswered": len(left)}
	switch {
	case err != nil && errors.Is(cause, errWorkerLost):
		log.WithFields(fields).Warn("the worker running the batch is gone; dispatching its unanswered calls one by one")
	case err != nil:
		log.WithFields(fields).WithError(err).Info("the batch got no answer; dispatching its unanswered calls one by one")
	case len(left) > 0:
		log.WithFields(fields).Info("the batch left calls unanswered; dispatching them one by one")
	default:
		log.WithFields(fields).Debug("batch answered")
	}
	return left
}

func pendingOf(jobs []*dispatchJob) []registry.Delivery {
	out := make([]registry.Delivery, len(jobs))
	for i, j := range jobs {
		out[i] = j.dl
	}
	return out
}
