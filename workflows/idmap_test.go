package workflows

import (
	"strings"
	"testing"
)

func TestParseIDMap(t *testing.T) {
	m, err := ParseIDMap([]byte(`{"old1":"new1","old-2":"new_2"}`))
	if err != nil || len(m) != 2 || m["old-2"] != "new_2" {
		t.Fatalf("%v %v", m, err)
	}
	for in, msg := range map[string]string{
		`[1]`:                   "expected a JSON object",
		`{"a":1}`:               `"a" maps to 1, which is not a workflow id`,
		`{"a b":"c"}`:           `key "a b" is not a workflow id`,
		`{"a":"global"}`:        "are scopes, not workflow ids",
		`{"a":"x","b":"y/z"}`:   `"b" maps to "y/z"`,
		`{"workflow":"abc123"}`: "are scopes",
	} {
		if _, err := ParseIDMap([]byte(in)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: want %q, got %v", in, msg, err)
		}
	}
}

func TestRemapScopes(t *testing.T) {
	call := func(scope string) string {
		c, err := DirectiveCode(&CallDirective{Function: "f", Scope: scope, Mode: ModeEachItem, RetryBackoffMs: DefaultRetryBackoffMs, WaitForLiveMs: DefaultWaitForLiveMs, ResultField: "r"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	wf := `{"name":"w","id":"Old0","nodes":[` +
		`{"parameters":{"mode":"runOnceForAllItems","jsCode":` + string(marshalNoEscape(call("Old1"))) + `,"language":"javaScript"},"name":"A","type":"n8n-nodes-base.code","notes":"keep"},` +
		`{"parameters":{"jsCode":` + string(marshalNoEscape(call("Other"))) + `},"name":"B","type":"n8n-nodes-base.code"},` +
		`{"parameters":{"jsCode":` + string(marshalNoEscape(call(ScopeWorkflow))) + `},"name":"C","type":"n8n-nodes-base.code"}` +
		`],"connections":{},"settings":{"x":1}}`
	out, notes, err := RemapScopes([]byte(wf), map[string]string{"Old1": "New1", "Old0": "New0", "workflowx": "y"})
	if err != nil || len(notes) != 2 {
		t.Fatalf("%v %+v", err, notes)
	}
	w, err := ParseWorkflow(out)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := w.Node("A").Directive()
	if w.ID != "New0" || d.(*CallDirective).Scope != "New1" || d.(*CallDirective).ResultField != "r" || w.Node("A").Raw.Get("notes").String() != "keep" ||
		w.Node("A").Param("mode").String() != "runOnceForAllItems" {
		t.Errorf("remapped %s", out)
	}
	if d, _ := w.Node("B").Directive(); d.(*CallDirective).Scope != "Other" {
		t.Errorf("B changed: %+v", d)
	}
	if d, _ := w.Node("C").Directive(); d.(*CallDirective).Scope != ScopeWorkflow {
		t.Errorf("C changed: %+v", d)
	}
	if !strings.Contains(string(out), `"settings": {`) {
		t.Errorf("fields lost: %s", out)
	}
	same, notes, err := RemapScopes([]byte(wf), map[string]string{"Nope": "X"})
	if err != nil || len(notes) != 0 || string(same) != wf {
		t.Errorf("nothing to remap: %v %v", notes, err)
	}
}
