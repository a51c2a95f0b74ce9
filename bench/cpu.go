package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuGroups names the processes whose CPU time a phase is charged with: every process started by
// scripts/stack.sh (from its pid files) with all its descendants (a sidecar's spawned runner counts
// as the sidecar's), plus PostgreSQL's processes by name when the stack uses it. Reading /proc
// per phase is what lets the report say where the time of a call goes, process by process.
type cpuGroups struct {
	pidDir string
}

// cpuTicks is CPU time (user + system) in clock ticks per group, read at one moment.
type cpuTicks map[string]int64

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc/<pid>/stat on every architecture Go
// runs n8n on; reading it through sysconf would need cgo.
const clockTicks = 100

// snapshot reads the CPU time of every group; nil when /proc or the pid files are missing (not
// Linux, or the stack was not started by scripts/stack.sh).
func (g cpuGroups) snapshot() cpuTicks {
	if g.pidDir == "" {
		return nil
	}
	tops := map[int]string{}
	readPIDFiles(g.pidDir, func(name string, pid int) { tops[pid] = name })
	if len(tops) == 0 {
		return nil
	}
	procs, err := readProcs()
	if err != nil {
		return nil
	}
	out := cpuTicks{}
	for pid, p := range procs {
		group := groupOf(pid, procs, tops)
		if group == "" && strings.HasPrefix(p.comm, "postgres") {
			group = "postgres"
		}
		if group != "" {
			out[group] += p.ticks
		}
	}
	return out
}

// proc is what snapshot needs of one process.
type proc struct {
	ppid  int
	ticks int64 // CPU time with that of its reaped children
	comm  string
}

// readProcs reads every process of /proc; one that exits meanwhile or cannot be read is left out.
func readProcs() (map[int]proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	procs := map[int]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		if p, ok := parseProcStat(string(b)); ok {
			procs[pid] = p
		}
	}
	return procs, nil
}

// parseProcStat reads /proc/<pid>/stat. The name is in parentheses and may hold both spaces and
// parentheses, so the fields start after the last ')'.
func parseProcStat(s string) (proc, bool) {
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open || closing+2 > len(s) {
		return proc{}, false
	}
	// After "pid (comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
	// utime stime cutime cstime. cutime/cstime hold the reaped children: a PostgreSQL backend
	// or a runner that exits during the phase keeps counting through its parent.
	f := strings.Fields(s[closing+2:])
	if len(f) < 15 {
		return proc{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return proc{ppid: ppid, ticks: ticks, comm: s[open+1 : closing]}, true
}

// groupOf is the group of the nearest of pid and its ancestors (64 at most) that a pid file names;
// "" when none does.
func groupOf(pid int, procs map[int]proc, tops map[int]string) string {
	for x, depth := pid, 0; depth < 64; depth++ {
		if name, ok := tops[x]; ok {
			return name
		}
		q, ok := procs[x]
		if !ok || q.ppid == x {
			return ""
		}
		x = q.ppid
	}
	return ""
}

// perRequest turns two snapshots into CPU milliseconds per request, group by group, plus "total".
func perRequest(before, after cpuTicks, requests int) map[string]float64 {
	if before == nil || after == nil || requests <= 0 {
		return nil
	}
	out := map[string]float64{}
	var total int64
	for g, t := range after {
		d := t - before[g] // a group that appeared meanwhile started from zero
		if d < 0 {
			d = 0 // restarted meanwhile: its time is unknown, not negative
		}
		total += d
		out[g] = round(float64(d) * 1000 / clockTicks / float64(requests))
	}
	out["total"] = round(float64(total) * 1000 / clockTicks / float64(requests))
	return out
}
