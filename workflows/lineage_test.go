package workflows

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The data responses below are built the way n8n 2.41 builds them
// (cli task-managers/data-request-response-builder.js with dataOfNodes "all"): the current node's
// input items stamped {item: i} (core workflow-execute addPairedItemLineage), its
// connectionInputSource, and every node run as an ITaskData with source and data.main.

// src is one ISourceData as n8n writes it.
func src(node string, output, run int) string {
	return fmt.Sprintf(`{"previousNode":%q,"previousNodeOutput":%d,"previousNodeRun":%d}`, node, output, run)
}

// pi is a pairedItem object; with an input index when in > 0 (n8n omits input 0).
func pi(item int, in ...int) string {
	if len(in) > 0 && in[0] > 0 {
		return fmt.Sprintf(`{"item":%d,"input":%d}`, item, in[0])
	}
	return fmt.Sprintf(`{"item":%d}`, item)
}

// many is a pairedItem array.
func many(entries ...string) string { return "[" + strings.Join(entries, ",") + "]" }

// seq is n pairedItems {item: f(k)}.
func seq(n int, f func(k int) string) []string {
	out := make([]string, n)
	for k := range out {
		out[k] = f(k)
	}
	return out
}

// tRun is one run of a node: its sources (nil: a trigger) and per output the raw pairedItem of each
// item ("" leaves pairedItem out).
type tRun struct {
	node    string
	sources []string
	outputs [][]string
}

// tResp is a data response for the Code node "Return" whose first input came from cis.
type tResp struct {
	mode    string
	input   []string // raw pairedItem of each input item, "" for none
	cis     []string // connectionInputSource.main
	runs    []tRun   // in execution order; a node's runs are numbered in order
	pinData map[string]int
}

