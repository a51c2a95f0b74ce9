package n8nproto

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"
)

func testLogger(t testing.TB) *logrus.Entry {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	if testing.Verbose() {
		l.SetLevel(logrus.DebugLevel)
	}
	return logrus.NewEntry(l).WithField("test", t.Name())
}

type handlerFunc func(ctx context.Context, t *UpstreamTask)

func (f handlerFunc) HandleTask(ctx context.Context, t *UpstreamTask) { f(ctx, t) }

// brokerServer is a Broker served over real HTTP on an ephemeral port.
type brokerServer struct {
	b    *Broker
	srv  *http.Server
	ln   net.Listener
	addr string
}

func startBroker(t testing.TB, cfg BrokerConfig, addr string) *brokerServer {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.AuthToken == "" {
		cfg.AuthToken = "test-token"
	}
	b, err := NewBroker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	for i := 0; ; i++ { // re-binding the same port after a restart may take a moment
		ln, err = net.Listen("tcp", addr)
		if err == nil || i > 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	bs := &brokerServer{b: b, srv: b.NewServer(), ln: ln, addr: ln.Addr().String()}
	go func() { _ = bs.srv.Serve(ln) }()
	t.Cleanup(bs.stop)
	return bs
}

func (bs *brokerServer) url() string { return "http://" + bs.addr }

// stop closes the listener and every runner connection (a crash, as seen from the runners).
func (bs *brokerServer) stop() {
	_ = bs.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_ = bs.b.Drain(ctx)
}

// acquired is the outcome of a Broker.Acquire run in the background.
type acquired struct {
	dt  *DownstreamTask
	err error
}

// acquireAsync runs Acquire in the background, for tests that script the runner side meanwhile.
func acquireAsync(ctx context.Context, b *Broker, taskType, taskID string, settings json.RawMessage) <-chan acquired {
	res := make(chan acquired, 1)
	go func() {
		dt, err := b.Acquire(ctx, taskType, taskID, settings)
		res <- acquired{dt, err}
	}()
	return res
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeRunner is a scripted runner (or launcher) client speaking raw frames to a Broker.
type fakeRunner struct {
	t  testing.TB
	ws *websocket.Conn
}

func dialFakeRunner(t testing.TB, bs *brokerServer, id, name string) *fakeRunner {
	t.Helper()
	hdr := http.Header{"Authorization": []string{"Bearer " + bs.b.MintGrant()}}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+bs.addr+"/runners/_ws?id="+id, hdr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRunner{t: t, ws: ws}
	t.Cleanup(func() { _ = ws.Close() })
	if _, ok := f.recv(2 * time.Second).(InfoRequest); !ok {
		t.Fatal("no broker:inforequest")
	}
	f.send(RunnerInfo{Name: name, Types: []string{"javascript"}})
	if _, ok := f.recv(2 * time.Second).(RunnerRegistered); !ok {
		t.Fatal("no broker:runnerregistered")
	}
	return f
}

func (f *fakeRunner) send(m Message) {
	f.t.Helper()
	b, err := Encode(m)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeRunner) recv(d time.Duration) Message {
	f.t.Helper()
	_ = f.ws.SetReadDeadline(time.Now().Add(d))
	_, data, err := f.ws.ReadMessage()
	if err != nil {
		f.t.Fatalf("fake runner read: %v", err)
	}
	m, err := Decode(data)
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

// fakeN8N is a scripted n8n broker for the runner role: it grants every auth and hands out the sockets.
type fakeN8N struct {
	srv   *httptest.Server
	conns chan *websocket.Conn
}

func startFakeN8N(t testing.TB) *fakeN8N {
	f := &fakeN8N{conns: make(chan *websocket.Conn, 4)}
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("/runners/auth", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"data":{"token":"grant"}}`))
	})
	mux.HandleFunc("/runners/_ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer grant" || r.URL.Query().Get("id") == "" {
			http.Error(w, "bad", http.StatusForbidden)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		f.conns <- ws
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeN8N) url() string { return f.srv.URL }

func rawJSON(t testing.TB, v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wsRecv(t testing.TB, ws *websocket.Conn, d time.Duration) Message {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(d))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	m, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func wsSend(t testing.TB, ws *websocket.Conn, m Message) {
	t.Helper()
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}
}
