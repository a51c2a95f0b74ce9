package workflows

import (
	"fmt"
	"testing"
)

// TestItemOriginsStepMessages pins, word for word, the result of each way one step of the walk can
// go: which source the first hop takes (sourceOverwrite, the input's own, input 0), and each
// reason a pair leads nowhere.
func TestItemOriginsStepMessages(t *testing.T) {
	setFrom := func(sources ...string) tRun {
		return tRun{node: "Set", sources: sources, outputs: [][]string{{pi(0)}}}
	}
	over := `{"item":1,"sourceOverwrite":` + src("Function", 0, 0) + `}`
	for _, tc := range []struct {
		name string
		resp tResp
		want string
	}{
		{"first hop: input 1 falls back to input 0",
			tResp{input: []string{pi(0, 1)}, cis: []string{src("Function", 0, 0)}, runs: []tRun{webhook, function(2)}}, "[[0]] <nil>"},
		{"first hop: the input's own source",
			tResp{input: []string{pi(1, 1)}, cis: []string{src("Set", 0, 0), src("Function", 0, 0)}, runs: []tRun{webhook, function(2), setFrom(src("Function", 0, 0))}}, "[[1]] <nil>"},
		{"first hop: sourceOverwrite wins",
			tResp{input: []string{over}, cis: []string{src("Set", 0, 0)}, runs: []tRun{webhook, function(2), setFrom(src("Function", 0, 0))}}, "[[1]] <nil>"},
		{"first hop: a null source of the input falls back to input 0",
			tResp{input: []string{pi(0, 1)}, cis: []string{src("Function", 0, 0), "null"}, runs: []tRun{webhook, function(2)}}, "[[0]] <nil>"},
		{"first hop: no source at all",
			tResp{input: []string{pi(0)}, cis: []string{"null"}, runs: []tRun{webhook, function(2)}}, "[] n8n-fn: input item 0 does not lead back to node \"Function\": no source recorded for the input it came from"},
		{"first hop: malformed source",
			tResp{input: []string{pi(0)}, cis: []string{`{"previousNode":5}`}, runs: []tRun{webhook, function(2)}}, "[] n8n-fn: input item 0 does not lead back to node \"Function\": a malformed source (previousNode, previousNodeOutput, previousNodeRun)"},
		{"later hop: no source",
			tResp{input: []string{pi(0)}, cis: []string{src("Set", 0, 0)}, runs: []tRun{webhook, function(2), setFrom("null")}}, "[] n8n-fn: input item 0 does not lead back to node \"Function\": no source recorded for the input it came from"},
		{"later hop: malformed source",
			tResp{input: []string{pi(0)}, cis: []string{src("Set", 0, 0)}, runs: []tRun{webhook, function(2), setFrom(`{"previousNode":"Function","previousNodeRun":"x"}`)}}, "[] n8n-fn: input item 0 does not lead back to node \"Function\": a malformed source (previousNode, previousNodeOutput, previousNodeRun)"},
		{"later hop: sourceOverwrite",
			tResp{input: []string{pi(0)}, cis: []string{src("Set", 0, 0)}, runs: []tRun{webhook, function(2),
				{node: "Set", sources: []string{src("Webhook", 0, 0)}, outputs: [][]string{{over}}}}}, "[[1]] <nil>"},
		{"later hop: a trigger",
			tResp{input: []string{pi(0)}, cis: []string{src("Webhook", 0, 0)}, runs: []tRun{webhook, function(2)}}, "[] n8n-fn: input item 0 does not lead back to node \"Function\": node \"Webhook\" has no input (a trigger or pinned data), so the lineage ends there"},
		{"later hop: item out of range",
			tResp{input: []string{pi(0)}, cis: []string{src("Set", 0, 0)}, runs: []tRun{webhook, function(2),
				{node: "Set", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(2)}}}}}, "[] n8n-fn: input item 0 does not lead back to node \"Function\": it names item 2 of node \"Function\" run 0 output 0, which has 2 items"},
	} {
		got, err := ItemOrigins(tc.resp.build(), "Function")
		if s := fmt.Sprint(got.Items, " ", err); s != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, s, tc.want)
		}
	}
}