func items(b *strings.Builder, node string, paired []string) {
	b.WriteByte('[')
	for k, p := range paired {
		if k > 0 {
			b.WriteByte(',')
		}
		// Written by hand, not with fmt: the large tests build megabytes of these.
		ks := strconv.Itoa(k)
		b.WriteString(`{"json":{"node":` + strconv.Quote(node) + `,"k":` + ks + `,"body":{"customer":"c-` + ks + `","total":` + ks + `.5}}`)
		if p != "" {
			b.WriteString(`,"pairedItem":`)
			b.WriteString(p)
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
}

// compact is the same data response with only what ItemOrigins reads, for fuzz seeds: the
// fuzzer mutates small inputs far faster.
func (r tResp) compact() []byte {
	var b strings.Builder
	b.WriteString(`{"mode":"` + r.mode + `","workflow":{"pinData":{`)
	first := true
	for name, n := range r.pinData {
		if !first {
			b.WriteByte(',')
		}
		first = false
		fmt.Fprintf(&b, "%q:[%s]", name, strings.Repeat("{},", n)[:max(0, 3*n-1)])
	}
	b.WriteString(`}},"inputData":{"main":[`)
	pairs(&b, r.input)
	b.WriteString(`]},"connectionInputSource":{"main":[` + strings.Join(r.cis, ",") + `]},"runExecutionData":{"resultData":{"runData":{`)
	byNode := map[string][]tRun{}
	var order []string
	for _, run := range r.runs {
		if byNode[run.node] == nil {
			order = append(order, run.node)
		}
		byNode[run.node] = append(byNode[run.node], run)
	}
	for i, name := range order {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:[", name)
		for j, run := range byNode[name] {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"source":[` + strings.Join(run.sources, ",") + `],"data":{"main":[`)
			for o, out := range run.outputs {
				if o > 0 {
					b.WriteByte(',')
				}
				pairs(&b, out)
			}
			b.WriteString(`]}}`)
		}
		b.WriteByte(']')
	}
	b.WriteString(`}}}}`)
	return []byte(b.String())
}

func pairs(b *strings.Builder, paired []string) {
	b.WriteByte('[')
	for k, p := range paired {
		if k > 0 {
			b.WriteByte(',')
		}
		if p == "" {
			b.WriteString(`{}`)
		} else {
			b.WriteString(`{"pairedItem":` + p + `}`)
		}
	}
	b.WriteByte(']')
}

func (r tResp) build() []byte {
	var b strings.Builder
	mode := r.mode
	if mode == "" {
		mode = "webhook"
	}
	node := `{"id":"0b8f2a56-0000-4000-8000-00000000000c","name":"Return","type":"n8n-nodes-base.code","typeVersion":2,"position":[880,0],` +
		`"parameters":{"mode":"runOnceForAllItems","language":"javaScript","jsCode":"/* @n8n-fn {\"op\":\"return\"} */\nthrow new Error(\"n8n-fn: this node must run on the n8n-fn sidecar runner\");"}}`
	b.WriteString(`{"workflow":{"id":"L1neageWf000001","name":"lineage","active":true,"connections":{},"nodes":[` + node + `],"pinData":{`)
	first := true
	for name, n := range r.pinData {
		if !first {
			b.WriteByte(',')
		}
		first = false
		fmt.Fprintf(&b, "%q:", name)
		items(&b, name, make([]string, n))
	}
	b.WriteString(`},"settings":{"executionOrder":"v1"},"staticData":{}},"inputData":{"main":[`)
	items(&b, "input", r.input)
	b.WriteString(`]},"connectionInputSource":{"main":[` + strings.Join(r.cis, ",") + `]},`)
	fmt.Fprintf(&b, `"itemIndex":0,"activeNodeName":"Return","contextNodeName":"Return","defaultReturnRunIndex":-1,"mode":%q,`, mode)
	b.WriteString(`"envProviderState":{"env":{},"isEnvAccessBlocked":true,"isProcessAvailable":true},"node":` + node + `,`)
	b.WriteString(`"runExecutionData":{"version":1,"startData":{},"resultData":{"runData":{`)
	byNode := map[string][]tRun{}
	var order []string
	for _, run := range r.runs {
		if byNode[run.node] == nil {
			order = append(order, run.node)
		}
		byNode[run.node] = append(byNode[run.node], run)
	}
	for i, name := range order {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:[", name)
		for j, run := range byNode[name] {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"startTime":1795802611716,"executionIndex":%d,"source":[%s],"hints":[],"executionTime":2,"executionStatus":"success","data":{"main":[`,
				i+j, strings.Join(run.sources, ","))
			for o, out := range run.outputs {
				if o > 0 {
					b.WriteByte(',')
				}
				items(&b, name, out)
			}
			b.WriteString(`]}}`)
		}
		b.WriteByte(']')
	}
	last := ""
	if len(r.runs) > 0 {
		last = r.runs[len(r.runs)-1].node
	}
	fmt.Fprintf(&b, `},"lastNodeExecuted":%q},"executionData":{"contextData":{},"nodeExecutionStack":[],"metadata":{},"waitingExecution":{},"waitingExecutionSource":null},`, last)
	b.WriteString(`"resumeToken":"0265f292e11716b4d647c10ae5f327ca9ee78a7b72d60f582be7792add85bd9d"},"runIndex":0,"selfData":{},"siblingParameters":{},`)
	b.WriteString(`"additionalData":{"formWaitingBaseUrl":"http://localhost:5678/form-waiting","instanceBaseUrl":"http://localhost:5678/","restApiUrl":"http://localhost:5678/rest",` +
		`"variables":{},"webhookBaseUrl":"http://localhost:5678/webhook","webhookTestBaseUrl":"http://localhost:5678/webhook-test","webhookWaitingBaseUrl":"http://localhost:5678/webhook-waiting","executionId":"4711"}}`)
	return []byte(b.String())
}

// webhook is the trigger run: one item, as n8n stores it.
var webhook = tRun{node: "Webhook", outputs: [][]string{{pi(0)}}}

// function is the function node's run with n items (one per call), all from the webhook item.
func function(n int) tRun {
	return tRun{node: "Function", sources: []string{src("Webhook", 0, 0)}, outputs: [][]string{seq(n, func(int) string { return pi(0) })}}
}

// passThrough is a Set-like node: item k from item k of its source's output.
func passThrough(node, from string, n int) tRun {
	return tRun{node: node, sources: []string{src(from, 0, 0)}, outputs: [][]string{seq(n, func(k int) string { return pi(k) })}}
}

// stamped is n input items as n8n stamps them before the node runs.
func stamped(n int) []string { return seq(n, func(k int) string { return pi(k) }) }

func TestItemOrigins(t *testing.T) {
	tests := []struct {
		name string
		resp tResp
		want [][]int
		run  int // the target run the indices refer to
		out  int
	}{
		{
			name: "directly after the function node",
			resp: tResp{input: stamped(3), cis: []string{src("Function", 0, 0)}, runs: []tRun{webhook, function(3)}},
			want: [][]int{{0}, {1}, {2}},
		},
		{
			name: "through two Set nodes",
			resp: tResp{input: stamped(3), cis: []string{src("Set B", 0, 0)}, runs: []tRun{webhook, function(3),
				passThrough("Set A", "Function", 3), passThrough("Set B", "Set A", 3)}},
			want: [][]int{{0}, {1}, {2}},
		},
		{
			name: "through a node that reorders (Sort)",
			resp: tResp{input: stamped(3), cis: []string{src("Sort", 0, 0)}, runs: []tRun{webhook, function(3),
				{node: "Sort", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(2), pi(0), pi(1)}}}}},
			want: [][]int{{2}, {0}, {1}},
		},
		{
			name: "Aggregate: one item from all three calls",
			resp: tResp{input: stamped(1), cis: []string{src("Aggregate", 0, 0)}, runs: []tRun{webhook, function(3),
				{node: "Aggregate", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{many(pi(0), pi(1), pi(2))}}}}},
			want: [][]int{{0, 1, 2}},
		},
		{
			name: "Split Out then Aggregate per call",
			resp: tResp{input: stamped(2), cis: []string{src("Aggregate", 0, 0)}, runs: []tRun{webhook, function(2),
				{node: "Split Out", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(0), pi(0), pi(1), pi(1), pi(1)}}},
				{node: "Aggregate", sources: []string{src("Split Out", 0, 0)}, outputs: [][]string{{many(pi(0), pi(1)), many(pi(2), pi(3), pi(4))}}}}},
			want: [][]int{{0}, {1}},
		},
		{
			name: "Split Out: many items from one",
			resp: tResp{input: stamped(5), cis: []string{src("Split Out", 0, 0)}, runs: []tRun{webhook, function(2),
				{node: "Split Out", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(0), pi(0), pi(1), pi(1), pi(1)}}}}},
			want: [][]int{{0}, {0}, {1}, {1}, {1}},
		},
		{
			name: "IF false branch (output 1)",
			resp: tResp{input: stamped(2), cis: []string{src("IF", 1, 0)}, runs: []tRun{webhook, function(4),
				{node: "IF", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(0), pi(2)}, {pi(1), pi(3)}}}}},
			want: [][]int{{1}, {3}},
		},
		{
			name: "IF true branch (output 0) through a Set",
			resp: tResp{input: stamped(2), cis: []string{src("Set", 0, 0)}, runs: []tRun{webhook, function(4),
				{node: "IF", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(0), pi(2)}, {pi(1), pi(3)}}},
				passThrough("Set", "IF", 2)}},
			want: [][]int{{0}, {2}},
		},
		{
			name: "Switch: a source names output 2",
			resp: tResp{input: stamped(1), cis: []string{src("Switch", 2, 0)}, runs: []tRun{webhook, function(3),
				{node: "Switch", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(0)}, {}, {pi(2)}}}}},
			want: [][]int{{2}},
		},
		{
			name: "Merge (append) of the two IF branches",
			resp: tResp{input: stamped(3), cis: []string{src("Merge", 0, 0)}, runs: []tRun{webhook, function(3),
				{node: "IF", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(0), pi(2)}, {pi(1)}}},
				passThrough("Set A", "IF", 2),
				{node: "Set B", sources: []string{src("IF", 1, 0)}, outputs: [][]string{{pi(0)}}},
				{node: "Merge", sources: []string{src("Set A", 0, 0), src("Set B", 0, 0)}, outputs: [][]string{{pi(0), pi(1), pi(0, 1)}}}}},
			want: [][]int{{0}, {2}, {1}},
		},
		{
			name: "Merge (combine by position): both inputs, duplicates folded",
			resp: tResp{input: stamped(2), cis: []string{src("Merge", 0, 0)}, runs: []tRun{webhook, function(2),
				passThrough("Lookup", "Function", 2),
				passThrough("Enrich", "Function", 2),
				{node: "Merge", sources: []string{src("Lookup", 0, 0), src("Enrich", 0, 0)}, outputs: [][]string{{many(pi(0), pi(0, 1)), many(pi(1), pi(0, 1))}}}}},
			want: [][]int{{0}, {0, 1}},
		},
		{
			name: "Merge with a branch that does not come from the function node",
			resp: tResp{input: stamped(1), cis: []string{src("Merge", 0, 0)}, runs: []tRun{webhook, function(2),
				{node: "Settings", sources: []string{src("Webhook", 0, 0)}, outputs: [][]string{{pi(0)}}},
				{node: "Merge", sources: []string{src("Function", 0, 0), src("Settings", 0, 0)}, outputs: [][]string{{many(pi(1), pi(0, 1))}}}}},
			want: [][]int{{1}},
		},
		{
			name: "no pairedItem, as many items out as in: same index",
			resp: tResp{input: stamped(3), cis: []string{src("Code", 0, 0)}, runs: []tRun{webhook, function(3),
				{node: "Code", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{"", "", ""}}}}},
			want: [][]int{{0}, {1}, {2}},
		},
		{
			name: "no pairedItem, one item in: item 0",
			resp: tResp{input: stamped(3), cis: []string{src("Code", 0, 0)}, runs: []tRun{webhook, function(1),
				{node: "Code", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{"", "", ""}}}}},
			want: [][]int{{0}, {0}, {0}},
		},
		{
			name: "no pairedItem, many in and one out: item 0 (n8n's rule, not all of them)",
			resp: tResp{input: stamped(1), cis: []string{src("Code", 0, 0)}, runs: []tRun{webhook, function(3),
				{node: "Code", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{""}}}}},
			want: [][]int{{0}},
		},
		{
			name: "input items without pairedItem: their position",
			resp: tResp{input: []string{"", ""}, cis: []string{src("Function", 0, 0)}, runs: []tRun{webhook, function(2)}},
			want: [][]int{{0}, {1}},
		},
		{
			name: "bare numbers and arrays of numbers",
			resp: tResp{input: []string{"1", "[0]"}, cis: []string{src("Set", 0, 0)}, runs: []tRun{webhook, function(3),
				{node: "Set", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{"2", "[0,1]"}}}}},
			want: [][]int{{0, 1}, {2}},
		},
		{
			name: "a later run of an intermediate node (previousNodeRun)",
			resp: tResp{input: stamped(2), cis: []string{src("Wait", 0, 1)}, runs: []tRun{webhook, function(3),
				{node: "Wait", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(0), pi(1)}}},
				{node: "Wait", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(2), pi(1)}}}}},
			want: [][]int{{2}, {1}},
		},
		{
			name: "a loop: the body's second run comes from the loop node's second run",
			resp: tResp{input: stamped(2), cis: []string{src("Body", 0, 1)}, runs: []tRun{webhook, function(4),
				{node: "Loop", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{}, {pi(0), pi(1)}}},
				{node: "Body", sources: []string{src("Loop", 1, 0)}, outputs: [][]string{{pi(0), pi(1)}}},
				{node: "Loop", sources: []string{src("Body", 0, 0)}, outputs: [][]string{{}, {pi(0), pi(1)}}},
				{node: "Body", sources: []string{src("Loop", 1, 1)}, outputs: [][]string{{pi(1), pi(0)}}}}},
			want: [][]int{{1}, {0}},
		},
		{
			name: "a second run of the function node",
			resp: tResp{input: stamped(1), cis: []string{src("Set", 0, 0)}, runs: []tRun{webhook, function(2), function(3),
				{node: "Set", sources: []string{src("Function", 0, 1)}, outputs: [][]string{{pi(2)}}}}},
			want: [][]int{{2}},
			run:  1,
		},
		{
			name: "sourceOverwrite redirects a hop",
			resp: tResp{input: stamped(1), cis: []string{src("Tool", 0, 0)}, runs: []tRun{webhook, function(2),
				passThrough("Other", "Webhook", 1),
				{node: "Tool", sources: []string{src("Other", 0, 0)}, outputs: [][]string{
					{`{"item":1,"sourceOverwrite":{"previousNode":"Function","previousNodeOutput":0,"previousNodeRun":0}}`}}}}},
			want: [][]int{{1}},
		},
		{
			name: "source entries without output and run (n8n leaves undefined out)",
			resp: tResp{input: stamped(2), cis: []string{`{"previousNode":"Set"}`}, runs: []tRun{webhook, function(2),
				{node: "Set", sources: []string{`{"previousNode":"Function","previousNodeOutput":null}`}, outputs: [][]string{{pi(1), pi(0)}}}}},
			want: [][]int{{1}, {0}},
		},
		{
			name: "pinned function node in a manual execution",
			resp: tResp{mode: "manual", input: stamped(2), cis: []string{src("Set", 0, 0)}, pinData: map[string]int{"Function": 3},
				runs: []tRun{{node: "Set", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(2), pi(0)}}}}},
			want: [][]int{{2}, {0}},
		},
		{
			name: "no input items",
			resp: tResp{input: nil, cis: []string{src("Function", 0, 0)}, runs: []tRun{webhook, function(2)}},
			want: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ItemOrigins(tc.resp.build(), "Function")
			if err != nil {
				t.Fatal(err)
			}
			// The fuzz seeds' compact form must say the same.
			if small, err := ItemOrigins(tc.resp.compact(), "Function"); err != nil || !reflect.DeepEqual(small, got) {
				t.Fatalf("compact form: %v, %v; full form: %v", small, err, got)
			}
			if !reflect.DeepEqual(got.Items, tc.want) && !(len(got.Items) == 0 && len(tc.want) == 0) {
				t.Fatalf("origins = %v, want %v", got.Items, tc.want)
			}
			if got.Run != tc.run || got.Output != tc.out {
				t.Fatalf("run/output = %d/%d, want %d/%d", got.Run, got.Output, tc.run, tc.out)
			}
		})
	}
}

