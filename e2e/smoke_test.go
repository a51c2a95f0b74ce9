package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSmokeWebhookCodeRunsOnWorker: Webhook -> Code through the public API, published, called; the
// Code node's output comes back and the Code node ran on a worker's runner, not on main.
func TestSmokeWebhookCodeRunsOnWorker(t *testing.T) {
	s := NeedStack(t)
	path := UniqueName(t, "smoke")
	token := UniqueName(t, "token")
	// console.log reaches the stdout of the n8n process whose runner ran the code (CODE_ENABLE_STDOUT).
	js := fmt.Sprintf(`console.log('n8n-fn-smoke', %q);
return $input.all().map(item => ({ json: { ...item.json.body, probed: true, token: %q, exec: $execution.id } }));`, token, token)
	wfID := s.Deploy(t, Chain("e2e "+path, WebhookNode(path), CodeNode("Code", js)))

	ctx := Ctx(t, 60*time.Second)
	resp, err := s.Client.CallWebhook(ctx, http.MethodPost, path, []byte(`{"hello":"world","n":7}`))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("webhook %s: HTTP %d: %s", path, resp.Status, resp.Body)
	}
	var items []struct {
		Hello  string `json:"hello"`
		N      int    `json:"n"`
		Probed bool   `json:"probed"`
		Token  string `json:"token"`
		Exec   string `json:"exec"`
	}
	if err := json.Unmarshal(resp.Body, &items); err != nil {
		t.Fatalf("webhook answer is not the Code node's item list: %v: %s", err, resp.Body)
	}
	if len(items) != 1 || items[0].Hello != "world" || items[0].N != 7 || !items[0].Probed || items[0].Token != token || items[0].Exec == "" {
		t.Fatalf("Code node output = %s, want one item {hello:world, n:7, probed:true, token:%s, exec:<id>}", resp.Body, token)
	}
	execID := items[0].Exec

	// Where did it run? The worker that ran the execution logs "Worker started execution <id>",
	// and the Code node's console.log line appears in that same worker's stdout, never in main's.
	worker, ok := s.WaitLog(t, s.WorkerNames(), fmt.Sprintf("Worker started execution %s ", execID), 10*time.Second)
	if !ok {
		t.Fatalf("no worker log says it started execution %s (logs in %s)", execID, s.Env.LogDir)
	}
	if _, ok := s.WaitLog(t, []string{worker}, token, 10*time.Second); !ok {
		t.Fatalf("the Code node's console.log (%s) is not in %s's log: the code did not run on that worker's runner", token, worker)
	}
	if s.LogContains(t, "main", token) {
		t.Fatalf("the Code node's console.log (%s) appeared in main's log: it ran on main", token)
	}

	// n8n agrees: the execution exists, belongs to the workflow and succeeded.
	ex, err := s.Client.GetExecution(ctx, execID, false)
	if err != nil {
		t.Fatal(err)
	}
	if ex.WorkflowID != wfID || ex.Status != "success" || ex.Mode != "webhook" {
		t.Fatalf("execution %s = workflow %s status %s mode %s, want workflow %s success webhook", execID, ex.WorkflowID, ex.Status, ex.Mode, wfID)
	}
	t.Logf("execution %s ran on %s (%s)", execID, worker, strings.TrimSpace(s.Env.RunnerKind))
}
