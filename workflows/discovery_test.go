package workflows

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func names(ns []*Node) string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Name
	}
	return strings.Join(out, ",")
}

func TestParseWorkflowModel(t *testing.T) {
	wf, err := ParseWorkflow(readFile(t, "testdata/function-add.json"))
	if err != nil {
		t.Fatal(err)
	}
	if wf.ID != "fnAddWf00000001" || wf.Name != "Function: add" || !wf.Active || len(wf.Nodes) != 7 {
		t.Fatalf("%+v", wf)
	}
	if got := names(wf.Upstream("Add")); got != "function add" {
		t.Errorf("upstream %q", got)
	}
	if got := names(wf.Downstream("Webhook add")); got != "function add" {
		t.Errorf("downstream %q", got)
	}
	if got := names(wf.Ancestors("return")); got != "Add,function add,Webhook add" {
		t.Errorf("ancestors %q", got)
	}
	if got := names(wf.Descendants("Webhook local")); got != "function local,return local" {
		t.Errorf("descendants %q", got)
	}
	hook := wf.Node("Webhook add")
	if w := hook.Webhook(); w != (WebhookParams{Path: "n8n-fn/global/add", Method: "POST", ResponseMode: "lastNode", ResponseData: "allEntries", Authentication: "none"}) {
		t.Errorf("webhook %+v", w)
	}
	if w := wf.Node("Webhook local").Webhook(); w.Method != "POST" || w.ResponseData != "firstEntryJson" {
		t.Errorf("multi-method webhook %+v", w)
	}
	fn := wf.Node("function add")
	if fn.TypeVersion != 2 || fn.Position != [2]float64{220, 0} || fn.CodeLanguage() != CodeLanguageJS || fn.CodeMode() != CodeModeAllItems {
		t.Errorf("code node %+v", fn)
	}
	if d, err := fn.Directive(); err != nil || d.DirectiveOp() != OpFunction {
		t.Errorf("directive %v %v", d, err)
	}
	if d, err := hook.Directive(); d != nil || err != nil {
		t.Errorf("webhook directive %v %v", d, err)
	}
}

