package runner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/n8n-fn/n8n-fn/n8nproto"
)

// spawnEnvAllow is what the spawned runner inherits from the sidecar's environment, like n8n's
// launcher allow-list: the runner runs user code, so n8n's and our secrets stay out of it.
func spawnEnvAllow() []string {
	return []string{
		"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TERM", "GENERIC_TIMEZONE", "NODE_OPTIONS", "NODE_PATH",
		"NODE_FUNCTION_ALLOW_BUILTIN", "NODE_FUNCTION_ALLOW_EXTERNAL",
		"N8N_RUNNERS_INSECURE_MODE", "N8N_RUNNERS_GRACEFUL_SHUTDOWN_TIMEOUT", "N8N_RUNNERS_SHUTDOWN_FORCE_KILL_MARGIN",
		"N8N_RUNNERS_HEALTH_CHECK_SERVER_ENABLED", "N8N_RUNNERS_HEALTH_CHECK_SERVER_HOST", "N8N_RUNNERS_HEALTH_CHECK_SERVER_PORT",
		"N8N_SENTRY_DSN", "N8N_VERSION", "ENVIRONMENT", "DEPLOYMENT_NAME",
	}
}

// spawner keeps the official JS runner running behind the sidecar: start it with a fresh grant,
// restart it with backoff whenever it exits, stop it on shutdown.
type spawner struct {
	cfg       Config
	brokerURI string
	broker    *n8nproto.Broker
	log       *logrus.Entry

	hungAfter time.Duration // spawnHungKillAfter; shorter in tests

	stopping atomic.Bool
	lastExit atomic.Int32 // exit code of the last runner process, -1 before any exit
	mu       sync.Mutex
	cmd      *exec.Cmd     // the running process, nil between runs
	exited   chan struct{} // closed when the current process has exited
	done     chan struct{} // closed when the loop has ended
}

func newSpawner(cfg Config, brokerURI string, broker *n8nproto.Broker, log *logrus.Entry) *spawner {
	sp := &spawner{cfg: cfg, brokerURI: brokerURI, broker: broker, log: log, done: make(chan struct{}), hungAfter: spawnHungKillAfter}
	sp.lastExit.Store(-1)
	return sp
}

// start runs the restart loop until ctx ends or stopRestarting is called.
func (sp *spawner) start(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(sp.done)
		sp.loop(ctx)
	}()
}

const (
	// a spawned runner whose connection the broker dropped (missed heartbeats, silent) exits by itself
	// within moments; one still alive this long after is hung and gets SIGKILL, so a new one can start
	spawnHungKillAfter = 10 * time.Second
	spawnBackoffMin    = 500 * time.Millisecond
	spawnBackoffMax    = 30 * time.Second
	// a run this long counts as healthy: the next failure starts the backoff over
	spawnHealthyRun = 60 * time.Second
)

func (sp *spawner) loop(ctx context.Context) {
	backoff := spawnBackoffMin
	for ctx.Err() == nil && !sp.stopping.Load() {
		began := time.Now()
		code, err := sp.runOnce(ctx)
		if sp.stopping.Load() || ctx.Err() != nil {
			return
		}
		ran := time.Since(began)
		if ran >= spawnHealthyRun {
			backoff = spawnBackoffMin
		}
		fields := logrus.Fields{"exit": code, "ran": ran.Round(time.Millisecond).String(), "restart_in": backoff.String()}
		if err != nil {
			sp.log.WithError(err).WithFields(fields).Error("could not start the official runner")
		} else {
			sp.log.WithFields(fields).Warn("official runner exited; restarting")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, spawnBackoffMax)
	}
}

// runOnce starts the runner and waits for it to exit. It returns the exit code.
func (sp *spawner) runOnce(ctx context.Context) (int, error) {
	cmd := exec.Command(sp.cfg.RunnerCommand, sp.cfg.RunnerArgs...)
	cmd.Dir = sp.cfg.RunnerDir
	grant := sp.broker.MintGrant()
	cmd.Env = sp.env(grant)
	// Own process group so signals reach node only, and SIGKILL if the sidecar dies without shutdown.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return -1, fmt.Errorf("runner stdout: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return -1, fmt.Errorf("runner stderr: %w", err)
	}
	sp.mu.Lock()
	if sp.stopping.Load() {
		sp.mu.Unlock()
		return 0, nil
	}
	if err := cmd.Start(); err != nil {
		sp.mu.Unlock()
		return -1, fmt.Errorf("start %s %s in %s: %w", sp.cfg.RunnerCommand, strings.Join(sp.cfg.RunnerArgs, " "), sp.cfg.RunnerDir, err)
	}
	exited := make(chan struct{})
	sp.cmd, sp.exited = cmd, exited
	sp.mu.Unlock()
	log := sp.log.WithField("pid", cmd.Process.Pid)
	log.Info("official runner started")

	go sp.killIfHung(ctx, cmd, exited, grant)

	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() { defer pipes.Done(); forwardLines(stdout, log, logrus.InfoLevel) }()
	go func() { defer pipes.Done(); forwardLines(stderr, log, logrus.WarnLevel) }()
	pipes.Wait()
	err = cmd.Wait()
	close(exited)
	sp.mu.Lock()
	sp.cmd = nil
	sp.mu.Unlock()
	code := cmd.ProcessState.ExitCode()
	sp.lastExit.Store(int32(code))
	if sp.stopping.Load() {
		log.WithField("exit", code).Info("official runner stopped")
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return code, fmt.Errorf("wait for the runner: %w", err)
	}
	return code, nil
}

