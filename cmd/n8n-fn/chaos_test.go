package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/e2e/chaos"
)

// TestWriteChaosReport: the report goes to stdout with --out -, else to the file named (default
// <cache>/chaos/chaos-<start>.json next to the stack env's directory); --check fails a report that
// misses a target and says so when none is missed.
func TestWriteChaosReport(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC)
	good := chaos.Report{StartedAt: start, Stack: "s"}
	bad := chaos.Report{StartedAt: start, Results: []chaos.Result{{Experiment: "baseline", Calls: 3, Lost: 1}}}
	var out bytes.Buffer
	if err := writeChaosReport(&out, good, "-", "", true); err != nil || !strings.HasPrefix(out.String(), "{\n  \"started_at\": \"2026-12-02T03:04:05Z\"") {
		t.Fatalf("stdout report: %v\n%s", err, out.String())
	}
	if err := writeChaosReport(&out, bad, "-", "", true); err == nil || !strings.Contains(err.Error(), "baseline: 1 of 3 calls lost") {
		t.Errorf("--check on stdout: %v", err)
	}
	if err := writeChaosReport(&out, bad, "-", "", false); err != nil {
		t.Errorf("without --check: %v", err)
	}
	out.Reset()
	envPath := filepath.Join(dir, "stack", "stack.env")
	if err := writeChaosReport(&out, good, "", envPath, true); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "chaos", "chaos-20261202T030405Z.json")
	want := "\nreport: " + file + "\ncheck: no call lost or wrong, no body completed twice for an answered caller, no error where none is allowed (baseline: none; redis-*: none from n8n-fn)\n"
	if out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	b, err := os.ReadFile(file)
	if err != nil || !json.Valid(b) || b[len(b)-1] != '\n' {
		t.Errorf("report file: %v %q", err, b)
	}
	named := filepath.Join(dir, "x", "r.json")
	if err := writeChaosReport(&out, bad, named, envPath, true); err == nil {
		t.Error("--check passed a report with a lost call")
	}
	if _, err := os.Stat(named); err != nil {
		t.Errorf("the report is written before the check: %v", err)
	}
	if err := writeChaosReport(&out, good, filepath.Join(file, "under-a-file.json"), envPath, false); err == nil || !strings.HasPrefix(err.Error(), "write report: ") {
		t.Errorf("unwritable: %v", err)
	}
}