func TestParseWorkflowsShapes(t *testing.T) {
	one := string(readFile(t, "testdata/function-add.json"))
	for name, in := range map[string]string{"object": one, "array": "[" + one + "," + one + "]", "api page": `{"data":[` + one + `],"nextCursor":null}`} {
		wfs, err := ParseWorkflows([]byte(in))
		if err != nil || len(wfs) == 0 || wfs[0].ID != "fnAddWf00000001" {
			t.Errorf("%s: %v %v", name, len(wfs), err)
		}
	}
	for _, bad := range []string{`{`, `{"name":"x"}`, `[1]`, `{"nodes":[{"name":"a"},{"name":"a"}]}`, `{"nodes":[{"type":"x"}]}`} {
		if _, err := ParseWorkflows([]byte(bad)); !errors.Is(err, ErrWorkflow) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestParsePublishedUsesActiveVersion(t *testing.T) {
	in := `{"id":"w1","name":"n","active":true,
		"nodes":[{"name":"draft","type":"n8n-nodes-base.noOp","parameters":{}}],"connections":{},
		"activeVersion":{"versionId":"v","workflowId":"w1","nodes":[{"name":"published","type":"n8n-nodes-base.noOp","parameters":{}}],"connections":{}}}`
	pub, err := ParsePublished([]byte(in))
	if err != nil || pub.Node("published") == nil || pub.Node("draft") != nil {
		t.Fatalf("%v %v", pub, err)
	}
	draft, _ := ParseWorkflow([]byte(in))
	if draft.Node("draft") == nil {
		t.Fatal("ParseWorkflow must read the draft")
	}
}

func TestDiscover(t *testing.T) {
	other := `{"id":"aaaOther","name":"Other add","nodes":[
		{"name":"W","type":"n8n-nodes-base.webhook","typeVersion":2.1,"parameters":{"httpMethod":"POST","path":"/other/add/","responseMode":"lastNode"}},
		{"name":"F","type":"n8n-nodes-base.code","typeVersion":2,"parameters":{"jsCode":"/* @n8n-fn {\"op\":\"function\",\"name\":\"add\"} */"}}],
		"connections":{"W":{"main":[[{"node":"F","type":"main","index":0}]]}}}`
	defs, problems := Discover([][]byte{readFile(t, "testdata/function-add.json"), readFile(t, "testdata/bad-functions.json"), []byte(other), []byte(`nope`)})
	if len(defs) != 2 {
		t.Fatalf("defs %+v", defs)
	}
	// the duplicate global "add" resolves to the lowest workflow id on every sidecar
	add := defs[1]
	if defs[0].Ref != (FunctionRef{"fnAddWf00000001", "local"}) || add.Ref != (FunctionRef{ScopeGlobal, "add"}) {
		t.Fatalf("refs %v %v", defs[0].Ref, add.Ref)
	}
	if add.WorkflowID != "aaaOther" || add.WebhookPath != "other/add" || add.WebhookMethod != "POST" || !add.LastNodeResponse {
		t.Errorf("add %+v", add)
	}
	// ... and says it is ambiguous, naming every other definition: calls to it fail.
	if len(add.Conflicts) != 2 || !strings.Contains(strings.Join(add.Conflicts, "|"), `"Bad functions" (badWf0000000001) node "dup add"`) {
		t.Errorf("conflicts of add: %q", add.Conflicts)
	}
	if len(defs[0].Conflicts) != 0 {
		t.Errorf("local has no conflict: %q", defs[0].Conflicts)
	}
	if defs[0].WebhookPath != "n8n-fn/wf/local" || defs[0].Function.TimeoutMs != DefaultFunctionTimeoutMs {
		t.Errorf("local %+v", defs[0])
	}
	want := map[string]string{
		"function add": "also defined in workflow \"Other add\"",
		"dup add":      "also defined",
		"orphan fn":    "it must be a Webhook node",
		"bad params":   "\"int\" is not a param type",
		"":             "workflow #4",
	}
	got := map[string]string{}
	for _, p := range problems {
		got[p.Node] += p.String() + "|"
		if p.Skipped == strings.Contains(p.Message, "responds") {
			t.Errorf("problem skipped=%v: %v", p.Skipped, p)
		}
	}
	for node, w := range want {
		if !strings.Contains(got[node], w) {
			t.Errorf("node %q: problems %q lack %q", node, got[node], w)
		}
	}
	if _, ok := got["typo op"]; ok {
		t.Errorf("a broken non-function directive is lint's business, not discovery's: %q", got["typo op"])
	}
}

func TestDiscoverSkipsUnpublished(t *testing.T) {
	b := string(readFile(t, "testdata/function-add.json"))
	inactive := strings.Replace(b, `"active": true`, `"active": false`, 1)
	archived := strings.Replace(b, `"active": true`, `"active": true, "isArchived": true`, 1)
	for name, in := range map[string]string{"inactive": inactive, "archived": archived} {
		if defs, problems := Discover([][]byte{[]byte(in)}); len(defs) != 0 || len(problems) != 0 {
			t.Errorf("%s: %v %v", name, defs, problems)
		}
	}
	if defs, _ := Discover([][]byte{[]byte(b)}); len(defs) != 2 {
		t.Fatalf("published: %v", defs)
	}
}

func TestDiscoverBundledTestWorkflows(t *testing.T) {
	files, _ := filepath.Glob("../test-workflows/*-test.json")
	if len(files) == 0 {
		t.Skip("no bundled test workflows in this tree")
	}
	var wfs [][]byte
	for i, f := range files {
		// the API gives every workflow an id; the files have none
		b := readFile(t, f)
		wfs = append(wfs, []byte(strings.Replace(string(b), "{", `{"id":"bundled`+string(rune('A'+i))+`",`, 1)))
	}
	defs, problems := Discover(wfs)
	for _, p := range problems {
		if p.Skipped {
			t.Errorf("bundled workflow problem: %v", p)
		}
	}
	found := map[string]bool{}
	for _, d := range defs {
		found[d.Ref.Name] = true
	}
	for _, n := range []string{"testAdd", "testFactorial"} {
		if !found[n] {
			t.Errorf("function %s not discovered (found %v)", n, found)
		}
	}
}
