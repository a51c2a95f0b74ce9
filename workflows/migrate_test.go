package workflows

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func migrateFixtures(t *testing.T, opts MigrateOptions) (fnWf, callerWf *Workflow, ms []Migration) {
	t.Helper()
	ms, err := Migrate([][]byte{readFile(t, "testdata/origin-function.json"), readFile(t, "testdata/origin-caller.json")}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || !ms[0].Changed || !ms[1].Changed {
		t.Fatalf("%+v", ms)
	}
	fnWf, err = ParseWorkflow(ms[0].Workflow)
	if err != nil {
		t.Fatalf("%v\n%s", err, ms[0].Workflow)
	}
	callerWf, err = ParseWorkflow(ms[1].Workflow)
	if err != nil {
		t.Fatalf("%v\n%s", err, ms[1].Workflow)
	}
	return fnWf, callerWf, ms
}

func directiveOf(t *testing.T, wf *Workflow, node string) Directive {
	t.Helper()
	n := wf.Node(node)
	if n == nil {
		t.Fatalf("no node %q", node)
	}
	d, err := n.Directive()
	if err != nil || d == nil {
		t.Fatalf("node %q: %v %v", node, d, err)
	}
	return d
}

func TestMigrateFunctionWorkflow(t *testing.T) {
	// 0.1.5 applied defaults; typed keeps the origin's types (the default is "any")
	fnWf, _, ms := migrateFixtures(t, MigrateOptions{Origin: "0.1.5", Typed: true})
	add := directiveOf(t, fnWf, "Add Numbers").(*FunctionDirective)
	want := &FunctionDirective{Name: "Add_Numbers", Scope: ScopeWorkflow, TimeoutMs: DefaultFunctionTimeoutMs, Description: "Adds two numbers",
		Params: []Param{
			{Name: "a", Type: TypeNumber, Required: true, Description: "first"},
			{Name: "b", Type: TypeNumber, Default: json.RawMessage("2")},
			{Name: "verbose", Type: TypeBoolean, Default: json.RawMessage("false")}, // origin: only "true" is true
			{Name: "opts", Type: TypeObject, Default: json.RawMessage(`{"round":true}`)},
			{Name: "tags", Type: TypeArray}, // "not json" cannot be an array: dropped and reported
		}}
	if !reflect.DeepEqual(add, want) {
		t.Errorf("got  %+v\nwant %+v", add, want)
	}
	dbl := directiveOf(t, fnWf, "double").(*FunctionDirective)
	if dbl.Scope != ScopeGlobal || dbl.Name != "double" {
		t.Errorf("double %+v", dbl)
	}
	// node identity, position and settings are kept
	n := fnWf.Node("Add Numbers")
	if n.ID != "9a0e6f2c-0000-4000-8000-000000000001" || n.Position != [2]float64{240, 300} || n.Raw.Get("notes").String() != "keep me" {
		t.Errorf("node %s", n.Raw.Raw)
	}
	// Webhook in front, to the left
	up := fnWf.Upstream("Add Numbers")
	if len(up) != 1 || !up[0].IsWebhook() || up[0].Position != [2]float64{20, 300} || up[0].Webhook().ResponseMode != ResponseLastNode {
		t.Fatalf("upstream %v", names(up))
	}
	if got := names(fnWf.Descendants("Add Numbers")); got != "Sum,Return from Function" {
		t.Errorf("body %q", got)
	}
	// the code option became a Code node between function and return
	if got := names(fnWf.Downstream("double")); got != "double code" {
		t.Errorf("double downstream %q", got)
	}
	if got := names(fnWf.Upstream("Return double")); got != "Return double value" {
		t.Errorf("return double upstream %q", got)
	}
	if _, ok := directiveOf(t, fnWf, "Return from Function").(*ReturnDirective); !ok {
		t.Error("return not converted")
	}
	if fnWf.Node("Return from Function value") != nil {
		t.Error("a trivial returnCode must not get a Code node")
	}
	// discovery finds both functions behind their webhooks
	defs, problems := Discover([][]byte{ms[0].Workflow})
	if len(defs) != 2 || len(problems) != 0 {
		t.Fatalf("discover %+v %+v", defs, problems)
	}
	// lint: no errors; the untouched Test Trigger is the only origin node left
	fs := Lint(ms[0].Workflow)
	if HasErrors(fs) {
		t.Errorf("lint errors:\n%s", join(fs))
	}
	r := ms[0].Report
	if len(r.Unconverted) != 1 || r.Unconverted[0].Node != "Test Trigger" {
		t.Errorf("unconverted %+v", r.Unconverted)
	}
	assertNote(t, r.Review, "Add Numbers", `function name "Add Numbers" became "Add_Numbers"`)
	assertNote(t, r.Review, "Add Numbers", `parameter "tags": default "not json" dropped`)
	assertNote(t, r.Review, "double code", "generated from the Function node's code option")
	assertNote(t, r.Review, "Return double value", "uses $index/$item/$binary")
	// untouched fields stay
	if !strings.Contains(string(ms[0].Workflow), `"instanceId": "abc"`) {
		t.Error("meta lost")
	}
}

func assertNote(t *testing.T, notes []MigrateNote, node, msg string) {
	t.Helper()
	for _, n := range notes {
		if n.Node == node && strings.Contains(n.Message, msg) {
			return
		}
	}
	t.Errorf("no note for %q containing %q in %+v", node, msg, notes)
}

func TestMigrateCallerWorkflow(t *testing.T) {
	_, caller, ms := migrateFixtures(t, MigrateOptions{})
	c := directiveOf(t, caller, "Call Function").(*CallDirective)
	if c.Function != "Add_Numbers" || c.Scope != "OrigFnWf0000001" || c.ResultField != "sum" || c.Mode != ModeEachItem {
		t.Errorf("call %+v", c)
	}
	// the target is global in the other workflow: the call addresses it by name
	if c.ParamsField != MigrateParamsField || !c.ParamsWithItem || !c.ParseValues || c.ValueField != MigrateValueField || !c.SkipNull ||
		c.ErrorOutput != ErrorOutputDetails || c.ErrorField != ContextField {
		t.Errorf("call shaping %+v", c)
	}
	// the target is global in the other workflow: the call addresses it by name; Store Response
	// off discards the result in 0.2.x (detected from functionDescription)
	d := directiveOf(t, caller, "Call double").(*CallDirective)
	if d.Scope != ScopeGlobal || d.ResultField != "" || d.EffectiveResultMode() != ResultNone || d.ParseValues {
		t.Errorf("call double %+v", d)
	}
	if !strings.HasPrefix(ms[1].Report.Origin, "0.2.0-0.2.1: detected 0.2.x") {
		t.Errorf("origin %q", ms[1].Report.Origin)
	}
	n := caller.Node("Call Function")
	if n.Raw.Get("onError").String() != "continueRegularOutput" || !n.Raw.Get("retryOnFail").Bool() || n.Position != [2]float64{220, 0} {
		t.Errorf("settings lost: %s", n.Raw.Raw)
	}
	// parameter values moved into Edit Fields nodes in front of the calls, expressions untouched
	set := caller.Node("Call Function params")
	if set == nil || set.Type != TypeSet || names(caller.Upstream("Call Function")) != "Call Function params" || names(caller.Upstream("Call Function params")) != "Webhook" {
		t.Fatalf("set node wiring: %v", caller.Connections)
	}
	as := set.Param("assignments.assignments").Array()
	if len(as) != 3 || as[0].Get("name").String() != "_fnParams" || as[0].Get("type").String() != "object" ||
		as[1].Get("name").String() != `_fnParams["a"]` || as[1].Get("value").String() != "={{ $json.body.a }}" || as[1].Get("type").String() != "string" ||
		as[2].Get("name").String() != `_fnParams["b"]` || !set.Param("includeOtherFields").Bool() {
		t.Errorf("assignments %s", set.Parameters.Raw)
	}
	raw := caller.Node("Call double params")
	if raw == nil || raw.Param("assignments.assignments.0.name").String() != "_fnParams" || raw.Param("assignments.assignments.0.value").String() != "={{ JSON.stringify({ x: $json.sum.sum }) }}" {
		t.Errorf("json params %v", raw)
	}
	if names(caller.Upstream("Call double params")) != "Call Function" {
		t.Errorf("chain broken: %v", caller.Connections)
	}
	// the dynamic call stays an origin node and is reported
	if caller.Node("Call dynamic").Type != OriginCall {
		t.Error("dynamic call converted")
	}
	assertNote(t, ms[1].Report.Unconverted, "Call dynamic", "expression")
	assertNote(t, ms[1].Report.Converted, "Call double", "result discarded (Store Response off, origin 0.2.0-0.2.1)")
	if names(caller.Downstream("Call dynamic")) != "Done" {
		t.Error("downstream connection lost")
	}
}

func TestMigrateGlobalOption(t *testing.T) {
	fnWf, caller, _ := migrateFixtures(t, MigrateOptions{Global: true})
	if directiveOf(t, fnWf, "Add Numbers").(*FunctionDirective).Scope != ScopeGlobal {
		t.Error("function not global")
	}
	if c := directiveOf(t, caller, "Call Function").(*CallDirective); c.Scope != ScopeGlobal {
		t.Errorf("call %+v", c)
	}
	// with --global the dynamic target does not matter any more
	if _, ok := directiveOf(t, caller, "Call dynamic").(*CallDirective); !ok {
		t.Error("dynamic call not converted with Global")
	}
	fs := LintSet([][]byte{mustJSON(t, fnWf), mustJSON(t, caller)})
	if HasErrors(fs) {
		t.Errorf("%s", join(fs))
	}
}

func mustJSON(t *testing.T, w *Workflow) []byte {
	t.Helper()
	var nodes []json.RawMessage
	for _, n := range w.Nodes {
		nodes = append(nodes, json.RawMessage(n.Raw.Raw))
	}
	conns := map[string]map[string][][]ConnTarget{}
	for _, c := range w.Connections {
		if conns[c.From] == nil {
			conns[c.From] = map[string][][]ConnTarget{}
		}
		outs := conns[c.From][c.Type]
		for len(outs) <= c.FromOutput {
			outs = append(outs, nil)
		}
		outs[c.FromOutput] = append(outs[c.FromOutput], ConnTarget{c.To, c.Type, c.ToInput})
		conns[c.From][c.Type] = outs
	}
	b, err := json.Marshal(map[string]any{"id": w.ID, "name": w.Name, "nodes": nodes, "connections": conns})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMigrateNothingToDo(t *testing.T) {
	in := readFile(t, "testdata/function-add.json")
	ms, err := Migrate([][]byte{in}, MigrateOptions{})
	if err != nil || ms[0].Changed || string(ms[0].Workflow) != string(in) {
		t.Fatalf("%v %+v", err, ms)
	}
	if _, err := Migrate([][]byte{[]byte(`{"x":1}`)}, MigrateOptions{}); err == nil {
		t.Fatal("not a workflow accepted")
	}
}

func TestSanitizeFunctionName(t *testing.T) {
	for in, want := range map[string]string{"Add Numbers": "Add_Numbers", "  x/y  ": "x_y", "--a": "a", "ü": "fn", "ok.v2": "ok.v2", "a  b": "a_b"} {
		if got := SanitizeFunctionName(in); got != want || !ValidName(got) {
			t.Errorf("%q: %q want %q", in, got, want)
		}
	}
}

// TestMigratedCodeIsValidJavaScript compiles the generated Code nodes with node, as n8n's runner
// wraps them (an async function body).
func TestMigratedCodeIsValidJavaScript(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not on PATH")
	}
	fnWf, _, _ := migrateFixtures(t, MigrateOptions{Origin: "0.1.11"})
	dir := t.TempDir()
	for _, name := range []string{"double code", "Return double value", "Add Numbers", "Return from Function"} {
		code := fnWf.Node(name).Code()
		src := "(async function () {\n" + code + "\n});\n"
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".js")
		if err := os.WriteFile(f, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(nodeBin, "--check", f).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s\n%s", name, err, out, src)
		}
	}
}

