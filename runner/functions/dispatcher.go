package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/registry"
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
	f        *Runtime
	http     *http.Client
	consumer string

	mu       sync.Mutex
	loops    map[registry.FunctionKey]*fnLoop
	inflight map[registry.FunctionKey]map[string]bool // entry ids being dispatched, for KeepAlive
	wg       sync.WaitGroup                           // running dispatches
	stopRead context.CancelFunc
}

// fnLoop reads one function's stream.
type fnLoop struct {
	key    registry.FunctionKey
	max    int
	slots  chan struct{} // one token per in-flight dispatch
	cancel context.CancelFunc
}

func newDispatcher(f *Runtime) *dispatcher {
	return &dispatcher{
		f: f, http: webhookClient(), consumer: f.cfg.ID,
		loops: map[registry.FunctionKey]*fnLoop{}, inflight: map[registry.FunctionKey]map[string]bool{},
	}
}

func (d *dispatcher) start(ctx context.Context, wg *sync.WaitGroup) {
	readCtx, stop := context.WithCancel(ctx)
	d.stopRead = stop
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			changed := d.f.catalog.watch()
			d.sync(readCtx)
			select {
			case <-readCtx.Done():
				d.mu.Lock()
				for k, l := range d.loops {
					l.cancel()
					delete(d.loops, k)
				}
				d.mu.Unlock()
				return
			case <-changed:
			}
		}
	}()
	every(ctx, wg, d.f.tun.keepAliveInterval, d.keepAlive)
}

// shutdown stops reading new calls and waits (until ctx ends) for the dispatches in flight, so
// their entries are acknowledged instead of being run again elsewhere.
func (d *dispatcher) shutdown(ctx context.Context) {
	if d.stopRead != nil {
		d.stopRead()
	}
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

// sync starts a read loop for every served function and stops the loops of functions no longer served.
func (d *dispatcher) sync(ctx context.Context) {
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
			l.cancel()
			delete(d.loops, k)
		}
	}
	for k, n := range want {
		if _, ok := d.loops[k]; ok {
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		l := &fnLoop{key: k, max: n, slots: make(chan struct{}, n), cancel: cancel}
		d.loops[k] = l
		go d.readLoop(lctx, l)
	}
}

