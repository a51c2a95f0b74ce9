package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/registry"
)

// buildCLI builds cmd/n8n-fn from this tree once per test.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "n8n-fn")
	build := exec.CommandContext(Ctx(t, 5*time.Minute), "go", "build", "-o", bin, "../cmd/n8n-fn")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/n8n-fn: %v\n%s", err, out)
	}
	return bin
}

// runCLI runs the built n8n-fn against the stack's Redis and n8n.
func runCLI(t *testing.T, s *Stack, bin string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.CommandContext(Ctx(t, time.Minute), bin, args...)
	cmd.Env = append(os.Environ(), "N8N_FN_REDIS_URL="+s.Env.Vars["N8N_FN_REDIS_URL"], "N8N_FN_N8N_API_URL="+s.Env.BaseURL)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// nestedChain deploys caller -> outer -> inner, where each execution reports its own id, calls
// it once and returns the ids of the caller's, outer's and inner's executions.
func nestedChain(t *testing.T, s *Stack, name string) (ids map[string]string, callerWF, outerWF, innerWF string) {
	t.Helper()
	innerWF = s.Deploy(t, Chain("n8n-fn trace "+name+" inner", spread(
		WebhookNode(name+"/inner"),
		fnDirective("Function", map[string]any{"op": "function", "name": name + "-inner"}),
		codeNodeMode("Body", "runOnceForAllItems", "return [{ json: { inner: $execution.id } }];"),
		fnDirective("Return", map[string]any{"op": "return"}),
	)...))
	outerWF = s.Deploy(t, Chain("n8n-fn trace "+name+" outer", spread(
		WebhookNode(name+"/outer"),
		fnDirective("Function", map[string]any{"op": "function", "name": name + "-outer"}),
		fnDirective("Call inner", map[string]any{"op": "call", "function": name + "-inner", "timeoutMs": 30000}),
		codeNodeMode("Body", "runOnceForAllItems", "return [{ json: { inner: $json.inner, outer: $execution.id } }];"),
		fnDirective("Return", map[string]any{"op": "return"}),
	)...))
	callerWF = s.Deploy(t, Chain("n8n-fn trace "+name+" caller", spread(
		WebhookNode(name+"/call"),
		fnDirective("Call outer", map[string]any{"op": "call", "function": name + "-outer", "timeoutMs": 45000}),
		codeNodeMode("Ids", "runOnceForAllItems", "return [{ json: { inner: $json.inner, outer: $json.outer, caller: $execution.id } }];"),
	)...))
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := s.Client.CallWebhook(Ctx(t, 60*time.Second), http.MethodPost, name+"/call", []byte(`{}`))
		if err == nil && r.Status == http.StatusOK {
			var items []map[string]string
			if err := json.Unmarshal(r.Body, &items); err != nil || len(items) != 1 || items[0]["caller"] == "" || items[0]["outer"] == "" || items[0]["inner"] == "" {
				t.Fatalf("nested call answered %s (%v)", clip(r.Body), err)
			}
			return items[0], callerWF, outerWF, innerWF
		}
		if time.Now().After(deadline) { // right after deploying, discovery may not have seen the functions yet
			t.Fatalf("nested call: %v HTTP %d %s", err, r.Status, clip(r.Body))
		}
		time.Sleep(time.Second)
	}
}

