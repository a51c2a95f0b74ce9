package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	var s []sample
	for i := 1; i <= 100; i++ {
		s = append(s, sample{ms: float64(i), status: 200})
	}
	s = append(s, sample{ms: 5, status: 500, err: errors.New("HTTP 500: boom")}, sample{ms: 15000, err: errors.New("timeout")})
	r := summarize("x", "sequential", 1, s, 2)
	if r.Requests != 102 || r.OK != 100 || r.Errors != 2 || r.Codes["200"] != 100 || r.Codes["500"] != 1 || r.Codes["transport"] != 1 {
		t.Fatalf("counts: %+v", r)
	}
	if r.P50Ms != 50 || r.P95Ms != 95 || r.P99Ms != 99 || r.MinMs != 1 || r.MaxMs != 100 || r.MeanMs != 50.5 || r.RPS != 51 {
		t.Fatalf("stats (errors must not count in latency): %+v", r)
	}
	if r.FirstError != "HTTP 500: boom" {
		t.Errorf("first error %q", r.FirstError)
	}
	if e := summarize("x", "concurrent", 8, nil, 1); e.P50Ms != 0 || e.Requests != 0 {
		t.Errorf("empty: %+v", e)
	}
}

func TestBaselineWorkflowsAreValidJSON(t *testing.T) {
	for _, sc := range Baseline() {
		ids := []string{}
		for i, wf := range sc.Workflows {
			b, err := wf("p-"+sc.Name, ids)
			if err != nil {
				t.Fatalf("%s workflow %d: %v", sc.Name, i, err)
			}
			var w struct {
				Name        string           `json:"name"`
				Nodes       []map[string]any `json:"nodes"`
				Connections map[string]any   `json:"connections"`
			}
			if err := json.Unmarshal(b, &w); err != nil || w.Name == "" || len(w.Nodes) < 2 || len(w.Connections) != len(w.Nodes)-1 {
				t.Fatalf("%s workflow %d: %v %s", sc.Name, i, err, b)
			}
			ids = append(ids, "id"+string(rune('0'+i)))
		}
		last, _ := sc.Workflows[len(sc.Workflows)-1]("p-"+sc.Name, ids[:len(ids)-1])
		if !bytes.Contains(last, []byte(`"path":"p-`+sc.Name+`"`)) {
			t.Errorf("%s: last workflow does not hold the webhook path: %s", sc.Name, last)
		}
	}
	if b, _ := Baseline()[1].Workflows[1]("p", []string{"SUBID"}); !bytes.Contains(b, []byte(`"value":"SUBID"`)) {
		t.Errorf("caller does not reference the sub-workflow id: %s", b)
	}
}

