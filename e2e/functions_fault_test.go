package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fnDirective is a Code node holding an n8n-fn directive.
func fnDirective(name string, d map[string]any) Node {
	b, _ := json.Marshal(d)
	return codeNodeMode(name, "runOnceForAllItems", "/* @n8n-fn "+string(b)+" */\nthrow new Error(\"n8n-fn: this node must run on the n8n-fn sidecar runner\");\n")
}

// TestFunctionSurvivesWorkerDeath kills the worker that runs a function's execution (kill -9)
// while its caller waits on the other worker. n8n does not retry the stalled job (it marks the
// execution crashed, after about 100 s), so n8n-fn must run the call again on a live worker, and
// does so as soon as the dead worker's sidecar found its n8n process gone (its reconnect is
// refused) and a dispatcher's watch saw it: issue 12's target is 15 s plus the body's 8 s; the
// caller still gets exactly one result. It restarts the killed worker with scripts/stack.sh up afterwards.
// It disturbs the shared stack, so it only runs with N8N_FN_E2E_FAULTS=1.
func TestFunctionSurvivesWorkerDeath(t *testing.T) {
	if os.Getenv("N8N_FN_E2E_FAULTS") != "1" {
		t.Skip("SKIP: kills a worker of the shared stack; set N8N_FN_E2E_FAULTS=1 to run it")
	}
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; functions need the n8n-fn sidecars", s.Env.RunnerKind)
	}
	if len(s.Env.WorkerBrokerPorts) < 2 {
		t.Skip("SKIP: needs two workers")
	}
	name := UniqueName(t, "fault")
	fnWF := s.Deploy(t, Chain("n8n-fn fault "+name+" function", spread(
		WebhookNode(name+"/fn"),
		fnDirective("Function", map[string]any{"op": "function", "name": name, "timeoutMs": 240000}),
		codeNodeMode("Slow body", "runOnceForAllItems",
			"await new Promise(r => setTimeout(r, 8000));\nreturn $input.all().map(i => ({ json: { ...i.json, done: true, worker: $execution.customData.get('n8nfn_servedBy') } }));"),
		fnDirective("Return", map[string]any{"op": "return"}),
	)...))
	callerWF := s.Deploy(t, Chain("n8n-fn fault "+name+" caller", spread(
		WebhookNode(name+"/call"),
		fnDirective("Call", map[string]any{"op": "call", "function": name, "timeoutMs": 230000}),
	)...))
	t.Cleanup(func() { restoreStack(t) })

	type answer struct {
		status int
		body   []byte
		err    error
	}
	for attempt := 1; attempt <= 3; attempt++ {
		done := make(chan answer, 1)
		go func() {
			ctx := Ctx(t, 5*time.Minute)
			// n8n notices a dead worker's job only after its lock expires (60 s) and a stalled check
			// (30 s): the caller waits longer than the API client's default timeout.
			c := *s.Client
			c.HTTP = &http.Client{}
			r, err := c.CallWebhook(ctx, http.MethodPost, name+"/call", []byte(`{"x":1}`))
			done <- answer{r.Status, r.Body, err}
		}()
		fnExec := waitRunning(t, s, fnWF, 60*time.Second)
		callerExec := waitRunning(t, s, callerWF, 10*time.Second)
		fnWorker := workerOf(t, s, fnExec)
		callerWorker := workerOf(t, s, callerExec)
		if fnWorker == "" || fnWorker == callerWorker {
			t.Logf("attempt %d: function on %q, caller on %q: cannot kill one without the other; trying again", attempt, fnWorker, callerWorker)
			<-done
			continue
		}
		pid := readPid(t, s, fnWorker)
		t.Logf("function execution %s runs on %s (pid %d), caller %s on %s: killing %s", fnExec, fnWorker, pid, callerExec, callerWorker, fnWorker)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s: %v", fnWorker, err)
		}
		start := time.Now()
		a := <-done
		if a.err != nil {
			t.Fatalf("caller: %v", a.err)
		}
		took := time.Since(start)
		t.Logf("caller answered after the kill in %s: HTTP %d %s", took.Round(time.Second), a.status, clip(a.body))
		// The killed worker's sidecar records its gone n8n process within a second, the
		// dispatcher's watch (every 2 s) runs the call again, then the body takes 8 s. n8n alone
		// would fail the stalled job only after about 100 s.
		if took > 23*time.Second {
			t.Errorf("the rerun came %s after the kill, issue 12's target is 15 s + the 8 s body: the dispatcher did not notice the gone worker early", took.Round(time.Second))
		}
		var items []map[string]any
		if a.status != http.StatusOK || json.Unmarshal(a.body, &items) != nil || len(items) != 1 || items[0]["done"] != true {
			t.Fatalf("want one result item with done=true, got HTTP %d %s", a.status, clip(a.body))
		}
		if w, _ := items[0]["worker"].(string); w == fnWorker {
			t.Fatalf("the result claims to come from the killed worker %s", w)
		}
		return
	}
	t.Skip("SKIP: function and caller always ran on the same worker")
}

// waitRunning returns the id of the newest running execution of a workflow. The public API lists
// running executions only when asked for status=running.
func waitRunning(t *testing.T, s *Stack, wfID string, d time.Duration) string {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if id := runningExecution(t, s, wfID); id != "" {
			return id
		}
	}
	t.Fatalf("no running execution of workflow %s after %s", wfID, d)
	return ""
}

// workerOf finds the worker whose log says it started the execution.
func workerOf(t *testing.T, s *Stack, execID string) string {
	t.Helper()
	want := "started execution " + execID + " "
	for i := 0; i < 20; i++ {
		for _, w := range s.WorkerNames() {
			b, _ := os.ReadFile(s.LogPath(w))
			if strings.Contains(string(b), want) {
				return w
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return ""
}

func readPid(t *testing.T, s *Stack, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(s.Env.LogDir), "pids", name+".pid"))
	if err != nil {
		t.Fatalf("pid of %s: %v", name, err)
	}
	// "PID" or "PID STARTTIME" (scripts/stack.sh guards against pid reuse with the start time).
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		t.Fatalf("pid file of %s is empty", name)
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil {
		t.Fatalf("pid of %s: %v", name, err)
	}
	return pid
}

// restoreStack starts what is missing (the killed worker) again.
func restoreStack(t *testing.T) {
	cmd := exec.Command("../scripts/stack.sh", "up")
	cmd.Env = append(os.Environ(), "RUNNER_KIND=sidecar")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("scripts/stack.sh up after the fault: %v\n%s", err, out)
	}
}
