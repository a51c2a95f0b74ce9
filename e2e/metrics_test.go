package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/runner/metrics"
)

// sidecarScrapes reads /metrics of every sidecar of the stack.
func sidecarScrapes(t *testing.T, s *Stack) map[string]metrics.Scrape {
	t.Helper()
	out, err := scrapeSidecars(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// scrapeSidecars is sidecarScrapes for any goroutine: it returns the error.
func scrapeSidecars(s *Stack) (map[string]metrics.Scrape, error) {
	out := map[string]metrics.Scrape{}
	for _, port := range strings.Split(s.Env.Vars["N8N_FN_HEALTH_PORTS"], ",") {
		url := "http://127.0.0.1:" + strings.TrimSpace(port) + "/metrics"
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			cancel()
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("scrape %s: %w", url, err)
		}
		sc, err := metrics.ParseScrape(resp.Body)
		resp.Body.Close()
		cancel()
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("scrape %s: HTTP %d: %v (a sidecar built before /metrics existed? scripts/stack.sh restart-runners)", url, resp.StatusCode, err)
		}
		out[port] = sc
	}
	return out, nil
}

// sumOver adds one series over every sidecar.
func sumOver(scrapes map[string]metrics.Scrape, name string, labels ...string) float64 {
	var n float64
	for _, sc := range scrapes {
		v, _ := sc.Value(name, labels...)
		n += v
	}
	return n
}

// TestMetricsCountRealCalls scrapes every sidecar's /metrics around a few real function calls on
// the stack (each through n8n's webhook, queue, workers and the official runner for the body's
// Code node) and checks that the counters moved by exactly what was done: 4 calls that return,
// 1 the function refuses (a missing param).
func TestMetricsCountRealCalls(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; metrics are the n8n-fn sidecars'", s.Env.RunnerKind)
	}
	name := UniqueName(t, "metrics")
	fn := "function=global/" + name
	s.Deploy(t, Chain("n8n-fn metrics "+name+" function", spread(
		WebhookNode(name+"/fn"),
		fnDirective("Function", map[string]any{"op": "function", "name": name, "params": []map[string]any{{"name": "n", "type": "number", "required": true}}}),
		codeNodeMode("Body", "runOnceForAllItems", "return $input.all().map(i => ({ json: { twice: i.json.n * 2 } }));"),
		fnDirective("Return", map[string]any{"op": "return"}),
	)...))
	s.Deploy(t, Chain("n8n-fn metrics "+name+" caller", spread(
		WebhookNode(name+"/call"),
		codeNodeMode("Pick", "runOnceForAllItems", "return $input.all().map(i => ({ json: i.json.body }));"),
		fnDirective("Call", map[string]any{"op": "call", "function": name, "timeoutMs": 30000, "mode": "eachItem"}),
	)...))
	// Ready when some sidecar serves the function (discovery runs every 10 s).
	deadline := time.Now().Add(60 * time.Second)
	for sumOver(sidecarScrapes(t, s), "n8n_fn_function_live_sidecars", fn) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no sidecar serves the function after 60 s")
		}
		time.Sleep(500 * time.Millisecond)
	}
	before := sidecarScrapes(t, s)
	call := func(body string) (int, string) {
		r, err := s.Client.CallWebhook(Ctx(t, 60*time.Second), http.MethodPost, name+"/call", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return r.Status, string(r.Body)
	}
	for i := 1; i <= 4; i++ {
		if st, body := call(fmt.Sprintf(`{"n":%d}`, i)); st != http.StatusOK || !strings.Contains(body, fmt.Sprintf(`"twice":%d`, 2*i)) {
			t.Fatalf("call %d: HTTP %d %s", i, st, body)
		}
	}
	if st, body := call(`{"m":1}`); st == http.StatusOK {
		t.Fatalf("a call without the required param answered: %s", body)
	}
	after := sidecarScrapes(t, s)
	delta := func(name string, labels ...string) float64 {
		return sumOver(after, name, labels...) - sumOver(before, name, labels...)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"n8n_fn_calls_started_total", []string{fn}, 5},
		{"n8n_fn_calls_finished_total", []string{fn, "outcome=ok"}, 4},
		{"n8n_fn_calls_finished_total", []string{fn, "outcome=params"}, 1},
		{"n8n_fn_call_duration_seconds", []string{fn}, 5},
		{"n8n_fn_function_dispatches_total", []string{fn}, 5},
		{"n8n_fn_call_queue_wait_seconds", []string{fn}, 5},
		{"n8n_fn_function_reruns_total", []string{fn}, 0},
		{"n8n_fn_calls_reclaimed_total", []string{fn}, 0},
		{"n8n_fn_dead_letters_total", []string{fn}, 0},
		// Per call: the call node, the function node; the return node only for the 4 that ran.
		{"n8n_fn_native_tasks_total", []string{"op=call"}, 5},
		{"n8n_fn_native_tasks_total", []string{"op=function"}, 5},
		{"n8n_fn_native_tasks_total", []string{"op=return", "outcome=ok"}, 4},
		// The callers' Pick node (5) and the body's Code node of the 4 executions that got past
		// the function node.
		{"n8n_fn_relayed_tasks_total", []string{"task_type=javascript", "outcome=relayed"}, 9},
	} {
		if got := delta(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for port, sc := range after {
		if v, _ := sc.Value("n8n_fn_n8n_connected"); v != 1 {
			t.Errorf("sidecar :%s: n8n_fn_n8n_connected = %v, want 1", port, v)
		}
		if v, _ := sc.Value("n8n_fn_runner_connected", "task_type=javascript"); v != 1 {
			t.Errorf("sidecar :%s: n8n_fn_runner_connected{javascript} = %v, want 1", port, v)
		}
		if v, _ := sc.Value("n8n_fn_registry_up"); v != 1 {
			t.Errorf("sidecar :%s: n8n_fn_registry_up = %v, want 1", port, v)
		}
		if v, ok := sc.Value("n8n_fn_queue_pending", fn); ok && v != 0 {
			t.Errorf("sidecar :%s: %d calls still pending after every call answered", port, int(v))
		}
	}
	if v := sumOver(after, "n8n_fn_function_live_sidecars", fn) / float64(len(after)); v < 1 {
		t.Errorf("live sidecars of the function: %v per scrape, want at least 1", v)
	}
	checkMonitoringNames(t, after)
	t.Logf("5 calls: started %v, ok %v, params %v, dispatched %v, relayed %v across %d sidecars",
		delta("n8n_fn_calls_started_total", fn), delta("n8n_fn_calls_finished_total", fn, "outcome=ok"),
		delta("n8n_fn_calls_finished_total", fn, "outcome=params"), delta("n8n_fn_function_dispatches_total", fn),
		delta("n8n_fn_relayed_tasks_total", "task_type=javascript"), len(after))
}

// checkMonitoringNames: every n8n-fn metric the shipped dashboard and alert rules read is in the
// real sidecars' scrapes (after calls, so the per-function series exist). Redis errors are left
// out: a healthy stack has none, and the metric's unit test covers it.
func checkMonitoringNames(t *testing.T, scrapes map[string]metrics.Scrape) {
	t.Helper()
	have := map[string]bool{}
	for _, sc := range scrapes {
		for _, n := range sc.Names() {
			have[n] = true
		}
	}
	files, err := filepath.Glob("../docs/monitoring/*")
	if err != nil || len(files) < 2 {
		t.Fatalf("docs/monitoring: %v %v", files, err)
	}
	re := regexp.MustCompile(`\bn8n_fn_[a-zA-Z0-9_]+`)
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range re.FindAllString(string(b), -1) {
			if n == "n8n_fn_redis_errors_total" {
				continue
			}
			checked++
			if !have[n] {
				t.Errorf("%s uses %s, which no sidecar of the stack exports", filepath.Base(f), n)
			}
		}
	}
	t.Logf("the dashboard and alert rules name %d n8n-fn series, all in the stack's scrapes", checked)
}

