package e2e

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/workflows/replay"
)

// TestFunctionsReplay runs `n8n-fn replay` on the bundled test workflows against the real stack:
// every case of test-workflows/*.cases.json must pass (basic function, caller, concurrent calls on
// both workers, factorial(5) through nested calls, chains, scopes, params, timeout, errors, no live
// function). The command is built from this tree, so the test also covers the CLI.
func TestFunctionsReplay(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; functions need the n8n-fn sidecars (scripts/stack.sh up with RUNNER_KIND=sidecar)", s.Env.RunnerKind)
	}
	ctx := Ctx(t, 10*time.Minute)
	bin := filepath.Join(t.TempDir(), "n8n-fn")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "../cmd/n8n-fn")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/n8n-fn: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(ctx, bin, "replay", "--json", "--env", s.Env.Path, "../test-workflows")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var rep replay.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("replay did not print a JSON report (%v, exit %v):\nstdout: %s\nstderr: %s", err, runErr, clip(stdout.Bytes()), clip(stderr.Bytes()))
	}
	t.Logf("replay: %d passed, %d failed, %d skipped in %.1f s (import %.1f s, functions ready after %.1f s)",
		rep.Passed, rep.Failed, rep.Skipped, rep.TotalMs/1000, rep.ImportMs/1000, rep.ReadyMs/1000)
	seen := map[string]replay.Result{}
	for _, r := range rep.Results {
		seen[strings.TrimSuffix(r.Suite, ".json")+"/"+r.Case] = r
		if r.Status != "pass" {
			t.Errorf("%s / %s: %s: %s", r.Suite, r.Case, r.Status, r.Detail)
		}
	}
	for _, must := range []string{
		"recursive-function-test/factorial(5) through 5 nested calls",
		"concurrent-calls-test/2 callers x 4 calls reach both workers",
		"function-caller-test/add two numbers",
		"function-chain-test/pipeline(3) = double(inc(3))",
	} {
		if _, ok := seen[must]; !ok {
			t.Errorf("case %q was not run", must)
		}
	}
	if r := seen["concurrent-calls-test/2 callers x 4 calls reach both workers"]; len(r.Workers) < 2 {
		t.Errorf("concurrent calls ran on %v, want both workers", r.Workers)
	}
	if runErr != nil && rep.Failed == 0 {
		t.Errorf("replay exited with %v although no case failed:\n%s", runErr, clip(stderr.Bytes()))
	}
}