// FuzzWorkflowTools feeds arbitrary workflow-shaped JSON to lint, discovery and migration: they
// must report problems, never panic, and migration output must stay valid JSON.
func FuzzWorkflowTools(f *testing.F) {
	for _, p := range []string{"testdata/function-add.json", "testdata/bad-functions.json", "testdata/origin-function.json", "testdata/origin-caller.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	corpus, _ := filepath.Glob("../test-workflows/migration/0.*--*[a-z].json")
	for _, p := range corpus {
		if b, err := os.ReadFile(p); err == nil && !strings.HasSuffix(p, ".cases.json") {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"nodes":[{"name":"a","type":"n8n-nodes-function.callFunction","parameters":{"workflowId":{"value":5}}}],"connections":{"a":{"main":[null,[{"node":"zz"}]]}}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		_ = Lint(in)
		_, _ = Discover([][]byte{in})
		for _, origin := range []string{"0.1.1", "0.1.5", "0.1.12", "0.2.1"} {
			ms, err := Migrate([][]byte{in}, MigrateOptions{NewID: seqIDs(), Origin: origin, IDMap: map[string]string{"a": "b"}})
			if err != nil {
				return
			}
			if ms[0].Changed && !json.Valid(ms[0].Workflow) {
				t.Fatalf("migration (origin %s) wrote invalid JSON from %q", origin, in)
			}
		}
	})
}

// From 0.1.12 the origin no longer ran the Function's code option: a workflow saved by an older
// version keeps the parameters, but converting them would run code the origin did not run.
func TestMigrateCodeOptionOnlyWhereTheOriginRanIt(t *testing.T) {
	fnWf, _, ms := migrateFixtures(t, MigrateOptions{Origin: "0.2.1"})
	if fnWf.Node("double code") != nil {
		t.Error("0.2.1 did not run the code option")
	}
	assertNote(t, ms[0].Report.Review, "double", `its "Code" option (up to 0.1.11) was not run by origin 0.2.0-0.2.1`)
	fnWf, _, _ = migrateFixtures(t, MigrateOptions{Origin: "0.1.11"})
	if fnWf.Node("double code") == nil {
		t.Error("0.1.11 ran the code option")
	}
}

// 0.1.0/0.1.1 callers named no workflow: the function was found by name among the active
// workflows' non-global functions.
func TestMigrateMemoryEraCallScopes(t *testing.T) {
	fn := func(name string, global bool) string {
		return fmt.Sprintf(`{"name":%q,"type":"n8n-nodes-function.function","parameters":{"globalFunction":%v},"position":[0,0]}`, name, global)
	}
	call := func(name, target string) string {
		return fmt.Sprintf(`{"name":%q,"type":"n8n-nodes-function.callFunction","parameters":{"functionName":%q},"position":[0,0]}`, name, target)
	}
	wf := func(id string, nodes ...string) []byte {
		return []byte(fmt.Sprintf(`{"id":%q,"name":%q,"nodes":[%s],"connections":{}}`, id, id, strings.Join(nodes, ",")))
	}
	ms, err := Migrate([][]byte{
		wf("WfCaller", fn("Own", false), call("Call own", "Own"), call("Call other", "Other"), call("Call shared", "Shared"),
			call("Call missing", "Missing"), call("Call global only", "G")),
		wf("WfOther1", fn("Other", false), fn("Shared", false), fn("G", true)),
		wf("WfOther2", fn("Shared", false)),
	}, MigrateOptions{Origin: "0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	caller, err := ParseWorkflow(ms[0].Workflow)
	if err != nil {
		t.Fatal(err)
	}
	for node, scope := range map[string]string{"Call own": ScopeWorkflow, "Call other": "WfOther1", "Call shared": "WfOther1"} {
		if d := directiveOf(t, caller, node).(*CallDirective); d.Scope != scope {
			t.Errorf("%s: scope %q, want %q", node, d.Scope, scope)
		}
	}
	assertNote(t, ms[0].Report.Review, "Call shared", `2 workflows define a non-global function "Shared"`)
	assertNote(t, ms[0].Report.Unconverted, "Call missing", `no workflow in this run defines a non-global function "Missing"`)
	assertNote(t, ms[0].Report.Unconverted, "Call global only", `non-global function "G"`)

	// 0.1.2 on, a call without a workflow failed every time: converted to the own function, reported
	ms, err = Migrate([][]byte{wf("WfX", fn("Own", false), call("Call own", "Own"))}, MigrateOptions{Origin: "0.1.4"})
	if err != nil {
		t.Fatal(err)
	}
	assertNote(t, ms[0].Report.Review, "Call own", "origin 0.1.2-0.1.11 failed this call every time")
}
