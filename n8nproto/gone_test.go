package n8nproto

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cutProxy forwards TCP connections to a backend and can cut the open ones while it keeps
// listening: a network blip between runner and broker, whose process stays up.
type cutProxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	conns   []net.Conn
	wg      sync.WaitGroup
}

func startCutProxy(t *testing.T, backend string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, backend: backend}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(b, c); b.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, b); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) url() string { return "http://" + p.ln.Addr().String() }

// cut closes every open connection; new ones are still accepted.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestRunnerTellsBrokerGone: when the broker's process goes away (its port refuses connections),
// OnBrokerGone is called once per spell without a connection, however often the reconnect is
// refused, and again after the next loss.
func TestRunnerTellsBrokerGone(t *testing.T) {
	bs := startBroker(t, BrokerConfig{}, "")
	var gone atomic.Int32
	var lastAt atomic.Int64
	cfg := fastRunnerConfig(t, bs.url(), 1)
	cfg.OnBrokerGone = func(at time.Time) {
		gone.Add(1)
		lastAt.Store(at.UnixNano())
	}
	r, _ := startRunner(t, cfg, handlerFunc(func(ctx context.Context, task *UpstreamTask) {}))
	waitFor(t, "registered", 3*time.Second, r.Connected)
	if n := gone.Load(); n != 0 {
		t.Fatalf("OnBrokerGone called %d times while connected", n)
	}
	addr := bs.addr
	stopped := time.Now()
	bs.stop()
	waitFor(t, "the gone broker noticed", 3*time.Second, func() bool { return gone.Load() == 1 })
	if at := time.Unix(0, lastAt.Load()); at.Before(stopped) {
		t.Fatalf("OnBrokerGone's time %s is before the broker stopped (%s)", at, stopped)
	}
	time.Sleep(500 * time.Millisecond) // several more refused attempts (ReconnectMax 200 ms)
	if n := gone.Load(); n != 1 {
		t.Fatalf("OnBrokerGone called %d times in one spell, want 1", n)
	}
	bs2 := startBroker(t, BrokerConfig{}, addr)
	waitFor(t, "re-registered", 5*time.Second, func() bool { return r.Connected() && bs2.b.HasRunner("javascript") })
	bs2.stop()
	waitFor(t, "the second loss noticed", 3*time.Second, func() bool { return gone.Load() == 2 })
}

// TestRunnerBlipIsNotBrokerGone: a connection cut while the broker keeps listening (a network
// blip, or n8n dropping the runner) reconnects without OnBrokerGone: its executions live on.
func TestRunnerBlipIsNotBrokerGone(t *testing.T) {
	bs := startBroker(t, BrokerConfig{}, "")
	p := startCutProxy(t, bs.addr)
	var gone atomic.Int32
	cfg := fastRunnerConfig(t, p.url(), 1)
	cfg.OnBrokerGone = func(time.Time) { gone.Add(1) }
	r, _ := startRunner(t, cfg, handlerFunc(func(ctx context.Context, task *UpstreamTask) {}))
	waitFor(t, "registered", 3*time.Second, r.Connected)
	for i := range 3 {
		p.cut()
		waitFor(t, "disconnect noticed", 3*time.Second, func() bool { return !r.Connected() })
		waitFor(t, "reconnected", 5*time.Second, r.Connected)
		if n := gone.Load(); n != 0 {
			t.Fatalf("blip %d: OnBrokerGone called %d times although the broker kept listening", i+1, n)
		}
	}
}

func TestRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = net.Dial("tcp", addr)
	if !Refused(err) {
		t.Fatalf("dialing a closed port: %v, want a refused connection", err)
	}
	if Refused(io.EOF) || Refused(nil) {
		t.Fatal("EOF or nil counted as refused")
	}
}