// TestTraceShowsANestedCallChain calls caller -> outer -> inner through n8n and draws the chain
// with `n8n-fn trace`: from the caller's execution, from the innermost execution and from a call
// id, the same tree: every execution with its workflow, worker and a link into n8n's UI, every
// call with its function, outcome, dispatches and times.
func TestTraceShowsANestedCallChain(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; functions need the n8n-fn sidecars", s.Env.RunnerKind)
	}
	bin := buildCLI(t)
	name := UniqueName(t, "trace")
	ids, callerWF, outerWF, innerWF := nestedChain(t, s, name)
	sidecars := map[string]bool{"main": true}
	for _, w := range s.WorkerNames() {
		sidecars[w] = true
	}

	check := func(from string) *registry.TraceNode {
		t.Helper()
		out, stderr, err := runCLI(t, s, bin, "trace", "--json", from)
		if err != nil {
			t.Fatalf("n8n-fn trace --json %s: %v\n%s", from, err, stderr)
		}
		var root registry.TraceNode
		if err := json.Unmarshal([]byte(out), &root); err != nil {
			t.Fatalf("trace --json output: %v\n%s", err, out)
		}
		if root.ID != ids["caller"] || root.WorkflowID != callerWF || !sidecars[root.Worker] || len(root.CallTree) != 1 {
			t.Fatalf("trace %s: top %+v, want the caller's execution %s", from, root.TraceExecution, ids["caller"])
		}
		outerCall := root.CallTree[0]
		if outerCall.Function != "global/"+name+"-outer" || outerCall.Outcome != "ok" || outerCall.Dispatches != 1 || outerCall.CallerNode != "Call outer" || outerCall.Served == nil {
			t.Fatalf("trace %s: outer call %+v", from, outerCall.TraceCall)
		}
		outer := outerCall.Served
		wantURL := strings.TrimRight(s.Env.BaseURL, "/") + "/workflow/" + outerWF + "/executions/" + ids["outer"]
		if outer.ID != ids["outer"] || outer.WorkflowID != outerWF || !sidecars[outer.Worker] || outer.URL != wantURL || len(outer.CallTree) != 1 {
			t.Fatalf("trace %s: outer execution %+v, want %s at %s", from, outer.TraceExecution, ids["outer"], wantURL)
		}
		innerCall := outer.CallTree[0]
		if innerCall.Function != "global/"+name+"-inner" || innerCall.Outcome != "ok" || innerCall.Parent != outerCall.ID || innerCall.Served == nil ||
			innerCall.Served.ID != ids["inner"] || innerCall.Served.WorkflowID != innerWF || len(innerCall.Served.CallTree) != 0 {
			t.Fatalf("trace %s: inner call %+v served by %+v", from, innerCall.TraceCall, innerCall.Served)
		}
		for _, c := range []*registry.TraceCallNode{outerCall, innerCall} {
			if c.Queued.IsZero() || c.Dispatched.Before(c.Queued) || c.Finished.Before(c.Dispatched) || c.Claimed.Before(c.Dispatched) {
				t.Errorf("trace %s: call %s times out of order: %+v", from, c.ID, c.TraceCall)
			}
		}
		// The outer call lasts at least as long as the inner one inside it.
		if outerCall.Finished.Sub(outerCall.Queued) < innerCall.Finished.Sub(innerCall.Queued) {
			t.Errorf("trace %s: outer call shorter than the inner call it waited for", from)
		}
		return &root
	}
	root := check(ids["caller"])
	check(ids["inner"])
	check(root.CallTree[0].Served.CallTree[0].ID) // the inner call's id

	text, stderr, err := runCLI(t, s, bin, "trace", ids["inner"])
	if err != nil {
		t.Fatalf("n8n-fn trace %s: %v\n%s", ids["inner"], err, stderr)
	}
	for _, want := range []string{
		"execution " + ids["caller"], "execution " + ids["outer"], "execution " + ids["inner"] + "  workflow",
		"-> global/" + name + "-outer  ok", "-> global/" + name + "-inner  ok", "/workflow/" + innerWF + "/executions/" + ids["inner"], "<==",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("trace text lacks %q:\n%s", want, text)
		}
	}
	t.Logf("n8n-fn trace %s:\n%s", ids["inner"], text)

	if _, stderr, err := runCLI(t, s, bin, "trace", "no-such-id"); err == nil || !strings.Contains(stderr, "nothing is traced") {
		t.Errorf("trace of an unknown id: %v %s", err, stderr)
	}
}
