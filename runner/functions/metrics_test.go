package functions

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/runner/metrics"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// newMetricsHarness is newHarness with the runtime's metrics.
func newMetricsHarness(t *testing.T, rs *redistest.Server, tweak func(*tunables)) (*harness, *metrics.Metrics) {
	t.Helper()
	m := metrics.New()
	h := &harness{}
	h.wf = &fnWorkflow{t: t, workflow: "wfFn", body: addBody}
	h.srv = httptest.NewServer(h.wf)
	t.Cleanup(h.srv.Close)
	h.rt = newRuntimeDeps(t, rs, "sidecar-a", h.srv.URL, tweak, Deps{Metrics: m})
	h.wf.rt = h.rt
	h.wf.dir = parseDirective(t, addFunction, workflows.ParseFunction)
	h.key = keyOf(h.wf.dir.Ref("wfFn"))
	serve(t, h.rt, h.key, "wfFn", 0)
	startRuntime(t, h.rt)
	return h, m
}

func scrapeOf(t *testing.T, m *metrics.Metrics) metrics.Scrape {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	s, err := metrics.ParseScrape(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func metricValue(s metrics.Scrape, name string, labels ...string) float64 {
	v, _ := s.Value(name, labels...)
	return v
}

// The runtime's hooks move the counters by what really happened on a real Redis: three calls
// that succeed, one the function refuses, one that times out; the queue gauges come from Redis
// at scrape time.
func TestRuntimeMetricsCountCalls(t *testing.T) {
	rs := redistest.Start(t)
	h, m := newMetricsHarness(t, rs, nil)
	fn := "function=" + h.key.String()
	// Published elsewhere (another sidecar's discovery refreshed it just now), and unpublished long ago.
	ctx := context.Background()
	for name, at := range map[string]time.Time{"elsewhere": time.Now(), "gone": time.Now().Add(-10 * time.Minute)} {
		if err := h.rt.reg.RegisterFunction(ctx, registry.FunctionRecord{Key: registry.FunctionKey{Scope: "global", Name: name}, WorkflowID: "wf-" + name, UpdatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":5000} */`, false, `{"a":1}`, `{"a":2}`, `{"a":3}`); err != nil {
		t.Fatal(err)
	}
	if _, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":5000} */`, false, `{"b":1}`); err == nil {
		t.Fatal("a call without the required param worked")
	}
	h.wf.set(func(w *fnWorkflow) { w.delay = 700 * time.Millisecond })
	if _, err := h.call(t, `/* @n8n-fn {"op":"call","function":"add","timeoutMs":300} */`, false, `{"a":1}`); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("slow call: %v, want a timeout", err)
	}
	s := scrapeOf(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"n8n_fn_calls_started_total", []string{fn}, 5},
		{"n8n_fn_calls_finished_total", []string{fn, "outcome=ok"}, 3},
		{"n8n_fn_calls_finished_total", []string{fn, "outcome=params"}, 1},
		{"n8n_fn_calls_finished_total", []string{fn, "outcome=timeout"}, 1},
		{"n8n_fn_call_duration_seconds", []string{fn, "outcome=ok"}, 3},
		{"n8n_fn_function_dispatches_total", []string{fn}, 5},
		{"n8n_fn_call_queue_wait_seconds", []string{fn}, 5},
		{"n8n_fn_function_reruns_total", []string{fn}, 0},
		{"n8n_fn_function_live_sidecars", []string{fn}, 1},
		{"n8n_fn_registry_up", nil, 1},
	} {
		if got := metricValue(s, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if v, ok := s.Value("n8n_fn_function_live_sidecars", "function=global/elsewhere"); !ok || v != 0 {
		t.Errorf("a published function nobody serves: live sidecars %v (reported %v), want 0", v, ok)
	}
	if _, ok := s.Value("n8n_fn_function_live_sidecars", "function=global/gone"); ok {
		t.Error("a function unpublished 10 min ago is still reported (it would raise N8nFnNoLiveSidecar)")
	}
	if _, ok := s.Value("n8n_fn_queue_length", "function=global/elsewhere"); ok {
		t.Error("queue gauges for a function this sidecar does not serve")
	}
	// The timed-out call's execution is still running: it holds a pending entry.
	if _, ok := s.Value("n8n_fn_queue_pending", fn); !ok {
		t.Errorf("no queue gauges for the served function: %v", s.Names())
	}
}

// The runtime writes each call's trace on the way (queued by the caller, dispatched, claimed by
// the function execution, answered): the tree from the caller's execution shows both calls, the
// executions that served them and their worker, on a real Redis.
func TestRuntimeTracesCalls(t *testing.T) {
	rs := redistest.Start(t)
	h, _ := newMetricsHarness(t, rs, nil)
	if _, err := h.callIn(t, "exec-root", `/* @n8n-fn {"op":"call","function":"add"} */`, false, `{"a":1}`, `{"a":2,"b":40}`); err != nil {
		t.Fatal(err)
	}
	tree, err := h.rt.reg.Trace(context.Background(), "exec-root")
	if err != nil {
		t.Fatal(err)
	}
	if tree.ID != "exec-root" || tree.WorkflowID != "wfCaller" || tree.Worker != "sidecar-a" || len(tree.CallTree) != 2 {
		t.Fatalf("top of the tree: %+v", tree.TraceExecution)
	}
	execs := map[string]bool{}
	for i, c := range tree.CallTree {
		if c.Function != h.key.String() || c.Outcome != "ok" || c.Dispatches != 1 || c.ParamsBytes == 0 || c.CallerNode != "Call" ||
			c.Queued.IsZero() || c.Dispatched.Before(c.Queued) || c.Finished.Before(c.Dispatched) {
			t.Errorf("call %d: %+v", i, c.TraceCall)
		}
		if c.Served == nil || !strings.HasPrefix(c.Served.ID, "wfFn-exec-") || c.Served.WorkflowID != "wfFn" || c.Served.Worker != "sidecar-a" || c.Served.Served != c.ID {
			t.Fatalf("call %d served by %+v", i, c.Served)
		}
		execs[c.Served.ID] = true
		// From the function execution, the same tree.
		up, err := h.rt.reg.Trace(context.Background(), c.Served.ID)
		if err != nil || up.ID != "exec-root" || len(up.CallTree) != 2 {
			t.Errorf("trace from %s: %+v %v", c.Served.ID, up, err)
		}
	}
	if len(execs) != 2 {
		t.Errorf("two calls served by %v", execs)
	}
}
