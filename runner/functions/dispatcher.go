package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/n8napi"
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/runner/metrics"
	"github.com/n8n-fn/n8n-fn/workflows"
)

const (
	// webhookGrace is added to a call's deadline for the webhook request: the execution's answer
	// after the deadline still tells us whether the function failed.
	webhookGrace = 5 * time.Second
)

// dispatcher consumes the streams of the functions this sidecar serves and triggers each call's
// function workflow through its Webhook with a signed call reference. It reads no more calls than
// the function has free slots (its maxConcurrency), so n8n's queue is not flooded. With the Webhook
// in "when last node finishes" mode the answer comes when the execution ended: a failed execution,
// or one that ended without reaching return, is reported to the caller at once.
type dispatcher struct {
	f        dispatchDeps
	http     *http.Client
	consumer string

	mu       sync.Mutex
	loops    map[registry.FunctionKey]*fnLoop
	inflight map[registry.FunctionKey]map[string]bool // entry ids being dispatched, for KeepAlive
	slots    map[registry.FunctionKey]map[string]bool // call ids holding a global slot, for RefreshSlots
	wg       sync.WaitGroup                           // running dispatches
	loopsWG  sync.WaitGroup                           // hand-offs waiting for a slot
	freed    chan struct{}                            // a dispatch ended and gave its slot back
	stopRead context.CancelFunc
	batches  map[registry.FunctionKey]*pendingBatch // batches being gathered (batch.go)
	leads    map[registry.FunctionKey]bool          // functions whose batch lead this sidecar holds (batchlead.go)
	running  map[registry.FunctionKey]int           // launched batches per function, for batch.parallel
}

// dispatchDeps is what the dispatcher uses of the runtime, given explicitly.
type dispatchDeps struct {
	cfg     Config
	log     *logrus.Entry
	reg     *registry.Registry
	catalog *catalog
	signer  *workflows.Signer
	api     *n8napi.Client // nil: no 404 rediscovery, no execution error details
	disc    *discovery     // nil without an API
	tun     *tunables
	met     *metrics.Metrics // nil: no metrics
}

// fnLoop is one served function's pool of dispatch slots (its maxConcurrency).
type fnLoop struct {
	key   registry.FunctionKey
	max   int
	slots chan struct{} // one token per in-flight dispatch
}

// starvedReadBlock bounds a read while some function has no free slot, so that a slot given back
// is used within this time instead of after the whole read block.
const starvedReadBlock = 100 * time.Millisecond

func newDispatcher(f dispatchDeps) *dispatcher {
	return &dispatcher{
		f: f, http: webhookClient(), consumer: f.cfg.ID,
		loops: map[registry.FunctionKey]*fnLoop{}, inflight: map[registry.FunctionKey]map[string]bool{},
		slots: map[registry.FunctionKey]map[string]bool{}, freed: make(chan struct{}, 1),
		batches: map[registry.FunctionKey]*pendingBatch{},
		leads:   map[registry.FunctionKey]bool{}, running: map[registry.FunctionKey]int{},
	}
}

func (d *dispatcher) start(ctx context.Context, wg *sync.WaitGroup) {
	readCtx, stop := context.WithCancel(ctx)
	d.stopRead = stop
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.readAll(readCtx)
		d.loopsWG.Wait() // hand-offs waiting for a slot
	}()
	every(ctx, wg, d.f.tun.keepAliveInterval, d.keepAlive)
	every(ctx, wg, d.f.tun.batchLeadInterval, d.holdLeads)
}

// shutdown stops reading new calls and waits (until ctx ends) for the dispatches in flight, so
// their entries are acknowledged instead of being run again elsewhere.
func (d *dispatcher) shutdown(ctx context.Context) {
	if d.stopRead != nil {
		d.stopRead()
	}
	d.dropLeads()    // another sidecar reads the batching functions from its next renewal on
	d.flushBatches() // a batch being gathered is dispatched now, not after shutdown waited
	done := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		d.f.log.Warn("shutdown: dispatches still in flight; other sidecars will reclaim their calls")
	}
}

