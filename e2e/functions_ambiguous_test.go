package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAmbiguousFunctionNameFailsLoudly publishes two workflows that define one global function
// name: a call fails at once with an error naming both workflows (instead of running whichever
// id sorts first), and the sidecars' /readyz says so.
func TestAmbiguousFunctionNameFailsLoudly(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; functions need the n8n-fn sidecars", s.Env.RunnerKind)
	}
	name := UniqueName(t, "twice")
	for _, v := range []string{"a", "b"} {
		s.Deploy(t, Chain("n8n-fn ambiguous "+name+" "+v, spread(
			WebhookNode(name+"/fn-"+v),
			fnDirective("Function", map[string]any{"op": "function", "name": name}),
			fnDirective("Return", map[string]any{"op": "return"}),
		)...))
	}
	callerWF := s.Deploy(t, Chain("n8n-fn ambiguous "+name+" caller", spread(
		WebhookNode(name+"/call"),
		fnDirective("Call", map[string]any{"op": "call", "function": name, "timeoutMs": 20000}),
	)...))
	start := time.Now()
	r, err := s.Client.CallWebhook(Ctx(t, 30*time.Second), http.MethodPost, name+"/call", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if r.Status == http.StatusOK {
		t.Fatalf("a call to an ambiguous name answered: %s", clip(r.Body))
	}
	_, data := lastExecution(t, s, callerWF)
	msg := executionError(t, data)
	if !strings.Contains(msg, "is ambiguous") || !strings.Contains(msg, "n8n-fn ambiguous "+name+" a") || !strings.Contains(msg, "n8n-fn ambiguous "+name+" b") {
		t.Fatalf("error after %s: %q", took.Round(time.Millisecond), msg)
	}
	t.Logf("failed after %s: %s", took.Round(time.Millisecond), msg)
	ready := false
	for _, port := range strings.Split(s.Env.Vars["N8N_FN_HEALTH_PORTS"], ",") {
		resp, err := http.Get("http://127.0.0.1:" + strings.TrimSpace(port) + "/readyz")
		if err != nil {
			continue
		}
		b := make([]byte, 64<<10)
		n, _ := resp.Body.Read(b)
		resp.Body.Close()
		if strings.Contains(string(b[:n]), "is ambiguous") {
			ready = true
		}
	}
	if !ready {
		t.Error("no sidecar's /readyz mentions the ambiguous function")
	}
}
