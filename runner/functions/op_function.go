package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/n8n-fn/n8n-fn/n8nproto"
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// functionOp answers a `function` node: the Webhook node before it received a signed call
// reference from a dispatcher. It verifies the reference, loads the call from Redis, checks the
// deadline, binds the params and emits one item: the params at the root plus _functionCall.
func (f *Runtime) functionOp(ctx context.Context, t *n8nproto.UpstreamTask, h *workflows.Header, _ n8nproto.CodeSettings) (n8nproto.Parts, error) {
	if err := f.enabled(); err != nil {
		return nil, err
	}
	data, err := fetchTaskData(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("n8n-fn function: %w", err)
	}
	d, err := workflows.ParseFunction(data.NodeName, h)
	if err != nil {
		return nil, directiveError(err)
	}
	return f.runFunction(ctx, data, d)
}

// runFunction is functionOp after the data request (tests call it directly).
func (f *Runtime) runFunction(ctx context.Context, data *taskData, d *workflows.FunctionDirective) (n8nproto.Parts, error) {
	key := keyOf(d.Ref(data.WorkflowID))
	name := display(key)
	if len(data.Items) == 0 {
		return nil, notCallRef(name, "the node received no item", nil)
	}
	if len(data.Items) > 1 {
		return nil, notCallRef(name, fmt.Sprintf("the node received %d items, a function call arrives as exactly one webhook item", len(data.Items)), nil)
	}
	crefs, batched, err := workflows.ParseCallRefs(data.Items[0].JSON)
	if err != nil {
		return nil, notCallRef(name, err.Error(), err)
	}
	if batched && d.Batch == nil {
		return nil, notCallRef(name, fmt.Sprintf("it is a batch of %d calls, and this function node does not take batches (it has no \"batch\" field)", len(crefs)), nil)
	}
	if batched && len(crefs) > d.Batch.Max {
		return nil, notCallRef(name, fmt.Sprintf("it is a batch of %d calls, this function takes at most %d", len(crefs), d.Batch.Max), nil)
	}
	now := time.Now()
	// Every reference must be genuine before anything runs: a forged one fails the execution.
	for _, cref := range crefs {
		if err := f.checkRef(name, key, cref, now); err != nil {
			return nil, err
		}
	}
	var (
		out   []outItem
		calls []registry.ExecCall
		first *registry.Call
	)
	for _, cref := range crefs {
		item, ec, call, err := f.startCall(ctx, data, d, key, name, cref, now)
		if err != nil {
			if !batched {
				return nil, err
			}
			// One call of a batch that cannot run here (answered meanwhile, expired, bad params)
			// does not hold up the others; the dispatcher sees it still queued afterwards and
			// runs it on its own, which reports its error.
			f.log.WithFields(map[string]any{"function": key.String(), "call": cref.CallID, "execution": data.ExecutionID}).
				WithError(err).Info("a call of the batch is not served by this execution")
			continue
		}
		if first == nil {
			first = &call
		}
		out = append(out, item)
		calls = append(calls, ec)
	}
	if len(calls) == 0 {
		return nil, &OpError{Message: fmt.Sprintf("n8n-fn function %s: none of the %d calls of the batch can run here (answered, expired or rejected)", name, len(crefs))}
	}
	deadline := calls[0].Deadline
	for _, c := range calls {
		if c.Deadline.After(deadline) {
			deadline = c.Deadline
		}
	}
	if err := registry.RetryOutage(ctx, deadline, func() error {
		return f.reg.BindExecution(ctx, data.ExecutionID, calls, claimTTL(deadline, now))
	}); err != nil {
		return nil, fmt.Errorf("n8n-fn function %s: record call %s for execution %s: %w", name, first.ID, data.ExecutionID, err)
	}
	custom := map[string]string{
		"n8nfn_function": clipString(key.String(), 255),
		"n8nfn_callId":   first.ID,
		"n8nfn_servedBy": clipString(f.cfg.ID, 255),
		"n8nfn_depth":    fmt.Sprint(calls[0].Depth),
	}
	if batched {
		custom["n8nfn_batch"] = fmt.Sprint(len(calls))
	}
	// The execution's custom data (n8n shows it with the execution; a Code node reads it with
	// $execution.customData.get(...)) says which call this is and which sidecar's worker runs it.
	b, err := json.Marshal(map[string]any{"result": out, "customData": custom})
	if err != nil {
		return nil, fmt.Errorf("n8n-fn function %s: encode the output: %w", name, err)
	}
	return n8nproto.Parts{b}, nil
}

// notCallRef is the error of a function node whose webhook item is no valid call reference.
func notCallRef(name, why string, cause error) error {
	return &OpError{
		Message: fmt.Sprintf("n8n-fn function %s: the webhook body is not a valid n8n-fn call reference: %s", name, why),
		Description: "This workflow is a function: its Webhook is triggered by the n8n-fn dispatcher with a signed reference to a queued call. " +
			"Call the function with an n8n-fn call node instead of calling its webhook directly. If a dispatcher sent this, check that every sidecar has the same N8N_FN_SECRET.",
		Err: cause,
	}
}