// sync makes the slot pools match the served functions: one pool per function, sized by its
// maxConcurrency (a changed size gets a new pool; dispatches in flight give back to the old one).
func (d *dispatcher) sync() {
	want := map[registry.FunctionKey]int{}
	for _, k := range d.f.catalog.keys() {
		s := d.f.catalog.get(k)
		if s == nil {
			continue
		}
		n := s.Record.MaxConcurrency
		if n <= 0 {
			n = defaultDispatchSlots
		}
		want[k] = n
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, l := range d.loops {
		if n, ok := want[k]; !ok || n != l.max {
			delete(d.loops, k)
		}
	}
	for k, n := range want {
		if _, ok := d.loops[k]; !ok {
			d.loops[k] = &fnLoop{key: k, max: n, slots: make(chan struct{}, n)}
		}
	}
}

// takeSlots takes one free slot of every function of fns that has one; starved says whether some
// function had none (its calls wait until a dispatch ends).
func (d *dispatcher) takeSlots(fns []registry.FunctionKey) (free []registry.FunctionKey, taken map[registry.FunctionKey]*fnLoop, starved bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	taken = make(map[registry.FunctionKey]*fnLoop, len(fns))
	for _, k := range fns {
		l := d.loops[k]
		if l == nil || !d.readsHere(k) {
			continue
		}
		if pb := d.batches[k]; pb != nil && len(pb.calls) < pb.max {
			// A batch being gathered holds the slot: read more calls into it without another.
			free = append(free, k)
			continue
		}
		select {
		case l.slots <- struct{}{}:
			free = append(free, k)
			taken[k] = l
		default:
			starved = true
		}
	}
	return free, taken, starved
}

// readAll keeps one reader per hash-slot group of the served functions: on a standalone or
// Sentinel Redis that is one blocking XREADGROUP for every function (so Redis connections do not
// grow with the number of functions); on Cluster one per slot (a command cannot span slots).
// When the served set changes, the readers are replaced.
func (d *dispatcher) readAll(ctx context.Context) {
	for ctx.Err() == nil {
		changed := d.f.catalog.watch()
		d.sync()
		gctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		if keys := d.f.catalog.keys(); len(keys) > 0 {
			for _, g := range d.f.reg.SlotGroups(keys) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					d.readGroup(gctx, g)
				}()
			}
		}
		select {
		case <-ctx.Done():
		case <-changed:
		}
		cancel()
		wg.Wait()
	}
}

