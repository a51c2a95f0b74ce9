package functions

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// traceLineage groups a node's input items by the calls of an execution that serves several (item
// i of the function node's output serves calls[i]): it follows each item's pairedItem lineage back
// to the function node (workflows.ItemOrigins). An item that derives from the items of several
// calls (an Aggregate over the whole batch) cannot be given to one caller: an error names it.
func (f *Runtime) traceLineage(ctx context.Context, data *taskData, calls []registry.ExecCall) ([][]int, error) {
	if data.allNodes == nil {
		return nil, errors.New("n8n-fn: the items' lineage is needed, but this task cannot ask n8n for the execution's data")
	}
	raw, err := data.allNodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("request the execution's data for the items' lineage: %w", err)
	}
	origins, err := workflows.ItemOrigins(raw, calls[0].Node)
	if err != nil {
		return nil, &OpError{
			Message:     fmt.Sprintf("n8n-fn: cannot tell which of the %d calls of execution %s the items belong to: %v", len(calls), data.ExecutionID, err),
			Description: "When one execution serves several calls, every item must derive from the function node's items through n8n's item lineage (pairedItem). A Code node that builds new items should set pairedItem.",
			Err:         err,
		}
	}
	callOf := make([]int, len(calls))
	for i := range callOf {
		callOf[i] = i
	}
	for i, idx := range origins.Items {
		for _, j := range idx {
			if j >= len(calls) {
				return nil, fmt.Errorf("n8n-fn: item %d derives from item %d of the function node, which served only %d calls", i, j, len(calls))
			}
		}
	}
	byCall, err := workflows.GroupByCall(origins.Items, callOf)
	if err != nil {
		return nil, &OpError{
			Message:     "n8n-fn: " + strings.TrimPrefix(err.Error(), "n8n-fn: "),
			Description: "Each item that reaches a return node (or a call) must derive from the items of one call: a node that combines the items of a whole batch (Aggregate, Merge by position, Execute Once) cannot answer several callers.",
			Err:         err,
		}
	}
	groups := make([][]int, len(calls))
	for ci, idx := range byCall {
		groups[ci] = idx
	}
	return groups, nil
}
