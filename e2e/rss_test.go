package e2e

// Peak memory of the sidecars and workers for big payloads (issue 10, item 2): a 200 MB param
// (refused), a 30 MB function result (refused at the default result limit, passing with the limit
// raised) and a 10,000-item call. Opt-in: it restarts the stack's runners twice and moves hundreds
// of MB, so it runs only with N8N_FN_E2E_RSS=1 (README, "Sidecar memory"):
//
//	N8N_FN_E2E_RSS=1 go test -count=1 -run TestSidecarPeakRSS -v ./e2e
//
// Peaks are VmHWM from /proc/<pid>/status, reset before each scenario (clear_refs 5).

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

const mib = 1 << 20

// stackProc is one process of the stack, by its pid file name ("sidecar-worker1", "worker1").
type stackProc struct {
	name string
	pid  int
}

func stackProcs(t *testing.T, s *Stack, patterns ...string) []stackProc {
	t.Helper()
	var out []stackProc
	for _, pat := range patterns {
		files, _ := filepath.Glob(filepath.Join(s.Env.Vars["N8N_STACK_DIR"], "pids", pat))
		for _, f := range files {
			raw, err := os.ReadFile(f)
			fields := strings.Fields(string(raw))
			if err != nil || len(fields) == 0 {
				continue
			}
			pid, err := strconv.Atoi(fields[0])
			if err != nil {
				continue
			}
			out = append(out, stackProc{name: strings.TrimSuffix(filepath.Base(f), ".pid"), pid: pid})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	if len(out) == 0 {
		t.Fatalf("no %v pid files under %s/pids", patterns, s.Env.Vars["N8N_STACK_DIR"])
	}
	return out
}

// procKB reads one "Vm...:" field of /proc/<pid>/status in kB.
func procKB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb
		}
	}
	t.Fatalf("process %d has no %s", pid, field)
	return 0
}

// resetPeak sets VmHWM back to the current RSS (Linux clear_refs 5).
func resetPeak(t *testing.T, p stackProc) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset the peak RSS of %s: %v", p.name, err)
	}
}

// rssRow is one line of the table.
type rssRow struct {
	scenario              string
	payload               int // bytes
	outcome               string
	sidecar               string
	sidecarIdle, sidecarP int // kB: VmRSS before, VmHWM during
	worker                string
	workerIdle, workerP   int
	took                  time.Duration
}