// readGroup reads the calls of one slot group's functions: one call per function with a free slot
// per round.
func (d *dispatcher) readGroup(ctx context.Context, fns []registry.FunctionKey) {
	backoff := time.Second
	for ctx.Err() == nil {
		free, taken, starved := d.takeSlots(fns)
		if len(free) == 0 {
			// Every function of the group is busy: look again soon (a dispatch ending frees a slot).
			select {
			case <-ctx.Done():
				return
			case <-d.freed:
			case <-time.After(starvedReadBlock):
			}
			continue
		}
		block := d.f.tun.readBlock
		if starved {
			// A busy function gets a free slot back at any moment: come back for it soon.
			block = min(block, starvedReadBlock)
		}
		ds, err := d.f.reg.ReadCalls(ctx, d.consumer, free, 1, block)
		got := make(map[registry.FunctionKey]bool, len(ds))
		for _, dl := range ds {
			if got[dl.Function] {
				continue
			}
			got[dl.Function] = true
			if b := d.batchOf(dl.Function); b != nil {
				if l := taken[dl.Function]; l != nil && !d.gather(ctx, l, dl, b) {
					<-l.slots // it joined a batch that holds a slot already
				} else if l == nil {
					d.gather(ctx, nil, dl, b)
				}
				continue
			}
			if l := taken[dl.Function]; l != nil {
				d.launch(ctx, l, dl)
			}
		}
		for k, l := range taken {
			if !got[k] {
				<-l.slots
			}
		}
		switch {
		case err == nil:
			backoff = time.Second
		case ctx.Err() != nil:
			return
		default:
			d.f.log.WithError(err).Warn("reading calls failed; retrying")
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			// Short: a Redis restart must not leave the calls unread for long.
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// launch dispatches one delivery in its own goroutine; its slot is already taken.
func (d *dispatcher) launch(_ context.Context, l *fnLoop, dl registry.Delivery) {
	d.track(dl, true)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.slotFreed()
		defer func() { <-l.slots }()
		defer d.track(dl, false)
		// In-flight dispatches outlive a stopped read loop (their execution is already running);
		// each is bounded by its call's deadline, and shutdown waits for them within its grace.
		d.dispatch(context.Background(), dl)
	}()
}

// slotFreed wakes the reader when it waits because every function was busy.
func (d *dispatcher) slotFreed() {
	select {
	case d.freed <- struct{}{}:
	default:
	}
}

// handoff dispatches a reclaimed delivery once its function has a free slot.
func (d *dispatcher) handoff(ctx context.Context, dl registry.Delivery) {
	d.mu.Lock()
	l := d.loops[dl.Function]
	d.mu.Unlock()
	if l == nil {
		return // not served here any more: it stays pending for another sidecar's recoverer
	}
	d.loopsWG.Add(1)
	go func() {
		defer d.loopsWG.Done()
		select {
		case l.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		d.launch(ctx, l, dl)
	}()
}

func (d *dispatcher) track(dl registry.Delivery, add bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	trackIn(d.inflight, dl.Function, dl.EntryID, add)
}

// trackSlot records a held global concurrency slot, so keepAlive renews its lease.
func (d *dispatcher) trackSlot(dl registry.Delivery, add bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	trackIn(d.slots, dl.Function, dl.Call.ID, add)
}

func trackIn(sets map[registry.FunctionKey]map[string]bool, fn registry.FunctionKey, id string, add bool) {
	m := sets[fn]
	if add {
		if m == nil {
			m = map[string]bool{}
			sets[fn] = m
		}
		m[id] = true
		return
	}
	delete(m, id)
	if len(m) == 0 {
		delete(sets, fn)
	}
}

func snapshot(sets map[registry.FunctionKey]map[string]bool) map[registry.FunctionKey][]string {
	work := map[registry.FunctionKey][]string{}
	for k, m := range sets {
		for id := range m {
			work[k] = append(work[k], id)
		}
	}
	return work
}

// keepAlive refreshes every in-flight entry so other sidecars' recoverers leave slow calls alone.
func (d *dispatcher) keepAlive(ctx context.Context) {
	d.mu.Lock()
	work, held := snapshot(d.inflight), snapshot(d.slots)
	d.mu.Unlock()
	for k, ids := range work {
		if err := d.f.reg.KeepAlive(ctx, k, d.consumer, ids); err != nil && !errors.Is(err, registry.ErrNotOwner) {
			d.f.log.WithError(err).WithField("function", k.String()).Warn("keep-alive of in-flight calls failed")
		}
	}
	for k, ids := range held {
		if err := d.f.reg.RefreshSlots(ctx, k, ids, d.f.tun.claimIdle); err != nil {
			d.f.log.WithError(err).WithField("function", k.String()).Warn("could not renew global concurrency slots")
		}
	}
}

// dispatch triggers the function's workflow for one call and, when the execution's answer shows
// the call was not answered by a return node, answers the caller with the reason: classify the
// webhook's answer, then decide.
func (d *dispatcher) dispatch(ctx context.Context, dl registry.Delivery) {
	f := d.f
	log := f.log.WithFields(map[string]any{"function": dl.Function.String(), "call": dl.Call.ID, "entry": dl.EntryID})
	s := f.catalog.get(dl.Function)
	if s == nil {
		return // left pending: reclaimed by a sidecar that serves it
	}
	j := &dispatchJob{d: d, dl: dl, s: s, log: log}
	if !j.prepare(ctx) {
		return
	}
	if err := ambiguous(dl.Function, s.Record); err != nil {
		j.fail(ctx, registry.ErrorKindFailed, strings.TrimPrefix(err.Error(), "n8n-fn call: "))
		return
	}
	rctx, cancel := context.WithDeadline(ctx, j.deadline.Add(webhookGrace))
	defer cancel()
	if !j.acquireGlobal(rctx) {
		return
	}
	defer j.releaseGlobal(ctx)
	for attempt := 0; ; attempt++ {
		o := j.trigger(rctx)
		switch act := j.decide(ctx, o, attempt); act {
		case actRetry:
			continue
		case actRetryLater:
			time.Sleep(time.Duration(300*(attempt+1)) * time.Millisecond)
			continue
		default:
			return
		}
	}
}

// dispatchJob is one call being dispatched.
type dispatchJob struct {
	d        *dispatcher
	dl       registry.Delivery
	s        *served
	log      *logrus.Entry
	deadline time.Time
	name     string // the function as users name it

	lostRuns int
	lostOn   map[string]bool
	// wait404 asks n8n again for a while when the webhook answers 404: after discovery confirmed
	// the path (publishing is asynchronous in n8n 2.x: a just-published webhook answers 404 for a
	// moment). The first 404 rediscovers at once instead (the path may have been edited).
	wait404 bool
	global  bool // holds a global concurrency slot
}

// outcome classifies one webhook round trip.
type outcome int

const (
	outAnswered    outcome = iota // the return node answered (or another sidecar took the call over)
	outWorkerLost                 // the worker running the execution died; the webhook answer never came
	outUnreachable                // n8n did not answer (down, or the request failed)
	outTimedOut                   // no answer before the call's deadline
	outNotFound                   // 404: the webhook is not registered (any more, or under this path)
	outFailed                     // the execution failed (HTTP >= 400)
	outEmpty                      // the execution ended with no items: a zero-item result
	outNoReturn                   // the execution ended with items that never reached return
	outImmediate                  // the Webhook answered at once; return will answer later
)

type action int

const (
	actDone       action = iota
	actRetry             // trigger again at once
	actRetryLater        // trigger again after a pause
)

type roundTrip struct {
	kind   outcome
	status int
	answer []byte
	err    error
}

func (j *dispatchJob) prepare(ctx context.Context) bool {
	now := time.Now()
	j.deadline = j.dl.Call.Deadline
	if j.deadline.IsZero() {
		j.deadline = now.Add(time.Duration(max(j.s.Record.TimeoutMs, int64(workflows.DefaultFunctionTimeoutMs))) * time.Millisecond)
	}
	j.name = display(j.dl.Function)
	j.lostOn = map[string]bool{}
	if now.After(j.deadline) {
		j.fail(ctx, registry.ErrorKindExpired, fmt.Sprintf("call %s to %s expired %s before it could be dispatched (the function is busy: raise its maxConcurrency or the call's timeoutMs, or add workers)",
			j.dl.Call.ID, j.dl.Function, now.Sub(j.deadline).Round(time.Millisecond)))
		return false
	}
	return true
}

func (j *dispatchJob) fail(ctx context.Context, kind registry.ErrorKind, msg string) {
	if err := j.d.f.reg.Complete(ctx, j.dl, registry.Reply{CallID: j.dl.Call.ID, Error: msg, ErrorKind: kind}); err != nil {
		j.log.WithError(err).Warn("could not send the error reply")
	}
}

// acquireGlobal waits for one of the function's global slots when it declares globalConcurrency;
// false when the call's deadline passed first (the caller is answered) or the dispatch stops.
func (j *dispatchJob) acquireGlobal(ctx context.Context) bool {
	limit := j.s.Record.GlobalConcurrency
	if limit <= 0 {
		return true
	}
	f := j.d.f
	wait := 20 * time.Millisecond
	for {
		ok, err := f.reg.AcquireSlot(ctx, j.dl.Function, j.dl.Call.ID, limit, f.tun.claimIdle)
		if err == nil && ok {
			j.global = true
			j.d.trackSlot(j.dl, true)
			return true
		}
		if err != nil {
			j.log.WithError(err).Warn("could not take a global concurrency slot; trying again")
		}
		if time.Now().Add(wait).After(j.deadline) {
			j.fail(ctx, registry.ErrorKindExpired, fmt.Sprintf("call %s to %s waited for one of the function's %d global slots (globalConcurrency) until its deadline; raise the call's timeoutMs or the function's globalConcurrency",
				j.dl.Call.ID, j.name, limit))
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(wait*2, 500*time.Millisecond)
	}
}

func (j *dispatchJob) releaseGlobal(ctx context.Context) {
	if !j.global {
		return
	}
	j.d.trackSlot(j.dl, false)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := j.d.f.reg.ReleaseSlot(rctx, j.dl.Function, j.dl.Call.ID); err != nil {
		j.log.WithError(err).Warn("could not give the global concurrency slot back (its lease expires by itself)")
	}
}

// trigger posts a fresh call reference (a new dispatch number) to the function's webhook and
// classifies what came back.
func (j *dispatchJob) trigger(ctx context.Context) roundTrip {
	f := j.d.f
	var n int64
	// Safe to repeat: a number lost with its reply is simply skipped.
	err := registry.RetryOutage(ctx, j.deadline, func() (err error) {
		n, err = f.reg.NextDispatch(ctx, j.dl.Function, j.dl.Call.ID, claimTTL(j.deadline, time.Now()))
		return err
	})
	if err != nil {
		return roundTrip{kind: outUnreachable, err: fmt.Errorf("start a dispatch: %w", err)}
	}
	f.met.Dispatched(j.dl.Function.String(), n, time.Duration(sinceEntry(j.dl.EntryID, time.Now()))*time.Millisecond)
	j.d.traceDispatched(ctx, j.dl.Call.ID)
	ref := workflows.CallRef{Function: j.dl.Function.String(), EntryID: j.dl.EntryID, CallID: j.dl.Call.ID, Dispatch: n, Exp: j.deadline.UnixMilli()}
	ref.Sign(f.signer)
	body, err := json.Marshal(&ref)
	if err != nil {
		return roundTrip{kind: outUnreachable, err: fmt.Errorf("encode the call reference: %w", err)}
	}
	method := j.s.Record.WebhookMethod
	if method == "" {
		method = http.MethodPost
	}
	url := strings.TrimRight(f.cfg.WebhookURL, "/") + "/" + strings.TrimLeft(j.s.Record.WebhookPath, "/")
	start := time.Now()
	pctx, lost := context.WithCancelCause(ctx)
	stopWatch := j.d.watchWorker(pctx, lost, watched{fn: j.dl.Function, callID: j.dl.Call.ID, dispatch: n, since: start, lostOn: j.lostOn, fence: true})
	status, answer, err := j.d.post(pctx, method, url, body, j.deadline, j.dl.Call.ID, j.wait404)
	stopWatch()
	cause := context.Cause(pctx)
	lost(nil)
	rt := roundTrip{status: status, answer: answer, err: err}
	switch {
	case err != nil && errors.Is(cause, errWorkerLost):
		rt.kind, rt.err = outWorkerLost, cause
		return rt
	case err != nil && time.Now().After(j.deadline):
		rt.kind = outTimedOut
		return rt
	case err != nil:
		rt.kind = outUnreachable
		return rt
	}
	j.log.WithFields(map[string]any{"status": status, "webhook_ms": time.Since(start).Milliseconds(), "dispatch": n,
		"queued_ms": sinceEntry(j.dl.EntryID, start)}).Debug("function execution answered")
	rt.kind = j.classify(ctx, status, answer)
	return rt
}

// classify reads the answer of a webhook that did answer.
func (j *dispatchJob) classify(ctx context.Context, status int, answer []byte) outcome {
	switch {
	case !j.d.stillPending(ctx, j.dl):
		return outAnswered
	case status == http.StatusNotFound:
		return outNotFound
	case status >= 400:
		return outFailed
	case !j.s.Def.LastNodeResponse && j.s.Def.WebhookPath != "":
		return outImmediate
	case isEmptyList(answer):
		return outEmpty
	default:
		return outNoReturn
	}
}

// isEmptyList: a Webhook in "when last node finishes" mode with "all entries" answers [] when the
// last node that ran produced no items (n8n runs nothing after a node without output).
func isEmptyList(b []byte) bool {
	v := gjson.ParseBytes(bytes.TrimSpace(b))
	return v.IsArray() && len(v.Array()) == 0
}

// decide acts on one round trip's outcome.
func (j *dispatchJob) decide(ctx context.Context, rt roundTrip, attempt int) action {
	f := j.d.f
	switch rt.kind {
	case outAnswered:
	case outWorkerLost:
		if j.lostRuns < 3 {
			// n8n would fail the dead worker's job only after its lock expires; run the call again
			// now under a new dispatch number (if that worker was alive after all, the first answer wins).
			j.lostRuns++
			j.log.WithField("cause", rt.err.Error()).Warn("the worker running the function is gone; triggering the call again")
			return actRetry
		}
		j.fail(ctx, registry.ErrorKindFailed, fmt.Sprintf("function %s: the workers running it died %d times: %v", j.name, j.lostRuns+1, rt.err))
	case outTimedOut:
		// The caller has given up; acknowledge so the call is not run again.
		j.fail(ctx, registry.ErrorKindTimeout, fmt.Sprintf("the function's execution did not answer before the call's deadline: %v", rt.err))
	case outUnreachable:
		// n8n unreachable: leave the entry pending; a recoverer re-dispatches it after claimIdle.
		j.log.WithError(rt.err).Warn("could not trigger the function's webhook; the call stays queued")
	case outNotFound:
		return j.notFound(ctx, attempt)
	case outFailed:
		return j.failed(ctx, rt, attempt)
	case outImmediate:
		// The Webhook answers before the execution ends ("Respond: Immediately"; n8n-fn lint
		// warns): keep the call alive until return answers it or its deadline passes.
		j.d.awaitReturn(ctx, j.dl, j.deadline, func(kind registry.ErrorKind, msg string) { j.fail(ctx, kind, msg) })
	case outEmpty:
		// The body's items ran out before return (a search that found nothing): zero items.
		if err := f.reg.Complete(ctx, j.dl, registry.Reply{CallID: j.dl.Call.ID, OK: true, Items: json.RawMessage(`[]`)}); err != nil {
			j.log.WithError(err).Warn("could not send the zero-item result")
		}
	case outNoReturn:
		j.fail(ctx, registry.ErrorKindNoReturn, fmt.Sprintf("function %s ended without reaching a return node (workflow %s): its last node produced items that no n8n-fn return node received; every path of a function that produces items must end in a return node",
			j.name, j.s.Record.WorkflowID))
	}
	return actDone
}

// moved rediscovers and reports whether the function's webhook is now somewhere else (then the
// job triggers the new path).
func (j *dispatchJob) moved(ctx context.Context) bool {
	f := j.d.f
	if f.disc == nil || f.api == nil {
		return false
	}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := f.disc.refreshNow(dctx); err != nil {
		return false
	}
	s := f.catalog.get(j.dl.Function)
	if s == nil || (s.Record.WebhookPath == j.s.Record.WebhookPath && s.Record.WorkflowID == j.s.Record.WorkflowID) {
		return false
	}
	j.log.WithField("path", s.Record.WebhookPath).Info("the function's webhook moved; triggering it at its new path")
	j.s = s
	return true
}

// notFound: the webhook path is not registered. The workflow may have been edited (a new path)
// or unpublished: rediscover at once and try the current path.
func (j *dispatchJob) notFound(ctx context.Context, attempt int) action {
	f := j.d.f
	if !j.wait404 && (f.disc == nil || f.api == nil) {
		j.wait404 = true
		return actRetry
	}
	if attempt < 2 && f.disc != nil && f.api != nil {
		if j.moved(ctx) {
			return actRetry
		}
		if f.catalog.get(j.dl.Function) == nil {
			j.fail(ctx, registry.ErrorKindNotFound, fmt.Sprintf("function %s is no longer published: workflow %s was unpublished, deleted or its function node removed (its webhook answered HTTP 404)",
				j.name, j.s.Record.WorkflowID))
			return actDone
		}
		if !j.wait404 {
			// The path is current: n8n may still be registering it.
			j.wait404 = true
			return actRetry
		}
	}
	method := j.s.Record.WebhookMethod
	if method == "" {
		method = http.MethodPost
	}
	j.fail(ctx, registry.ErrorKindNotFound, fmt.Sprintf("function %s: its webhook %s %s is not registered in n8n (HTTP 404): is workflow %s still published?",
		j.name, method, j.s.Record.WebhookPath, j.s.Record.WorkflowID))
	return actDone
}

// failed: the execution answered an error status. Find the execution that claimed the call to
// report its error; an execution that never ran (or whose worker died) is triggered again.
func (j *dispatchJob) failed(ctx context.Context, rt roundTrip, attempt int) action {
	msg, execStatus, runnerLost := j.d.executionError(ctx, j.dl.Function, j.dl.Call.ID)
	again := time.Now().Add(time.Second).Before(j.deadline) && j.d.f.api != nil
	if msg == "" && attempt < 2 && j.moved(ctx) {
		// Nothing ran, and the function's webhook has moved: n8n answers an edited workflow's old
		// path with an internal error for a while (2.41: "Cannot read properties of undefined").
		return actRetry
	}
	switch {
	case msg == "" && again && attempt < 2:
		// No failed execution holds this call: n8n could not start one (e.g. its database was
		// busy), or the worker running it died (n8n fails the stalled job without retrying it).
		j.log.WithField("status", rt.status).Info("the function's execution did not run to an error (not started, or its worker died); triggering it again")
		return actRetryLater
	case execStatus == "crashed" && again && attempt < 3:
		j.log.Warn("the function's execution crashed (its worker died?); triggering it again")
		return actRetry
	case runnerLost && again && attempt < 3:
		// n8n lost the task runner under a node of the function (the sidecar or the runner behind
		// it died): nothing the function did failed, so it runs again, as after a worker crash.
		j.log.Warn("the function's execution failed because n8n lost its task runner (a sidecar or runner died); triggering it again")
		return actRetry
	}
	if msg == "" {
		msg = fmt.Sprintf("n8n answered HTTP %d %s", rt.status, clipString(string(rt.answer), 200))
	}
	j.fail(ctx, registry.ErrorKindFailed, fmt.Sprintf("function %s failed: %s", j.name, collapseNested(msg)))
	return actDone
}

// nestedFailure matches the error of a function execution that failed because a call it made
// failed: "n8n-fn call F: function F failed: <that call's error> (execution N)"; collapsedSuffix
// the end collapseNested gives such a chain, so the level above counts on from it.
var (
	nestedFailure   = regexp.MustCompile(`^n8n-fn call .+?: function .+? failed: (.*) \(execution ([0-9]+)\)$`)
	collapsedSuffix = regexp.MustCompile(`^(.*) \(through ([0-9]+) nested calls, execution [0-9]+\)$`)
)

// collapseNested shortens the error of a failure that came up through nested calls (a deep
// recursion): n levels of "n8n-fn call F: function F failed: ... (execution N)" become the
// innermost error, kept whole, and how deep it came from, instead of n repetitions before it.
func collapseNested(msg string) string {
	inner, levels, outer := msg, 0, ""
	for {
		m := nestedFailure.FindStringSubmatch(inner)
		if m == nil {
			break
		}
		if levels == 0 {
			outer = m[2]
		}
		inner, levels = m[1], levels+1
	}
	if m := collapsedSuffix.FindStringSubmatch(inner); m != nil && levels > 0 {
		n, _ := strconv.Atoi(m[2])
		inner, levels = m[1], levels+n
	}
	if levels < 2 {
		return msg
	}
	return fmt.Sprintf("%s (through %d nested calls, execution %s)", inner, levels, outer)
}

// post sends the call reference to the function's webhook and returns n8n's answer. A 404 is
// asked again for a while: publishing is asynchronous in n8n 2.x, so a just-published function's
// webhook answers 404 for a moment, and nothing ran.
func (d *dispatcher) post(ctx context.Context, method, url string, body []byte, deadline time.Time, callID string, wait404 bool) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		if err != nil {
			return 0, nil, fmt.Errorf("build the webhook request %s %s: %w", method, url, err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "n8n-fn-dispatcher/"+d.f.cfg.ID)
		// With it Go's transport resends the POST by itself when a kept-alive connection turns out
		// to be closed by n8n ("connection reset by peer"); without it the call would wait for
		// the recoverer (claimIdle). Safe: a call runs at most once per entry (the function node
		// refuses an answered call) and delivery is at-least-once anyway.
		req.Header.Set("Idempotency-Key", callID)
		resp, err := d.http.Do(req)
		if err != nil {
			return 0, nil, err
		}
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !wait404 || attempt >= 15 || time.Now().Add(200*time.Millisecond).After(deadline) {
			return resp.StatusCode, answer, nil
		}
		select {
		case <-ctx.Done():
			return resp.StatusCode, answer, nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// errWorkerLost cancels a dispatch whose function execution runs on a worker that is gone.
var errWorkerLost = errors.New("the worker running the function's execution is gone")

// watched is one trigger whose function execution the dispatcher watches (watchWorker).
type watched struct {
	fn       registry.FunctionKey
	callID   string
	dispatch int64     // the dispatch number this trigger posted
	since    time.Time // when it was posted (this sidecar's clock)
	lostOn   map[string]bool
	absent   map[string]time.Time // when a claiming sidecar's heartbeat was first seen missing (watchWorker makes it)
	// fence lets the watch retire the dispatch while no execution claimed it, after some
	// worker's n8n process went away: not for a batch (its other calls' numbers stay valid).
	fence bool
}

// watchWorker checks every workerWatchInterval, while a dispatch waits for the function's
// execution, whether that execution is dead, and then cancels the wait with errWorkerLost, so the
// dispatcher runs the call again at once instead of after n8n's stalled-job handling (85-100 s):
//   - the sidecar whose worker claimed the call found its n8n process gone after the claim (a
//     refused connection to its task broker: the process and its executions are gone, whether
//     it comes back in 2 s or never), or it has been without n8n for workerLostAfter, or it
//     stopped heartbeating;
//   - no execution has claimed the call unclaimedGrace after some worker's n8n process went away
//     since the dispatch began (the job may have died with it before the function node ran): the
//     dispatch is fenced first (FenceDispatch, only while still unclaimed), so if the execution
//     was alive after all it claims nothing and the call still runs once.
//
// The returned func stops it.
func (d *dispatcher) watchWorker(ctx context.Context, cancel context.CancelCauseFunc, w watched) func() {
	if w.absent == nil {
		w.absent = map[string]time.Time{}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(d.f.tun.workerWatchInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if why := d.executionGone(ctx, w); why != "" {
				cancel(fmt.Errorf("%w: %s", errWorkerLost, why))
				return
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// executionGone says why the watched dispatch's execution is dead, "" while it may be alive (or
// Redis is busy: n8n's own timeout still applies).
func (d *dispatcher) executionGone(ctx context.Context, w watched) string {
	c, err := d.f.reg.ClaimState(ctx, w.fn, w.callID)
	switch {
	case err != nil || c.Dispatch != w.dispatch:
		// Dispatched again since (by a recoverer elsewhere): that dispatch is not ours to judge.
		return ""
	case c.Exec == "":
		if w.fence && d.fencedUnclaimed(ctx, w) {
			return "no execution claimed the call after a worker's n8n process went away since it was dispatched (its job may have died with it)"
		}
		return ""
	}
	why := d.workerGone(ctx, c, w.lostOn, w.absent)
	if why != "" {
		why = "sidecar " + c.Sidecar + " " + why
	}
	return why
}

// fencedUnclaimed retires the watched, still unclaimed dispatch when some worker's n8n process
// went away after the dispatch began and unclaimedGrace ago at least (an execution on a live
// worker claims its call within milliseconds of starting), and says whether it did.
func (d *dispatcher) fencedUnclaimed(ctx context.Context, w watched) bool {
	gone, err := d.f.reg.LatestN8NGone(ctx)
	// The registry keeps milliseconds: a loss in the dispatch's own millisecond counts (fencing
	// is safe either way: a live execution of the dispatch would have claimed it by now).
	if err != nil || gone.Before(w.since.Truncate(time.Millisecond)) || time.Since(gone) < d.f.tun.unclaimedGrace {
		return false
	}
	ok, err := d.f.reg.FenceDispatch(ctx, w.fn, w.callID, w.dispatch)
	return err == nil && ok
}

// workerGone says why the worker running claim c is gone, "" while it looks alive.
func (d *dispatcher) workerGone(ctx context.Context, c registry.Claim, lostOn map[string]bool, absent map[string]time.Time) string {
	st, err := d.f.reg.N8NState(ctx, c.Sidecar)
	if err == nil && st.Alive {
		delete(absent, c.Sidecar)
	}
	switch {
	case err != nil:
		return ""
	case !c.At.IsZero() && !st.GoneAt.IsZero() && !st.GoneAt.Before(c.At):
		// Both times are that sidecar's clock, in milliseconds: its n8n process went away after
		// (or in the millisecond of) the execution's claim, so the execution died with it (a
		// restarted process runs it no more; a claim needs a connected n8n, so a loss found in
		// the claim's own millisecond came after it).
		return fmt.Sprintf("found its n8n process gone %s after the function's execution claimed the call (its task broker refused connections)", st.GoneAt.Sub(c.At).Round(time.Millisecond))
	case lostOn[c.Sidecar]:
		// Given up on once already: its reports may still describe the old loss.
		return ""
	case !st.Alive:
		// A Redis that restarted without its data has lost every heartbeat too: a live sidecar
		// writes its own again within its heartbeat interval, so only a heartbeat missing for
		// longer than that means the sidecar is gone (re-running earlier ran live bodies twice).
		first, seen := absent[c.Sidecar]
		if !seen {
			absent[c.Sidecar] = time.Now()
			return ""
		}
		if confirm := d.f.tun.heartbeatInterval * 3 / 2; time.Since(first) < confirm {
			return ""
		}
		lostOn[c.Sidecar] = true
		return "stopped heartbeating"
	case st.LostFor >= d.f.tun.workerLostAfter:
		delete(absent, c.Sidecar)
		lostOn[c.Sidecar] = true
		return fmt.Sprintf("has had no n8n process for %s", st.LostFor.Round(time.Second))
	}
	return ""
}

// awaitReturn keeps an entry fresh until it is answered or its deadline passes, for functions
// whose Webhook does not wait for the execution to end.
func (d *dispatcher) awaitReturn(ctx context.Context, dl registry.Delivery, deadline time.Time, fail func(kind registry.ErrorKind, msg string)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		if !d.stillPending(ctx, dl) {
			return
		}
		if time.Now().After(deadline) {
			fail(registry.ErrorKindTimeout, "the function did not reach its return node before the call's deadline (its Webhook answers immediately, so n8n-fn cannot see the execution end: set the Webhook to respond when the last node finishes)")
			return
		}
	}
}

// stillPending reports whether the entry is still pending on this consumer (nobody answered it).
func (d *dispatcher) stillPending(ctx context.Context, dl registry.Delivery) bool {
	err := d.f.reg.KeepAlive(ctx, dl.Function, d.consumer, []string{dl.EntryID})
	if err == nil {
		return true
	}
	if !errors.Is(err, registry.ErrNotOwner) {
		d.f.log.WithError(err).Warn("could not check whether the call was answered")
	}
	return false
}

// executionError returns the error message and n8n status (error, crashed) of the execution that
// claimed the call; "" when no execution claimed it or it did not fail.
// The third result says whether n8n failed it because it lost the task runner under a node
// (runnerLostError).
func (d *dispatcher) executionError(ctx context.Context, fn registry.FunctionKey, callID string) (string, string, bool) {
	if d.f.api == nil {
		return "", "", false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for attempt := 0; attempt < 5; attempt++ {
		execID, _, _, err := d.f.reg.ClaimOf(ctx, fn, callID)
		if err == nil && execID != "" {
			full, err := d.f.api.GetExecution(ctx, execID, true)
			if err == nil && (full.Status == "error" || full.Status == "crashed") {
				return executionErrorMessage(full.Raw) + " (execution " + execID + ")", full.Status, runnerLostError(full.Raw)
			}
		}
		// n8n saves a failed execution's status a moment after the webhook answered.
		select {
		case <-ctx.Done():
			return "", "", false
		case <-time.After(150 * time.Millisecond):
		}
	}
	return "", "", false
}

// runnerLostError reports whether a failed execution's error is n8n's TaskRunnerDisconnectedError
// (n8n 2.41 task-runners/errors/task-runner-disconnected-error.ts): the runner running a node's
// task went away, which says nothing about the function's own code.
func runnerLostError(raw []byte) bool {
	e := gjson.GetBytes(raw, "data.resultData.error")
	return e.Get("message").String() == "Node execution failed" &&
		(!e.Get("description").Exists() || strings.HasPrefix(e.Get("description").String(), "This can happen for various reasons"))
}

// executionErrorMessage reads the error of a failed execution (n8n's execution JSON with data).
func executionErrorMessage(raw []byte) string {
	doc := gjson.ParseBytes(raw)
	e := doc.Get("data.resultData.error")
	if !e.Exists() {
		return "the execution failed without an error message"
	}
	msg := e.Get("message").String()
	if n := e.Get("node.name").String(); n != "" {
		msg = "node " + n + ": " + msg
	}
	return msg
}

func clipString(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