// TestMetricsDuringReplay scrapes every sidecar every half second while `n8n-fn replay` runs the
// bundled test workflows (nested calls, concurrent calls on both workers, errors, timeouts), and
// checks the books balance afterwards: every call started also finished (with some outcome), the
// replay's calls were dispatched, nothing is left pending, counters never went down, and no scrape
// failed or took long while the sidecars were busy.
func TestMetricsDuringReplay(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; metrics are the n8n-fn sidecars'", s.Env.RunnerKind)
	}
	bin := buildCLI(t)
	total := func(sc map[string]metrics.Scrape, name string) float64 { return sumOver(sc, name) }
	before := sidecarScrapes(t, s)
	done := make(chan struct{})
	type sample struct {
		started float64
		took    time.Duration
		err     error
	}
	samples := make(chan sample, 1000)
	go func() {
		defer close(samples)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				start := time.Now()
				sc, err := scrapeSidecars(s)
				samples <- sample{total(sc, "n8n_fn_calls_started_total"), time.Since(start), err}
			}
		}
	}()
	out, stderr, err := runCLI(t, s, bin, "replay", "--json", "--env", s.Env.Path, "../test-workflows")
	close(done)
	var last float64
	n, slow := 0, time.Duration(0)
	for smp := range samples {
		if smp.err != nil {
			t.Errorf("a scrape during the replay failed: %v", smp.err)
			continue
		}
		n++
		if smp.started < last {
			t.Errorf("n8n_fn_calls_started_total went down during the replay: %v after %v", smp.started, last)
		}
		last, slow = smp.started, max(slow, smp.took)
	}
	if err != nil && !strings.Contains(out, `"passed"`) {
		t.Fatalf("replay: %v\n%s", err, clip([]byte(stderr)))
	}
	after := sidecarScrapes(t, s)
	started := total(after, "n8n_fn_calls_started_total") - total(before, "n8n_fn_calls_started_total")
	finished := total(after, "n8n_fn_calls_finished_total") - total(before, "n8n_fn_calls_finished_total")
	latencies := total(after, "n8n_fn_call_duration_seconds") - total(before, "n8n_fn_call_duration_seconds")
	ok := sumOver(after, "n8n_fn_calls_finished_total", "outcome=ok") - sumOver(before, "n8n_fn_calls_finished_total", "outcome=ok")
	dispatched := total(after, "n8n_fn_function_dispatches_total") - total(before, "n8n_fn_function_dispatches_total")
	if started < 20 || finished != started || latencies != started {
		t.Errorf("during the replay %v calls started, %v finished, %v latencies observed: every started call must finish once", started, finished, latencies)
	}
	if ok < 1 || dispatched < ok {
		t.Errorf("%v calls answered ok but only %v dispatches", ok, dispatched)
	}
	for port, sc := range after {
		if v, _ := sc.Value("n8n_fn_queue_pending"); v != 0 {
			t.Errorf("sidecar :%s: %v calls still pending after the replay", port, v)
		}
	}
	if n < 5 || slow > 3*time.Second {
		t.Errorf("%d scrapes during the replay, the slowest took %s", n, slow)
	}
	t.Logf("replay: %v calls started = finished, %v ok, %v dispatches; %d scrapes of %d sidecars during it, slowest %s",
		started, ok, dispatched, n, len(after), slow.Round(time.Millisecond))
}
