package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tidwall/gjson"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/n8n-fn/n8n-fn/n8nproto"
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// callOp answers a `call` node: one call per input item (all in parallel) or one call for all
// items, queued on the function's stream, then one wait on this task's reply list for all of them.
func (f *Runtime) callOp(ctx context.Context, t *n8nproto.UpstreamTask, h *workflows.Header, s n8nproto.CodeSettings) (n8nproto.Parts, error) {
	if err := f.enabled(); err != nil {
		return nil, err
	}
	start := time.Now()
	data, err := fetchTaskData(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("n8n-fn call: %w", err)
	}
	d, err := workflows.ParseCall(data.NodeName, h)
	if err != nil {
		return nil, directiveError(err)
	}
	return f.runCall(ctx, data, d, callOptions{taskID: t.ID, continueOnFail: s.ContinueOnFail, started: start})
}

type callOptions struct {
	taskID         string
	continueOnFail bool
	started        time.Time // when n8n's task timeout started counting
}

// callReq is one call to make: the input items it covers, its params and binary data, and the
// call this execution serves (when the caller is itself a function body) as the parent.
type callReq struct {
	items  []int
	params json.RawMessage
	binary json.RawMessage
	parent *registry.ExecCall
	idem   string
	token  string // holds the idempotency key's running mark (registry.StartIdempotent)

	returned []json.RawMessage
	binaries []json.RawMessage // parallel to returned; nil when no item has binary data
	err      error
	done     bool
	reused   bool // answered with the stored result of its idempotency key
}

// callPlan is what every attempt of one call node shares.
type callPlan struct {
	key          registry.FunctionKey
	label        string
	replyKey     string
	caller       callerID
	timeout      time.Duration
	taskDeadline time.Time
	retries      int
	retryDelay   func(attempt int) int
}

