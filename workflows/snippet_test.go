package workflows

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func seqIDs() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("0000000%d-0000-4000-8000-000000000000", n) }
}

func TestDirectiveRoundTrip(t *testing.T) {
	p1, _ := ParseParamSpec("a:number:required")
	p2, _ := ParseParamSpec(`tags:array=["x"]`)
	ds := []Directive{
		&FunctionDirective{Name: "add", Scope: ScopeGlobal, Params: []Param{p1, p2}, TimeoutMs: 5000, MaxConcurrency: 3, Description: "adds */ things"},
		&FunctionDirective{Name: "f", Scope: ScopeWorkflow, TimeoutMs: DefaultFunctionTimeoutMs},
		&FunctionDirective{Name: "batched", Scope: ScopeGlobal, TimeoutMs: DefaultFunctionTimeoutMs, Batch: &Batch{Max: 16, WaitMs: 5}},
		&FunctionDirective{Name: "nagle", Scope: ScopeGlobal, TimeoutMs: DefaultFunctionTimeoutMs, Batch: &Batch{Max: 16, WaitMs: 5, Parallel: 1}},
		&CallDirective{Function: "add", Scope: "wf1", Mode: ModeAllItems, TimeoutMs: 1000, Retries: 2, RetryBackoffMs: 50, ResultField: "r", IdempotencyKey: "order.id", WaitForLiveMs: 0},
		&CallDirective{Function: "add", Scope: ScopeGlobal, Mode: ModeEachItem, RetryBackoffMs: DefaultRetryBackoffMs, WaitForLiveMs: DefaultWaitForLiveMs},
		&ReturnDirective{},
		&ReturnDirective{Fail: true, Message: "nope"},
		&EchoDirective{},
	}
	for _, d := range ds {
		code, err := DirectiveCode(d)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(code, ThrowLine+"\n") {
			t.Errorf("no throw line: %s", code)
		}
		back, err := ParseDirective("x", code)
		if err != nil {
			t.Fatalf("%s: %v", code, err)
		}
		if !reflect.DeepEqual(back, d) {
			t.Errorf("round trip:\n got %#v\nwant %#v\ncode %s", back, d, code)
		}
	}
}

func TestFunctionSnippetIsAValidFunction(t *testing.T) {
	p, err := ParseParamSpec("a:number:required")
	if err != nil {
		t.Fatal(err)
	}
	fn := &FunctionDirective{Name: "add", Scope: ScopeGlobal, Params: []Param{p}, TimeoutMs: DefaultFunctionTimeoutMs}
	frag, err := FunctionSnippet(fn, SnippetOptions{NewID: seqIDs(), WithReturn: true, Position: [2]float64{100, 200}})
	if err != nil {
		t.Fatal(err)
	}
	js, err := frag.JSON()
	if err != nil {
		t.Fatal(err)
	}
	wfJSON, err := frag.WorkflowJSON("my add")
	if err != nil {
		t.Fatal(err)
	}
	// what the editor gets on paste, and the importable workflow, are one workflow that lints clean
	for _, b := range [][]byte{js, wfJSON} {
		if fs := Lint(b); len(fs) != 0 {
			t.Errorf("snippet has findings: %v\n%s", fs, b)
		}
	}
	withID := strings.Replace(string(wfJSON), "{", `{"id":"wfNew",`, 1)
	defs, problems := Discover([][]byte{[]byte(withID)})
	if len(problems) != 0 || len(defs) != 1 {
		t.Fatalf("%v %v", defs, problems)
	}
	d := defs[0]
	if d.WebhookPath != "n8n-fn/global/add" || d.WebhookMethod != "POST" || !d.LastNodeResponse || !reflect.DeepEqual(d.Function, fn) {
		t.Errorf("%+v", d)
	}
	wf, _ := ParseWorkflow(js)
	hook := wf.Node("Webhook add")
	if hook.TypeVersion != WebhookTypeVersion || hook.WebhookID == "" || hook.Position != [2]float64{100, 200} || wf.Node("return add").Position != [2]float64{540, 200} {
		t.Errorf("nodes %+v %+v", hook, wf.Node("return add"))
	}
	if !strings.Contains(string(js), `"jsCode": "/* @n8n-fn {\"op\":\"function\",\"v\":1,\"name\":\"add\"`) {
		t.Errorf("header not readable:\n%s", js)
	}
}

func TestWorkflowScopedSnippetPathIsUnique(t *testing.T) {
	fn := &FunctionDirective{Name: "f", Scope: ScopeWorkflow, TimeoutMs: DefaultFunctionTimeoutMs}
	a, _ := FunctionSnippet(fn, SnippetOptions{})
	b, _ := FunctionSnippet(fn, SnippetOptions{})
	pa := string(a.Nodes[0].Parameters)
	if pa == string(b.Nodes[0].Parameters) || !strings.Contains(pa, `"path":"n8n-fn/workflow/f-`) {
		t.Fatalf("%s / %s", pa, b.Nodes[0].Parameters)
	}
	if a.Nodes[0].ID == b.Nodes[0].ID || len(a.Nodes[0].ID) != 36 || a.Nodes[0].ID[14] != '4' {
		t.Fatalf("uuid %q", a.Nodes[0].ID)
	}
}

func TestParseParamSpec(t *testing.T) {
	cases := map[string]Param{
		"a":                       {Name: "a", Type: TypeString},
		"a:number":                {Name: "a", Type: TypeNumber},
		"a:number:required":       {Name: "a", Type: TypeNumber, Required: true},
		"a:number=5":              {Name: "a", Type: TypeNumber, Default: []byte("5")},
		"a:boolean:required=TRUE": {Name: "a", Type: TypeBoolean, Required: true, Default: []byte("true")},
		"s:string=x=y":            {Name: "s", Type: TypeString, Default: []byte(`"x=y"`)},
		"s:string=":               {Name: "s", Type: TypeString, Default: []byte(`""`)},
		`o:object={"k": 1}`:       {Name: "o", Type: TypeObject, Default: []byte(`{"k":1}`)},
	}
	for spec, want := range cases {
		got, err := ParseParamSpec(spec)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v %v want %+v", spec, got, err, want)
		}
	}
	for _, bad := range []string{"", ":number", "a:int", "a:number:optional", "a:number=x", "a:array={}", "_functionCall:string"} {
		if _, err := ParseParamSpec(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCallAndReturnSnippets(t *testing.T) {
	c, err := CallSnippet(&CallDirective{Function: "add", Scope: ScopeGlobal, Mode: ModeEachItem, RetryBackoffMs: DefaultRetryBackoffMs, WaitForLiveMs: DefaultWaitForLiveMs}, SnippetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := c.JSON()
	wf, err := ParseWorkflow(js)
	if err != nil || len(wf.Nodes) != 1 {
		t.Fatal(err)
	}
	if d, err := wf.Nodes[0].Directive(); err != nil || d.(*CallDirective).Function != "add" {
		t.Fatal(d, err)
	}
	r, _ := ReturnSnippet(&ReturnDirective{Fail: true}, SnippetOptions{})
	if r.Nodes[0].Name != "return fail" || !strings.Contains(string(r.Nodes[0].Parameters), `{\"op\":\"return\",\"v\":1,\"fail\":true}`) {
		t.Fatalf("%s", r.Nodes[0].Parameters)
	}
}
