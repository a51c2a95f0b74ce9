package e2e

// End-to-end checks of the sidecar (issue 3) on the real stack. The relay tests run on either runner
// kind and assert the same facts: each was first run with RUNNER_KIND=official (the official runner
// attached to n8n directly) and the expectations below are what n8n 2.41.1 produced there; with
// RUNNER_KIND=sidecar they must hold unchanged. TestSidecarEcho needs the sidecar.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/bench"
)

// codeNodeMode is a Code node in the given mode ("runOnceForAllItems" / "runOnceForEachItem").
func codeNodeMode(name, mode, js string) Node {
	n := CodeNode(name, js)
	n["parameters"].(map[string]any)["mode"] = mode
	return n
}

// spread gives nodes distinct positions (n8n does not care, people opening the workflow do).
func spread(nodes ...Node) []Node {
	for i, n := range nodes {
		n["position"] = []int{i * 220, 0}
	}
	return nodes
}

// callFlow deploys Webhook -> nodes..., calls it with body and returns the answer and workflow id.
func callFlow(t *testing.T, s *Stack, body string, nodes ...Node) (int, []byte, string) {
	t.Helper()
	path := UniqueName(t, "sc")
	all := spread(append([]Node{WebhookNode(path)}, nodes...)...)
	wfID := s.Deploy(t, Chain("e2e sidecar "+path, all...))
	resp, err := s.Client.CallWebhook(Ctx(t, 120*time.Second), http.MethodPost, path, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Status, resp.Body, wfID
}

func decodeItems(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	var items []map[string]any
	if err := json.Unmarshal(body, &items); err != nil {
		t.Fatalf("webhook answer is not an item list: %v: %s", err, clip(body))
	}
	return items
}

func clip(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "..."
	}
	return string(b)
}

// lastExecution returns the newest execution of a workflow with its data, once it has ended.
func lastExecution(t *testing.T, s *Stack, wfID string) (status string, data map[string]any) {
	t.Helper()
	ctx := Ctx(t, 30*time.Second)
	for {
		list, err := s.Client.ListExecutions(ctx, wfID, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) > 0 && list[0].Status != "running" && list[0].Status != "new" {
			ex, err := s.Client.GetExecution(ctx, list[0].ID, true)
			if err != nil {
				t.Fatal(err)
			}
			var d map[string]any
			if err := json.Unmarshal(ex.Data, &d); err != nil {
				t.Fatalf("execution data: %v", err)
			}
			return ex.Status, d
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no finished execution of %s", wfID)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func TestSidecarEcho(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("stack runs RUNNER_KIND=%s; the echo directive needs the sidecar (RUNNER_KIND=sidecar scripts/stack.sh restart-runners)", s.Env.RunnerKind)
	}
	status, body, _ := callFlow(t, s, `{"n":21,"who":"e2e"}`,
		CodeNode("Plain", "return $input.all().map(i => ({json: {...i.json.body, doubled: i.json.body.n * 2, exec: $execution.id}}));"),
		CodeNode("Echo", `/* @n8n-fn {"op":"echo"} */`+"\nthrow new Error('n8n-fn: this node must run on the n8n-fn sidecar runner');"),
	)
	if status != 200 {
		t.Fatalf("HTTP %d: %s", status, clip(body))
	}
	items := decodeItems(t, body)
	if len(items) != 1 {
		t.Fatalf("want 1 item, got %s", clip(body))
	}
	it := items[0]
	marker, _ := it["_n8nfn"].(map[string]any)
	if it["doubled"] != 42.0 || it["who"] != "e2e" || marker["echo"] != true {
		t.Fatalf("want the plain Code node's item plus the echo marker, got %s", clip(body))
	}
	// The sidecar that answered is the one next to the worker that ran the execution.
	worker, ok := s.WaitLog(t, s.WorkerNames(), fmt.Sprintf("Worker started execution %s ", it["exec"]), 10*time.Second)
	if !ok {
		t.Fatalf("no worker log names execution %v", it["exec"])
	}
	if marker["sidecar"] != worker {
		t.Errorf("echo answered by sidecar %v, but execution ran on %s", marker["sidecar"], worker)
	}
}

func TestSidecarDirectiveErrors(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("stack runs RUNNER_KIND=%s; directives need the sidecar", s.Env.RunnerKind)
	}
	t.Run("malformed header fails the node", func(t *testing.T) {
		status, body, wfID := callFlow(t, s, `{}`, CodeNode("Broken", `/* @n8n-fn {"op":"echo", */`+"\nreturn [];"))
		if status == 200 {
			t.Fatalf("want an error answer, got 200 %s", clip(body))
		}
		st, data := lastExecution(t, s, wfID)
		msg := executionError(t, data)
		// What the n8n UI shows under the message: the runner error's description.
		rd, _ := data["resultData"].(map[string]any)
		e, _ := rd["error"].(map[string]any)
		if d, _ := e["description"].(string); !strings.Contains(d, "/* @n8n-fn") {
			t.Errorf("execution error has no description saying how to fix the header: %v", e)
		}
		t.Logf("n8n stored the node error as: message %q, description %q", e["message"], e["description"])
		if st != "error" || !strings.Contains(msg, "does not parse") ||
			!strings.Contains(msg, `{"op":"echo",`) && !strings.Contains(msg, `{\"op\":\"echo\",`) {
			t.Errorf("status %s, error %q: want the parse problem quoted", st, msg)
		}
	})
	t.Run("continue on fail gives an error item", func(t *testing.T) {
		n := CodeNode("Broken", `/* @n8n-fn {"op":"nope"} */`+"\nreturn [];")
		n["onError"] = "continueRegularOutput"
		status, body, _ := callFlow(t, s, `{}`, n)
		items := decodeItems(t, body)
		if status != 200 || len(items) != 1 || !strings.Contains(fmt.Sprint(items[0]["error"]), `unknown op "nope"`) {
			t.Errorf("HTTP %d %s: want one item whose error names the op", status, clip(body))
		}
	})
}

