// Package redistest gives tests a real Redis server.
//
// Start picks, in this order:
//
//  1. REDIS_URL when it is set: a shared server, so every Server gets a unique key prefix
//     (Prefix) and its keys are deleted (SCAN + UNLINK) when the test ends. Nothing is flushed,
//     so packages running in parallel against the same server do not clash.
//  2. a container through dockertest when a Docker engine answers (DOCKER_HOST or the default socket),
//     image REDIS_TEST_IMAGE (default redis:7-alpine);
//  3. a redis-server process (REDIS_SERVER_BIN, else redis-server on PATH, else /usr/bin/redis-server)
//     on a free loopback port, in t.TempDir(), without persistence files except the one written by
//     Stop so that Restart keeps the data like a persisted production Redis would.
//
// Stop/Resume/Restart keep the port so clients reconnect to the same address; they skip the test
// when the server is shared (REDIS_URL).
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
	"github.com/redis/go-redis/v9"
)

// InstallHint tells a developer how to get a Redis for the tests.
const InstallHint = "install redis-server (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), " +
	"or set REDIS_URL=redis://host:port/db to use a running server, or make a Docker engine reachable"

type mode int

const (
	modeShared mode = iota
	modeDocker
	modeProcess
)

// Server is one Redis for one test (or a shared one reached through REDIS_URL).
type Server struct {
	t      testing.TB
	mode   mode
	url    string
	addr   string
	prefix string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	dir     string
	bin     string
	port    int
	pool    *dockertest.Pool
	res     *dockertest.Resource
	clients []*redis.Client
}

// Start returns a running Redis; everything it started is stopped in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, prefix: "t" + randomHex(6) + ":"}
	switch {
	case os.Getenv("REDIS_URL") != "":
		s.startShared()
	case dockerReachable():
		s.startDocker()
	default:
		s.startProcess()
	}
	t.Cleanup(s.cleanup)
	return s
}

// URL is a redis:// URL for the server (with the DB index when shared).
func (s *Server) URL() string { return s.url }

// Addr is host:port.
func (s *Server) Addr() string { return s.addr }

// Prefix is a key prefix unique to this Server; tests must put all their keys under it.
func (s *Server) Prefix() string { return s.prefix }

// Client returns a new client for the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	s.t.Helper()
	opt, err := redis.ParseURL(s.url)
	if err != nil {
		s.t.Fatalf("redistest: parse %q: %v", s.url, err)
	}
	c := redis.NewClient(opt)
	s.mu.Lock()
	s.clients = append(s.clients, c)
	s.mu.Unlock()
	return c
}

// CanRestart reports whether Stop/Resume/Restart work (not on a shared REDIS_URL server).
func (s *Server) CanRestart() bool { return s.mode != modeShared }

// Stop shuts the server down (saving its data) and keeps the port for Resume.
func (s *Server) Stop() {
	s.t.Helper()
	switch s.mode {
	case modeShared:
		s.t.Skip("redistest: cannot stop a shared server (REDIS_URL is set); unset REDIS_URL to run this test")
	case modeDocker:
		if err := s.pool.Client.StopContainer(s.res.Container.ID, 10); err != nil {
			s.t.Fatalf("redistest: stop container: %v", err)
		}
	case modeProcess:
		s.stopProcess(true)
	}
}

// Kill ends the server with SIGKILL, like a crash or an OOM kill: nothing is saved, so after
// Resume it holds only what an earlier Stop saved (this server runs without persistence, like a
// Redis started with --save "" --appendonly no). The port is kept for Resume.
func (s *Server) Kill() {
	s.t.Helper()
	switch s.mode {
	case modeShared:
		s.t.Skip("redistest: cannot kill a shared server (REDIS_URL is set); unset REDIS_URL to run this test")
	case modeDocker:
		if err := s.pool.Client.KillContainer(docker.KillContainerOptions{ID: s.res.Container.ID, Signal: docker.SIGKILL}); err != nil {
			s.t.Fatalf("redistest: kill container: %v", err)
		}
	case modeProcess:
		s.mu.Lock()
		cmd, exited := s.cmd, s.exited
		s.cmd = nil
		s.mu.Unlock()
		if cmd == nil {
			return
		}
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Resume starts a stopped server again on the same port.
func (s *Server) Resume() {
	s.t.Helper()
	switch s.mode {
	case modeShared:
		s.t.Skip("redistest: cannot restart a shared server (REDIS_URL is set)")
	case modeDocker:
		if err := s.pool.Client.StartContainer(s.res.Container.ID, nil); err != nil {
			s.t.Fatalf("redistest: start container: %v", err)
		}
		s.waitReady(30 * time.Second)
	case modeProcess:
		s.launch(false)
	}
}

// Restart is Stop then Resume: same port, data kept.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.Resume()
}

// Version returns the server's redis_version.
func (s *Server) Version() string {
	s.t.Helper()
	c := s.Client()
	info, err := c.Info(context.Background(), "server").Result()
	if err != nil {
		s.t.Fatalf("redistest: INFO server: %v", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v
		}
	}
	return ""
}

func (s *Server) startShared() {
	s.mode = modeShared
	s.url = os.Getenv("REDIS_URL")
	opt, err := redis.ParseURL(s.url)
	if err != nil {
		s.t.Fatalf("redistest: REDIS_URL=%q is not a redis URL: %v", s.url, err)
	}
	s.addr = opt.Addr
	s.waitReady(5 * time.Second)
}

func dockerReachable() bool {
	if os.Getenv("DOCKER_HOST") == "" {
		if _, err := os.Stat("/var/run/docker.sock"); err != nil {
			return false
		}
	}
	pool, err := dockertest.NewPool("")
	if err != nil {
		return false
	}
	pool.MaxWait = 5 * time.Second
	return pool.Client.Ping() == nil
}

func (s *Server) startDocker() {
	s.mode = modeDocker
	pool, err := dockertest.NewPool("")
	if err != nil {
		s.t.Fatalf("redistest: docker: %v", err)
	}
	image := os.Getenv("REDIS_TEST_IMAGE")
	if image == "" {
		image = "redis:7-alpine"
	}
	repo, tag, _ := strings.Cut(image, ":")
	if tag == "" {
		tag = "latest"
	}
	// A fixed host port keeps the address stable across Stop/Resume.
	port := freePort(s.t)
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Repository:   repo,
		Tag:          tag,
		Cmd:          []string{"redis-server", "--save", "", "--appendonly", "no"},
		PortBindings: map[docker.Port][]docker.PortBinding{"6379/tcp": {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(port)}}},
	})
	if err != nil {
		s.t.Fatalf("redistest: run %s: %v", image, err)
	}
	s.pool, s.res = pool, res
	s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.url = "redis://" + s.addr + "/0"
	s.waitReady(60 * time.Second)
}