func TestItemOriginsCapture(t *testing.T) {
	// A real data response from n8n 2.41.1 (Webhook -> Code All), see research/captures.
	data, err := os.ReadFile("testdata/lineage-capture-webhook.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ItemOrigins(data, "Webhook")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Items, [][]int{{0}}) {
		t.Fatalf("origins = %v, want [[0]]", got.Items)
	}
	if _, err := ItemOrigins(data, "Code Each"); !errors.Is(err, ErrNoRunData) || !strings.Contains(err.Error(), `"Code Each"`) {
		t.Fatalf("a node that has not run: %v", err)
	}
}

func TestItemOriginsErrors(t *testing.T) {
	cycle := tRun{node: "A", sources: []string{src("A", 0, 0)}, outputs: [][]string{{pi(1), pi(0)}}}
	tests := []struct {
		name   string
		data   []byte
		target string
		is     error  // errors.Is target, or nil for a *LineageError
		item   int    // the *LineageError's item
		says   string // part of the message
	}{
		{name: "not JSON", data: []byte(`{"inputData":`), is: ErrBadDataResponse, says: "not valid JSON"},
		{name: "not an object", data: []byte(`[1,2]`), is: ErrBadDataResponse, says: "expected an object"},
		{name: "input not requested", data: []byte(`{"inputData":{},"connectionInputSource":null}`), is: ErrBadDataResponse, says: "inputData.main"},
		{name: "no connectionInputSource", data: []byte(`{"inputData":{"main":[[{"json":{},"pairedItem":{"item":0}}]]},"connectionInputSource":null}`),
			is: ErrBadDataResponse, says: "connectionInputSource"},
		{name: "target did not run",
			data: tResp{input: stamped(1), cis: []string{src("Set", 0, 0)}, runs: []tRun{webhook, passThrough("Set", "Webhook", 1)}}.build(),
			is:   ErrNoRunData, says: `node "Function" has no run data`},
		{name: "an intermediate node's run data is missing",
			data: tResp{input: stamped(1), cis: []string{src("Set", 0, 0)}, runs: []tRun{webhook, function(1)}}.build(),
			is:   ErrNoRunData, says: `node "Set" run 0`},
		{name: "a run that does not exist",
			data: tResp{input: stamped(1), cis: []string{src("Function", 0, 3)}, runs: []tRun{webhook, function(1)}}.build(),
			is:   ErrNoRunData, says: `node "Function" run 3`},
		{name: "a source names a missing output",
			data: tResp{input: stamped(1), cis: []string{src("Set", 1, 0)}, runs: []tRun{webhook, function(1), passThrough("Set", "Function", 1)}}.build(),
			is:   ErrBadDataResponse, says: `node "Set" run 0 has no output 1`},
		{name: "a cycle",
			data: tResp{input: stamped(1), cis: []string{src("A", 0, 0)}, runs: []tRun{webhook, function(1), cycle}}.build(),
			is:   ErrLineageLimit, says: "loops back"},
		{name: "reaches the trigger, not the target",
			data: tResp{input: stamped(1), cis: []string{src("Set", 0, 0)}, runs: []tRun{webhook, function(1), passThrough("Set", "Webhook", 1)}}.build(),
			item: 0, says: `node "Webhook" has no input`},
		{name: "ambiguous: no pairedItem and no n8n default",
			data: tResp{input: stamped(2), cis: []string{src("Code", 0, 0)}, runs: []tRun{webhook, function(3),
				{node: "Code", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{"", ""}}}}}.build(),
			item: 0, says: `item 0 of node "Code" run 0 has no pairedItem`},
		{name: "null pairedItem gets no default",
			data: tResp{input: stamped(2), cis: []string{src("Code", 0, 0)}, runs: []tRun{webhook, function(2),
				{node: "Code", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(0), "null"}}}}}.build(),
			item: 1, says: `item 1 of node "Code" run 0 has no pairedItem`},
		{name: "names an item that does not exist",
			data: tResp{input: stamped(1), cis: []string{src("Set", 0, 0)}, runs: []tRun{webhook, function(2),
				{node: "Set", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(5)}}}}}.build(),
			item: 0, says: `item 5 of node "Function" run 0 output 0, which has 2 items`},
		{name: "names an input the run does not have",
			data: tResp{input: stamped(1), cis: []string{src("Set", 0, 0)}, runs: []tRun{webhook, function(2),
				{node: "Set", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(0, 1)}}}}}.build(),
			item: 0, says: "names input 1, but that run has 1"},
		{name: "malformed pairedItem",
			data: tResp{input: []string{pi(0), `{"item":"0"}`}, cis: []string{src("Function", 0, 0)}, runs: []tRun{webhook, function(2)}}.build(),
			item: 1, says: "malformed pairedItem"},
		{name: "empty pairedItem array on the input",
			data: tResp{input: []string{"[]"}, cis: []string{src("Function", 0, 0)}, runs: []tRun{webhook, function(2)}}.build(),
			item: 0, says: "null or empty"},
		{name: "items from two runs of the target",
			data: tResp{input: stamped(2), cis: []string{src("Merge", 0, 0)}, runs: []tRun{webhook, function(1), function(1),
				{node: "Merge", sources: []string{src("Function", 0, 0), src("Function", 0, 1)}, outputs: [][]string{{pi(0), pi(0, 1)}}}}}.build(),
			item: 1, says: "run 1 output 0 of the node while other items derive from run 0 output 0"},
		{name: "pin data is ignored outside manual mode",
			data: tResp{mode: "webhook", input: stamped(1), cis: []string{src("Set", 0, 0)}, pinData: map[string]int{"Function": 1},
				runs: []tRun{{node: "Set", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(0)}}}}}.build(),
			is: ErrNoRunData, says: `"Function"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.target
			if target == "" {
				target = "Function"
			}
			_, err := ItemOrigins(tc.data, target)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			if tc.is != nil {
				if !errors.Is(err, tc.is) {
					t.Errorf("error %q is not %v", err, tc.is)
				}
				return
			}
			var le *LineageError
			if !errors.As(err, &le) {
				t.Fatalf("error %q is not a *LineageError", err)
			}
			if le.Item != tc.item || le.Target != target {
				t.Errorf("LineageError item %d target %q, want %d %q", le.Item, le.Target, tc.item, target)
			}
		})
	}
}

// chainResp is a node "Chain" whose item k comes from its own item k-1 (same run), n items long,
// with item 0 from the function node: the longest lineage n items can make.
func chainResp(n int) []byte {
	out := seq(n, func(k int) string { return pi(k-1, 1) })
	out[0] = pi(0)
	return tResp{input: []string{pi(n - 1)}, cis: []string{src("Chain", 0, 0)}, runs: []tRun{webhook, function(1),
		{node: "Chain", sources: []string{src("Function", 0, 0), src("Chain", 0, 0)}, outputs: [][]string{out}}}}.build()
}

func TestItemOriginsDepth(t *testing.T) {
	// 20,000 hops back: the walk keeps its own stack, so nothing like a recursion limit.
	got, err := ItemOrigins(chainResp(20_000), "Function")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Items, [][]int{{0}}) {
		t.Fatalf("origins = %v", got.Items)
	}
	small := lineageLimits{hops: 1000, work: defaultLineageLimits.work}
	if _, err := itemOrigins(chainResp(990), "Function", small); err != nil {
		t.Fatalf("a chain within the limit: %v", err)
	}
	_, err = itemOrigins(chainResp(1010), "Function", small)
	if !errors.Is(err, ErrLineageLimit) || !strings.Contains(err.Error(), "more than 1000 hops back") {
		t.Fatalf("a chain past the limit: %v", err)
	}
}

func TestItemOriginsWorkLimit(t *testing.T) {
	// An Aggregate of 300 items, each from two of 300 calls: 300 pair steps plus 600 merged.
	agg := seq(300, func(k int) string { return many(pi(k), pi((k+1)%300)) })
	resp := tResp{input: stamped(300), cis: []string{src("Pairs", 0, 0)}, runs: []tRun{webhook, function(300),
		{node: "Pairs", sources: []string{src("Function", 0, 0)}, outputs: [][]string{agg}}}}.build()
	if _, err := itemOrigins(resp, "Function", lineageLimits{hops: 10, work: 2000}); err != nil {
		t.Fatalf("within the limit: %v", err)
	}
	_, err := itemOrigins(resp, "Function", lineageLimits{hops: 10, work: 1000})
	if !errors.Is(err, ErrLineageLimit) || !strings.Contains(err.Error(), "more than 1000 steps") {
		t.Fatalf("past the limit: %v", err)
	}
}

// bigResp is n calls through Set -> IF -> Merge of both branches -> Split Out -> Aggregate of
// each pair of split items -> Set.
func bigResp(n int) []byte {
	ifTrue := make([]string, 0, n/2)
	ifFalse := make([]string, 0, n/2)
	for k := range n {
		if k%2 == 0 {
			ifTrue = append(ifTrue, pi(k))
		} else {
			ifFalse = append(ifFalse, pi(k))
		}
	}
	merged := make([]string, 0, n)
	for k := range n / 2 {
		merged = append(merged, pi(k), pi(k, 1))
	}
	split := seq(2*n, func(k int) string { return pi(k / 2) })
	agg := seq(n, func(k int) string { return many(pi(2*k), pi(2*k+1)) })
	return tResp{input: stamped(n), cis: []string{src("Set 2", 0, 0)}, runs: []tRun{webhook, function(n),
		passThrough("Set", "Function", n),
		{node: "IF", sources: []string{src("Set", 0, 0)}, outputs: [][]string{ifTrue, ifFalse}},
		{node: "Merge", sources: []string{src("IF", 0, 0), src("IF", 1, 0)}, outputs: [][]string{merged}},
		{node: "Split Out", sources: []string{src("Merge", 0, 0)}, outputs: [][]string{split}},
		{node: "Aggregate", sources: []string{src("Split Out", 0, 0)}, outputs: [][]string{agg}},
		passThrough("Set 2", "Aggregate", n),
	}}.build()
}

func TestItemOriginsLarge(t *testing.T) {
	const n = 10_000
	data := bigResp(n)
	start := time.Now()
	got, err := ItemOrigins(data, "Function")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d items through 7 nodes, %d KB: %v", n, len(data)/1024, time.Since(start))
	if len(got.Items) != n {
		t.Fatalf("%d origins for %d items", len(got.Items), n)
	}
	for k, o := range got.Items {
		// Merge item 2j is IF true j = function item 2j; 2j+1 is IF false j = function item 2j+1.
		if len(o) != 1 || o[0] != k {
			t.Fatalf("item %d: origins %v, want [%d]", k, o, k)
		}
	}
}

func TestItemOriginsSharedSets(t *testing.T) {
	// Aggregate everything (twice), split it out again, aggregate again: every split item
	// derives from all n calls, and the last Aggregate must not merge 2n sets of n.
	const n = 10_000
	resp := tResp{input: stamped(1), cis: []string{src("Aggregate 2", 0, 0)}, runs: []tRun{webhook, function(n),
		{node: "Aggregate", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{many(stamped(n)...), many(stamped(n)...)}}},
		{node: "Split Out", sources: []string{src("Aggregate", 0, 0)}, outputs: [][]string{seq(2*n, func(k int) string { return pi(k % 2) })}},
		{node: "Aggregate 2", sources: []string{src("Split Out", 0, 0)}, outputs: [][]string{{many(stamped(2 * n)...)}}}}}
	got, err := ItemOrigins(resp.build(), "Function")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Items) != 1 || len(got.Items[0]) != n || got.Items[0][n-1] != n-1 {
		t.Fatalf("%d origins", len(got.Items[0]))
	}
}

func BenchmarkItemOrigins(b *testing.B) {
	data := bigResp(10_000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ItemOrigins(data, "Function"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestGroupByCall(t *testing.T) {
	calls := []string{"call-a", "call-b", "call-a", "call-c"}
	got, err := GroupByCall([][]int{{0}, {1}, {2}, {0, 2}, {3}, {1}}, calls)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{"call-a": {0, 2, 3}, "call-b": {1, 5}, "call-c": {4}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("groups = %v, want %v", got, want)
	}

	_, err = GroupByCall([][]int{{0}, {0, 1}, {2}, {1, 3}}, calls)
	var mixed *MixedCallsError
	if !errors.As(err, &mixed) {
		t.Fatalf("mixed calls: %v", err)
	}
	if !reflect.DeepEqual(mixed.Items, []int{1, 3}) || !reflect.DeepEqual(mixed.Calls, []string{"call-a", "call-b"}) {
		t.Fatalf("mixed = %+v", mixed)
	}
	if !strings.Contains(err.Error(), "input items 1, 3 each derive from several calls (item 1 from call-a, call-b)") {
		t.Fatalf("message: %v", err)
	}

	if _, err := GroupByCall([][]int{{4}}, calls); err == nil || !strings.Contains(err.Error(), "input item 0 derives from item 4 of the function node, which has 4 items") {
		t.Fatalf("out of range: %v", err)
	}
	if _, err := GroupByCall([][]int{{0}, {}}, calls); err == nil || !strings.Contains(err.Error(), "input item 1 has no origin") {
		t.Fatalf("empty: %v", err)
	}
}

func TestOriginsThenGroups(t *testing.T) {
	// Two calls through Split Out and an Aggregate of everything: the aggregate mixes them.
	resp := tResp{input: stamped(6), cis: []string{src("Split Out", 0, 0)}, runs: []tRun{webhook, function(2),
		{node: "Split Out", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(0), pi(0), pi(1), pi(1), pi(1), pi(0)}}}}}
	org, err := ItemOrigins(resp.build(), "Function")
	if err != nil {
		t.Fatal(err)
	}
	groups, err := GroupByCall(org.Items, []string{"c1", "c2"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(groups, map[string][]int{"c1": {0, 1, 5}, "c2": {2, 3, 4}}) {
		t.Fatalf("groups = %v", groups)
	}
	resp.input, resp.cis = stamped(1), []string{src("Aggregate", 0, 0)}
	resp.runs = append(resp.runs, tRun{node: "Aggregate", sources: []string{src("Split Out", 0, 0)}, outputs: [][]string{{many(stamped(6)...)}}})
	org, err = ItemOrigins(resp.build(), "Function")
	if err != nil {
		t.Fatal(err)
	}
	var mixed *MixedCallsError
	if _, err := GroupByCall(org.Items, []string{"c1", "c2"}); !errors.As(err, &mixed) || mixed.Items[0] != 0 {
		t.Fatalf("aggregate across calls: %v", err)
	}
}

func FuzzItemOrigins(f *testing.F) {
	seeds := []tResp{
		{input: stamped(3), cis: []string{src("Set", 0, 0)}, runs: []tRun{webhook, function(3), passThrough("Set", "Function", 3)}},
		{input: stamped(1), cis: []string{src("Aggregate", 0, 0)}, runs: []tRun{webhook, function(3),
			{node: "Aggregate", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{many(pi(0), pi(1), pi(2))}}}}},
		{input: stamped(2), cis: []string{src("Merge", 0, 0)}, runs: []tRun{webhook, function(2),
			{node: "IF", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{pi(0)}, {pi(1)}}},
			{node: "Merge", sources: []string{src("IF", 0, 0), src("IF", 1, 0)}, outputs: [][]string{{pi(0), pi(0, 1)}}}}},
		{input: []string{"", "1"}, cis: []string{src("Code", 0, 0)}, runs: []tRun{webhook, function(2),
			{node: "Code", sources: []string{src("Function", 0, 0)}, outputs: [][]string{{"", ""}}}}},
		{input: stamped(1), cis: []string{src("A", 0, 0)}, runs: []tRun{webhook, function(1),
			{node: "A", sources: []string{src("A", 0, 0)}, outputs: [][]string{{pi(0)}}}}},
		{mode: "manual", input: stamped(1), cis: []string{src("Tool", 0, 0)}, pinData: map[string]int{"Function": 2},
			runs: []tRun{{node: "Tool", sources: []string{src("Other", 0, 0)}, outputs: [][]string{
				{`{"item":1,"sourceOverwrite":{"previousNode":"Function"}}`}}}}},
	}
	for _, s := range seeds {
		f.Add(s.compact(), "Function")
	}
	f.Add([]byte(`{"inputData":{"main":[[{"pairedItem":[0,{"item":0,"input":1}]}]]},"connectionInputSource":{"main":[null,{"previousNode":"F"}]},`+
		`"runExecutionData":{"resultData":{"runData":{"F":[{"source":[],"data":{"main":[[{}]]}}]}}}}`), "F")
	f.Fuzz(func(t *testing.T, data []byte, target string) {
		got, err := ItemOrigins(data, target)
		if err != nil {
			if got.Items != nil {
				t.Fatalf("origins with an error: %v", err)
			}
			return
		}
		for i, o := range got.Items {
			if len(o) == 0 {
				t.Fatalf("item %d: no origins and no error", i)
			}
			for j := 1; j < len(o); j++ {
				if o[j] <= o[j-1] {
					t.Fatalf("item %d: origins %v not ascending and distinct", i, o)
				}
			}
			if o[0] < 0 {
				t.Fatalf("item %d: negative origin %v", i, o)
			}
		}
		calls := make([]int, 0, 64)
		for _, o := range got.Items {
			for len(calls) <= o[len(o)-1] {
				calls = append(calls, len(calls)%3)
			}
		}
		if groups, err := GroupByCall(got.Items, calls); err == nil {
			n := 0
			for _, g := range groups {
				n += len(g)
			}
			if n != len(got.Items) {
				t.Fatalf("groups hold %d items of %d", n, len(got.Items))
			}
		}
	})
}