// checkRef verifies a call reference's signature and expiry and that it is for this function.
func (f *Runtime) checkRef(name string, key registry.FunctionKey, cref *workflows.CallRef, now time.Time) error {
	if err := cref.Verify(f.signer, now); err != nil {
		if errors.Is(err, workflows.ErrExpired) {
			return &OpError{
				Message:     fmt.Sprintf("n8n-fn function %s: %v; the caller has given up, the call is not run", name, err),
				Description: "The call waited in the queue or in n8n's execution queue past its deadline. Raise the call's timeoutMs, the function's maxConcurrency, or add workers.",
				Err:         err,
			}
		}
		return notCallRef(name, err.Error(), err)
	}
	if cref.Function != key.String() {
		return notCallRef(name, fmt.Sprintf("it is for function %s, this node defines %s", cref.Function, key.String()), nil)
	}
	return nil
}

// startCall loads a verified reference's call, claims it for this execution and binds its params:
// the item the function node outputs for it and the record of the call for BindExecution.
func (f *Runtime) startCall(ctx context.Context, data *taskData, d *workflows.FunctionDirective, key registry.FunctionKey, name string,
	cref *workflows.CallRef, now time.Time) (outItem, registry.ExecCall, registry.Call, error) {
	var call registry.Call
	err := registry.RetryOutage(ctx, time.UnixMilli(cref.Exp), func() (err error) {
		call, err = f.reg.LoadCall(ctx, key, cref.EntryID)
		return err
	})
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return outItem{}, registry.ExecCall{}, call, &OpError{
				Message:     fmt.Sprintf("n8n-fn function %s: call %s is no longer queued (entry %s): it was already answered, dead-lettered or trimmed", name, cref.CallID, cref.EntryID),
				Description: "A call is run once per queued entry. This execution is a late duplicate and does nothing.",
				Err:         err,
			}
		}
		return outItem{}, registry.ExecCall{}, call, fmt.Errorf("n8n-fn function %s: load call %s: %w", name, cref.CallID, err)
	}
	if call.ID != cref.CallID {
		return outItem{}, registry.ExecCall{}, call, notCallRef(name, fmt.Sprintf("entry %s holds call %s, the reference names call %s", cref.EntryID, call.ID, cref.CallID), nil)
	}
	if !call.Deadline.IsZero() && now.After(call.Deadline) {
		return outItem{}, registry.ExecCall{}, call, &OpError{
			Message:     fmt.Sprintf("n8n-fn function %s: call %s passed its deadline %s ago; the caller has given up, the call is not run", name, call.ID, now.Sub(call.Deadline).Round(time.Millisecond)),
			Description: "Raise the call's timeoutMs, the function's maxConcurrency, or add workers.",
			Err:         workflows.ErrExpired,
		}
	}
	if err := f.claim(ctx, key, name, cref, data.ExecutionID, call.Deadline); err != nil {
		return outItem{}, registry.ExecCall{}, call, err
	}
	f.traceClaimed(ctx, call.ID, data)
	bound, err := f.cfg.Limits.BindParams(d, call.Params)
	if err != nil {
		// The caller gets the params error at once; this execution fails with the same message
		// (a batch leaves the call out instead).
		f.answerNow(ctx, key, cref.EntryID, registry.Reply{CallID: call.ID, Error: err.Error(), ErrorKind: registry.ErrorKindParams}, call.ReplyKey)
		return outItem{}, registry.ExecCall{}, call, &OpError{Message: "n8n-fn function " + name + ": " + err.Error(), Err: err}
	}
	ec := registry.ExecCall{Function: key, CallID: call.ID, EntryID: cref.EntryID, ReplyKey: call.ReplyKey,
		Deadline: call.Deadline, Depth: max(call.Depth, 1), Stack: call.Stack, Dispatch: cref.Dispatch, Node: data.NodeName}
	if ec.Depth != len(ec.Stack)+1 {
		// A call queued by something other than our call op: keep the chain we can vouch for.
		ec.Depth = len(ec.Stack) + 1
	}
	// _functionCall stays on the item as a signed, readable description of the call; nothing
	// needs it any more (the return node and nested calls find the call through the execution).
	cc := &workflows.CallContext{
		CallID:   call.ID,
		ReplyKey: call.ReplyKey,
		Function: key.String(),
		EntryID:  cref.EntryID,
		Deadline: call.Deadline.UnixMilli(),
		Depth:    ec.Depth,
		Stack:    framesFromStack(ec.Stack),
	}
	cc.Sign(f.signer)
	out, err := workflows.WithContext(bound, cc)
	if err != nil {
		return outItem{}, registry.ExecCall{}, call, fmt.Errorf("n8n-fn function %s: %w", name, err)
	}
	f.log.WithFields(map[string]any{"function": key.String(), "call": call.ID, "execution": data.ExecutionID,
		"dispatch": cref.Dispatch, "queued_ms": sinceEntry(cref.EntryID, now)}).Debug("function call started")
	// Every item derives from the one webhook item: the return node tells the calls apart by
	// the item index of the function node's output (ExecCall order).
	return outItem{JSON: out, Binary: call.Binary, PairedItem: pairedItem{Item: 0}}, ec, call, nil
}