// executionError digs resultData.error.message out of an execution.
func executionError(t *testing.T, data map[string]any) string {
	t.Helper()
	rd, _ := data["resultData"].(map[string]any)
	e, _ := rd["error"].(map[string]any)
	msg, _ := e["message"].(string)
	return msg
}

func TestRelayEachItemChunks(t *testing.T) {
	s := NeedStack(t)
	// 2,500 items run in each-item mode: n8n sends three tasks (chunks of 1,000).
	status, body, _ := callFlow(t, s, `{"n":2500}`,
		CodeNode("Make", "return Array.from({length: $input.first().json.body.n}, (_, i) => ({json: {i}}));"),
		codeNodeMode("Each", "runOnceForEachItem", "return {json: {i: $json.i, idx: $itemIndex, sq: $json.i * $json.i}};"),
		CodeNode("Check", "const all = $input.all();\nreturn [{json: {count: all.length, inOrder: all.every((it, k) => it.json.i === k && it.json.idx === k && it.json.sq === k * k)}}];"),
	)
	items := decodeItems(t, body)
	if status != 200 || len(items) != 1 || items[0]["count"] != 2500.0 || items[0]["inOrder"] != true {
		t.Fatalf("HTTP %d %s: want count 2500 in order", status, clip(body))
	}
}

func TestRelayThrownErrorHasLine(t *testing.T) {
	s := NeedStack(t)
	status, body, wfID := callFlow(t, s, `{}`, CodeNode("Code", "const a = 1;\nthrow new Error('boom-e2e');"))
	if status != 500 {
		t.Errorf("webhook answered %d %s; official runner: 500", status, clip(body))
	}
	st, data := lastExecution(t, s, wfID)
	// Verified with the official runner: "boom-e2e [line 2]", status error.
	if msg := executionError(t, data); st != "error" || msg != "boom-e2e [line 2]" {
		t.Errorf("status %s, error %q; want error, \"boom-e2e [line 2]\"", st, msg)
	}
}

