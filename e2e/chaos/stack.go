package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/n8n-fn/n8n-fn/n8napi"
)

// Stack is the running stack of scripts/stack.sh as the suite sees it: its processes by the pid
// files under $N8N_FN_CACHE/stack/pids, and the script to start what is missing ("up"), as a
// supervisor would.
type Stack struct {
	Env    n8napi.StackEnv
	Script string // path of scripts/stack.sh
	pids   string

	upMu sync.Mutex // one "up" at a time
}

// NewStack checks that env belongs to a stack started by scripts/stack.sh at script.
func NewStack(env n8napi.StackEnv, script string) (*Stack, error) {
	dir := env.Vars["N8N_STACK_DIR"]
	if dir == "" {
		return nil, fmt.Errorf("chaos: the stack env %s has no N8N_STACK_DIR: re-run scripts/stack.sh up", env.Path)
	}
	if env.RunnerKind != "sidecar" {
		return nil, fmt.Errorf("chaos: the stack runs RUNNER_KIND=%s; functions need the n8n-fn sidecars (RUNNER_KIND=sidecar scripts/stack.sh up)", env.RunnerKind)
	}
	if st, err := os.Stat(script); err != nil || st.IsDir() {
		return nil, fmt.Errorf("chaos: stack script %q not found (run from the repository root or pass --stack-script): %v", script, err)
	}
	return &Stack{Env: env, Script: script, pids: filepath.Join(dir, "pids")}, nil
}

// Workers lists the worker process names (worker1, ...).
func (s *Stack) Workers() []string {
	n := len(s.Env.WorkerBrokerPorts)
	if v, err := strconv.Atoi(s.Env.Vars["N8N_STACK_WORKERS"]); err == nil && v > 0 {
		n = v
	}
	out := make([]string, n)
	for i := range out {
		out[i] = "worker" + strconv.Itoa(i+1)
	}
	return out
}

// Pid returns the pid of a stack process when it runs: its pid file names it, the process has the
// start time recorded there (not a reused pid), and it is not a zombie.
func (s *Stack) Pid(name string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(s.pids, name+".pid"))
	if err != nil {
		return 0, false
	}
	pid, start, err := parsePidFile(b)
	if err != nil {
		return 0, false
	}
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	state, started, err := parseProcStat(st)
	if err != nil || state == "Z" || state == "X" || (start != "" && started != start) {
		return 0, false
	}
	return pid, true
}

// parsePidFile reads "PID" or "PID STARTTIME" (scripts/stack.sh's format).
func parsePidFile(b []byte) (pid int, start string, err error) {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, "", errors.New("empty pid file")
	}
	pid, err = strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return 0, "", fmt.Errorf("pid file: %q is not a pid", f[0])
	}
	if len(f) > 1 {
		start = f[1]
	}
	return pid, start, nil
}

// parseProcStat returns the state (field 3) and start time (field 22) of /proc/PID/stat. The
// command name (field 2) is in parentheses and may hold spaces, so fields count from the last ')'.
func parseProcStat(b []byte) (state, start string, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", "", errors.New("proc stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", "", fmt.Errorf("proc stat: %d fields after the name, want at least 20", len(f))
	}
	return f[0], f[19], nil
}

// Signal sends sig to a running stack process.
func (s *Stack) Signal(name string, sig syscall.Signal) error {
	pid, ok := s.Pid(name)
	if !ok {
		return fmt.Errorf("chaos: %s is not running (no live pid in %s)", name, s.pids)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("chaos: signal %s (pid %d): %w", name, pid, err)
	}
	return nil
}

// WaitGone waits until a stack process no longer runs (an exited process is a zombie here: its
// parent, the shell that started it, is gone and PID 1 may not reap it).
func (s *Stack) WaitGone(ctx context.Context, name string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		if _, ok := s.Pid(name); !ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("chaos: %s still running after %s", name, d)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Up runs scripts/stack.sh up for this stack (same cache, ports, workers, database and runner kind
// as stack.env says), without rebuilding the binary: it starts what is not running and waits until
// everything is ready.
func (s *Stack) Up(ctx context.Context) error {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	env, err := s.scriptEnv()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Script, "up")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("chaos: %s up: %w\n%s", s.Script, err, tailString(string(out), 1500))
	}
	return nil
}

// scriptEnv is the environment that makes scripts/stack.sh address this stack and not the default one.
func (s *Stack) scriptEnv() ([]string, error) {
	v := s.Env.Vars
	cache := filepath.Dir(v["N8N_STACK_DIR"])
	base, err := url.Parse(s.Env.BaseURL)
	if err != nil || base.Port() == "" {
		return nil, fmt.Errorf("chaos: N8N_BASE_URL %q has no port", s.Env.BaseURL)
	}
	rd, err := url.Parse(s.Env.RedisURL)
	if err != nil || rd.Port() == "" {
		return nil, fmt.Errorf("chaos: REDIS_URL %q has no port", s.Env.RedisURL)
	}
	env := append(os.Environ(),
		"N8N_FN_CACHE="+cache, "N8N_FN_STACK_PORT_BASE="+base.Port(), "REDIS_PORT="+rd.Port(),
		"RUNNER_KIND="+s.Env.RunnerKind, "N8N_FN_NO_BUILD=1")
	if w := v["N8N_STACK_WORKERS"]; w != "" {
		env = append(env, "N8N_WORKERS="+w)
	}
	if db := v["N8N_DB"]; db != "" {
		env = append(env, "DB="+db)
	}
	if nv := v["N8N_VERSION"]; nv != "" {
		env = append(env, "N8N_VERSION="+nv)
	}
	return env, nil
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
