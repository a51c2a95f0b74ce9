package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestEditedWebhookPathIsRediscovered edits a published function's webhook path and calls it at
// once: the dispatchers still know the old path, get HTTP 404 from n8n, rediscover at once and
// trigger the new path, instead of failing with "is it still published?" until the next
// discovery round. A deleted function fails at once with a message that says so.
func TestEditedWebhookPathIsRediscovered(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; functions need the n8n-fn sidecars", s.Env.RunnerKind)
	}
	name := UniqueName(t, "moved")
	fnFlow := func(path string) map[string]any {
		return Chain("n8n-fn rediscover "+name+" function", spread(
			WebhookNode(path),
			fnDirective("Function", map[string]any{"op": "function", "name": name}),
			codeNodeMode("Body", "runOnceForAllItems", "return $input.all().map(i => ({ json: { path: '"+path+"' } }));"),
			fnDirective("Return", map[string]any{"op": "return"}),
		)...)
	}
	fnWF := s.Deploy(t, fnFlow(name+"/fn-a"))
	s.Deploy(t, Chain("n8n-fn rediscover "+name+" caller", spread(
		WebhookNode(name+"/call"),
		fnDirective("Call", map[string]any{"op": "call", "function": name, "timeoutMs": 20000}),
	)...))
	call := func() (int, []byte) {
		r, err := s.Client.CallWebhook(Ctx(t, 30*time.Second), http.MethodPost, name+"/call", []byte(`{}`))
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		return r.Status, r.Body
	}
	if st, body := call(); st != http.StatusOK || !json.Valid(body) || string(body) == "" {
		t.Fatalf("first call: HTTP %d %s", st, clip(body))
	}
	// Discovery also runs every 10 s by itself; an edit it sees first proves nothing, so edit
	// again (up to three times) until a dispatcher met the 404.
	for attempt := 1; attempt <= 3; attempt++ {
		path := name + "/fn-" + string(rune('a'+attempt))
		raw, err := json.Marshal(fnFlow(path))
		if err != nil {
			t.Fatal(err)
		}
		offsets := sidecarLogSizes(s)
		ctx := Ctx(t, 30*time.Second)
		if err := s.Client.UpdateWorkflow(ctx, fnWF, raw); err != nil {
			t.Fatalf("edit the path: %v", err)
		}
		if err := s.Client.PublishWorkflow(ctx, fnWF); err != nil {
			t.Fatalf("publish the edit: %v", err)
		}
		start := time.Now()
		st, body := call()
		var items []map[string]any
		old := name + "/fn-" + string(rune('a'+attempt-1))
		// The old version may still answer for a moment after the edit (n8n's choice, and right).
		if st != http.StatusOK || json.Unmarshal(body, &items) != nil || len(items) != 1 || (items[0]["path"] != path && items[0]["path"] != old) {
			t.Fatalf("call after the edit (%s): HTTP %d %s", time.Since(start).Round(time.Millisecond), st, clip(body))
		}
		if sidecarLogsSince(t, s, offsets, "the function's webhook moved") {
			t.Logf("a dispatcher met HTTP 404, rediscovered and answered from %s %s after the edit", path, time.Since(start).Round(time.Millisecond))
			return
		}
		t.Logf("attempt %d: no dispatcher met a stale path (answered in %s from %v); editing again", attempt, time.Since(start).Round(time.Millisecond), items[0]["path"])
	}
	t.Skip("SKIP: in three edits n8n never left a dispatcher a stale path (discovery or n8n were always ahead); the rediscovery path went untested in this run")
}

// TestCallToDeletedFunctionFailsAtOnce deletes a function's workflow (as a re-import under new ids
// does) and calls it right away: its registration outlives the workflow for a few minutes, but the
// call fails at once with a clear error instead of waiting its whole timeout.
func TestCallToDeletedFunctionFailsAtOnce(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; functions need the n8n-fn sidecars", s.Env.RunnerKind)
	}
	name := UniqueName(t, "gone")
	raw, err := json.Marshal(Chain("n8n-fn gone "+name+" function", spread(
		WebhookNode(name+"/fn"),
		fnDirective("Function", map[string]any{"op": "function", "name": name}),
		fnDirective("Return", map[string]any{"op": "return"}),
	)...))
	if err != nil {
		t.Fatal(err)
	}
	ctx := Ctx(t, 60*time.Second)
	fnWF, err := s.Client.CreateWorkflow(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	deleted := false
	t.Cleanup(func() { // when the test stops before it deletes the workflow itself
		if !deleted {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = s.Client.DeleteWorkflow(cctx, fnWF)
		}
	})
	if err := s.Client.PublishWorkflow(ctx, fnWF); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.WaitWebhook(ctx, http.MethodPost, name+"/fn"); err != nil {
		t.Fatal(err)
	}
	s.Deploy(t, Chain("n8n-fn gone "+name+" caller", spread(
		WebhookNode(name+"/call"),
		fnDirective("Call", map[string]any{"op": "call", "function": name, "timeoutMs": 60000, "waitForLive": 0}),
	)...))
	callerWF := callerWorkflow(t, s, name)
	// The first call only proves the function works; right after a stack start n8n can be slow to
	// list the new workflow, so it may take a second try (said in the log).
	for attempt := 1; ; attempt++ {
		r, err := s.Client.CallWebhook(ctx, http.MethodPost, name+"/call", []byte(`{"x":1}`))
		if err == nil && r.Status == http.StatusOK {
			break
		}
		_, data := lastExecution(t, s, callerWF)
		if attempt == 3 {
			t.Fatalf("first call: %v %d %s: %s", err, r.Status, clip(r.Body), executionError(t, data))
		}
		t.Logf("first call, attempt %d: %v %d: %s", attempt, err, r.Status, executionError(t, data))
		time.Sleep(2 * time.Second)
	}
	if err := s.Client.DeleteWorkflow(ctx, fnWF); err != nil {
		t.Fatal(err)
	}
	deleted = true
	start := time.Now()
	r, err := s.Client.CallWebhook(ctx, http.MethodPost, name+"/call", []byte(`{"x":1}`))
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status == http.StatusOK {
		t.Fatalf("a call to a deleted function answered: %s", clip(r.Body))
	}
	if took > 10*time.Second {
		t.Fatalf("the call failed only after %s: it waited for its timeout", took.Round(time.Second))
	}
	_, data := lastExecution(t, s, callerWF)
	if msg := executionError(t, data); !strings.Contains(msg, "no longer published") {
		t.Fatalf("error after %s: %q", took.Round(time.Millisecond), msg)
	}
	t.Logf("failed after %s: %s", took.Round(time.Millisecond), executionError(t, data))
}

// callerWorkflow finds the id of the caller workflow deployed for name.
func callerWorkflow(t *testing.T, s *Stack, name string) string {
	t.Helper()
	wfs, err := s.Client.ListWorkflows(Ctx(t, 10*time.Second), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range wfs {
		if w.Name == "n8n-fn gone "+name+" caller" {
			return w.ID
		}
	}
	t.Fatalf("caller workflow of %s not found", name)
	return ""
}
