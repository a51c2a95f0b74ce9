package functions

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// batchResponse is the data response of a return node in an execution whose function node served
// two calls (item 0: call 0, item 1: call 1) and whose body sorted the items the other way round.
const batchResponse = `{"workflow":{"id":"wf"},"node":{"name":"Return"},"additionalData":{"executionId":"e-batch"},
 "connectionInputSource":{"main":[{"previousNode":"Sort","previousNodeOutput":0,"previousNodeRun":0}]},
 "inputData":{"main":[[{"json":{"v":"from call 1"},"pairedItem":{"item":0}},{"json":{"v":"from call 0"},"pairedItem":{"item":1}}]]},
 "runExecutionData":{"resultData":{"runData":{
  "Webhook":[{"data":{"main":[[{"json":{}}]]},"source":[]}],
  "Function":[{"data":{"main":[[{"json":{"k":0},"pairedItem":{"item":0}},{"json":{"k":1},"pairedItem":{"item":0}}]]},"source":[{"previousNode":"Webhook"}]}],
  "Sort":[{"data":{"main":[[{"json":{"v":"from call 1"},"pairedItem":{"item":1}},{"json":{"v":"from call 0"},"pairedItem":{"item":0}}]]},"source":[{"previousNode":"Function"}]}]
 }}}}`

// Several calls served by one execution are told apart through the items' lineage, not a field.
func TestReturnTellsCallsApartByLineage(t *testing.T) {
	rs := redistest.Start(t)
	rt := newRuntime(t, rs, "s", "http://127.0.0.1:1", nil)
	ctx := context.Background()
	key := registry.FunctionKey{Scope: "global", Name: "batched"}
	if err := rt.reg.EnsureGroup(ctx, key); err != nil {
		t.Fatal(err)
	}
	var calls []registry.ExecCall
	for i := range 2 {
		c := registry.Call{ID: "batch-call-" + string(rune('0'+i)), Function: key, ReplyKey: rt.reg.ReplyKey("caller-" + string(rune('0'+i))), Deadline: time.Now().Add(time.Minute)}
		entry, err := rt.reg.AddCall(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.reg.NextDispatch(ctx, key, c.ID, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := rt.reg.ClaimCall(ctx, key, c.ID, 1, "e-batch", "s", time.Minute); err != nil {
			t.Fatal(err)
		}
		calls = append(calls, registry.ExecCall{Function: key, CallID: c.ID, EntryID: entry, ReplyKey: c.ReplyKey, Deadline: c.Deadline, Depth: 1, Dispatch: 1, Node: "Function"})
	}
	if err := rt.reg.BindExecution(ctx, "e-batch", calls, time.Minute); err != nil {
		t.Fatal(err)
	}
	data := &taskData{WorkflowID: "wf", NodeName: "Return", ExecutionID: "e-batch", Items: []item{
		{JSON: json.RawMessage(`{"v":"from call 1"}`)}, {JSON: json.RawMessage(`{"v":"from call 0"}`)}},
		allNodes: func(context.Context) ([]byte, error) { return []byte(batchResponse), nil }}
	if _, err := rt.runReturn(ctx, data, &workflows.ReturnDirective{}); err != nil {
		t.Fatal(err)
	}
	for i, c := range calls {
		got, err := rt.reg.WaitReplies(ctx, c.ReplyKey, []string{c.CallID}, time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if want := `[{"v":"from call ` + string(rune('0'+i)) + `"}]`; string(got[c.CallID].Items) != want {
			t.Fatalf("call %d got %s, want %s", i, got[c.CallID].Items, want)
		}
	}
	// An item that mixes the items of both calls (an Aggregate over the batch) answers nobody.
	mixed := strings.Replace(batchResponse, `"inputData":{"main":[[{"json":{"v":"from call 1"},"pairedItem":{"item":0}},{"json":{"v":"from call 0"},"pairedItem":{"item":1}}]]}`,
		`"inputData":{"main":[[{"json":{"all":true},"pairedItem":[{"item":0},{"item":1}]}]]}`, 1)
	data.Items = []item{{JSON: json.RawMessage(`{"all":true}`)}}
	data.allNodes = func(context.Context) ([]byte, error) { return []byte(mixed), nil }
	if _, err := rt.runReturn(ctx, data, &workflows.ReturnDirective{}); err == nil || !strings.Contains(err.Error(), "derive from several calls") {
		t.Fatalf("an item of two calls: %v", err)
	}
}