func TestRelayContinueOnFail(t *testing.T) {
	s := NeedStack(t)
	n := CodeNode("Code", "throw new Error('soft-e2e');")
	n["onError"] = "continueRegularOutput"
	status, body, _ := callFlow(t, s, `{}`, n)
	// Verified with the official runner: one item {"error":"soft-e2e [line 1]"}.
	if status != 200 || strings.TrimSpace(string(body)) != `[{"error":"soft-e2e [line 1]"}]` {
		t.Errorf("HTTP %d %s", status, clip(body))
	}
}

func TestRelayConsoleLogHTTPAndNodeRef(t *testing.T) {
	s := NeedStack(t)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"pong":true,"q":%q}`, r.URL.Query().Get("q"))
	}))
	defer srv.Close()
	token := UniqueName(t, "log")
	js := fmt.Sprintf(`console.log('n8n-fn-relay', %q);
const r = await this.helpers.httpRequest({url: %q + '/ping?q=' + $('Webhook').first().json.body.q, json: true});
return [{json: {r, n: $('Webhook').first().json.body.n}}];`, token, srv.URL)
	status, body, _ := callFlow(t, s, `{"q":"hello","n":5}`, CodeNode("Code", js))
	items := decodeItems(t, body)
	if status != 200 || len(items) != 1 {
		t.Fatalf("HTTP %d %s", status, clip(body))
	}
	r, _ := items[0]["r"].(map[string]any)
	if r["pong"] != true || r["q"] != "hello" || items[0]["n"] != 5.0 || hits.Load() != 1 {
		t.Errorf("got %s with %d HTTP hits; want r={pong:true,q:hello}, n=5, 1 hit", clip(body), hits.Load())
	}
	if _, ok := s.WaitLog(t, s.WorkerNames(), token, 10*time.Second); !ok {
		t.Errorf("console.log token %s not in any worker log", token)
	}
}

func TestRelayEnvBlocked(t *testing.T) {
	s := NeedStack(t)
	// The stack leaves N8N_BLOCK_ENV_ACCESS_IN_NODE unset: n8n 2.x blocks $env. Verified with the
	// official runner: the node fails with "access to env vars denied".
	status, _, wfID := callFlow(t, s, `{}`, CodeNode("Code", "return [{json: {home: $env.HOME}}];"))
	st, data := lastExecution(t, s, wfID)
	if msg := executionError(t, data); status != 500 || st != "error" || !strings.Contains(msg, "access to env vars denied") {
		t.Errorf("HTTP %d, status %s, error %q", status, st, msg)
	}
}

func TestRelayTimezone(t *testing.T) {
	s := NeedStack(t)
	// $now's zone comes from the runner's GENERIC_TIMEZONE. The stack gives UTC to n8n and to the
	// official runner; verified with the official runner: "UTC". Behind the sidecar the spawned
	// runner must get the same.
	status, body, _ := callFlow(t, s, `{}`, CodeNode("Code", "return [{json: {zone: $now.zoneName}}];"))
	if status != 200 || strings.TrimSpace(string(body)) != `[{"zone":"UTC"}]` {
		t.Errorf("HTTP %d %s, want [{\"zone\":\"UTC\"}]", status, clip(body))
	}
}

// TestRelayUserCancel stops a running execution through the public API: n8n cancels the task and,
// with the sidecar, the relay passes the cancel on to the runner behind it.
func TestRelayUserCancel(t *testing.T) {
	s := NeedStack(t)
	path := UniqueName(t, "cancel")
	wfID := s.Deploy(t, Chain("e2e sidecar "+path, spread(WebhookNode(path),
		CodeNode("Slow", "await new Promise(r => setTimeout(r, 120000));\nreturn [{json: {late: true}}];"))...))
	logOffsets := sidecarLogSizes(s)
	answered := make(chan int, 1)
	go func() {
		resp, err := s.Client.CallWebhook(Ctx(t, 150*time.Second), http.MethodPost, path, []byte(`{}`))
		if err != nil {
			answered <- -1
			return
		}
		answered <- resp.Status
	}()
	ctx := Ctx(t, 60*time.Second)
	var execID string
	for execID == "" {
		execID = runningExecution(t, s, wfID)
		if execID != "" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("execution never showed as running")
		case <-time.After(200 * time.Millisecond):
		}
	}
	time.Sleep(time.Second) // let the Code task reach the runner
	stopExecution(t, s, ctx, execID)
	select {
	case <-answered:
	case <-time.After(30 * time.Second):
		t.Errorf("webhook call still hanging 30 s after the stop")
	}
	st, _ := lastExecution(t, s, wfID)
	if st != "canceled" {
		t.Errorf("execution %s status %s, want canceled", execID, st)
	}
	if s.Env.RunnerKind == "sidecar" {
		// The sidecar that relayed the task logs the cancel it passed on to the runner behind it.
		deadline := time.Now().Add(10 * time.Second)
		for !sidecarLogsSince(t, s, logOffsets, `msg="task cancelled by n8n" path=relay reason="Task cancelled by user"`) {
			if time.Now().After(deadline) {
				t.Fatalf("no sidecar relayed the user's cancel to its runner (logs in %s)", s.Env.LogDir)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// stopExecution stops a running execution through the public API, as a user would.
func stopExecution(t *testing.T, s *Stack, ctx context.Context, execID string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(s.Env.BaseURL, "/")+"/api/v1/executions/"+execID+"/stop", bytes.NewReader(nil))
	req.Header.Set("X-N8N-API-KEY", s.Env.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stop execution %s: HTTP %d %s", execID, resp.StatusCode, b)
	}
}

// runningExecution returns the id of a running execution of the workflow, or "". The public API
// lists running executions only when asked for status=running.
func runningExecution(t *testing.T, s *Stack, wfID string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, strings.TrimRight(s.Env.BaseURL, "/")+"/api/v1/executions?status=running&workflowId="+wfID, nil)
	req.Header.Set("X-N8N-API-KEY", s.Env.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("list running executions: %v", err)
	}
	defer resp.Body.Close()
	var r struct {
		Data []struct {
			ID json.RawMessage `json:"id"`
		} `json:"data"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&r)
	if len(r.Data) == 0 {
		return ""
	}
	return strings.Trim(string(r.Data[0].ID), `"`)
}

