package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/runner/metrics"
)

// TestBatchedCallsOnN8N runs a batching function on the real stack: the calls of one call node
// share executions, each caller item gets exactly its own result through n8n's item lineage, and
// when the batched execution fails (one bad call), the calls run again one by one so only the bad
// one fails.
func TestBatchedCallsOnN8N(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; functions need the n8n-fn sidecars", s.Env.RunnerKind)
	}
	name := UniqueName(t, "batch")
	s.Deploy(t, Chain("n8n-fn batch "+name+" function", spread(
		WebhookNode(name+"/fn"),
		fnDirective("Function", map[string]any{"op": "function", "name": name, "batch": map[string]any{"max": 8, "waitMs": 50},
			"params": []map[string]any{{"name": "a", "type": "number", "required": true}}}),
		codeNodeMode("Double", "runOnceForAllItems",
			"if ($input.all().some(i => i.json.a === 13)) throw new Error('unlucky 13');\n"+
				"return $input.all().map(i => ({ json: { a: i.json.a, doubled: i.json.a * 2 } }));"),
		fnDirective("Return", map[string]any{"op": "return"}),
	)...))
	call := fnDirective("Call", map[string]any{"op": "call", "function": name, "timeoutMs": 30000})
	call["onError"] = "continueRegularOutput"
	s.Deploy(t, Chain("n8n-fn batch "+name+" caller", spread(
		WebhookNode(name+"/call"),
		codeNodeMode("Split", "runOnceForAllItems", "return $input.first().json.body.as.map(a => ({ json: { a } }));"),
		call,
	)...))
	run := func(as ...int) []map[string]any {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"as": as})
		r, err := s.Client.CallWebhook(Ctx(t, 90*time.Second), http.MethodPost, name+"/call", body)
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		var items []map[string]any
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &items) != nil || len(items) != len(as) {
			t.Fatalf("call %v: HTTP %d %s", as, r.Status, clip(r.Body))
		}
		return items
	}

	as := []int{1, 2, 3, 4, 5, 6}
	items := run(as...)
	for i, a := range as {
		if items[i]["a"] != float64(a) || items[i]["doubled"] != float64(2*a) {
			t.Fatalf("item %d: %v, want a=%d doubled=%d (each caller item its own result, in order)", i, items[i], a, 2*a)
		}
	}
	// The sidecars' dispatch counters are exact at once (n8n lists an execution only once it
	// saved it, which may be after the webhook answered).
	if n := functionDispatches(t, s, name); n >= float64(len(as)) || n < 1 {
		t.Errorf("%d calls took %v function executions: no batching", len(as), n)
	} else {
		t.Logf("%d calls served by %v function executions", len(as), n)
	}

	offsets := sidecarLogSizes(s)
	items = run(1, 13, 2)
	if items[0]["doubled"] != float64(2) || items[2]["doubled"] != float64(4) {
		t.Fatalf("the good calls of a failed batch: %v", items)
	}
	if e, _ := json.Marshal(items[1]); !strings.Contains(string(e), "unlucky 13") {
		t.Fatalf("the bad call: %s, want its own error", e)
	}
	if !sidecarLogsSince(t, s, offsets, "dispatching them one by one") && !sidecarLogsSince(t, s, offsets, "dispatching its unanswered calls one by one") {
		t.Log("no batch failed in this run (the calls went one by one from the start); the retry path went untested")
	}
}

// TestBatchParallelOnN8N: single calls from separate caller executions (8 concurrent clients,
// each request one call) reach a function with batch.parallel 1 through the real stack; every
// client gets its own result, and the calls share fewer executions than there were calls (one
// sidecar leads the reading, a partial batch waits while one runs). The body takes 300 ms, so
// calls arriving meanwhile have a batch to wait for.
func TestBatchParallelOnN8N(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; functions need the n8n-fn sidecars", s.Env.RunnerKind)
	}
	name := UniqueName(t, "nagle")
	s.Deploy(t, Chain("n8n-fn nagle "+name+" function", spread(
		WebhookNode(name+"/fn"),
		fnDirective("Function", map[string]any{"op": "function", "name": name, "batch": map[string]any{"max": 16, "waitMs": 5, "parallel": 1},
			"params": []map[string]any{{"name": "a", "type": "number", "required": true}}}),
		codeNodeMode("Double", "runOnceForAllItems",
			"await new Promise(r => setTimeout(r, 300));\nreturn $input.all().map(i => ({ json: { a: i.json.a, doubled: i.json.a * 2 } }));"),
		fnDirective("Return", map[string]any{"op": "return"}),
	)...))
	s.Deploy(t, Chain("n8n-fn nagle "+name+" caller", spread(
		WebhookNode(name+"/call"),
		codeNodeMode("Item", "runOnceForAllItems", "return [{ json: { a: $input.first().json.body.a } }];"),
		fnDirective("Call", map[string]any{"op": "call", "function": name, "timeoutMs": 60000}),
	)...))
	const clients, each = 8, 3
	var wg sync.WaitGroup
	errs := make(chan error, clients*each)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				a := c*each + k + 1
				body, _ := json.Marshal(map[string]any{"a": a})
				r, err := s.Client.CallWebhook(Ctx(t, 90*time.Second), http.MethodPost, name+"/call", body)
				var items []map[string]any
				switch {
				case err != nil:
					errs <- fmt.Errorf("call a=%d: %w", a, err)
				case r.Status != http.StatusOK || json.Unmarshal(r.Body, &items) != nil || len(items) != 1:
					errs <- fmt.Errorf("call a=%d: HTTP %d %s", a, r.Status, clip(r.Body))
				case items[0]["a"] != float64(a) || items[0]["doubled"] != float64(2*a):
					errs <- fmt.Errorf("call a=%d answered %v: another caller's result", a, items[0])
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	n := functionDispatches(t, s, name)
	if n >= clients*each || n < 1 {
		t.Errorf("%d single calls took %v function executions: none shared one", clients*each, n)
	}
	t.Logf("%d single calls of %d concurrent clients served by %v function executions", clients*each, clients, n)
}

// functionDispatches is how many function executions the sidecars triggered for global/name.
func functionDispatches(t *testing.T, s *Stack, name string) float64 {
	t.Helper()
	return sumOver(sidecarScrapes(t, s), metrics.Prefix+"function_dispatches_total", "function=global/"+name)
}
