package e2e

// The bad-input corpus (test-workflows/bad-input, internal/badinput) against the real stack: every
// case a workflow, a caller or a webhook can send through n8n is sent through n8n to the sidecars,
// every configuration case is given to the real binary, and each must fail with its error text.
// Afterwards every sidecar must still be healthy, and a function call and a relayed Code node must
// still work. `go test ./internal/badinput` runs the same cases against the code alone.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/internal/badinput"
)

const corpusDir = "../test-workflows/bad-input"

// stackCase is one corpus case as the stack runs it.
type stackCase struct {
	kind string
	c    badinput.Case
}

// check compares what the stack answered with the case's text for the stack.
func (sc stackCase) check(msg string) error {
	c := sc.c
	if len(c.StackError) > 0 {
		c.Error = c.StackError
	}
	if msg == "" {
		return c.Check(nil)
	}
	return c.Check(errors.New(msg))
}

func TestBadInputCorpusOnStack(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; the corpus is about the n8n-fn sidecars", s.Env.RunnerKind)
	}
	start := time.Now()
	files, err := badinput.Load(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string][]stackCase{}
	total, skipped := 0, 0
	for _, f := range files {
		for _, c := range f.Cases {
			total++
			if c.NotOnStack != "" || hasLimits(c) {
				skipped++
				continue
			}
			byKind[f.Kind] = append(byKind[f.Kind], stackCase{kind: f.Kind, c: c})
		}
	}
	ran := 0
	for _, kind := range []string{"directive", "callref", "params", "call-params", "context", "config", "limits", "frame"} {
		cases := byKind[kind]
		if len(cases) == 0 {
			continue
		}
		delete(byKind, kind)
		t.Run(kind, func(t *testing.T) {
			switch kind {
			case "directive":
				runDirectiveCases(t, s, cases)
			case "callref":
				runCallRefCases(t, s, cases)
			case "params", "call-params", "context":
				runCallCases(t, s, kind, cases)
			case "config", "limits":
				runConfigCases(t, s, cases)
			default:
				t.Fatalf("the %s cases cannot be sent through the stack: mark each with notOnStack and why", kind)
			}
		})
		ran += len(cases)
	}
	for kind := range byKind {
		t.Errorf("corpus kind %q has no stack runner here: add one or mark its cases notOnStack", kind)
	}
	t.Run("stack still healthy", func(t *testing.T) { checkStackHealthy(t, s) })
	t.Logf("bad-input corpus on the stack: %d of %d cases sent through the stack (%d marked notOnStack or set for other sidecar limits, run by go test ./internal/badinput only) in %s",
		ran, total, skipped, time.Since(start).Round(100*time.Millisecond))
}

// hasLimits reports a case written for sidecar limits other than the stack's (the defaults).
func hasLimits(c badinput.Case) bool {
	var send struct {
		Limits json.RawMessage `json:"limits"`
	}
	_ = json.Unmarshal(c.Send, &send)
	return len(send.Limits) > 0
}

