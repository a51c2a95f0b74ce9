package functions

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/runner/metrics"
	"github.com/n8n-fn/n8n-fn/workflows"
)

const batchAddFunction = `/* @n8n-fn {"op":"function","name":"add","batch":{"max":8,"waitMs":300},"params":[{"name":"a","type":"number","required":true},{"name":"b","type":"number","default":0}]} */`

// oneToOneLineage stands in for n8n's item lineage of a body that maps items one to one: the
// return node's item i derives from the function node's item i (one per call).
func oneToOneLineage(_ context.Context, data *taskData, calls []registry.ExecCall) ([][]int, error) {
	if len(data.Items) != len(calls) {
		return nil, errors.New("the stand-in lineage maps items one to one")
	}
	groups := make([][]int, len(calls))
	for i := range calls {
		groups[i] = []int{i}
	}
	return groups, nil
}

// newBatchHarnessMetrics is newHarness for a batching function: the served definition carries the
// directive (batch, Webhook answering when the execution ends), and the return node's lineage
// maps its item i to item i of the function node (the stand-in body maps items one to one; real
// lineage tracing from n8n's run data is tested in lineage_test.go).
// It returns the runtime's metrics too.
func newBatchHarnessMetrics(t *testing.T, rs *redistest.Server) (*harness, *metrics.Metrics) {
	t.Helper()
	h := &harness{}
	h.wf = &fnWorkflow{t: t, workflow: "wfFn", body: addBody}
	h.srv = httptest.NewServer(h.wf)
	t.Cleanup(h.srv.Close)
	m := metrics.New()
	h.rt = newRuntimeDeps(t, rs, "sidecar-a", h.srv.URL, nil, Deps{Metrics: m})
	h.rt.lineage = oneToOneLineage
	h.wf.rt = h.rt
	h.wf.dir = parseDirective(t, batchAddFunction, workflows.ParseFunction)
	h.key = keyOf(h.wf.dir.Ref("wfFn"))
	serve(t, h.rt, h.key, "wfFn", 0)
	s := h.rt.catalog.get(h.key)
	s.Def = workflows.FunctionDef{Ref: h.wf.dir.Ref("wfFn"), WorkflowID: "wfFn", Node: "Function", Function: h.wf.dir,
		WebhookPath: s.Record.WebhookPath, WebhookMethod: "POST", LastNodeResponse: true}
	startRuntime(t, h.rt)
	return h, m
}

