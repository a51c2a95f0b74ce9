package bench

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process facts the scale benchmark reports per sidecar, read from /proc (Linux only; on other
// systems they stay zero and the table says "-").

// stackPIDs reads the pid files scripts/stack.sh writes: name (main, sidecar-worker1, ...) -> pid.
func stackPIDs(pidDir string) map[string]int {
	out := map[string]int{}
	readPIDFiles(pidDir, func(name string, pid int) { out[name] = pid })
	return out
}

// readPIDFiles calls found for each pid file of pidDir (in name order) whose first field is a
// number: the file's name without ".pid", and that pid. No pidDir, no calls.
func readPIDFiles(pidDir string, found func(name string, pid int)) {
	if pidDir == "" {
		return
	}
	files, _ := filepath.Glob(filepath.Join(pidDir, "*.pid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		fields := strings.Fields(string(b))
		if len(fields) == 0 {
			continue
		}
		if pid, err := strconv.Atoi(fields[0]); err == nil {
			found(strings.TrimSuffix(filepath.Base(f), ".pid"), pid)
		}
	}
}

// rssKB is the resident set size of one process (VmRSS), 0 when unknown.
func rssKB(pid int) int64 {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				v, _ := strconv.ParseInt(fields[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// socketInodes returns the inodes of the sockets process pid holds open.
func socketInodes(pid int) map[string]bool {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, e := range entries {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			out[strings.TrimSuffix(ino, "]")] = true
		}
	}
	return out
}

// tcpPeers maps the inode of every TCP socket on this host to "localport>remoteport", from
// /proc/net/tcp and tcp6.
func tcpPeers() map[string][2]int {
	out := map[string][2]int{}
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		for i, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if i == 0 || len(f) < 10 {
				continue
			}
			out[f[9]] = [2]int{hexPort(f[1]), hexPort(f[2])}
		}
	}
	return out
}

// hexPort is the port of a /proc/net/tcp address ("0100007F:18EA").
func hexPort(addr string) int {
	_, p, ok := strings.Cut(addr, ":")
	if !ok {
		return 0
	}
	v, _ := strconv.ParseInt(p, 16, 32)
	return int(v)
}

// localPortsTo returns the local ports of pid's TCP connections to remotePort: the addresses
// Redis shows for that process's connections in CLIENT LIST.
func localPortsTo(pid, remotePort int, peers map[string][2]int) map[int]bool {
	out := map[int]bool{}
	for ino := range socketInodes(pid) {
		if p, ok := peers[ino]; ok && p[1] == remotePort && p[0] != 0 {
			out[p[0]] = true
		}
	}
	return out
}