// claim binds the call's dispatch to this n8n execution, or says why this execution must not run
// it (a replayed or stale reference, an answered call).
func (f *Runtime) claim(ctx context.Context, key registry.FunctionKey, name string, cref *workflows.CallRef, execID string, deadline time.Time) error {
	if execID == "" {
		return &OpError{
			Message:     fmt.Sprintf("n8n-fn function %s: n8n's task data has no execution id, so call %s cannot be bound to this execution", name, cref.CallID),
			Description: "n8n passes the execution id to task runners in every real execution; this n8n version may not be supported.",
		}
	}
	err := registry.RetryOutage(ctx, deadline, func() error {
		return f.reg.ClaimCall(ctx, key, cref.CallID, cref.Dispatch, execID, f.cfg.ID, claimTTL(deadline, time.Now()))
	})
	var why, what string
	switch {
	case err == nil:
		return nil
	case errors.Is(err, registry.ErrClaimed):
		why = "is already being run by another execution: this call reference was posted again (a replay)"
		what = "A call runs once per dispatch. Nothing was run and the real caller still gets its result from the execution that runs it."
	case errors.Is(err, registry.ErrStaleDispatch):
		why = "was dispatched again since this reference was made (the reference is stale)"
		what = "The dispatcher re-runs a call whose execution it lost; the newer execution serves it. Nothing was run."
	case errors.Is(err, registry.ErrAnswered):
		why = "was already answered"
		what = "A call is run until it is answered once. This execution is a late duplicate and does nothing."
	case errors.Is(err, registry.ErrNotFound):
		why = "was never dispatched by an n8n-fn dispatcher (or its record expired)"
		what = "Call the function with an n8n-fn call node instead of posting to its webhook."
	default:
		return fmt.Errorf("n8n-fn function %s: claim call %s for execution %s: %w", name, cref.CallID, execID, err)
	}
	return &OpError{Message: fmt.Sprintf("n8n-fn function %s: call %s %s", name, cref.CallID, why), Description: what, Err: err}
}

// claimTTL keeps a call's claim and its execution's record a while past the call's deadline, so a
// late return still finds them (and is then told the caller gave up).
func claimTTL(deadline, now time.Time) time.Duration {
	if deadline.IsZero() {
		return 24 * time.Hour
	}
	return max(deadline.Sub(now), 0) + 10*time.Minute
}

// answerNow publishes a reply and acknowledges the entry; used where the caller should not wait
// for the dispatcher to notice the failure.
func (f *Runtime) answerNow(ctx context.Context, key registry.FunctionKey, entryID string, r registry.Reply, replyKey string) {
	if err := f.reg.PublishReply(ctx, replyKey, r); err != nil {
		f.log.WithError(err).WithField("function", key.String()).Warn("could not publish the error reply")
		return
	}
	if err := f.reg.Ack(ctx, key, entryID); err != nil {
		f.log.WithError(err).WithField("function", key.String()).Warn("could not acknowledge the call")
	}
}

// The registry keeps a call's parent chain as "callId:scope/name" strings.
func stackFromFrames(frames []workflows.CallFrame) []string {
	out := make([]string, len(frames))
	for i, fr := range frames {
		out[i] = fr.CallID + ":" + fr.Function
	}
	return out
}

func framesFromStack(stack []string) []workflows.CallFrame {
	out := make([]workflows.CallFrame, 0, len(stack))
	for _, s := range stack {
		id, fn, _ := strings.Cut(s, ":")
		out = append(out, workflows.CallFrame{CallID: id, Function: fn})
	}
	return out
}

// directiveError turns a directive parse error into a node error that says how to fix it.
func directiveError(err error) error {
	return &OpError{
		Message:     "n8n-fn: " + strings.TrimPrefix(err.Error(), "n8n-fn: "),
		Description: "Fix the JSON in the header comment of this Code node; `n8n-fn snippet` prints valid nodes and `n8n-fn lint` checks a workflow.",
		Err:         err,
	}
}

// sinceEntry is how long ago a stream entry was added (its id starts with the XADD time in ms);
// -1 when the id does not say. Logged to show where a call's time goes.
func sinceEntry(entryID string, now time.Time) int64 {
	msPart, _, _ := strings.Cut(entryID, "-")
	var ms int64
	if _, err := fmt.Sscan(msPart, &ms); err != nil || ms <= 0 {
		return -1
	}
	return now.UnixMilli() - ms
}
