package e2e

// Shared helpers for every e2e test file: finding the stack, importing workflows that clean up
// after themselves, unique webhook paths, and looking into the n8n process logs.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/n8napi"
)

// Stack is the running stack as seen by a test.
type Stack struct {
	Env    n8napi.StackEnv
	Client *n8napi.Client
}

// NeedStack returns the running stack. When it is not there the test is skipped with the reason,
// or fails when N8N_FN_E2E_REQUIRED=1 (scripts/test.sh sets it after starting the stack itself).
func NeedStack(t testing.TB) *Stack {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("N8N_FN_E2E_REQUIRED") == "1" {
			t.Fatalf("e2e stack required (N8N_FN_E2E_REQUIRED=1) but unavailable: "+format, args...)
		}
		t.Skipf("SKIP e2e: n8n stack unavailable ("+format+"); start it with `make up` (scripts/stack.sh up) or run `make test`", args...)
	}
	path, err := n8napi.DefaultStackEnvPath()
	if err != nil {
		unavailable("%v", err)
	}
	env, err := n8napi.LoadStackEnv(path)
	if err != nil {
		unavailable("%v", err)
	}
	c := env.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.ListWorkflows(ctx, true); err != nil {
		unavailable("n8n at %s does not answer the public API: %v", env.BaseURL, err)
	}
	return &Stack{Env: env, Client: c}
}

// Ctx returns a context bound to the test (and to a hard upper limit).
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// UniqueName returns prefix plus a random suffix, for webhook paths and workflow names that must
// not collide with other runs or other helpers' tests on the shared stack.
func UniqueName(t testing.TB, prefix string) string {
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random name: %v", err)
	}
	return prefix + "-" + hex.EncodeToString(b)
}

// Deploy creates and publishes a workflow and deletes it when the test ends.
func (s *Stack) Deploy(t testing.TB, workflow any) string {
	t.Helper()
	raw, ok := workflow.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(workflow); err != nil {
			t.Fatalf("encode workflow: %v", err)
		}
	}
	ctx := Ctx(t, 30*time.Second)
	id, err := s.Client.CreateWorkflow(ctx, raw)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Client.DeleteWorkflow(ctx, id); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := s.Client.PublishWorkflow(ctx, id); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	// Publishing is asynchronous in n8n 2.41: wait until every webhook of the workflow is served.
	var wf struct {
		Nodes []struct {
			Type       string `json:"type"`
			Parameters struct {
				Path       string `json:"path"`
				HTTPMethod string `json:"httpMethod"`
			} `json:"parameters"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(raw, &wf); err != nil {
		t.Fatalf("deploy: read nodes: %v", err)
	}
	for _, n := range wf.Nodes {
		if n.Type != "n8n-nodes-base.webhook" || n.Parameters.Path == "" {
			continue
		}
		method := n.Parameters.HTTPMethod
		if method == "" {
			method = "GET"
		}
		if err := s.Client.WaitWebhook(ctx, method, n.Parameters.Path); err != nil {
			t.Fatalf("deploy: %v", err)
		}
	}
	return id
}

// LogPath is the log file of one stack process ("main", "worker1", "runner-worker1", ...).
func (s *Stack) LogPath(name string) string { return filepath.Join(s.Env.LogDir, name+".log") }

// WorkerNames lists the worker process names ("worker1", ...).
func (s *Stack) WorkerNames() []string {
	names := make([]string, len(s.Env.WorkerBrokerPorts))
	for i := range names {
		names[i] = "worker" + strconv.Itoa(i+1)
	}
	return names
}

// WaitLog waits until one of the named logs contains substr and returns that log's name.
func (s *Stack) WaitLog(t testing.TB, names []string, substr string, timeout time.Duration) (string, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, n := range names {
			if b, err := os.ReadFile(s.LogPath(n)); err == nil && strings.Contains(string(b), substr) {
				return n, true
			}
		}
		if time.Now().After(deadline) {
			return "", false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// LogContains reports whether the named log contains substr now.
func (s *Stack) LogContains(t testing.TB, name, substr string) bool {
	t.Helper()
	b, err := os.ReadFile(s.LogPath(name))
	if err != nil {
		t.Fatalf("read log %s: %v", name, err)
	}
	return strings.Contains(string(b), substr)
}

// Node is one n8n workflow node; Workflow builds the JSON the public API accepts.
type Node = map[string]any

// WebhookNode is a POST webhook that answers with the last node's items ("when last node finishes").
func WebhookNode(path string) Node {
	return Node{
		"id": newID(), "name": "Webhook", "type": "n8n-nodes-base.webhook", "typeVersion": 2.1,
		"position": []int{0, 0}, "webhookId": newID(),
		"parameters": map[string]any{"httpMethod": "POST", "path": path, "responseMode": "lastNode", "responseData": "allEntries", "options": map[string]any{}},
	}
}

// CodeNode is a JavaScript Code node in "Run Once for All Items" mode.
func CodeNode(name, js string) Node {
	return Node{
		"id": newID(), "name": name, "type": "n8n-nodes-base.code", "typeVersion": 2, "position": []int{220, 0},
		"parameters": map[string]any{"mode": "runOnceForAllItems", "language": "javaScript", "jsCode": js},
	}
}

// Chain returns a workflow whose nodes are connected in the given order.
func Chain(name string, nodes ...Node) map[string]any {
	conns := map[string]any{}
	for i := 0; i+1 < len(nodes); i++ {
		conns[nodes[i]["name"].(string)] = map[string]any{
			"main": [][]map[string]any{{{"node": nodes[i+1]["name"], "type": "main", "index": 0}}},
		}
	}
	return map[string]any{"name": name, "nodes": nodes, "connections": conns, "settings": map[string]any{"executionOrder": "v1"}}
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