// readLoop reads calls of one function while it has free slots.
func (d *dispatcher) readLoop(ctx context.Context, l *fnLoop) {
	log := d.f.log.WithField("function", l.key.String())
	backoff := time.Second
	for {
		// Take one slot (blocks while all are busy), then as many more as are free.
		select {
		case l.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		free := 1
	more:
		for free < l.max {
			select {
			case l.slots <- struct{}{}:
				free++
			default:
				break more
			}
		}
		ds, err := d.f.reg.ReadCalls(ctx, d.consumer, []registry.FunctionKey{l.key}, int64(free), d.f.tun.readBlock)
		for i := len(ds); i < free; i++ {
			<-l.slots
		}
		for _, dl := range ds {
			d.launch(ctx, l, dl)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.WithError(err).Warn("reading calls failed; retrying")
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
	}
}

// launch dispatches one delivery in its own goroutine; its slot is already taken.
func (d *dispatcher) launch(_ context.Context, l *fnLoop, dl registry.Delivery) {
	d.track(dl, true)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer func() { <-l.slots }()
		defer d.track(dl, false)
		// In-flight dispatches outlive a stopped read loop (their execution is already running);
		// each is bounded by its call's deadline, and shutdown waits for them within its grace.
		d.dispatch(context.Background(), dl)
	}()
}

// handoff dispatches a reclaimed delivery once its function has a free slot.
func (d *dispatcher) handoff(ctx context.Context, dl registry.Delivery) {
	d.mu.Lock()
	l := d.loops[dl.Function]
	d.mu.Unlock()
	if l == nil {
		return // not served here any more: it stays pending for another sidecar's recoverer
	}
	go func() {
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
	m := d.inflight[dl.Function]
	if add {
		if m == nil {
			m = map[string]bool{}
			d.inflight[dl.Function] = m
		}
		m[dl.EntryID] = true
		return
	}
	delete(m, dl.EntryID)
	if len(m) == 0 {
		delete(d.inflight, dl.Function)
	}
}

// keepAlive refreshes every in-flight entry so other sidecars' recoverers leave slow calls alone.
func (d *dispatcher) keepAlive(ctx context.Context) {
	d.mu.Lock()
	work := map[registry.FunctionKey][]string{}
	for k, m := range d.inflight {
		for id := range m {
			work[k] = append(work[k], id)
		}
	}
	d.mu.Unlock()
	for k, ids := range work {
		if err := d.f.reg.KeepAlive(ctx, k, d.consumer, ids); err != nil && !errors.Is(err, registry.ErrNotOwner) {
			d.f.log.WithError(err).WithField("function", k.String()).Warn("keep-alive of in-flight calls failed")
		}
	}
}

// dispatch triggers the function's workflow for one call and, when the execution's answer shows
// the call was not answered by a return node, answers the caller with the reason.
func (d *dispatcher) dispatch(ctx context.Context, dl registry.Delivery) {
	f := d.f
	key := dl.Function
	log := f.log.WithFields(map[string]any{"function": key.String(), "call": dl.Call.ID, "entry": dl.EntryID})
	s := f.catalog.get(key)
	if s == nil {
		return // left pending: reclaimed by a sidecar that serves it
	}
	fail := func(kind registry.ErrorKind, msg string) {
		if err := f.reg.Complete(ctx, dl, registry.Reply{CallID: dl.Call.ID, Error: msg, ErrorKind: kind}); err != nil {
			log.WithError(err).Warn("could not send the error reply")
		}
	}
	now := time.Now()
	deadline := dl.Call.Deadline
	if deadline.IsZero() {
		deadline = now.Add(time.Duration(max(s.Record.TimeoutMs, int64(workflows.DefaultFunctionTimeoutMs))) * time.Millisecond)
	}
	if now.After(deadline) {
		fail(registry.ErrorKindExpired, fmt.Sprintf("call %s to %s expired %s before it could be dispatched (the function is busy: raise its maxConcurrency or the call's timeoutMs, or add workers)",
			dl.Call.ID, key, now.Sub(deadline).Round(time.Millisecond)))
		return
	}
	ref := workflows.CallRef{Function: key.String(), EntryID: dl.EntryID, CallID: dl.Call.ID, Exp: deadline.UnixMilli()}
	ref.Sign(f.signer)
	body, err := json.Marshal(&ref)
	if err != nil {
		fail(registry.ErrorKindDispatch, "encode the call reference: "+err.Error())
		return
	}
	method := s.Record.WebhookMethod
	if method == "" {
		method = http.MethodPost
	}
	url := strings.TrimRight(f.cfg.WebhookURL, "/") + "/" + strings.TrimLeft(s.Record.WebhookPath, "/")
	rctx, cancel := context.WithDeadline(ctx, deadline.Add(webhookGrace))
	defer cancel()
	name := display(key)
	lostRuns, lostOn := 0, map[string]bool{}
	for attempt := 0; ; attempt++ {
		start := time.Now()
		pctx, lost := context.WithCancelCause(rctx)
		stopWatch := d.watchWorker(pctx, lost, key, dl.EntryID, lostOn)
		status, answer, err := d.post(pctx, method, url, body, deadline, dl.Call.ID)
		stopWatch()
		if cause := context.Cause(pctx); errors.Is(cause, errWorkerLost) && err != nil && lostRuns < 3 {
			// n8n would fail the dead worker's job only after its lock expires; run the call again
			// now (at-least-once: if that worker was alive after all, the first answer wins).
			lostRuns++
			log.WithField("cause", cause.Error()).Warn("the worker running the function is gone; triggering the call again")
			lost(nil)
			continue
		}
		lost(nil)
		if err != nil {
			if time.Now().After(deadline) {
				// The caller has given up; acknowledge so the call is not run again.
				fail(registry.ErrorKindTimeout, fmt.Sprintf("the function's execution did not answer before the call's deadline: %v", err))
				return
			}
			// n8n unreachable: leave the entry pending; a recoverer re-dispatches it after claimIdle.
			log.WithError(err).Warn("could not trigger the function's webhook; the call stays queued")
			return
		}
		log.WithFields(map[string]any{"status": status, "webhook_ms": time.Since(start).Milliseconds(),
			"queued_ms": sinceEntry(dl.EntryID, start)}).Debug("function execution answered")
		if !d.stillPending(ctx, dl) {
			return // the return node answered (or the call was reclaimed by another sidecar)
		}
		switch {
		case status == http.StatusNotFound:
			fail(registry.ErrorKindNotFound, fmt.Sprintf("function %s: its webhook %s %s is not registered in n8n (HTTP 404): is workflow %s still published?",
				name, method, s.Record.WebhookPath, s.Record.WorkflowID))
		case status >= 400:
			msg, execStatus := d.executionError(ctx, s.Record.WorkflowID, dl.Call.ID)
			again := time.Now().Add(time.Second).Before(deadline) && d.f.api != nil
			switch {
			case msg == "" && again && attempt < 2:
				// No failed execution with an error holds this call: n8n could not start one (e.g.
				// its database was busy), or the worker running it died (n8n fails the stalled job
				// without retrying it). Nothing answered the call, so trigger it again.
				log.WithField("status", status).Info("the function's execution did not run to an error (not started, or its worker died); triggering it again")
				time.Sleep(time.Duration(300*(attempt+1)) * time.Millisecond)
				continue
			case execStatus == "crashed" && again && attempt < 3:
				// The worker running the function died (n8n marks the execution crashed and does not
				// retry it): run the call again, at least once in total.
				log.Warn("the function's execution crashed (its worker died?); triggering it again")
				continue
			}
			if msg == "" {
				msg = fmt.Sprintf("n8n answered HTTP %d %s", status, clipString(string(answer), 200))
			}
			fail(registry.ErrorKindFailed, fmt.Sprintf("function %s failed: %s", name, msg))
		case !s.Def.LastNodeResponse && s.Def.WebhookPath != "":
			// The Webhook answers before the execution ends ("Respond: Immediately"; n8n-fn lint
			// warns): keep the call alive until return answers it or its deadline passes.
			d.awaitReturn(ctx, dl, deadline, fail)
		default:
			fail(registry.ErrorKindNoReturn, fmt.Sprintf("function %s ended without reaching a return node (workflow %s): every path of a function must end in an n8n-fn return node, and items must keep their _functionCall field on the way",
				name, s.Record.WorkflowID))
		}
		return
	}
}

// post sends the call reference to the function's webhook and returns n8n's answer. A 404 is
// asked again for a while: publishing is asynchronous in n8n 2.x, so a just-published function's
// webhook answers 404 for a moment, and nothing ran.
func (d *dispatcher) post(ctx context.Context, method, url string, body []byte, deadline time.Time, callID string) (int, []byte, error) {
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
		if resp.StatusCode != http.StatusNotFound || attempt >= 15 || time.Now().Add(200*time.Millisecond).After(deadline) {
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

// watchWorker checks, while a dispatch waits for the function's execution, whether the sidecar
// that runs it (registry.MarkRunning) lost its n8n process for workerLostAfter or stopped
// heartbeating, and then cancels the wait with errWorkerLost. The returned func stops it.
func (d *dispatcher) watchWorker(ctx context.Context, cancel context.CancelCauseFunc, fn registry.FunctionKey, entryID string, lostOn map[string]bool) func() {
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
			sid, err := d.f.reg.RunningOn(ctx, fn, entryID)
			if err != nil || sid == "" || lostOn[sid] {
				// Not started yet (or still marked on the worker already given up on), or Redis is
				// busy: n8n's own timeout still applies.
				continue
			}
			lostFor, alive, err := d.f.reg.N8NLost(ctx, sid)
			switch {
			case err != nil:
			case !alive:
				lostOn[sid] = true
				cancel(fmt.Errorf("%w: sidecar %s stopped heartbeating", errWorkerLost, sid))
				return
			case lostFor >= d.f.tun.workerLostAfter:
				lostOn[sid] = true
				cancel(fmt.Errorf("%w: sidecar %s has had no n8n process for %s", errWorkerLost, sid, lostFor.Round(time.Second)))
				return
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
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

// executionError finds the failed execution of the function's workflow that served callID and
// returns its error message and n8n status (error, crashed); "" when it cannot be found.
func (d *dispatcher) executionError(ctx context.Context, workflowID, callID string) (string, string) {
	if d.f.api == nil || workflowID == "" {
		return "", ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for attempt := 0; attempt < 5; attempt++ {
		exs, err := d.f.api.ListExecutions(ctx, workflowID, 10)
		if err != nil {
			return "", ""
		}
		for _, e := range exs {
			if e.Status != "error" && e.Status != "crashed" {
				continue
			}
			full, err := d.f.api.GetExecution(ctx, e.ID, true)
			if err != nil || !bytes.Contains(full.Raw, []byte(callID)) {
				continue
			}
			return executionErrorMessage(full.Raw) + " (execution " + e.ID + ")", e.Status
		}
		select {
		case <-ctx.Done():
			return "", ""
		case <-time.After(150 * time.Millisecond):
		}
	}
	return "", ""
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
