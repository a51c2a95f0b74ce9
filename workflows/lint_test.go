package workflows

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestLintCleanWorkflow(t *testing.T) {
	fs := Lint(readFile(t, "testdata/function-add.json"))
	// the only remark: the local function's Webhook returns the first entry, not all
	if len(fs) != 1 || HasErrors(fs) {
		t.Fatalf("findings: %v", fs)
	}
	for _, f := range fs {
		if f.Node != "function local" || f.Severity != SeverityWarning {
			t.Errorf("unexpected %v", f)
		}
	}
}

func TestLintFindsEveryProblem(t *testing.T) {
	fs := Lint(readFile(t, "testdata/bad-functions.json"))
	want := []struct {
		node, sev, msg string
	}{
		{"dup add", "error", `mode is "runOnceForEachItem"`},
		{"dup add", "error", `responds "onReceived"`},
		{"dup add", "warning", "accepts GET"},
		{"dup add", "warning", "no return node"},
		{"orphan fn", "error", "it must be a Webhook node"},
		{"lonely return", "error", "return with no function node upstream"},
		{"typo op", "error", `unknown op "cal"`},
		{"bad params", "error", `"int" is not a param type`},
		{"python call", "error", `language is "pythonNative"`},
		{"broken header", "error", "does not parse"},
		{"Call Function", "warning", "n8n-nodes-function"},
	}
	for _, w := range want {
		found := false
		for _, f := range fs {
			if f.Node == w.node && string(f.Severity) == w.sev && strings.Contains(f.Message, w.msg) {
				found = true
				if f.Hint == "" && w.sev == "error" {
					t.Errorf("%s: error without a hint: %v", w.node, f)
				}
			}
		}
		if !found {
			t.Errorf("missing %s %s %q in\n%v", w.node, w.sev, w.msg, join(fs))
		}
	}
	if !HasErrors(fs) {
		t.Fatal("HasErrors")
	}
}

func join(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

func TestLintSetDuplicatesAndUnknownCalls(t *testing.T) {
	caller := `{"id":"callerWf","name":"Caller","nodes":[
		{"name":"Start","type":"n8n-nodes-base.manualTrigger","typeVersion":1,"parameters":{}},
		{"name":"call add","type":"n8n-nodes-base.code","typeVersion":2,"parameters":{"jsCode":"/* @n8n-fn {\"op\":\"call\",\"function\":\"add\"} */"}},
		{"name":"call missing","type":"n8n-nodes-base.code","typeVersion":2,"parameters":{"jsCode":"/* @n8n-fn {\"op\":\"call\",\"function\":\"nope\"} */"}},
		{"name":"call local","type":"n8n-nodes-base.code","typeVersion":2,"parameters":{"jsCode":"/* @n8n-fn {\"op\":\"call\",\"function\":\"local\",\"scope\":\"workflow\"} */"}},
		{"name":"call other wf","type":"n8n-nodes-base.code","typeVersion":2,"parameters":{"jsCode":"/* @n8n-fn {\"op\":\"call\",\"function\":\"local\",\"scope\":\"fnAddWf00000001\"} */"}},
		{"name":"call unknown wf","type":"n8n-nodes-base.code","typeVersion":2,"parameters":{"jsCode":"/* @n8n-fn {\"op\":\"call\",\"function\":\"x\",\"scope\":\"zzz\"} */"}}],
		"connections":{"Start":{"main":[[{"node":"call add","type":"main","index":0}]]}}}`
	fs := LintSet([][]byte{readFile(t, "testdata/function-add.json"), readFile(t, "testdata/bad-functions.json"), []byte(caller)})
	count := func(node, msg string) int {
		n := 0
		for _, f := range fs {
			if f.Node == node && strings.Contains(f.Message, msg) {
				n++
			}
		}
		return n
	}
	checks := []struct {
		node, msg string
		n         int
	}{
		{"function add", `global function "add" is also defined in "Bad functions" (badWf0000000001) node "dup add"`, 1},
		{"dup add", `global function "add" is also defined in "Function: add"`, 1},
		{"call add", "none of the checked", 0},
		{"call missing", `calls global function "nope", which none of the checked workflows defines`, 1},
		{"call local", `calls workflow-scoped function "local", which this workflow does not define`, 1},
		{"call other wf", "not among the checked", 0},
		{"call unknown wf", "not among the checked workflows", 1},
	}
	for _, c := range checks {
		if got := count(c.node, c.msg); got != c.n {
			t.Errorf("%s %q: %d findings, want %d\n%s", c.node, c.msg, got, c.n, join(fs))
		}
	}
}

func TestLintNotAWorkflow(t *testing.T) {
	fs := Lint([]byte(`{"hello":1}`))
	if len(fs) != 1 || !HasErrors(fs) || !strings.Contains(fs[0].Message, "nodes") {
		t.Fatalf("%v", fs)
	}
}

func TestLintMisplacedHeader(t *testing.T) {
	wf := `{"nodes":[{"name":"c","type":"n8n-nodes-base.code","typeVersion":2,"parameters":{"jsCode":"const x = 1;\n/* @n8n-fn {\"op\":\"return\"} */"}}],"connections":{}}`
	fs := Lint([]byte(wf))
	if len(fs) != 1 || fs[0].Severity != SeverityWarning || !strings.Contains(fs[0].Message, "not at its very start") {
		t.Fatalf("%v", fs)
	}
}

func TestLintBundledTestWorkflows(t *testing.T) {
	files, _ := filepath.Glob("../test-workflows/*-test.json")
	if len(files) == 0 {
		t.Skip("no bundled test workflows in this tree")
	}
	var wfs [][]byte
	for _, f := range files {
		wfs = append(wfs, readFile(t, f))
	}
	for _, f := range LintSet(wfs) {
		if f.Severity == SeverityError {
			t.Errorf("bundled test workflow: %v", f)
		}
	}
}
