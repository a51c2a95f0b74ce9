package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestSummarizeRoundsAndRatios(t *testing.T) {
	res := func(sc, phase string, round int, p50, rps, cpu float64) Result {
		return Result{Scenario: sc, Phase: phase, Round: round, Requests: 10, OK: 9, Errors: 1, Codes: map[string]int{"200": 9},
			P50Ms: p50, P95Ms: 2 * p50, RPS: rps, CPUms: map[string]float64{"total": cpu, "main": cpu / 2}}
	}
	var rs []Result
	// Three rounds; the reference is steady, the candidate has one outlier round.
	for i, x := range []struct{ p50, rps float64 }{{50, 20}, {60, 10}, {40, 22}} {
		r := i + 1
		rs = append(rs, res(ScenarioSubWorkflow, "sequential", r, 100, 0, 0), res("fn", "sequential", r, x.p50, 0, 0))
		rs = append(rs, res(ScenarioSubWorkflow, "concurrent", r, 300, 20, 100), res("fn", "concurrent", r, 300, x.rps, 110))
	}
	sum := summarizeRounds(rs)
	if len(sum) != 4 {
		t.Fatalf("want 4 rows (2 scenarios x 2 phases), got %d: %+v", len(sum), sum)
	}
	var fnSeq, fnConc Result
	for _, r := range sum {
		switch {
		case r.Scenario == "fn" && r.Phase == "sequential":
			fnSeq = r
		case r.Scenario == "fn" && r.Phase == "concurrent":
			fnConc = r
		}
	}
	if fnSeq.P50Ms != 50 || fnSeq.P95Ms != 100 || fnSeq.Requests != 30 || fnSeq.Errors != 3 || fnSeq.Codes["200"] != 27 {
		t.Errorf("fn sequential medians/sums: %+v", fnSeq)
	}
	if fnConc.RPS != 20 || fnConc.CPUms["total"] != 110 || fnConc.CPUms["main"] != 55 {
		t.Errorf("fn concurrent medians: %+v", fnConc)
	}
	scs := []Scenario{{Name: ScenarioSubWorkflow}, {Name: "fn"}}
	rat := ratios(rs, "", scs)
	if len(rat) != 1 || rat[0].Scenario != "fn" || rat[0].Ref != ScenarioSubWorkflow {
		t.Fatalf("ratios: %+v", rat)
	}
	x := rat[0]
	if len(x.RPS) != 3 || x.RPS[1] != 0.5 || x.RPSMedian != 1 || x.SeqP50Median != 0.5 || x.CPUMedian != 1.1 {
		t.Errorf("ratio values: %+v", x)
	}
	if r := ratios(rs, "missing", scs); r != nil {
		t.Errorf("an unselected reference gives no ratios, got %+v", r)
	}
}

// TestCPUGroupsChargesDescendants starts a shell (as scripts/stack.sh would, with a pid file)
// whose child burns CPU: the time must show up under the shell's group name.
func TestCPUGroupsChargesDescendants(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `sh -c 'i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done' & wait`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := os.WriteFile(filepath.Join(dir, "burner.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+" 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := cpuGroups{pidDir: dir}
	before := g.snapshot()
	if _, ok := before["burner"]; !ok {
		t.Fatalf("the group of the pid file is missing: %v", before)
	}
	var after cpuTicks
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		after = g.snapshot()
		if after["burner"]-before["burner"] >= 10 { // 100 ms of CPU, all of it in the child
			break
		}
	}
	per := perRequest(before, after, 2)
	if per["burner"] < 50 || per["total"] < per["burner"] {
		t.Errorf("CPU of the child is not charged to its group: %v (before %v, after %v)", per, before, after)
	}
	if (cpuGroups{}).snapshot() != nil || perRequest(nil, after, 1) != nil {
		t.Error("without a pid dir there is no accounting")
	}
}
