package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is one redis-server --sentinel process monitoring a Server as master "mymaster".
type Sentinel struct {
	Addr       string
	MasterName string
}

// StartSentinel starts a Sentinel for master (a process or container Server, not a shared one);
// it skips the test, saying why, when that cannot work here.
func StartSentinel(t testing.TB, master *Server) *Sentinel {
	t.Helper()
	if master.mode == modeShared {
		t.Skip("redistest: sentinel test skipped: Redis is shared (REDIS_URL); unset it to run this test")
	}
	bin := findRedisServer()
	if bin == "" {
		t.Skipf("redistest: sentinel test skipped: no redis-server (%s)", InstallHint)
	}
	host, port, _ := net.SplitHostPort(master.Addr())
	dir := t.TempDir()
	sport := freePort(t)
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster %s %s 1\nsentinel down-after-milliseconds mymaster 5000\n", sport, dir, host, port)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatalf("redistest: write sentinel config: %v", err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Skipf("redistest: sentinel test skipped: cannot start redis-server --sentinel: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	s := &Sentinel{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(sport)), MasterName: "mymaster"}
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		addr, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
		if err == nil && len(addr) == 2 && net.JoinHostPort(addr[0], addr[1]) == master.Addr() {
			return s
		}
		select {
		case <-exited:
			t.Skip("redistest: sentinel test skipped: redis-server --sentinel exited")
		case <-ctx.Done():
			t.Skipf("redistest: sentinel test skipped: sentinel at %s never reported the master (%v, %s)", s.Addr, err, strings.Join(addr, ":"))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// URL is a redis+sentinel:// URL (the form registry.NewClient understands).
func (s *Sentinel) URL() string {
	return "redis+sentinel://" + s.Addr + "?master_name=" + s.MasterName
}
