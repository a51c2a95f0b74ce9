package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestCPUGroupsPidFilesAndPostgres pins how snapshot finds its groups: a pid file's first field
// (more fields are fine), files that are empty, not a number or not *.pid ignored, a process
// outside every group charged to "postgres" when its name starts so, and no snapshot at all when
// no pid file names a process.
func TestCPUGroupsPidFilesAndPostgres(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("bad.pid", "x 1\n")
	write("empty.pid", " \n")
	if got := (cpuGroups{pidDir: dir}).snapshot(); got != nil {
		t.Fatalf("no usable pid file, yet a snapshot: %v", got)
	}
	start := func(path string, args ...string) *exec.Cmd {
		cmd := exec.Command(path, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	// A copy of sleep whose process name starts with "postgres", in no group.
	pg := filepath.Join(t.TempDir(), "postgres-pin")
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pg, b, 0o755); err != nil {
		t.Fatal(err)
	}
	start(pg, "30")
	top := start("sh", "-c", sleep+" 30 & wait")
	write("top.pid", strconv.Itoa(top.Process.Pid)+" extra fields\n")
	write("note.txt", strconv.Itoa(top.Process.Pid)+"\n")
	time.Sleep(100 * time.Millisecond) // the shell starts its child
	got := (cpuGroups{pidDir: dir}).snapshot()
	for _, g := range []string{"top", "postgres"} {
		if _, ok := got[g]; !ok {
			t.Errorf("group %q missing: %v", g, got)
		}
	}
	for _, g := range []string{"bad", "empty", "note", "note.txt", ""} {
		if _, ok := got[g]; ok {
			t.Errorf("group %q should not exist: %v", g, got)
		}
	}
	if got := stackPIDs(dir); len(got) != 1 || got["top"] != top.Process.Pid {
		t.Errorf("stackPIDs = %v", got)
	}
}

// TestParseProcStat pins the reading of one /proc/<pid>/stat line: the name may hold spaces and
// parentheses (the last ')' ends it), CPU time is utime+stime+cutime+cstime.
func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		stat  string
		ok    bool
		ppid  int
		ticks int64
		comm  string
	}{
		{"42 (sh) S 7 42 42 0 -1 4194560 1 2 3 4 10 20 30 40 20 0 1 0", true, 7, 100, "sh"},
		{"42 (a (b) c) R 1 0 0 0 0 0 0 0 0 0 1 1 1 1 x", true, 1, 4, "a (b) c"},
		{"42 (short) S 1 2 3", false, 0, 0, ""},
		{"42 no parens S 1 0 0 0 0 0 0 0 0 0 1 1 1 1", false, 0, 0, ""},
		{"42 (end)", false, 0, 0, ""},
		{"42 (x) S y 0 0 0 0 0 0 0 0 0 z 1 1 1", true, 0, 3, "x"},
	} {
		p, ok := parseProcStat(tc.stat)
		if ok != tc.ok || (ok && (p.ppid != tc.ppid || p.ticks != tc.ticks || p.comm != tc.comm)) {
			t.Errorf("parseProcStat(%q) = %+v, %v", tc.stat, p, ok)
		}
	}
}