func expandCase(t *testing.T, s string) string {
	t.Helper()
	out, err := badinput.Expand(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runDirectiveCases runs every directive case as a Code node of one workflow (all fed by its
// webhook, each continuing on failure so that every node runs) and reads each node's error item.
func runDirectiveCases(t *testing.T, s *Stack, cases []stackCase) {
	path := UniqueName(t, "badinput-dir")
	nodes := []Node{WebhookNode(path)}
	var targets []map[string]any
	names := make([]string, len(cases))
	for i, sc := range cases {
		var send struct {
			Node string `json:"node"`
			Code string `json:"code"`
		}
		if err := sc.c.Decode(&send); err != nil {
			t.Fatal(err)
		}
		// One workflow holds every case, so each node gets a name of its own; the expected texts
		// name the node, so they are given the same name.
		names[i] = fmt.Sprintf("%s %02d", send.Node, i+1)
		rename := func(list []string) []string {
			out := make([]string, len(list))
			for j, e := range list {
				out[j] = strings.ReplaceAll(e, `"`+send.Node+`"`, `"`+names[i]+`"`)
			}
			return out
		}
		cases[i].c.Error, cases[i].c.StackError = rename(sc.c.Error), rename(sc.c.StackError)
		n := CodeNode(names[i], expandCase(t, send.Code))
		n["onError"] = "continueRegularOutput"
		n["position"] = []int{300, i * 120}
		nodes = append(nodes, n)
		targets = append(targets, map[string]any{"node": names[i], "type": "main", "index": 0})
	}
	wf := map[string]any{"name": "e2e bad-input directives " + path, "nodes": nodes,
		"connections": map[string]any{"Webhook": map[string]any{"main": [][]map[string]any{targets}}},
		"settings":    map[string]any{"executionOrder": "v1"}}
	wfID := s.Deploy(t, wf)
	resp, err := s.Client.CallWebhook(Ctx(t, 120*time.Second), http.MethodPost, path, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	status, data := lastExecution(t, s, wfID)
	if status != "success" {
		t.Fatalf("the directive workflow ended %s (HTTP %d %s): %s", status, resp.Status, clip(resp.Body), executionError(t, data))
	}
	for i, sc := range cases {
		msg := nodeErrorText(data, names[i])
		if err := sc.check(msg); err != nil {
			t.Errorf("%s: %v", sc.c.Name, err)
		}
	}
}

// nodeErrorText is what a node that continued on failure said: its error item's "error" (the
// message) and the node's own error (message and description) when n8n kept one.
func nodeErrorText(data map[string]any, node string) string {
	rd, _ := data["resultData"].(map[string]any)
	runData, _ := rd["runData"].(map[string]any)
	runs, _ := runData[node].([]any)
	var parts []string
	for _, r := range runs {
		run, _ := r.(map[string]any)
		if e, ok := run["error"].(map[string]any); ok {
			parts = append(parts, fmt.Sprint(e["message"]), fmt.Sprint(e["description"]))
		}
		d, _ := run["data"].(map[string]any)
		mains, _ := d["main"].([]any)
		for _, m := range mains {
			items, _ := m.([]any)
			for _, it := range items {
				j, _ := it.(map[string]any)["json"].(map[string]any)
				if e, ok := j["error"]; ok {
					parts = append(parts, fmt.Sprint(e))
				}
			}
		}
	}
	return strings.Join(parts, " | ")
}

// functionWorkflow deploys Webhook -> function (the given directive) -> return and returns the
// function's webhook path and workflow id.
func functionWorkflow(t *testing.T, s *Stack, name string, directive map[string]any) (string, string) {
	t.Helper()
	path := name + "/fn"
	directive["op"], directive["name"] = "function", name
	id := s.Deploy(t, Chain("e2e bad-input function "+name, spread(
		WebhookNode(path),
		fnDirective("Function", directive),
		fnDirective("Return", map[string]any{"op": "return"}),
	)...))
	return path, id
}

// runCallRefCases posts each body to a function's webhook: the function node must refuse it.
func runCallRefCases(t *testing.T, s *Stack, cases []stackCase) {
	path, wfID := functionWorkflow(t, s, UniqueName(t, "badref"), map[string]any{})
	for _, sc := range cases {
		var send struct {
			Body string `json:"body"`
		}
		if err := sc.c.Decode(&send); err != nil {
			t.Fatal(err)
		}
		body := []byte(expandCase(t, send.Body))
		// A case in the shape of the webhook's item ({"headers":..., "body":...}) is that body posted.
		var item struct {
			Headers json.RawMessage `json:"headers"`
			Body    json.RawMessage `json:"body"`
		}
		if json.Unmarshal(body, &item) == nil && len(item.Headers) > 0 && len(item.Body) > 0 {
			body = item.Body
		}
		before := latestExecutionID(t, s, wfID)
		resp, err := s.Client.CallWebhook(Ctx(t, 60*time.Second), http.MethodPost, path, body)
		if err != nil {
			t.Fatal(err)
		}
		msg := "HTTP " + fmt.Sprint(resp.Status) + " " + clip(resp.Body)
		if resp.Status == http.StatusOK {
			t.Errorf("%s: the function webhook answered 200: %s", sc.c.Name, clip(resp.Body))
			continue
		}
		if id := waitNewExecution(t, s, wfID, before); id != "" {
			msg += " | " + finishedExecutionError(t, s, id)
		}
		if err := sc.check(msg); err != nil {
			t.Errorf("%s: %v", sc.c.Name, err)
		}
	}
}

// runCallCases calls a function through a call node; the caller item is the case's params (or
// item, for contexts), built from the webhook body by a Code node.
func runCallCases(t *testing.T, s *Stack, kind string, cases []stackCase) {
	// params cases carry their function's directive; the others call a function that takes anything.
	fns := map[string]string{} // directive JSON -> function name
	for _, sc := range cases {
		var send struct {
			Function json.RawMessage `json:"function"`
			Params   string          `json:"params"`
			Item     string          `json:"item"`
		}
		if err := sc.c.Decode(&send); err != nil {
			t.Fatal(err)
		}
		dir := string(send.Function)
		if dir == "" {
			dir = `{"op":"function","name":"any"}`
		}
		name, ok := fns[dir]
		if !ok {
			name = UniqueName(t, "bad"+strings.ReplaceAll(kind, "-", ""))
			var d map[string]any
			if err := json.Unmarshal([]byte(dir), &d); err != nil {
				t.Fatal(err)
			}
			functionWorkflow(t, s, name, d)
			fns[dir] = name
		}
		input := send.Params
		if kind == "context" {
			input = send.Item
		}
		callPath := UniqueName(t, "badcall")
		// The item is built on the stack from the case's text, its {{repeat N TEXT}} expanded there
		// (so a 16 MiB param does not have to pass n8n's webhook body limit).
		build := CodeNode("Item", `const p = $input.first().json.body.p.replace(/\{\{repeat (\d+) (.*?)\}\}/g, (m, n, s) => s.repeat(Number(n)));
return [{json: JSON.parse(p)}];`)
		// A call context on an item is never trusted: the node that could use one, return, answers
		// only the call its own execution claimed.
		next := fnDirective("Call", map[string]any{"op": "call", "function": name, "timeoutMs": 30000})
		if kind == "context" {
			next = fnDirective("Return", map[string]any{"op": "return"})
		}
		callerID := s.Deploy(t, Chain("e2e bad-input caller "+callPath, spread(WebhookNode(callPath), build, next)...))
		body, err := json.Marshal(map[string]string{"p": input})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := s.Client.CallWebhook(Ctx(t, 90*time.Second), http.MethodPost, callPath, body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status == http.StatusOK {
			t.Errorf("%s: the call answered 200: %s", sc.c.Name, clip(resp.Body))
			continue
		}
		if err := sc.check(finishedExecutionError(t, s, latestExecutionID(t, s, callerID))); err != nil {
			t.Errorf("%s: %v", sc.c.Name, err)
		}
	}
}

// runConfigCases starts the stack's own n8n-fn binary with each case's environment (over a valid
// one): it must refuse to start, saying what is wrong.
func runConfigCases(t *testing.T, s *Stack, cases []stackCase) {
	if s.Env.FnBin == "" {
		t.Fatal("stack.env has no N8N_FN_BIN")
	}
	for _, sc := range cases {
		var send struct {
			Env map[string]string `json:"env"`
		}
		if err := sc.c.Decode(&send); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, s.Env.FnBin, "run")
		env := map[string]string{
			"N8N_RUNNERS_AUTH_TOKEN": "token", "N8N_FN_SECRET": "0123456789abcdef0123", "N8N_FN_RUNNER_MODE": "none",
			// Nothing it could reach if a case were accepted: it must not take tasks from the stack.
			"N8N_RUNNERS_TASK_BROKER_URI": "http://127.0.0.1:1", "N8N_FN_HEALTH_LISTEN": "off",
			"N8N_FN_BROKER_LISTEN": "127.0.0.1:0", "N8N_FN_REDIS_URL": "redis://127.0.0.1:1/0",
		}
		for k, v := range send.Env {
			env[k] = v
		}
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil || timedOut {
			t.Errorf("%s: n8n-fn run did not refuse the configuration (err %v): %s", sc.c.Name, err, clip(out))
			continue
		}
		if err := sc.check(string(out)); err != nil {
			t.Errorf("%s: %v", sc.c.Name, err)
		}
	}
}

// finishedExecutionError waits until execution id has ended and returns its error message (the
// execution's data can be large: its 16 MiB items are fetched too).
func finishedExecutionError(t *testing.T, s *Stack, id string) string {
	t.Helper()
	if id == "" {
		return ""
	}
	ctx := Ctx(t, 120*time.Second)
	for {
		ex, err := s.Client.GetExecution(ctx, id, true)
		if err != nil {
			t.Fatal(err)
		}
		if ex.Status != "running" && ex.Status != "new" {
			var d map[string]any
			if err := json.Unmarshal(ex.Data, &d); err != nil {
				t.Fatalf("execution data: %v", err)
			}
			return executionError(t, d)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("execution %s did not end", id)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func latestExecutionID(t *testing.T, s *Stack, wfID string) string {
	t.Helper()
	list, err := s.Client.ListExecutions(Ctx(t, 10*time.Second), wfID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) == 0 {
		return ""
	}
	return list[0].ID
}

// waitNewExecution waits briefly for an execution newer than before ("" when n8n made none: it
// refused the request itself).
func waitNewExecution(t *testing.T, s *Stack, wfID, before string) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if id := latestExecutionID(t, s, wfID); id != "" && id != before {
			return id
		}
	}
	return ""
}

// checkStackHealthy: every sidecar answers /healthz and /readyz, a function call answers right
// and a relayed ordinary Code node still works.
func checkStackHealthy(t *testing.T, s *Stack) {
	ports := strings.Split(s.Env.Vars["N8N_FN_HEALTH_PORTS"], ",")
	if len(ports) == 0 || ports[0] == "" {
		t.Fatal("stack.env has no N8N_FN_HEALTH_PORTS")
	}
	for _, p := range ports {
		for _, ep := range []string{"/healthz", "/readyz"} {
			url := "http://127.0.0.1:" + strings.TrimSpace(p) + ep
			resp, err := http.Get(url)
			if err != nil {
				t.Errorf("%s: %v", url, err)
				continue
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: HTTP %d", url, resp.StatusCode)
			}
		}
	}
	name := UniqueName(t, "afterbad")
	functionWorkflow(t, s, name, map[string]any{"params": []map[string]any{{"name": "a", "type": "number", "required": true}}})
	callPath := name + "/call"
	s.Deploy(t, Chain("e2e bad-input after "+name, spread(
		WebhookNode(callPath),
		CodeNode("Item", "return [{json: {a: $input.first().json.body.a}}];"),
		fnDirective("Call", map[string]any{"op": "call", "function": name, "timeoutMs": 30000}),
		CodeNode("Relayed", "return $input.all().map(i => ({json: {a: i.json.a, doubled: i.json.a * 2}}));"),
	)...))
	var items []map[string]any
	for attempt := 1; ; attempt++ { // a function published a moment ago may need one more discovery round
		resp, err := s.Client.CallWebhook(Ctx(t, 60*time.Second), http.MethodPost, callPath, []byte(`{"a":21}`))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status == http.StatusOK {
			items = decodeItems(t, resp.Body)
			break
		}
		if attempt == 3 {
			t.Fatalf("function call + relayed Code node after the corpus: HTTP %d %s", resp.Status, clip(resp.Body))
		}
		time.Sleep(2 * time.Second)
	}
	if len(items) != 1 || items[0]["a"] != 21.0 || items[0]["doubled"] != 42.0 {
		t.Fatalf("after the corpus: want [{a:21, doubled:42}], got %v", items)
	}
}