func TestSidecarPeakRSS(t *testing.T) {
	if os.Getenv("N8N_FN_E2E_RSS") != "1" {
		t.Skip("SKIP: moves hundreds of MB and restarts the stack's runners; set N8N_FN_E2E_RSS=1 to measure")
	}
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s", s.Env.RunnerKind)
	}
	echo := UniqueName(t, "rss")
	functionWorkflow(t, s, echo, map[string]any{})
	big := UniqueName(t, "rss30")
	s.Deploy(t, Chain("e2e rss function "+big, spread(
		WebhookNode(big+"/fn"),
		fnDirective("Function", map[string]any{"op": "function", "name": big}),
		CodeNode("Make", fmt.Sprintf("return [{json: {s: 'r'.repeat(%d)}}];", 30*mib)),
		fnDirective("Return", map[string]any{"op": "return"}),
	)...))
	caller := func(name string, nodes ...Node) string {
		path := UniqueName(t, name)
		s.Deploy(t, Chain("e2e rss "+path, spread(append([]Node{WebhookNode(path)}, nodes...)...)...))
		return path
	}
	p200 := caller("rss-p200",
		CodeNode("Big", fmt.Sprintf("return [{json: {s: 'p'.repeat(%d)}}];", 200*mib)),
		fnDirective("Call", map[string]any{"op": "call", "function": echo, "timeoutMs": 120000}))
	r30 := caller("rss-r30",
		fnDirective("Call", map[string]any{"op": "call", "function": big, "timeoutMs": 120000}),
		CodeNode("Size", "return [{json: {len: $input.first().json.s.length}}];"))
	const itemPad = 80
	i10k := caller("rss-i10k",
		CodeNode("Items", fmt.Sprintf("return Array.from({length: 10000}, (_, i) => ({json: {i, name: 'item-' + i, pad: 'i'.repeat(%d)}}));", itemPad)),
		fnDirective("Call", map[string]any{"op": "call", "function": echo, "mode": "allItems", "timeoutMs": 120000}),
		CodeNode("Count", "return [{json: {n: $input.all().length}}];"))
	itemsBytes := 0
	for i := range 10000 {
		itemsBytes += len(fmt.Sprintf(`{"i":%d,"name":"item-%d","pad":"%s"}`, i, i, strings.Repeat("i", itemPad))) + 1
	}

	// Each scenario starts on freshly started sidecars (a Go process keeps memory it no longer
	// uses for a while, so one scenario's peak would be the next one's idle).
	restartRunners := func(extra ...string) {
		cmd := exec.Command("../scripts/stack.sh", "restart-runners")
		cmd.Env = append(append(os.Environ(), "N8N_FN_NO_BUILD=1"), extra...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("scripts/stack.sh restart-runners %v: %v\n%s", extra, err, out)
		}
		waitFunctionServed(t, s)
	}
	// N8N_FN_E2E_RSS_NORESTART=1 measures the runners as they run (e.g. with N8N_FN_PPROF=true).
	noRestart := os.Getenv("N8N_FN_E2E_RSS_NORESTART") != ""
	if !noRestart {
		t.Cleanup(func() { restartRunners() })
	}
	var rows []rssRow
	only := os.Getenv("N8N_FN_E2E_RSS_ONLY") // run only the scenarios whose name holds this
	measure := func(scenario string, payload int, path string, wantOK bool, want string, env ...string) {
		if !strings.Contains(scenario, only) {
			return
		}
		if !noRestart {
			restartRunners(env...)
		}
		sidecars := stackProcs(t, s, "sidecar-*.pid")
		workers := stackProcs(t, s, "worker*.pid", "main.pid")
		idle := map[string]int{}
		for _, p := range append(append([]stackProc{}, sidecars...), workers...) {
			idle[p.name] = procKB(t, p.pid, "VmRSS")
			resetPeak(t, p)
		}
		start := time.Now()
		resp, err := s.Client.CallWebhook(Ctx(t, 5*time.Minute), http.MethodPost, path, []byte(`{}`))
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%s: %v", scenario, err)
		}
		outcome := fmt.Sprintf("HTTP %d", resp.Status)
		switch {
		case wantOK && resp.Status != http.StatusOK:
			t.Errorf("%s: want success, got HTTP %d %s", scenario, resp.Status, clip(resp.Body))
		case wantOK && !strings.Contains(string(resp.Body), want):
			t.Errorf("%s: answer %s does not hold %s", scenario, clip(resp.Body), want)
		case !wantOK && resp.Status == http.StatusOK:
			t.Errorf("%s: want a refusal, got HTTP 200 %s", scenario, clip(resp.Body))
		case !wantOK:
			outcome = "refused"
		default:
			outcome = "passed"
		}
		row := rssRow{scenario: scenario, payload: payload, outcome: outcome, took: took}
		for _, p := range sidecars {
			peak := procKB(t, p.pid, "VmHWM")
			t.Logf("%s: %s %d -> %d MB", scenario, p.name, idle[p.name]/1024, peak/1024)
			if peak-idle[p.name] > row.sidecarP-row.sidecarIdle {
				row.sidecar, row.sidecarIdle, row.sidecarP = p.name, idle[p.name], peak
			}
		}
		for _, p := range workers {
			if peak := procKB(t, p.pid, "VmHWM"); peak-idle[p.name] > row.workerP-row.workerIdle {
				row.worker, row.workerIdle, row.workerP = p.name, idle[p.name], peak
			}
		}
		rows = append(rows, row)
		// Target (issue 10): a sidecar's peak stays within about 2x the payload plus its idle size
		// ("about": 10 % and 16 MB over; a passing result is held twice by the function's sidecar
		// while it encodes the reply, see README).
		if limit := row.sidecarIdle + 22*payload/10/1024 + 16*1024; row.sidecarP > limit {
			t.Errorf("%s: %s peaked at %d MB, over 2x the payload (%d MB) + idle (%d MB)",
				scenario, row.sidecar, row.sidecarP/1024, payload/mib, row.sidecarIdle/1024)
		}
	}

	measure("200 MB param", 200*mib, p200, false, "")
	measure("30 MB result, default limit", 30*mib, r30, false, "")
	measure("10,000-item call (allItems)", itemsBytes, i10k, true, `"n":`)

	measure("30 MB result, limit raised to 64 MiB", 30*mib, r30, true, fmt.Sprintf(`"len":%d`, 30*mib), "N8N_FN_MAX_RESULT_BYTES=67108864")
	t.Log(rowsTable(rows))
}

func rowsTable(rows []rssRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n| scenario | payload | outcome | sidecar idle -> peak (VmHWM) | worker idle -> peak | took |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %.1f MB | %s | %s %d -> %d MB | %s %d -> %d MB | %.1f s |\n", r.scenario, float64(r.payload)/mib, r.outcome,
			r.sidecar, r.sidecarIdle/1024, r.sidecarP/1024, r.worker, r.workerIdle/1024, r.workerP/1024, r.took.Seconds())
	}
	return b.String()
}

// waitFunctionServed retries a call (the sidecars were restarted: discovery registers the
// functions again within seconds) until it no longer fails for want of a live sidecar.
func waitFunctionServed(t *testing.T, s *Stack) {
	t.Helper()
	ports := strings.Split(s.Env.Vars["N8N_FN_HEALTH_PORTS"], ",")
	deadline := time.Now().Add(60 * time.Second)
	for _, p := range ports {
		for {
			resp, err := http.Get("http://127.0.0.1:" + strings.TrimSpace(p) + "/readyz")
			if err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("sidecar on health port %s not ready after the restart", p)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	time.Sleep(5 * time.Second) // one discovery round and heartbeat after ready
}