// runCall is callOp after the data request (tests call it directly).
func (f *Runtime) runCall(ctx context.Context, data *taskData, d *workflows.CallDirective, o callOptions) (n8nproto.Parts, error) {
	key := keyOf(d.Target(data.WorkflowID))
	label := "n8n-fn call " + display(key)

	// Everything about the items is checked before anything is queued.
	parents, err := f.parentCalls(ctx, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	if err := f.cfg.Limits.CheckItems(len(data.Items)); err != nil {
		return nil, &OpError{Message: label + ": " + err.Error() + "; nothing was queued", Err: err}
	}
	reqs, err := buildCallReqs(data, d, refOf(key), parents, f.cfg.Limits)
	if err != nil {
		var oe *OpError
		if errors.As(err, &oe) {
			oe.Message = label + ": " + oe.Message
			return nil, oe
		}
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	if len(reqs) == 0 {
		return resultParts(nil)
	}
	// A call whose idempotency key already has a successful result is answered with it.
	if err := f.reuseIdempotent(ctx, key, reqs); err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	if allDone(reqs) {
		return f.callOutput(reqs, data, d, o, label)
	}
	rec, err := f.resolve(ctx, key, d)
	if err != nil {
		return f.callFailed(reqs, data, d, o, err)
	}
	// From here this execution waits for its calls, holding its execution slot.
	release, err := f.holdWaiter(ctx, label, o.taskID)
	if err != nil {
		return f.callFailed(reqs, data, d, o, err)
	}
	defer release()
	p := f.plan(key, label, rec, data, d, o)
	mine, followers, err := f.markIdempotent(ctx, p, reqs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	for len(mine) > 0 || len(followers) > 0 {
		if err := f.attempts(ctx, p, mine); err != nil {
			return nil, err
		}
		f.finishIdempotent(ctx, key, mine)
		// Calls that waited for another call with their idempotency key: take its result, or run
		// themselves when it failed.
		if mine, err = f.awaitIdempotent(ctx, p, followers); err != nil {
			return nil, err
		}
		followers = nil
	}
	return f.callOutput(reqs, data, d, o, label)
}

// plan works out the per-attempt timeout, the task's deadline and the reply list of a call node.
func (f *Runtime) plan(key registry.FunctionKey, label string, rec *registry.FunctionRecord, data *taskData, d *workflows.CallDirective, o callOptions) *callPlan {
	timeout := time.Duration(d.TimeoutMs) * time.Millisecond
	if timeout == 0 && rec.TimeoutMs > 0 {
		timeout = time.Duration(rec.TimeoutMs) * time.Millisecond
	}
	if timeout == 0 {
		timeout = time.Duration(workflows.DefaultFunctionTimeoutMs) * time.Millisecond
	}
	taskTimeout := f.cfg.TaskTimeout
	if taskTimeout <= 0 {
		taskTimeout = 300 * time.Second // n8n's default N8N_RUNNERS_TASK_TIMEOUT
	}
	return &callPlan{
		key: key, label: label, timeout: timeout, retries: d.Retries, retryDelay: d.RetryDelayMs,
		taskDeadline: o.started.Add(taskTimeout - taskTimeoutMargin),
		replyKey:     f.reg.ReplyKey(f.cfg.ID + ":" + o.taskID + ":" + workflows.NewCallID()[:12]),
		caller:       callerID{sidecar: f.cfg.ID, workflow: data.WorkflowID, workflowName: data.WorkflowName, execution: data.ExecutionID, node: data.NodeName},
	}
}

// attempts runs the calls reqs with the node's retries: each attempt queues every call not yet
// answered, in parallel, and waits for all of them.
func (f *Runtime) attempts(ctx context.Context, p *callPlan, reqs []*callReq) error {
	for attempt := 0; attempt <= p.retries; attempt++ {
		var pending []*callReq
		for _, r := range reqs {
			if !r.done {
				pending = append(pending, r)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if attempt > 0 {
			wait := time.Duration(p.retryDelay(attempt)) * time.Millisecond
			if time.Now().Add(wait).After(p.taskDeadline) {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		deadline := time.Now().Add(p.timeout)
		cappedByTask := false
		if deadline.After(p.taskDeadline) {
			deadline, cappedByTask = p.taskDeadline, true
		}
		if err := f.callOnce(ctx, p.key, p.label, p.replyKey, p.caller, pending, deadline, p.timeout, cappedByTask, attempt); err != nil {
			return err
		}
		if !anyRetryable(pending) {
			return nil
		}
	}
	return nil
}

func anyRetryable(reqs []*callReq) bool {
	for _, r := range reqs {
		if !r.done && !errors.Is(r.err, errNoRetry) {
			return true
		}
	}
	return false
}

// parentCalls returns, for each input item, the call this execution serves that the item belongs
// to (nil entries: the caller is not a function body). Nested calls take their depth and chain
// from it; a _functionCall field in the items is just data.
func (f *Runtime) parentCalls(ctx context.Context, data *taskData) ([]*registry.ExecCall, error) {
	var calls []registry.ExecCall
	// A Redis restart (seconds, longer while it loads its AOF) costs time; with Redis down for
	// longer than resolveOutageWait the call fails before anything is queued.
	err := registry.RetryOutage(ctx, time.Now().Add(resolveOutageWait), func() (err error) {
		calls, err = f.reg.ExecutionCalls(ctx, data.ExecutionID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("find the call execution %s serves: %w", data.ExecutionID, err)
	}
	parents := make([]*registry.ExecCall, len(data.Items))
	switch {
	case len(calls) == 0:
		return parents, nil
	case len(calls) == 1 || f.lineage == nil:
		for i := range parents {
			parents[i] = &calls[0]
		}
		return parents, nil
	}
	groups, err := f.lineage(ctx, data, calls)
	if err != nil {
		return nil, err
	}
	for ci, idx := range groups {
		for _, i := range idx {
			parents[i] = &calls[ci]
		}
	}
	return parents, nil
}

func allDone(reqs []*callReq) bool {
	for _, r := range reqs {
		if !r.done {
			return false
		}
	}
	return true
}

// resolveOutageWait bounds how long resolve's reads wait out a Redis outage.
const resolveOutageWait = 15 * time.Second

// errNoRetry marks call failures a retry cannot fix (bad params, payload too big).
var errNoRetry = errors.New("not retryable")

// withdraw cancels the calls nobody waits for any more (timed out, or the task was cancelled),
// so that a call still queued is not run later for nothing (or run twice, next to its retry).
func (f *Runtime) withdraw(ctx context.Context, key registry.FunctionKey, ids []string, replies map[string]registry.Reply, entryOf map[string]string) {
	var gone, goneIDs []string
	for _, id := range ids {
		if _, ok := replies[id]; !ok {
			gone = append(gone, entryOf[id])
			goneIDs = append(goneIDs, id)
		}
	}
	if len(gone) == 0 {
		return
	}
	// The task's context may be what ended: the withdrawal gets its own short one.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := f.reg.CancelCalls(cctx, key, gone...); err != nil {
		f.log.WithError(err).WithField("function", key.String()).Warn("could not withdraw calls nobody waits for; they may still run")
	}
	f.stopRunning(cctx, key, goneIDs)
}

// stopRunning stops the function executions already running for calls nobody waits for: the
// execution that claimed each call is stopped through n8n's API, and n8n cancels its running
// task, so a call node inside it withdraws and stops its own calls in turn, down the call tree.
func (f *Runtime) stopRunning(ctx context.Context, key registry.FunctionKey, callIDs []string) {
	if f.api == nil {
		return
	}
	for _, id := range callIDs {
		execID, _, _, err := f.reg.ClaimOf(ctx, key, id)
		if err != nil || execID == "" {
			continue // not started (withdrawn above) or Redis is busy
		}
		if err := f.api.StopExecution(ctx, execID); err != nil {
			f.log.WithError(err).WithFields(map[string]any{"function": key.String(), "execution": execID}).Warn("could not stop the function execution of a call nobody waits for")
			continue
		}
		f.log.WithFields(map[string]any{"function": key.String(), "call": id, "execution": execID}).Info("stopped the function execution of a call nobody waits for")
	}
}

// callOnce queues one attempt of every pending call in parallel and waits for all replies until
// deadline; each call gets its result or its error.
func (f *Runtime) callOnce(ctx context.Context, key registry.FunctionKey, label, replyKey string, caller callerID, pending []*callReq,
	deadline time.Time, timeout time.Duration, cappedByTask bool, attempt int) error {
	queued := time.Now()
	waitIDs, byID, entryOf, calls := f.queueCalls(ctx, key, replyKey, caller, pending, deadline, attempt)
	if len(waitIDs) == 0 {
		return nil
	}
	waitStart := time.Now()
	replies, err := f.waitReplies(ctx, key, replyKey, waitIDs, calls, entryOf, deadline)
	f.observeCalls(ctx, key, waitIDs, replies, err, queued)
	f.traceFinished(ctx, waitIDs, replies, err)
	f.log.WithFields(map[string]any{"function": key.String(), "calls": len(waitIDs), "answered": len(replies),
		"wait_ms": time.Since(waitStart).Milliseconds(), "attempt": attempt + 1}).Debug("calls answered")
	f.withdraw(ctx, key, waitIDs, replies, entryOf)
	if err != nil && !errors.Is(err, registry.ErrTimeout) {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: the task was cancelled while waiting for the result: %w", label, ctx.Err())
		}
		for _, id := range waitIDs {
			if _, ok := replies[id]; !ok {
				byID[id].err = fmt.Errorf("wait for the result: %w", err)
			}
		}
	}
	for _, id := range waitIDs {
		r := byID[id]
		rep, ok := replies[id]
		switch {
		case !ok && r.err != nil:
		case !ok && cappedByTask:
			r.err = fmt.Errorf("no result before n8n's task timeout (N8N_RUNNERS_TASK_TIMEOUT=%s, call id %s): the call node must finish within it; raise N8N_RUNNERS_TASK_TIMEOUT on n8n and the sidecars or make the function faster",
				f.cfg.TaskTimeout, id)
		case !ok:
			r.err = fmt.Errorf("timed out after %s waiting for the result (call id %s, attempt %d); the function's workflow may be slow, stuck or not reaching its return node, or no worker is free",
				timeout, id, attempt+1)
		default:
			r.absorb(rep)
		}
	}
	return nil
}

// queueCalls adds one entry per pending call to the function's stream, in parallel, and returns
// the ids of the queued ones (the others carry their error), each call by id, and its entry id.
func (f *Runtime) queueCalls(ctx context.Context, key registry.FunctionKey, replyKey string, caller callerID, pending []*callReq,
	deadline time.Time, attempt int) ([]string, map[string]*callReq, map[string]string, map[string]registry.Call) {
	ids := make([]string, len(pending))
	calls := make(map[string]registry.Call, len(pending))
	entries := make([]string, len(pending))
	byID := make(map[string]*callReq, len(pending))
	var wg sync.WaitGroup
	addErrs := make([]error, len(pending))
	for i, r := range pending {
		ids[i] = workflows.NewCallID()
		byID[ids[i]] = r
		depth, stack := workflows.ChildChain(parentContext(r.parent))
		c := registry.Call{
			ID: ids[i], Function: key, ReplyKey: replyKey, Params: r.params, Binary: r.binary, Deadline: deadline,
			Depth: depth, Stack: stackFromFrames(stack), Caller: caller.String(), IdempotencyKey: r.idem, Attempt: attempt + 1,
		}
		calls[ids[i]] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			at := time.Now() // before XADD: a dispatcher may trigger the call before AddCall returns
			if entries[i], addErrs[i] = f.reg.AddCall(ctx, c); addErrs[i] == nil {
				f.traceQueued(ctx, c, caller, r.parent, at)
			}
		}()
	}
	wg.Wait()
	var waitIDs []string
	entryOf := make(map[string]string, len(pending))
	for i, err := range addErrs {
		r := pending[i]
		switch {
		case err == nil:
			waitIDs = append(waitIDs, ids[i])
			entryOf[ids[i]] = entries[i]
			f.met.CallStarted(key.String())
		case errors.Is(err, registry.ErrBacklogFull):
			r.err = fmt.Errorf("%w: the function's queue is full (%v); add workers or raise its maxConcurrency", errNoRetry, err)
		case errors.Is(err, registry.ErrBudgetFull):
			r.err = budgetFullError(err)
		case errors.Is(err, registry.ErrUnavailable):
			r.err = fmt.Errorf("the call was not queued, Redis is unavailable: %w", err)
		default:
			r.err = fmt.Errorf("queue the call: %w", err)
		}
	}
	return waitIDs, byID, entryOf, calls
}

// waitReplies waits for the calls' replies until deadline, in rounds of tun.lostCheck: after a
// round that left calls unanswered, a call whose stream entry is gone without a reply was lost by
// Redis itself (kill -9 with appendfsync everysec loses up to a second of writes, the entry with
// them) and is queued again, with the same call id; nothing else would ever run it. Replies are
// published before an answered call's entry is removed, so a gone entry's reply, if there is one,
// is already in the reply list: it is read before anything is queued again.
func (f *Runtime) waitReplies(ctx context.Context, key registry.FunctionKey, replyKey string, ids []string,
	calls map[string]registry.Call, entryOf map[string]string, deadline time.Time) (map[string]registry.Reply, error) {
	got := make(map[string]registry.Reply, len(ids))
	unanswered := func() []string {
		var out []string
		for _, id := range ids {
			if _, ok := got[id]; !ok {
				out = append(out, id)
			}
		}
		return out
	}
	merge := func(reps map[string]registry.Reply) {
		for id, rep := range reps {
			got[id] = rep
		}
	}
	for {
		left := unanswered()
		if len(left) == 0 {
			return got, nil
		}
		round := time.Now().Add(f.tun.lostCheck)
		last := !round.Before(deadline)
		if last {
			round = deadline
		}
		reps, err := f.reg.WaitReplies(ctx, replyKey, left, round)
		merge(reps)
		switch {
		case err == nil:
			continue
		case last || ctx.Err() != nil || !errors.Is(err, registry.ErrTimeout):
			return got, err
		}
		f.requeueLost(ctx, key, replyKey, unanswered(), calls, entryOf, merge)
	}
}

// requeueLost queues again the calls of left whose entries Redis lost (see waitReplies).
func (f *Runtime) requeueLost(ctx context.Context, key registry.FunctionKey, replyKey string, left []string,
	calls map[string]registry.Call, entryOf map[string]string, merge func(map[string]registry.Reply)) {
	if len(left) == 0 {
		return
	}
	entries := make([]string, len(left))
	idOf := make(map[string]string, len(left))
	for i, id := range left {
		entries[i], idOf[entryOf[id]] = entryOf[id], id
	}
	missing, err := f.reg.MissingCalls(ctx, key, entries)
	if err != nil || len(missing) == 0 {
		return // Redis is away (the next round looks again), or every call is still queued
	}
	// A reply published just before its entry went: read it first (non-blocking, every id, so no
	// reply of another call is popped and dropped).
	reps, _ := f.reg.WaitReplies(ctx, replyKey, left, time.Now().Add(100*time.Millisecond))
	merge(reps)
	for _, e := range missing {
		id := idOf[e]
		if _, ok := reps[id]; ok {
			continue
		}
		entry, err := f.reg.AddCall(ctx, calls[id])
		if err != nil {
			f.log.WithError(err).WithField("call", id).Warn("a call Redis lost could not be queued again; the next round tries again")
			continue
		}
		f.log.WithFields(map[string]any{"function": key.String(), "call": id}).Warn("the call's queue entry was lost by Redis (restarted?) before it was answered; queued it again")
		entryOf[id] = entry
	}
}

// absorb takes a call's reply: its items and binaries, or its error.
func (r *callReq) absorb(rep registry.Reply) {
	switch {
	case rep.OK:
		items, err := itemList(rep.Items)
		if err != nil {
			r.err = fmt.Errorf("%w: the function's result is not a list of items: %v", errNoRetry, err)
			return
		}
		if len(rep.Binaries) > 0 && len(rep.Binaries) != len(items) {
			r.err = fmt.Errorf("%w: the function's result has %d items but %d binary entries", errNoRetry, len(items), len(rep.Binaries))
			return
		}
		r.returned, r.binaries, r.err, r.done = items, rep.Binaries, nil, true
	case rep.ErrorKind == registry.ErrorKindParams:
		r.err = fmt.Errorf("%w: %s", errNoRetry, rep.Error)
	default:
		r.err = errors.New(rep.Error)
	}
}

// parentContext is the call an execution serves, as the parent of a nested call.
func parentContext(c *registry.ExecCall) *workflows.CallContext {
	if c == nil {
		return nil
	}
	return &workflows.CallContext{CallID: c.CallID, Function: c.Function.String(), EntryID: c.EntryID,
		Deadline: c.Deadline.UnixMilli(), Depth: c.Depth, Stack: framesFromStack(c.Stack)}
}

// buildCallReqs turns the input items into calls, checking params size and the recursion limit.
func buildCallReqs(data *taskData, d *workflows.CallDirective, ref workflows.FunctionRef, parents []*registry.ExecCall, lim workflows.Limits) ([]*callReq, error) {
	checkDepth := func(i int) error {
		if err := workflows.CheckDepth(parentContext(parents[i]), ref, workflows.DefaultMaxDepth); err != nil {
			return &OpError{Message: err.Error(), Err: err}
		}
		return nil
	}
	checkSize := func(i int, p, bin []byte) error {
		if err := lim.CheckParams(p); err != nil {
			return &OpError{Message: fmt.Sprintf("item %d: %v; nothing was queued", i, err), Err: err}
		}
		if n := len(p) + len(bin); n > lim.MaxParamsBytes {
			return &OpError{
				Message: fmt.Sprintf("item %d: the params and binary data are %d bytes, at most %d can be sent in one call (%s); nothing was queued",
					i, n, lim.MaxParamsBytes, workflows.EnvMaxParamsBytes),
				Description: "Send a reference (an id, a URL, a binary-data key) instead of the data itself, or split the items. Binary data stored by n8n (database or S3 mode) travels as a reference and does not count.",
			}
		}
		return nil
	}
	var reqs []*callReq
	if d.Mode == workflows.ModeAllItems {
		if len(data.Items) == 0 {
			return nil, nil
		}
		if err := checkDepth(0); err != nil {
			return nil, err
		}
		all := make([][]byte, len(data.Items))
		idx := make([]int, len(data.Items))
		for i, it := range data.Items {
			all[i] = it.JSON
			idx[i] = i
		}
		params, err := d.CallParamsAll(all)
		if err != nil {
			return nil, &OpError{Message: err.Error() + "; nothing was queued", Err: err}
		}
		if err := checkSize(0, params, nil); err != nil {
			return nil, err
		}
		idem, err := d.IdempotencyValue(data.Items[0].JSON)
		if err != nil {
			return nil, &OpError{Message: "item 0: " + err.Error(), Err: err}
		}
		return []*callReq{{items: idx, params: params, parent: parents[0], idem: idem}}, nil
	}
	for i, it := range data.Items {
		if err := checkDepth(i); err != nil {
			return nil, err
		}
		params, err := d.CallParams(it.JSON)
		if err != nil {
			return nil, &OpError{Message: fmt.Sprintf("item %d: %v; nothing was queued", i, err), Err: err}
		}
		if err := checkSize(i, params, it.Binary); err != nil {
			return nil, err
		}
		idem, err := d.IdempotencyValue(it.JSON)
		if err != nil {
			return nil, &OpError{Message: fmt.Sprintf("item %d: %v", i, err), Err: err}
		}
		reqs = append(reqs, &callReq{items: []int{i}, params: params, binary: it.Binary, parent: parents[i], idem: idem})
	}
	return reqs, nil
}

// resolve finds the function's registration (asking discovery once when it is unknown) and waits
// up to waitForLive for a live sidecar serving it.
func (f *Runtime) resolve(ctx context.Context, key registry.FunctionKey, d *workflows.CallDirective) (*registry.FunctionRecord, error) {
	// Reads, safe to repeat: a Redis restart (seconds, longer while it loads its AOF) costs the
	// call time, not an error.
	var rec registry.FunctionRecord
	var ok bool
	lookup := func() error {
		return registry.RetryOutage(ctx, time.Now().Add(resolveOutageWait), func() (err error) {
			rec, ok, err = f.reg.LookupFunction(ctx, key)
			return err
		})
	}
	err := lookup()
	if err == nil && !ok && f.disc != nil && f.api != nil {
		// Bounded so an unknown function still fails within about 2 s (fail fast).
		dctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		derr := f.disc.refreshNow(dctx)
		cancel()
		if derr != nil {
			f.log.WithError(derr).Warn("on-demand discovery failed")
		}
		err = lookup()
	}
	if err == nil && !ok {
		where := "scope global"
		if key.Scope != workflows.ScopeGlobal {
			where = "the scope of workflow " + key.Scope
		}
		return nil, &OpError{
			Message: fmt.Sprintf("n8n-fn call: function %q is not registered in %s", key.Name, where),
			Description: fmt.Sprintf("No published workflow defines it. Check that the workflow with the function node {\"op\":\"function\",\"name\":%q} is published (active), that the name and scope match the call "+
				"(a function with \"scope\":\"workflow\" is only callable from its own workflow, or with its workflow id as scope), and that the sidecars can list workflows through n8n's API (N8N_FN_N8N_API_URL, N8N_FN_N8N_API_KEY).", key.Name),
			Err: registry.ErrNotFound,
		}
	}
	if err != nil {
		return nil, fmt.Errorf("n8n-fn call %s: look up the function: %w", display(key), err)
	}
	if err := f.stillPublished(ctx, key, rec); err != nil {
		return nil, err
	}
	if err := ambiguous(key, rec); err != nil {
		return nil, err
	}
	waitUntil := time.Now().Add(time.Duration(d.WaitForLiveMs) * time.Millisecond)
	for {
		var live bool
		err := registry.RetryOutage(ctx, time.Now().Add(resolveOutageWait), func() (err error) {
			live, err = f.reg.HasLiveConsumer(ctx, key)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("n8n-fn call %s: check for a live sidecar: %w", display(key), err)
		}
		if live {
			return &rec, nil
		}
		if time.Now().After(waitUntil) {
			return nil, &OpError{
				Message: fmt.Sprintf("n8n-fn call: no live n8n-fn sidecar serves function %s (waited %d ms); nothing was queued", display(key), d.WaitForLiveMs),
				Description: "The function is registered (workflow " + rec.WorkflowID + ") but no sidecar has sent a heartbeat for it recently. " +
					"Check that the n8n-fn sidecars are running and reach Redis (N8N_FN_REDIS_URL, N8N_FN_PREFIX must match) and n8n's API (N8N_FN_N8N_API_KEY), and that the workflow is still published.",
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stillPublished fails at once a call to a function whose registration outlived its workflow (it
// was unpublished, deleted, or re-imported under a new id): the record lives a few minutes after
// the last discovery saw it, and a call queued for it would wait its whole timeout. Only a sidecar
// that discovers (it reads n8n's API) can tell; the others queue as before.
func (f *Runtime) stillPublished(ctx context.Context, key registry.FunctionKey, rec registry.FunctionRecord) error {
	if f.disc == nil || f.api == nil || f.catalog.get(key) != nil || time.Since(rec.UpdatedAt) < 2*time.Second {
		// Known here, or another sidecar's discovery saw it a moment ago (this one lags behind).
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	derr := f.disc.refreshNow(dctx)
	cancel()
	if derr != nil || !f.disc.succeeded() || f.catalog.get(key) != nil {
		return nil // discovery could not tell: let the call wait for a dispatcher
	}
	return &OpError{
		Message: fmt.Sprintf("n8n-fn call: function %s is no longer published: workflow %s, which defined it, was unpublished, deleted or re-imported under a new id; nothing was queued", display(key), rec.WorkflowID),
		Description: "Publish the workflow again, or, if it was imported as a new workflow, call the function with the new workflow id as scope " +
			"(`n8n-fn migrate --id-map` rewrites the scopes of converted workflows) and check with `n8n-fn lint --api`.",
		Err: registry.ErrNotFound,
	}
}

// ambiguous refuses a call to a function name that several published workflows define: running
// whichever one sorts first would be a silent hijack.
func ambiguous(key registry.FunctionKey, rec registry.FunctionRecord) error {
	if len(rec.Conflicts) == 0 {
		return nil
	}
	return &OpError{
		Message: fmt.Sprintf("n8n-fn call: function %s is ambiguous: %d published workflows define it: %s; nothing was queued",
			display(key), len(rec.Conflicts), strings.Join(rec.Conflicts, ", ")),
		Description: "A global function name must be unique among published workflows. Rename one of the function nodes, make it \"scope\":\"workflow\", " +
			"or unpublish the workflow that should not serve it. `n8n-fn lint --api` and `n8n-fn status` list them.",
		Err: registry.ErrInvalid,
	}
}

// callFailed answers the node when the call could not even be queued: error items with
// continueOnFail, else the error.
func (f *Runtime) callFailed(reqs []*callReq, data *taskData, d *workflows.CallDirective, o callOptions, err error) (n8nproto.Parts, error) {
	if !o.continueOnFail {
		return nil, err
	}
	for _, r := range reqs {
		r.err = err
	}
	return f.callOutput(reqs, data, d, o, "n8n-fn call "+d.Function)
}

// callOutput builds the node's items: the returned items (or the input with the result under
// resultField) with pairedItem to the input item; failures become error items with
// continueOnFail, else the first failure fails the node.
func (f *Runtime) callOutput(reqs []*callReq, data *taskData, d *workflows.CallDirective, o callOptions, label string) (n8nproto.Parts, error) {
	var out []outItem
	for _, r := range reqs {
		inputs := make([]json.RawMessage, len(r.items))
		for k, i := range r.items {
			inputs[k] = data.Items[i].JSON
		}
		var shaped []workflows.ShapedItem
		var err error
		if r.err != nil || !r.done {
			msg, oerr := failureMessage(r, len(reqs), label)
			if !o.continueOnFail {
				return nil, oerr
			}
			shaped, err = d.ShapeError(inputs, msg)
		} else {
			shaped, err = d.Shape(inputs, r.returned)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		for k, sh := range shaped {
			i := r.items[sh.Pair]
			it := outItem{JSON: sh.JSON, PairedItem: pairedItem{Item: i}}
			switch {
			case sh.FromInput:
				it.Binary = data.Items[i].Binary
			case r.done && r.err == nil && r.binaries != nil && k < len(r.binaries) && string(r.binaries[k]) != "null":
				// items mode: the k-th shaped item is the k-th returned item.
				it.Binary = r.binaries[k]
			}
			out = append(out, it)
		}
	}
	return resultParts(out)
}

// failureMessage is the text of a failed call, and the error that fails the node with it.
func failureMessage(r *callReq, calls int, label string) (string, error) {
	err := r.err
	if err == nil {
		err = errors.New("no result")
	}
	msg := strings.TrimPrefix(err.Error(), errNoRetry.Error()+": ")
	var oe *OpError
	if errors.As(err, &oe) {
		return msg, oe
	}
	if label != "" {
		where := ""
		if calls > 1 {
			where = fmt.Sprintf(" (item %d)", r.items[0])
		}
		msg = label + where + ": " + msg
	}
	return msg, &OpError{Message: msg, Err: err}
}

// setField returns obj with the top-level field key set to val (replacing it if present).
func setField(obj json.RawMessage, key string, val json.RawMessage) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, fmt.Errorf("item json is not an object: %w", err)
	}
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	m[key] = val
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode item: %w", err)
	}
	return b, nil
}

// budgetFullError says that the Redis byte budget refused the call: how full it is, and what to do.
// Not retried by the call node: the room comes back only as other calls are answered.
func budgetFullError(err error) error {
	var be *registry.BudgetError
	if !errors.As(err, &be) {
		return fmt.Errorf("%w: %w", errNoRetry, err)
	}
	need := fmt.Sprintf("this call needs %s", registry.HumanBytes(be.Need))
	if be.Need > be.Limit {
		need = fmt.Sprintf("this call alone needs %s, more than the whole budget", registry.HumanBytes(be.Need))
	}
	return fmt.Errorf("%w: %w: the call was not queued: unanswered function calls hold %s of the %s Redis budget (%d%% full) and %s. "+
		"Wait until queued calls are answered (or their functions keep up), send smaller params, or raise %s (now %d bytes) on every sidecar, "+
		"with room for it in Redis (n8n's queue lives there too)",
		errNoRetry, registry.ErrBudgetFull, registry.HumanBytes(be.Used), registry.HumanBytes(be.Limit), be.Used*100/max(be.Limit, 1), need,
		EnvRedisBudget, be.Limit)
}

// itemList splits a JSON array of items into its elements, each a sub-slice of raw (not a copy:
// a 30 MB result is held once, not twice). null or empty: no items.
func itemList(raw json.RawMessage) ([]json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if !gjson.ValidBytes(raw) {
		return nil, errors.New("invalid JSON")
	}
	arr := gjson.Parse(unsafe.String(unsafe.SliceData(raw), len(raw)))
	if !arr.IsArray() {
		return nil, fmt.Errorf("expected an array, got %s", arr.Type)
	}
	var items []json.RawMessage
	arr.ForEach(func(_, v gjson.Result) bool {
		items = append(items, n8nproto.SubBytes(raw, v))
		return true
	})
	return items, nil
}