// env is the spawned runner's whole environment: the allow-list plus what it needs to find us.
func (sp *spawner) env(grant string) []string {
	var env []string
	for _, k := range spawnEnvAllow() {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env,
		"N8N_RUNNERS_TASK_BROKER_URI="+sp.brokerURI,
		"N8N_RUNNERS_GRANT_TOKEN="+grant,
		"N8N_RUNNERS_ID="+sp.runnerID(),
		fmt.Sprintf("N8N_RUNNERS_MAX_CONCURRENCY=%d", sp.cfg.MaxConcurrency),
		fmt.Sprintf("N8N_RUNNERS_MAX_PAYLOAD=%d", sp.cfg.MaxPayload),
		fmt.Sprintf("N8N_RUNNERS_TASK_TIMEOUT=%d", sp.cfg.runnerTaskTimeout()),
		// we restart it ourselves; an idle exit would only churn
		"N8N_RUNNERS_AUTO_SHUTDOWN_TIMEOUT=0",
	)
}

// runnerID is the id the spawned runner registers with at our broker.
func (sp *spawner) runnerID() string { return sp.cfg.ID + "-js" }

// killIfHung watches one runner process (known to the broker by the grant it was started with):
// once it has registered, losing its registration while the process stays alive for hungAfter means
// its event loop is stuck (the official runner exits as soon as its connection closes), so it is
// killed and the loop starts a new one.
func (sp *spawner) killIfHung(ctx context.Context, cmd *exec.Cmd, exited <-chan struct{}, grant string) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var registered bool
	var lostAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-exited:
			return
		case now := <-tick.C:
			switch {
			case sp.stopping.Load():
				return
			case sp.broker.RegisteredWithGrant(grant):
				registered, lostAt = true, time.Time{}
			case !registered:
			case lostAt.IsZero():
				lostAt = now
			case now.Sub(lostAt) >= sp.hungAfter:
				sp.log.WithField("pid", cmd.Process.Pid).Warn("official runner lost its connection but did not exit (hung): killing it")
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				return
			}
		}
	}
}

// RunnerTaskTimeout is the N8N_RUNNERS_TASK_TIMEOUT (seconds) for a runner behind a sidecar whose
// n8n has n8nSeconds: what spawn mode gives its runner, and what the runners containers of
// compose.queue-mode.yml must get (docker/compose_test.go checks it).
func RunnerTaskTimeout(n8nSeconds int) int {
	c := Config{TaskTimeout: time.Duration(n8nSeconds) * time.Second}
	return c.runnerTaskTimeout()
}

// stopRestarting makes the loop end after the current process exits (called before the broker drains,
// which makes the runner exit 0 by itself).
func (sp *spawner) stopRestarting() { sp.stopping.Store(true) }

// terminate asks the running runner to stop (SIGTERM) without waiting. 2.x runners then wait for the
// broker's drain and exit 0 either way; 1.x runners (n8n 1.123.x) know no broker:drain and exit 1 when
// the broker closes a connection they did not close themselves, so they must be told to stop first.
func (sp *spawner) terminate() {
	sp.mu.Lock()
	cmd := sp.cmd
	sp.mu.Unlock()
	if cmd != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
}

// shutdown waits for the runner to exit after the drain; past ctx it sends SIGTERM, then SIGKILL.
func (sp *spawner) shutdown(ctx context.Context) {
	sp.stopRestarting()
	sp.mu.Lock()
	cmd, exited := sp.cmd, sp.exited
	sp.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	case <-ctx.Done():
	}
	sp.log.WithField("pid", cmd.Process.Pid).Warn("official runner did not exit after the drain: sending SIGTERM")
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// forwardLines copies the runner's output into our log, one entry per line. The runner logs its own
// state only, never task data.
func forwardLines(r io.Reader, log *logrus.Entry, level logrus.Level) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if len(line) > 2000 {
			line = line[:2000] + "..."
		}
		log.Log(level, "runner: "+line)
	}
	// drain whatever is left so the process never blocks on a full pipe
	_, _ = io.Copy(io.Discard, r)
}
