package redistest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a small Redis Cluster of redis-server processes (masters only), for cluster tests.
type Cluster struct {
	t      testing.TB
	addrs  []string
	procs  []*exec.Cmd
	exited []chan struct{}
}

// StartCluster starts masters redis-server processes in cluster mode and joins them with
// redis-cli --cluster create. It skips the test (saying why) when that cannot work here (no
// redis-server or redis-cli, no free ports, cluster creation failing). REDIS_CLUSTER_ADDRS (comma
// list of host:port) uses an existing cluster instead; tests must then use unique key prefixes.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	if env := os.Getenv("REDIS_CLUSTER_ADDRS"); env != "" {
		c.addrs = append(c.addrs, splitComma(env)...)
		return c
	}
	bin := findRedisServer()
	cli, err := exec.LookPath("redis-cli")
	if bin == "" || err != nil {
		t.Skipf("redistest: cluster test skipped: needs redis-server and redis-cli on this machine, or REDIS_CLUSTER_ADDRS (%s)", InstallHint)
	}
	t.Cleanup(c.stop)
	for i := 0; i < masters; i++ {
		port := clusterPort(t)
		dir := t.TempDir()
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no", "--dir", dir,
			"--logfile", filepath.Join(dir, "redis.log"), "--protected-mode", "no")
		if err := cmd.Start(); err != nil {
			t.Skipf("redistest: cluster test skipped: cannot start redis-server in cluster mode: %v", err)
		}
		ch := make(chan struct{})
		go func() { _ = cmd.Wait(); close(ch) }()
		c.procs = append(c.procs, cmd)
		c.exited = append(c.exited, ch)
		c.addrs = append(c.addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	for i, a := range c.addrs {
		s := &Server{t: t, url: "redis://" + a, addr: a}
		if err := s.ping(10*time.Second, c.exited[i]); err != nil {
			t.Skipf("redistest: cluster test skipped: node %s did not start: %v", a, err)
		}
		if err := s.checkPID(c.procs[i].Process.Pid); err != nil {
			t.Skipf("redistest: cluster test skipped: %v (a parallel test took the port; rerun)", err)
		}
	}
	args := append([]string{"--cluster", "create"}, c.addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Skipf("redistest: cluster test skipped: redis-cli --cluster create failed: %v\n%s", err, tail(string(out), 2000))
	}
	c.waitOK(ctx)
	return c
}

// Addrs lists the nodes.
func (c *Cluster) Addrs() []string { return c.addrs }

// Client returns a cluster client, closed when the test ends.
func (c *Cluster) Client() *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.addrs})
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func (c *Cluster) waitOK(ctx context.Context) {
	for _, a := range c.addrs {
		cl := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil && containsLine(info, "cluster_state:ok") {
				break
			}
			select {
			case <-ctx.Done():
				_ = cl.Close()
				c.t.Skipf("redistest: cluster test skipped: node %s never reported cluster_state:ok", a)
			case <-time.After(50 * time.Millisecond):
			}
		}
		_ = cl.Close()
	}
}

func (c *Cluster) stop() {
	for i, p := range c.procs {
		_ = p.Process.Signal(os.Interrupt)
		select {
		case <-c.exited[i]:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-c.exited[i]
		}
	}
}

// clusterPort finds a port p with p and p+10000 (the cluster bus) both free.
func clusterPort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		p := freePort(t)
		if p+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+10000)))
		if err != nil {
			continue
		}
		_ = l.Close()
		return p
	}
	t.Skip("redistest: cluster test skipped: no free port pair (p, p+10000) for the cluster bus")
	return 0
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if part := s[start:i]; part != "" {
				out = append(out, part)
			}
			start = i + 1
		}
	}
	return out
}

func containsLine(s, line string) bool {
	for start := 0; start < len(s); {
		end := start
		for end < len(s) && s[end] != '\n' {
			end++
		}
		l := s[start:end]
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		}
		if l == line {
			return true
		}
		start = end + 1
	}
	return false
}
