package functions

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/n8n-fn/n8n-fn/n8nproto"
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// returnOp answers a `return` node: the items that reach it are the return value of their call
// (grouped by _functionCall.callId); they are pushed to the caller's reply list and the call's
// stream entry is acknowledged. The node outputs the items without _functionCall.
func (f *Runtime) returnOp(ctx context.Context, t *n8nproto.UpstreamTask, h *workflows.Header, _ n8nproto.CodeSettings) (json.RawMessage, error) {
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

type returnGroup struct {
	cc    *workflows.CallContext
	items []json.RawMessage
	first int // index of the group's first item
}

// runReturn is returnOp after the data request.
func (f *Runtime) runReturn(ctx context.Context, data *taskData, d *workflows.ReturnDirective) (json.RawMessage, error) {
	var order []string
	groups := map[string]*returnGroup{}
	out := make([]outItem, 0, len(data.Items))
	for i, it := range data.Items {
		cc, err := workflows.ContextFromItem(it.JSON)
		if err != nil {
			return nil, &OpError{Message: fmt.Sprintf("n8n-fn return: item %d: %v", i, err), Err: err}
		}
		if cc == nil {
			return nil, &OpError{
				Message: fmt.Sprintf("n8n-fn return: item %d has no %s: it does not belong to a function call", i, workflows.ContextField),
				Description: "A return node answers the call that started this execution; the call context travels in each item's _functionCall field. " +
					"Keep that field between the function node and the return node (a Code node that builds new objects, or a Set node with \"keep only set\", drops it): e.g. return { json: { ...$json, result } }.",
			}
		}
		// Zero time: no deadline check; a late return still reaches its caller, who ignores it.
		if err := cc.Verify(f.signer, time.Time{}); err != nil {
			return nil, &OpError{Message: fmt.Sprintf("n8n-fn return: item %d: %v", i, err), Err: err}
		}
		g, ok := groups[cc.CallID]
		if !ok {
			g = &returnGroup{cc: cc, first: i}
			groups[cc.CallID] = g
			order = append(order, cc.CallID)
		}
		clean := workflows.WithoutContext(it.JSON)
		g.items = append(g.items, clean)
		out = append(out, outItem{JSON: clean, Binary: it.Binary, PairedItem: pairedItem{Item: i}})
	}
	for _, id := range order {
		g := groups[id]
		ref, err := g.cc.Ref()
		if err != nil {
			return nil, &OpError{Message: "n8n-fn return: " + err.Error(), Err: err}
		}
		key := keyOf(ref)
		r := registry.Reply{CallID: g.cc.CallID, OK: true}
		if d.Fail {
			r.OK = false
			r.Error = d.FailMessage(data.Items[g.first].JSON)
			r.ErrorKind = registry.ErrorKindFailed
		} else {
			items, err := json.Marshal(g.items)
			if err != nil {
				return nil, fmt.Errorf("n8n-fn return: encode the result of call %s: %w", id, err)
			}
			r.Items = items
		}
		// Reply first, then acknowledge (one round trip on a standalone Redis): a crash in between
		// re-runs the call, and the caller ignores the second result for the same call id.
		d := registry.Delivery{Function: key, EntryID: g.cc.EntryID, Call: registry.Call{ID: g.cc.CallID, ReplyKey: g.cc.ReplyKey}}
		if err := f.reg.Complete(ctx, d, r); err != nil {
			return nil, fmt.Errorf("n8n-fn return: send the result of call %s to its caller: %w", id, err)
		}
		f.log.WithFields(map[string]any{"function": key.String(), "call": id, "ok": r.OK, "items": len(g.items),
			"queued_ms": sinceEntry(g.cc.EntryID, time.Now())}).Debug("function call returned")
	}
	return resultJSON(out)
}
