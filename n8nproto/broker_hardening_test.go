package n8nproto

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/n8n-fn/n8n-fn/internal/officialrunner"
)

// rawRequest writes head (and no more) on a fresh connection from local (nil: any address).
func rawRequest(t testing.TB, addr string, local net.Addr, head string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: local, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c
}

// A POST /runners/auth whose body never arrives is answered and closed after BodyTimeout; so is
// any request with a promised body the handler does not read.
func TestBrokerBodyTimeout(t *testing.T) {
	bs := startBroker(t, BrokerConfig{BodyTimeout: 300 * time.Millisecond}, "")
	for _, head := range []string{
		"POST /runners/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"tok",
		"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
	} {
		start := time.Now()
		c := rawRequest(t, bs.addr, nil, head)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		all, err := io.ReadAll(c) // until the broker closes the connection
		el := time.Since(start)
		if err != nil {
			t.Fatalf("%.30q: the connection was not closed within 5 s: %v", head, err)
		}
		if el > 2*time.Second {
			t.Errorf("%.30q: closed after %s, BodyTimeout is 300ms", head, el)
		}
		if strings.HasPrefix(head, "POST") && !strings.Contains(string(all), "did not arrive within 300ms") {
			t.Errorf("auth answer: %q", all)
		}
	}
	// A whole request on a kept-alive connection is not cut by the previous request's deadline.
	c := rawRequest(t, bs.addr, nil, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("keep-alive request %d: %v %v", i, resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		time.Sleep(400 * time.Millisecond)
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
}

func postAuthFrom(t testing.TB, client *http.Client, url, token string) int {
	t.Helper()
	resp, err := client.Post(url+"/runners/auth", "application/json", strings.NewReader(`{"token":"`+token+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}, Timeout: 5 * time.Second}
}

// Five failed auths within a second make a client's next requests 429 (n8n's numbers) until the
// second has passed; another client is not affected, and upgrades are counted apart.
func TestBrokerAuthRateLimit(t *testing.T) {
	bs := startBroker(t, BrokerConfig{AuthToken: "right"}, "")
	a, b := clientFrom("127.0.0.1"), clientFrom("127.0.0.2")
	for i := 0; i < 5; i++ {
		if code := postAuthFrom(t, a, bs.url(), "wrong"); code != http.StatusForbidden {
			t.Fatalf("failure %d: %d, want 403", i+1, code)
		}
	}
	start := time.Now()
	if code := postAuthFrom(t, a, bs.url(), "right"); code != http.StatusTooManyRequests {
		t.Fatalf("after 5 failures: %d, want 429 (even with the right token)", code)
	}
	if code := postAuthFrom(t, b, bs.url(), "right"); code != http.StatusOK {
		t.Fatalf("another client: %d, want 200", code)
	}
	// Upgrades have their own count: the flood of auths does not block a runner's connect.
	hdr := http.Header{"Authorization": []string{"Bearer " + bs.b.MintGrant()}}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+bs.addr+"/runners/_ws?id=x", hdr)
	if err != nil {
		t.Fatalf("upgrade while auths are limited: %v", err)
	}
	ws.Close()
	time.Sleep(time.Until(start.Add(1100 * time.Millisecond)))
	if code := postAuthFrom(t, a, bs.url(), "right"); code != http.StatusOK {
		t.Fatalf("after the window: %d, want 200", code)
	}
	for i := 0; i < 5; i++ {
		if _, resp, _ := websocket.DefaultDialer.Dial("ws://"+bs.addr+"/runners/_ws?id=x", http.Header{"Authorization": []string{"Bearer bad"}}); resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("bad upgrade %d: %v", i+1, resp)
		}
	}
	if _, resp, _ := websocket.DefaultDialer.Dial("ws://"+bs.addr+"/runners/_ws?id=x", http.Header{"Authorization": []string{"Bearer " + bs.b.MintGrant()}}); resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("upgrade after 5 bad ones: %v, want 429", resp)
	}
}

// A flood of bad auths, bad upgrades, bodies that never arrive and garbage bytes against the broker
// port while the official runner, connected before it, keeps completing Code-node tasks.
func TestBrokerFloodKeepsRelayedTasksWorking(t *testing.T) {
	dir := officialrunner.Require(t)
	bs := startBroker(t, BrokerConfig{BodyTimeout: 500 * time.Millisecond}, "")
	startOfficialRunner(t, dir, bs, "official-flood", 2)

	floodCtx, stopFlood := context.WithCancel(context.Background())
	var (
		wg                      sync.WaitGroup
		attempts, limited, hung atomic.Int64
		slowest                 atomic.Int64 // ns a never-arriving body held its connection
	)
	cl := clientFrom("127.0.0.1")
	floods := []func(){
		func() { // wrong tokens
			if code := postAuthFrom(t, cl, bs.url(), "wrong"); code == http.StatusTooManyRequests {
				limited.Add(1)
			}
		},
		func() { // upgrades without a valid grant
			_, resp, _ := websocket.DefaultDialer.Dial("ws://"+bs.addr+"/runners/_ws?id=evil", http.Header{"Authorization": []string{"Bearer forged"}})
			if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
				limited.Add(1)
			}
		},
		func() { // a body that never arrives
			start := time.Now()
			c, err := net.DialTimeout("tcp", bs.addr, time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.WriteString(c, "POST /runners/auth HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil {
				hung.Add(1)
			}
			if el := int64(time.Since(start)); el > slowest.Load() {
				slowest.Store(el)
			}
		},
		func() { // garbage
			c, err := net.DialTimeout("tcp", bs.addr, time.Second)
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("\x16\x03\x01\x00\xff garbage \r\n\r\n"))
			_ = c.Close()
		},
	}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(f func()) {
			defer wg.Done()
			for floodCtx.Err() == nil {
				attempts.Add(1)
				f()
			}
		}(floods[i%len(floods)])
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	items := []map[string]any{{"json": map[string]any{"a": 1}}, {"json": map[string]any{"a": 2}}}
	const tasks = 30
	var worst time.Duration
	for i := 0; i < tasks; i++ {
		start := time.Now()
		dt, err := bs.b.Acquire(ctx, "javascript", fmt.Sprintf("flood-%d", i), settingsJSON(t, "return $input.all().map(i => ({json: {b: i.json.a + 1}}));", NodeModeAllItems, false, nil))
		if err != nil {
			t.Fatalf("task %d during the flood: %v", i, err)
		}
		out := serveTask(t, ctx, dt, items)
		if out.done == nil || !jsonEqual(t, out.done.Data, []byte(`{"result":[{"json":{"b":2}},{"json":{"b":3}}]}`)) {
			t.Fatalf("task %d during the flood: done=%v fail=%v", i, out.done, out.fail)
		}
		worst = max(worst, time.Since(start))
	}
	stopFlood()
	wg.Wait()
	t.Logf("%d tasks completed during %d flood requests (%d answered 429), slowest task %s, a never-arriving body held its connection at most %s",
		tasks, attempts.Load(), limited.Load(), worst, time.Duration(slowest.Load()))
	if limited.Load() == 0 {
		t.Error("the flood was never rate limited")
	}
	if hung.Load() > 0 {
		t.Errorf("%d connections with a never-arriving body were held open for 5 s", hung.Load())
	}
	if worst > 5*time.Second {
		t.Errorf("a task took %s during the flood", worst)
	}
}
