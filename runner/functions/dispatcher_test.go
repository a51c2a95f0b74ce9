package functions

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestDispatchSurvivesAClosedKeepAliveConnection: n8n closes an idle kept-alive connection just as
// the dispatcher reuses it (Node's keepAliveTimeout). The POST goes out again on a new connection
// instead of failing, so the call does not wait for the recoverer.
func TestDispatchSurvivesAClosedKeepAliveConnection(t *testing.T) {
	var mu sync.Mutex
	perConn := map[string]int{} // remote addr -> requests seen on that connection
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		perConn[r.RemoteAddr]++
		n := perConn[r.RemoteAddr]
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		if n == 2 { // the second request on a kept-alive connection: n8n has closed it meanwhile
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // RST, as a closing Node socket gives
				}
				conn.Close()
			}
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`[{"ok":true}]`))
	}))
	defer srv.Close()
	d := newDispatcher(dispatchDeps{cfg: Config{ID: "sidecar-t"}, tun: &tunables{}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deadline := time.Now().Add(5 * time.Second)
	for i, call := range []string{"call-1", "call-2"} {
		status, body, err := d.post(ctx, http.MethodPost, srv.URL+"/webhook/fn", []byte(`{}`), deadline, call, true)
		if err != nil || status != http.StatusOK || string(body) != `[{"ok":true}]` {
			t.Fatalf("post %d: %d %s %v", i+1, status, body, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(perConn) < 2 || len(keys) != 3 || keys[0] != "call-1" || keys[1] != "call-2" || keys[2] != "call-2" {
		t.Fatalf("want the second call sent twice (the second time on a new connection) with its call id as Idempotency-Key; connections %v, keys %v", perConn, keys)
	}
}
