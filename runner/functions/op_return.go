package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/n8n-fn/n8n-fn/n8nproto"
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// returnOp answers a `return` node: the items that reach it are the return value of their call
// of the call(s) its own execution claimed, whatever fields they carry; they are pushed to the
// caller's reply list and the call's stream entry is acknowledged. The node outputs the items
// without _functionCall.
func (f *Runtime) returnOp(ctx context.Context, t *n8nproto.UpstreamTask, h *workflows.Header, _ n8nproto.CodeSettings) (n8nproto.Parts, error) {
	if err := f.enabled(); err != nil {
		return nil, err
	}
	data, err := fetchTaskData(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("n8n-fn return: %w", err)
	}
	d, err := workflows.ParseReturn(data.NodeName, h)
	if err != nil {
		return nil, directiveError(err)
	}
	return f.runReturn(ctx, data, d)
}

// runReturn is returnOp after the data request: the items are the result of the call(s) this
// execution claimed (registry.ExecutionCalls), whatever fields they carry.
func (f *Runtime) runReturn(ctx context.Context, data *taskData, d *workflows.ReturnDirective) (n8nproto.Parts, error) {
	// A Redis blip costs time only: every step here is safe to repeat.
	var calls []registry.ExecCall
	err := registry.RetryOutage(ctx, time.Time{}, func() (err error) {
		calls, err = f.reg.ExecutionCalls(ctx, data.ExecutionID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("n8n-fn return: find the call of execution %s: %w", data.ExecutionID, err)
	}
	if len(calls) == 0 {
		return nil, notACall(data)
	}
	groups, err := f.groupByCall(ctx, data, calls)
	if err != nil {
		return nil, err
	}
	out := make([]outItem, len(data.Items))
	for i, it := range data.Items {
		out[i] = outItem{JSON: workflows.WithoutContext(it.JSON), Binary: it.Binary, PairedItem: pairedItem{Item: i}}
	}
	replies := make([]registry.Reply, len(calls))
	tooBig := make([]error, len(calls))
	for ci, c := range calls {
		idx := groups[ci]
		r := registry.Reply{CallID: c.CallID, OK: true}
		if d.Fail {
			r.OK, r.ErrorKind = false, registry.ErrorKindFailed
			r.Error = d.FailMessage(firstJSON(data, idx))
		} else {
			r.ItemList, r.Binaries = replyItems(out, idx)
		}
		if tooBig[ci] = f.cfg.Limits.CheckResult(replySize(r)); tooBig[ci] != nil {
			// The caller gets the reason instead of the items; this execution fails with it too.
			r = registry.Reply{CallID: c.CallID, ErrorKind: registry.ErrorKindFailed,
				Error: fmt.Sprintf("function %s: %v", display(c.Function), tooBig[ci])}
		}
		replies[ci] = r
	}
	if err := encodeEarly(data, out, groups, replies); err != nil {
		return nil, fmt.Errorf("n8n-fn return: encode the result: %w", err)
	}
	for ci, c := range calls {
		r := replies[ci]
		err := registry.RetryOutage(ctx, c.Deadline, func() error { return f.reg.CompleteClaimed(ctx, c, data.ExecutionID, r) })
		switch {
		case errors.Is(err, registry.ErrAnswered):
			// A duplicate execution (the call was re-run after its worker looked dead): the first
			// answer already reached the caller.
			f.log.WithFields(map[string]any{"function": c.Function.String(), "call": c.CallID}).Info("call already answered by another execution; this result is dropped")
			continue
		case err != nil:
			return nil, fmt.Errorf("n8n-fn return: send the result of call %s to its caller: %w", c.CallID, err)
		case tooBig[ci] != nil:
			return nil, &OpError{Message: "n8n-fn return: " + tooBig[ci].Error(), Err: tooBig[ci],
				Description: "The caller got this error instead of the result. Return less, or return a reference (an id, a URL, binary data stored by n8n) instead of the data."}
		}
		f.log.WithFields(map[string]any{"function": c.Function.String(), "call": c.CallID, "ok": r.OK, "items": len(groups[ci]),
			"queued_ms": sinceEntry(c.EntryID, time.Now())}).Debug("function call returned")
	}
	return resultParts(out)
}

// earlyEncodeMin is the result size from which encodeEarly encodes the replies before they are pushed.
const earlyEncodeMin = 16 << 20

// encodeEarly lets n8n's data response go before a big result is pushed to its caller. Pushing a
// reply needs it encoded in one buffer (go-redis writes a value from one buffer), and the node's
// output needs the items too: held as slices of the data response, the result was there twice
// while the reply was pushed, and three times for a moment when the caller waited on this same
// sidecar and read the reply (108 MB for a 30 MB result). So the replies are encoded first, the
// output is pointed at the items in them, and the data response, which nothing refers to then, is
// collected and returned to the OS: from the push on the result is held once, by the reply. Only
// when every output item is in a reply and none has binary data (that would keep the response).
func encodeEarly(data *taskData, out []outItem, groups [][]int, replies []registry.Reply) error {
	size, covered := 0, 0
	for ci, r := range replies {
		if r.ItemList != nil {
			size += r.ItemsSize()
			covered += len(groups[ci])
		}
	}
	if size < earlyEncodeMin || covered != len(out) {
		return nil
	}
	for i := range out {
		if len(out[i].Binary) > 0 {
			return nil
		}
	}
	for ci, r := range replies {
		if r.ItemList == nil {
			continue
		}
		enc, items, err := registry.EncodeReply(r)
		if err != nil {
			return err
		}
		for k, i := range groups[ci] {
			out[i].JSON = items[k]
		}
		replies[ci] = registry.Reply{CallID: r.CallID, OK: true, Encoded: enc}
	}
	data.Items = nil // the last reference to the data response's items
	debug.FreeOSMemory()
	return nil
}

// groupByCall says which input items answer which of the execution's calls: all of them when it
// claimed one call, else by tracing each item's lineage back to the function node's output.
func (f *Runtime) groupByCall(ctx context.Context, data *taskData, calls []registry.ExecCall) ([][]int, error) {
	groups := make([][]int, len(calls))
	if len(calls) == 1 {
		groups[0] = make([]int, len(data.Items))
		for i := range data.Items {
			groups[0][i] = i
		}
		return groups, nil
	}
	if f.lineage == nil {
		return nil, fmt.Errorf("n8n-fn return: execution %s serves %d calls, which needs the items' lineage", data.ExecutionID, len(calls))
	}
	return f.lineage(ctx, data, calls)
}

func firstJSON(data *taskData, idx []int) json.RawMessage {
	if len(idx) == 0 {
		return json.RawMessage(`{}`)
	}
	return data.Items[idx[0]].JSON
}

// replySize is how many bytes a reply's items and binaries take.
func replySize(r registry.Reply) int {
	n := r.ItemsSize()
	for _, b := range r.Binaries {
		n += len(b)
	}
	return n
}

// replyItems are the items idx of out as a reply's items (each the item's own json, not a copy:
// the encoded reply is their only copy; registry checks them as it writes them) and binaries.
func replyItems(out []outItem, idx []int) ([]json.RawMessage, []json.RawMessage) {
	items := make([]json.RawMessage, len(idx))
	var bins []json.RawMessage
	for k, i := range idx {
		items[k] = out[i].JSON
		if len(items[k]) == 0 {
			items[k] = json.RawMessage("null")
		}
		if len(out[i].Binary) > 0 {
			if bins == nil {
				bins = make([]json.RawMessage, len(idx))
			}
			bins[k] = out[i].Binary
		}
	}
	for k := range bins {
		if bins[k] == nil {
			bins[k] = json.RawMessage("null")
		}
	}
	return items, bins
}

// notACall is the error of a return node in an execution that claimed no call.
func notACall(data *taskData) error {
	copied := ""
	for _, it := range data.Items {
		if cc, err := workflows.ContextFromItem(it.JSON); err == nil && cc != nil {
			copied = fmt.Sprintf(" The items carry a %s for call %s, but a call context copied into items answers nothing: a call is answered only by the execution that claimed it.", workflows.ContextField, clipString(cc.CallID, 40))
			break
		}
	}
	return &OpError{
		Message: fmt.Sprintf("n8n-fn return: execution %s was not started by an n8n-fn call, so this return node has no caller to answer.%s", data.ExecutionID, copied),
		Description: "A return node answers the call that started its own execution: the workflow must be triggered by the n8n-fn dispatcher through the Webhook in front of its function node " +
			"(call it with an n8n-fn call node). Run manually or from another trigger, a function workflow has nobody to return to.",
	}
}