func TestChecks(t *testing.T) {
	code := expectItem("probed")
	if err := code(200, []byte(`[{"hello":"bench","n":1,"probed":true}]`)); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{`[{"hello":"bench"}]`, `[]`, `{"message":"Error in workflow"}`, `[{"hello":"x","probed":true}]`} {
		if code(200, []byte(bad)) == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	if code(500, []byte(`[{"hello":"bench","probed":true}]`)) == nil {
		t.Error("accepted HTTP 500")
	}
	if err := expectItem("")(200, []byte(`[{"headers":{},"body":{"hello":"bench"}}]`)); err != nil {
		t.Error(err)
	}
	if err := expectItem("sub")(200, []byte(`[{"headers":{},"body":{"hello":"bench"},"sub":true}]`)); err != nil {
		t.Error(err)
	}
	if expectItem("sub")(200, []byte(`[{"headers":{},"body":{"hello":"bench","sub":true}}]`)) == nil {
		t.Error("accepted sub inside the request body")
	}
}

func TestSelect(t *testing.T) {
	got, err := Select(Baseline(), "webhook-noop, webhook-code")
	if err != nil || len(got) != 2 || got[0].Name != ScenarioWebhookNoOp {
		t.Fatalf("Select = %v, %v", got, err)
	}
	if _, err := Select(Baseline(), "nope"); err == nil || !strings.Contains(err.Error(), "webhook-code") {
		t.Errorf("unknown scenario error should list known ones: %v", err)
	}
	if all, _ := Select(Baseline(), ""); len(all) != 3 {
		t.Errorf("empty selection = %d scenarios", len(all))
	}
}

func TestTable(t *testing.T) {
	var b strings.Builder
	Report{Results: []Result{{Scenario: "webhook-code", Phase: "concurrent", Clients: 8, Requests: 10, RPS: 3.5, P50Ms: 1}}}.Table(&b)
	if !strings.Contains(b.String(), "8 clients") || !strings.Contains(b.String(), "webhook-code") {
		t.Errorf("table:\n%s", b.String())
	}
}

func TestExpectItems(t *testing.T) {
	check := expectItems(3, "fn")
	if err := check(200, []byte(`[{"hello":"bench","i":0,"fn":true},{"hello":"bench","i":1,"fn":true},{"hello":"bench","i":2,"fn":true}]`)); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{
		`[{"hello":"bench","i":0,"fn":true},{"hello":"bench","i":1,"fn":true}]`,                                   // one lost
		`[{"hello":"bench","i":1,"fn":true},{"hello":"bench","i":0,"fn":true},{"hello":"bench","i":2,"fn":true}]`, // order lost
		`[{"hello":"bench","i":0,"fn":true},{"hello":"bench","i":1},{"hello":"bench","i":2,"fn":true}]`,           // one not run
		`[{"hello":"bench","i":0,"fn":true},{"hello":"bench","i":1,"fn":true},{"hello":"other","i":2,"fn":true}]`, // wrong data
	} {
		if check(200, []byte(bad)) == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// TestFanOutWorkflows: both fan-out scenarios split the request into FanOutItems items before
// the call, the native one runs its sub-workflow per item, and both bodies wait the same time.
func TestFanOutWorkflows(t *testing.T) {
	for _, name := range []string{ScenarioSubWorkflowFanOut, ScenarioFunctionCallFanOut} {
		scs, err := Select(All(), name)
		if err != nil {
			t.Fatal(err)
		}
		sc := scs[0]
		if sc.MaxSequential == 0 || sc.Check == nil {
			t.Errorf("%s: MaxSequential %d", name, sc.MaxSequential)
		}
		var all []byte
		ids := []string{}
		for i, wf := range sc.Workflows {
			b, err := wf("p-"+name, ids)
			if err != nil {
				t.Fatalf("%s workflow %d: %v", name, i, err)
			}
			var w struct {
				Nodes       []map[string]any `json:"nodes"`
				Connections map[string]any   `json:"connections"`
			}
			if err := json.Unmarshal(b, &w); err != nil || len(w.Connections) != len(w.Nodes)-1 {
				t.Fatalf("%s workflow %d is not a chain: %v %s", name, i, err, b)
			}
			all = append(all, b...)
			ids = append(ids, "ID"+string(rune('0'+i)))
		}
		for _, want := range []string{`length: 8`, `setTimeout(r, 100)`} {
			if !bytes.Contains(all, []byte(want)) {
				t.Errorf("%s: workflows lack %q", name, want)
			}
		}
	}
	sub, _ := Select(All(), ScenarioSubWorkflowFanOut)
	b, _ := sub[0].Workflows[1]("p", []string{"SUBID"})
	if !bytes.Contains(b, []byte(`"mode":"each"`)) || !bytes.Contains(b, []byte(`"value":"SUBID"`)) {
		t.Errorf("native fan-out caller must run the sub-workflow SUBID per item: %s", b)
	}
}

// TestWideFanOutScenarios: the 32-item fan-outs split into 32 items and are compared with the
// native 32-item fan-out, not with the 8-item one.
func TestWideFanOutScenarios(t *testing.T) {
	for _, name := range []string{ScenarioSubWorkflowFanOutWide, ScenarioFunctionCallFanOutWide, ScenarioFunctionCallFanOutWideBatch} {
		scs, err := Select(All(), name)
		if err != nil {
			t.Fatal(err)
		}
		sc := scs[0]
		if sc.Ref != ScenarioSubWorkflowFanOutWide {
			t.Errorf("%s is compared with %q, want %q", name, sc.Ref, ScenarioSubWorkflowFanOutWide)
		}
		b, err := sc.Workflows[len(sc.Workflows)-1]("p-"+name, []string{"SUBID"})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`length: 32`)) {
			t.Errorf("%s does not split into 32 items: %s", name, b)
		}
	}
	if sc, _ := Select(All(), ScenarioFunctionCallFanOut); sc[0].Ref != ScenarioSubWorkflowFanOut {
		t.Errorf("the 8-item fan-out must stay compared with %s, is %q", ScenarioSubWorkflowFanOut, sc[0].Ref)
	}
}