// sidecarLogSizes remembers where each sidecar log ends now.
func sidecarLogSizes(s *Stack) map[string]int64 {
	out := map[string]int64{}
	files, _ := filepath.Glob(filepath.Join(s.Env.LogDir, "sidecar-*.log"))
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			out[f] = st.Size()
		}
	}
	return out
}

// sidecarLogsSince reports whether any sidecar log got a line containing substr after offsets.
func sidecarLogsSince(t *testing.T, s *Stack, offsets map[string]int64, substr string) bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(s.Env.LogDir, "sidecar-*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if off := offsets[f]; off <= int64(len(b)) {
			b = b[off:]
		}
		if strings.Contains(string(b), substr) {
			return true
		}
	}
	return false
}

// BenchmarkSidecarRelayOverhead measures the stack benchmark's scenarios "webhook-code" (Webhook ->
// ordinary Code node) and "webhook-noop" (the same round trip without any runner, for the noise
// floor) with the current runner kind. With N8N_FN_BENCH_SWITCH=1 it measures both kinds in one run,
// alternating official / sidecar N8N_FN_BENCH_PAIRS times (2) via scripts/stack.sh restart-runners
// (it leaves the stack on sidecar), N8N_FN_BENCH_CALLS (300) sequential calls per scenario and round
// plus a short concurrent phase, and reports the sidecar/official p50 and p95 ratios, the
// throughput ratio, the p50 ratio after dividing each round by its own webhook-noop p50 (the load
// of the shared machine changes between rounds) and the sidecars' idle RSS. Run with -benchtime=1x:
//
//	N8N_FN_BENCH_SWITCH=1 go test ./e2e -run '^$' -bench SidecarRelayOverhead -benchtime=1x
func BenchmarkSidecarRelayOverhead(b *testing.B) {
	s := NeedStack(b)
	calls := 300
	if v := os.Getenv("N8N_FN_BENCH_CALLS"); v != "" {
		fmt.Sscan(v, &calls)
	}
	kinds := []string{s.Env.RunnerKind}
	if os.Getenv("N8N_FN_BENCH_SWITCH") == "1" {
		pairs := 2
		if v := os.Getenv("N8N_FN_BENCH_PAIRS"); v != "" {
			fmt.Sscan(v, &pairs)
		}
		kinds = nil
		for p := 0; p < pairs; p++ {
			kinds = append(kinds, "official", "sidecar")
		}
	}
	var scenarios []bench.Scenario
	for _, sc := range bench.Baseline() {
		if sc.Name == bench.ScenarioWebhookCode || sc.Name == bench.ScenarioWebhookNoOp {
			scenarios = append(scenarios, sc)
		}
	}
	for i := 0; i < b.N; i++ {
		seq := map[string][]bench.Result{} // kind/scenario -> sequential results of every round
		rps := map[string][]float64{}
		norm := map[string][]float64{} // kind -> per round: code p50 / noop p50 (cancels the round's load)
		var rssKB []int
		for _, kind := range kinds {
			if len(kinds) > 1 {
				restartRunners(b, kind)
			}
			before := runnerPIDs(s)
			var log strings.Builder
			rep, err := bench.Run(Ctx(b, 10*time.Minute), bench.Env{Client: s.Client, Stack: s.Env}, scenarios,
				bench.Config{Warmup: 20, Sequential: calls, Clients: 4, Duration: 10 * time.Second, Pause: time.Second}, &log)
			if err != nil {
				b.Fatalf("bench (%s): %v\n%s", kind, err, log.String())
			}
			if after := runnerPIDs(s); after != before || !strings.Contains(after, kind) {
				// someone else restarted the runners meanwhile: this round did not measure kind alone
				b.Logf("%-8s round discarded: runners changed during it (%s -> %s)", kind, before, after)
				continue
			}
			round := map[string]bench.Result{}
			for _, r := range rep.Results {
				key := kind + "/" + r.Scenario
				if r.Errors > 0 {
					b.Errorf("%s %s: %d errors (first: %s)", key, r.Phase, r.Errors, r.FirstError)
				}
				round[r.Scenario+"/"+r.Phase] = r
				if r.Phase == "sequential" {
					seq[key] = append(seq[key], r)
				} else {
					rps[key] = append(rps[key], r.RPS)
				}
			}
			c, n := round[bench.ScenarioWebhookCode+"/sequential"], round[bench.ScenarioWebhookNoOp+"/sequential"]
			cc := round[bench.ScenarioWebhookCode+"/concurrent"]
			if n.P50Ms > 0 {
				norm[kind] = append(norm[kind], c.P50Ms/n.P50Ms)
			}
			b.Logf("%-8s code p50 %.1f p95 %.1f | noop p50 %.1f p95 %.1f | code 4 clients %.1f req/s", kind, c.P50Ms, c.P95Ms, n.P50Ms, n.P95Ms, cc.RPS)
			if kind == "sidecar" {
				time.Sleep(5 * time.Second) // idle
				rssKB = append(rssKB, sidecarRSS(b, s)...)
			}
		}
		// Rounds are pooled by their medians: the median of the per-round p50s / p95s.
		med := func(rs []bench.Result, f func(bench.Result) float64) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			sort.Float64s(v)
			return v[len(v)/2]
		}
		p50 := func(r bench.Result) float64 { return r.P50Ms }
		p95 := func(r bench.Result) float64 { return r.P95Ms }
		for _, kind := range []string{"official", "sidecar"} {
			if rs := seq[kind+"/"+bench.ScenarioWebhookCode]; len(rs) > 0 {
				b.ReportMetric(med(rs, p50), kind+"-p50-ms")
				b.ReportMetric(med(rs, p95), kind+"-p95-ms")
			}
		}
		code := bench.ScenarioWebhookCode
		if o, sc := seq["official/"+code], seq["sidecar/"+code]; len(o) > 0 && len(sc) > 0 {
			b.ReportMetric(med(sc, p50)/med(o, p50), "p50-ratio")
			b.ReportMetric(med(sc, p95)/med(o, p95), "p95-ratio")
			sort.Float64s(rps["official/"+code])
			sort.Float64s(rps["sidecar/"+code])
			b.ReportMetric(percentile(rps["sidecar/"+code], 50)/percentile(rps["official/"+code], 50), "rps-ratio")
		}
		if o, sc := norm["official"], norm["sidecar"]; len(o) > 0 && len(sc) > 0 {
			sort.Float64s(o)
			sort.Float64s(sc)
			b.ReportMetric(sc[len(sc)/2]/o[len(o)/2], "p50-ratio-vs-noop")
		}
		if len(rssKB) > 0 {
			sort.Ints(rssKB)
			b.ReportMetric(float64(rssKB[len(rssKB)-1])/1024, "sidecar-idle-rss-max-MB")
			b.Logf("sidecar idle RSS (kB): %v", rssKB)
		}
	}
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*p/100)]
}