func (s *Server) startProcess() {
	s.mode = modeProcess
	s.bin = findRedisServer()
	if s.bin == "" {
		s.t.Fatalf("redistest: no Redis available: %s", InstallHint)
	}
	s.dir = s.t.TempDir()
	s.port = freePort(s.t)
	s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	s.url = "redis://" + s.addr + "/0"
	s.launch(true)
}

func findRedisServer() string {
	if b := os.Getenv("REDIS_SERVER_BIN"); b != "" {
		return b
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server"
	}
	return ""
}

func (s *Server) launch(first bool) {
	s.t.Helper()
	// The port may be briefly taken by someone else between freePort and here; retry a few times.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		cmd := exec.Command(s.bin,
			"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no",
			"--dir", s.dir, "--dbfilename", "dump.rdb",
			"--logfile", filepath.Join(s.dir, "redis.log"),
			"--daemonize", "no", "--protected-mode", "no")
		cmd.Dir = s.dir
		if err := cmd.Start(); err != nil {
			s.t.Fatalf("redistest: start %s: %v (%s)", s.bin, err, InstallHint)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		s.mu.Lock()
		s.cmd, s.exited = cmd, exited
		s.mu.Unlock()
		if lastErr = s.ping(10*time.Second, exited); lastErr == nil {
			// Another test process may have grabbed the port between freePort and the bind: make
			// sure the server answering is the one we started.
			if lastErr = s.checkPID(cmd.Process.Pid); lastErr == nil {
				return
			}
		}
		s.stopProcess(false)
		if !first {
			break // Resume must keep the port
		}
		s.port = freePort(s.t)
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
		s.url = "redis://" + s.addr + "/0"
	}
	log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	s.t.Fatalf("redistest: redis-server on port %d did not come up: %v\n%s", s.port, lastErr, tail(string(log), 2000))
}

// stopProcess ends the redis-server process; save=true writes dump.rdb first so Resume keeps the data.
// checkPID verifies that the server at s.addr is the process pid.
func (s *Server) checkPID(pid int) error {
	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	defer c.Close()
	// A server that has just answered PING can still drop the next connection (seen in CI as EOF
	// right after a restart on the same port while other clients redial it): retry briefly, and
	// fail only on a persistent error or on a server that is not ours.
	var info string
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err = c.Info(ctx, "server").Result()
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	if !containsLine(info, "process_id:"+strconv.Itoa(pid)) {
		return fmt.Errorf("port %d is served by another process, not our redis-server (pid %d)", s.port, pid)
	}
	return nil
}

func (s *Server) stopProcess(save bool) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if save {
		c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
		// SHUTDOWN closes the connection, so an error here is expected.
		_ = c.ShutdownSave(context.Background()).Err()
		_ = c.Close()
	} else {
		_ = cmd.Process.Signal(os.Interrupt)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (s *Server) waitReady(d time.Duration) {
	s.t.Helper()
	if err := s.ping(d, nil); err != nil {
		s.t.Fatalf("redistest: redis at %s not ready: %v", s.addr, err)
	}
}

func (s *Server) ping(d time.Duration, exited <-chan struct{}) error {
	opt, err := redis.ParseURL(s.url)
	if err != nil {
		return err
	}
	opt.MaxRetries = -1
	c := redis.NewClient(opt)
	defer c.Close()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-exited:
			return errors.New("redis-server exited")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Server) cleanup() {
	if s.mode == modeShared {
		s.deletePrefix()
	}
	s.mu.Lock()
	clients := s.clients
	s.clients = nil
	s.mu.Unlock()
	for _, c := range clients {
		_ = c.Close()
	}
	switch s.mode {
	case modeDocker:
		_ = s.pool.Purge(s.res)
	case modeProcess:
		s.stopProcess(false)
	}
}

// deletePrefix removes this Server's keys from a shared server.
func (s *Server) deletePrefix() {
	opt, err := redis.ParseURL(s.url)
	if err != nil {
		return
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, s.prefix+"*", 500).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			_ = c.Unlink(ctx, batch...).Err()
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		_ = c.Unlink(ctx, batch...).Err()
	}
}

// freePort asks the kernel for a free loopback port.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("redistest: crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