// TestBatchedCallsShareOneExecution: the calls of one call node (queued together) reach a
// batching function as one execution, and each caller item gets its own result; when the batched
// execution fails, its calls run one by one, so only the bad one fails.
func TestBatchedCallsShareOneExecution(t *testing.T) {
	rs := redistest.Start(t)
	h, m := newBatchHarnessMetrics(t, rs)
	call := `/* @n8n-fn {"op":"call","function":"add","timeoutMs":10000} */`
	out, err := h.call(t, call, false, `{"a":1,"b":2}`, `{"a":3,"b":4}`, `{"a":10}`, `{"a":20,"b":1}`, `{"a":0}`)
	if err != nil {
		t.Fatal(err)
	}
	res := gjson.GetBytes(out, "result").Array()
	want := []float64{3, 7, 10, 21, 0}
	if len(res) != len(want) {
		t.Fatalf("want %d items, got %s", len(want), out)
	}
	for i, w := range want {
		if res[i].Get("json.sum").Float() != w || res[i].Get("pairedItem.item").Int() != int64(i) {
			t.Errorf("item %d: %s, want sum %v paired to %d", i, res[i].Raw, w, i)
		}
	}
	if n := h.wf.calls.Load(); n != 1 {
		t.Fatalf("5 calls took %d executions, want 1 batch", n)
	}
	h.wf.mu.Lock()
	first := h.wf.bodies[0]
	h.wf.mu.Unlock()
	if refs := gjson.GetBytes(first, workflows.BatchField).Array(); len(refs) != 5 {
		t.Fatalf("webhook body is not a batch of 5 references: %s", first)
	}
	// The batch is one dispatch, and the batch-size histogram says it served 5 calls.
	sc := scrapeOf(t, m)
	if n := metricValue(sc, metrics.Prefix+"function_dispatches_total"); n != 1 {
		t.Errorf("dispatches after one batch: %v, want 1", n)
	}
	if hs := sc[metrics.Prefix+"batch_calls"].GetMetric(); len(hs) != 1 || hs[0].GetHistogram().GetSampleCount() != 1 || hs[0].GetHistogram().GetSampleSum() != 5 {
		t.Errorf("batch size histogram after one batch of 5: %v", hs)
	}
	if n := metricValue(sc, metrics.Prefix+"call_queue_wait_seconds"); n != 5 {
		t.Errorf("queue waits after one batch of 5: %v observed, want 5", n)
	}

	// A lone call is a batch of one in the histogram (and an ordinary dispatch).
	if _, err := h.call(t, call, false, `{"a":2,"b":2}`); err != nil {
		t.Fatal(err)
	}
	sc = scrapeOf(t, m)
	if hs := sc[metrics.Prefix+"batch_calls"].GetMetric(); len(hs) != 1 || hs[0].GetHistogram().GetSampleCount() != 2 || hs[0].GetHistogram().GetSampleSum() != 6 {
		t.Errorf("batch size histogram after a batch of 5 and a lone call: %v", hs)
	}
	if n := metricValue(sc, metrics.Prefix+"function_dispatches_total"); n != 2 {
		t.Errorf("dispatches after a batch and a lone call: %v, want 2", n)
	}

	// One bad call fails the batch; retried one by one, the others succeed.
	h.wf.set(func(w *fnWorkflow) {
		w.body = func(items []json.RawMessage) ([]json.RawMessage, error) {
			for _, it := range items {
				if gjson.GetBytes(it, "a").Int() == 13 {
					return nil, errors.New("unlucky")
				}
			}
			return addBody(items)
		}
	})
	before := h.wf.calls.Load()
	out, err = h.call(t, call, true, `{"a":1}`, `{"a":13}`, `{"a":2}`)
	if err != nil {
		t.Fatal(err)
	}
	res = gjson.GetBytes(out, "result").Array()
	if len(res) != 3 || res[0].Get("json.sum").Float() != 1 || res[2].Get("json.sum").Float() != 2 ||
		!strings.Contains(res[1].Get("json.error").String(), "failed") {
		t.Fatalf("after a failed batch: %s", out)
	}
	if n := h.wf.calls.Load() - before; n != 4 {
		t.Errorf("a failed batch of 3 took %d executions, want 4 (the batch, then each call alone)", n)
	}
}

// TestFunctionWithoutBatchRefusesOne: a body that did not ask for batches never runs one.
func TestFunctionWithoutBatchRefusesOne(t *testing.T) {
	rs := redistest.Start(t)
	h := newHarness(t, rs, addFunction, 0, nil)
	ref := func(id string) *workflows.CallRef {
		r := &workflows.CallRef{Function: h.key.String(), EntryID: "1-0", CallID: id, Dispatch: 1, Exp: 1 << 50}
		r.Sign(h.rt.signer)
		return r
	}
	body, _ := json.Marshal(map[string]any{workflows.BatchField: []*workflows.CallRef{ref("c1"), ref("c2")}})
	hook := json.RawMessage(`{"headers":{},"body":` + string(body) + `}`)
	_, err := h.rt.runFunction(context.Background(), &taskData{WorkflowID: "wfFn", NodeName: "Function", ExecutionID: "e1", Items: []item{{JSON: hook}}}, h.wf.dir)
	if err == nil || !strings.Contains(err.Error(), "does not take batches") {
		t.Fatalf("batch to a function without batch: %v", err)
	}
}