// restartRunners switches the stack's runner kind (the stack script rebuilds the sidecar binary).
func restartRunners(b *testing.B, kind string) {
	b.Helper()
	cmd := exec.Command("../scripts/stack.sh", "restart-runners")
	cmd.Env = append(os.Environ(), "RUNNER_KIND="+kind)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("RUNNER_KIND=%s scripts/stack.sh restart-runners: %v\n%s", kind, err, out)
	}
}

// runnerPIDs names the runner/sidecar processes of the stack now, e.g. "sidecar-main=123 ...".
func runnerPIDs(s *Stack) string {
	var parts []string
	for _, pat := range []string{"runner-*.pid", "sidecar-*.pid"} {
		files, _ := filepath.Glob(filepath.Join(s.Env.Vars["N8N_STACK_DIR"], "pids", pat))
		for _, f := range files {
			pid, _ := os.ReadFile(f)
			name := strings.TrimSuffix(filepath.Base(f), ".pid")
			kind := "official"
			if strings.HasPrefix(name, "sidecar-") {
				kind = "sidecar"
			}
			parts = append(parts, kind+":"+name+"="+strings.TrimSpace(string(pid)))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// sidecarRSS reads VmRSS (kB) of every sidecar process of the stack from its pid file. Other
// helpers may be restarting the runners: it retries for a while before it gives up.
func sidecarRSS(b *testing.B, s *Stack) []int {
	b.Helper()
	dir := s.Env.Vars["N8N_STACK_DIR"]
	for try := 0; ; try++ {
		files, _ := filepath.Glob(filepath.Join(dir, "pids", "sidecar-*.pid"))
		var out []int
		for _, f := range files {
			raw, err := os.ReadFile(f)
			fields := strings.Fields(string(raw)) // "PID [start time]"
			if err != nil || len(fields) == 0 {
				continue
			}
			status, err := os.ReadFile("/proc/" + fields[0] + "/status")
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(status), "\n") {
				if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
					var kb int
					fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
					out = append(out, kb)
				}
			}
		}
		if len(out) > 0 && len(out) == len(files) {
			return out
		}
		if try == 30 {
			b.Fatalf("no running sidecar process found under %s/pids", dir)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
