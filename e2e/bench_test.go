package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/bench"
)

// TestBenchBaselineScenariosWork runs every baseline scenario of `n8n-fn bench` with a tiny load:
// the scenarios deploy, answer correctly (each answer is checked) and clean up after themselves.
// It proves the benchmark works, it measures nothing.
func TestBenchBaselineScenariosWork(t *testing.T) {
	s := NeedStack(t)
	var log strings.Builder
	rep, err := bench.Run(Ctx(t, 3*time.Minute), bench.Env{Client: s.Client, Stack: s.Env}, bench.Baseline(),
		bench.Config{Warmup: 1, Sequential: 3, Clients: 2, Duration: 500 * time.Millisecond, Pause: -1}, &log)
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2*len(bench.Baseline()) {
		t.Fatalf("want a sequential and a concurrent result per scenario, got %d", len(rep.Results))
	}
	for _, r := range rep.Results {
		// A call without an answer fails too: the stack keeps finished Bull jobs so that n8n does
		// not lose the result of a fast execution (README, "Notes on n8n 2.41.1").
		if r.Errors != 0 || r.OK == 0 || r.P50Ms <= 0 {
			t.Errorf("%s %s: %d ok, %d errors (first: %s), p50 %.1f ms", r.Scenario, r.Phase, r.OK, r.Errors, r.FirstError, r.P50Ms)
		}
	}
	// No workflow of this run is left behind (bench names them "bench <path>...").
	wfs, err := s.Client.ListWorkflows(Ctx(t, 30*time.Second), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(log.String(), "\n") {
		_, path, ok := strings.Cut(line, "POST /webhook/")
		if !ok {
			continue
		}
		path = strings.TrimSuffix(path, ")")
		for _, w := range wfs {
			if strings.Contains(w.Name, path) {
				t.Errorf("workflow %q (%s) left behind", w.Name, w.ID)
			}
		}
	}
}
