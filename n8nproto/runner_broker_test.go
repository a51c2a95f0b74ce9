package n8nproto

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func fastRunnerConfig(t testing.TB, uri string, max int) RunnerConfig {
	return RunnerConfig{
		BrokerURI: uri, AuthToken: "test-token", RunnerID: "r-" + strings.ReplaceAll(t.Name(), "/", "-"),
		MaxConcurrency: max, Logger: testLogger(t),
		OfferValidFor: 300 * time.Millisecond, OfferInterval: 20 * time.Millisecond,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
	}
}

func startRunner(t testing.TB, cfg RunnerConfig, h TaskHandler) (*Runner, chan error) {
	t.Helper()
	r, err := NewRunner(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return r, done
}

var codeSettings = json.RawMessage(`{"code":"return $input.all()","nodeMode":"runOnceForAllItems","workflowMode":"manual","continueOnFail":false,"additionalProperties":{}}`)

// A whole task between our runner role and our broker role: accept -> settings -> data request -> rpc -> done.
func TestRunnerBrokerTaskCycle(t *testing.T) {
	bs := startBroker(t, BrokerConfig{}, "")
	handler := handlerFunc(func(ctx context.Context, task *UpstreamTask) {
		cs, err := ParseCodeSettings(task.Settings)
		if err != nil {
			_ = task.Fail(ctx, errorJSON(err.Error()))
			return
		}
		data, err := task.RequestData(ctx, json.RawMessage(`{"dataOfNodes":[],"env":false,"input":{"include":true},"prevNode":false}`))
		if err != nil {
			_ = task.Fail(ctx, errorJSON(err.Error()))
			return
		}
		if _, err := task.RPC(ctx, "logNodeOutput", json.RawMessage(`["'mode'","\"`+cs.NodeMode+`\""]`)); err != nil {
			_ = task.Fail(ctx, errorJSON(err.Error()))
			return
		}
		var d struct {
			InputData struct {
				Main [][]json.RawMessage `json:"main"`
			} `json:"inputData"`
		}
		_ = json.Unmarshal(data, &d)
		_ = task.Done(ctx, rawJSON(t, map[string]any{"result": d.InputData.Main[0]}))
	})
	r, _ := startRunner(t, fastRunnerConfig(t, bs.url(), 2), handler)
	waitFor(t, "runner registered", 3*time.Second, func() bool { return r.Connected() && bs.b.HasRunner("javascript") })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dt, err := bs.b.Acquire(ctx, "javascript", "task-1", codeSettings)
	if err != nil {
		t.Fatal(err)
	}
	var rpcNames []string
	var done TaskDone
	for m := range dt.Incoming() {
		switch v := m.(type) {
		case TaskDataRequest:
			if !bytes.Contains(v.RequestParams, []byte(`"include":true`)) {
				t.Errorf("request params not forwarded verbatim: %s", v.RequestParams)
			}
			if err := dt.Send(ctx, TaskDataResponse{RequestID: v.RequestID, Data: json.RawMessage(`{"inputData":{"main":[[{"json":{"a":1}},{"json":{"a":2}}]]}}`)}); err != nil {
				t.Fatal(err)
			}
		case RPC:
			rpcNames = append(rpcNames, v.Name+string(v.Params))
			if err := dt.Send(ctx, RPCResponse{CallID: v.CallID, Status: RPCStatusSuccess}); err != nil {
				t.Fatal(err)
			}
		case TaskDone:
			done = v
		default:
			t.Errorf("unexpected %T", m)
		}
	}
	if dt.Err() != nil {
		t.Fatal(dt.Err())
	}
	if done.TaskID != "task-1" || !jsonEqual(t, done.Data, []byte(`{"result":[{"json":{"a":1}},{"json":{"a":2}}]}`)) {
		t.Errorf("taskdone = %+v %s", done, done.Data)
	}
	if len(rpcNames) != 1 || rpcNames[0] != `logNodeOutput["'mode'","\"runOnceForAllItems\""]` {
		t.Errorf("rpcs = %v", rpcNames)
	}
	waitFor(t, "slot freed", 2*time.Second, func() bool { return r.Running() == 0 })
	if err := r.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// Offers: never zero while idle, renewed before they expire, bounded by MaxConcurrency - running.
func TestRunnerOffersNeverZeroWhileIdle(t *testing.T) {
	bs := startBroker(t, BrokerConfig{}, "")
	release := make(chan struct{})
	handler := handlerFunc(func(ctx context.Context, task *UpstreamTask) {
		select {
		case <-release:
		case <-task.Cancelled():
			return
		}
		_ = task.Done(ctx, json.RawMessage(`{"result":[]}`))
	})
	cfg := fastRunnerConfig(t, bs.url(), 3)
	cfg.OfferValidFor = time.Second // replaced 100 ms before the broker drops them
	r, _ := startRunner(t, cfg, handler)
	waitFor(t, "offers", 3*time.Second, func() bool { return bs.b.openOffers("javascript") == 3 })
	// Offer validity is 1-1.5 s: over 3.5 s every offer is replaced at least twice. The broker may hold a
	// replaced offer and its successor for a moment; it must never be left without one.
	lowest, highest := 3, 3
	for end := time.Now().Add(3500 * time.Millisecond); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		n := bs.b.openOffers("javascript")
		lowest, highest = min(lowest, n), max(highest, n)
		if n < 1 || n > 6 {
			t.Fatalf("idle runner has %d valid offers at the broker, want 1..6", n)
		}
	}
	t.Logf("valid offers at the broker while idle: %d..%d", lowest, highest)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dt1, err := bs.b.Acquire(ctx, "javascript", "t1", codeSettings)
	if err != nil {
		t.Fatal(err)
	}
	dt2, err := bs.b.Acquire(ctx, "javascript", "t2", codeSettings)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two running", 2*time.Second, func() bool { return r.Running() == 2 })
	time.Sleep(1600 * time.Millisecond) // offers from before the two accepts have expired
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if n := bs.b.openOffers("javascript"); n < 1 || n > 2 {
			t.Fatalf("%d offers open with 2 of 3 slots busy, want 1..2", n)
		}
	}
	close(release)
	for _, dt := range []*DownstreamTask{dt1, dt2} {
		for range dt.Incoming() {
		}
	}
	waitFor(t, "offers back to 3", 3*time.Second, func() bool { return bs.b.openOffers("javascript") >= 3 })
}

// Every taskofferaccept is answered at once: accepted with a free slot, else rejected with a reason.
func TestRunnerAnswersAccepts(t *testing.T) {
	n8n := startFakeN8N(t)
	block := make(chan struct{})
	defer close(block)
	handler := handlerFunc(func(ctx context.Context, task *UpstreamTask) {
		select {
		case <-block:
		case <-task.Cancelled():
		}
	})
	cfg := fastRunnerConfig(t, n8n.url(), 1)
	cfg.OfferInterval = time.Hour // only the first batch, so the test sees a stable set of offers
	startRunner(t, cfg, handler)
	ws := <-n8n.conns
	defer ws.Close()
	wsSend(t, ws, InfoRequest{})
	info := wsRecv(t, ws, 2*time.Second).(RunnerInfo)
	if info.Name == "" || len(info.Types) != 1 || info.Types[0] != "javascript" {
		t.Fatalf("runner:info = %+v", info)
	}
	wsSend(t, ws, RunnerRegistered{})
	offer := wsRecv(t, ws, 2*time.Second).(TaskOffer)
	if offer.ValidFor < 300 || offer.ValidFor >= 800 || offer.TaskType != "javascript" {
		t.Fatalf("offer = %+v", offer)
	}
	// unknown offer -> rejected
	start := time.Now()
	wsSend(t, ws, TaskOfferAccept{TaskID: "x1", OfferID: "nope"})
	if rj := wsRecv(t, ws, 2*time.Second).(TaskRejected); rj.TaskID != "x1" || rj.Reason != RejectOfferExpired {
		t.Fatalf("reject = %+v", rj)
	}
	// valid offer -> accepted; settings start the handler
	wsSend(t, ws, TaskOfferAccept{TaskID: "x2", OfferID: offer.OfferID})
	if ac := wsRecv(t, ws, 2*time.Second).(TaskAccepted); ac.TaskID != "x2" {
		t.Fatalf("accept = %+v", ac)
	}
	wsSend(t, ws, TaskSettings{TaskID: "x2", Settings: codeSettings})
	// full -> rejected (any offer id: capacity is checked first)
	wsSend(t, ws, TaskOfferAccept{TaskID: "x3", OfferID: offer.OfferID})
	if rj := wsRecv(t, ws, 2*time.Second).(TaskRejected); rj.TaskID != "x3" || rj.Reason != RejectAtCapacity {
		t.Fatalf("reject = %+v", rj)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("answers took %s", el)
	}
	// ping answered by the read loop
	pong := make(chan struct{}, 1)
	ws.SetPongHandler(func(string) error { pong <- struct{}{}; return nil })
	if err := ws.WriteControl(websocket.PingMessage, []byte("hb"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	go func() { _ = ws.SetReadDeadline(time.Now().Add(2 * time.Second)); _, _, _ = ws.ReadMessage() }()
	select {
	case <-pong:
	case <-time.After(2 * time.Second):
		t.Fatal("no pong")
	}
}

func TestRunnerCancel(t *testing.T) {
	bs := startBroker(t, BrokerConfig{}, "")
	reasons := make(chan string, 1)
	handler := handlerFunc(func(ctx context.Context, task *UpstreamTask) {
		var got []string
		for m := range task.Incoming() {
			got = append(got, m.MessageType())
		}
		<-task.Cancelled()
		reasons <- task.CancelReason() + "|" + strings.Join(got, ",")
		if err := task.Done(context.Background(), json.RawMessage(`{"result":[]}`)); !errors.Is(err, ErrTaskCancelled) {
			t.Errorf("Done after cancel = %v, want ErrTaskCancelled", err)
		}
	})
	r, _ := startRunner(t, fastRunnerConfig(t, bs.url(), 1), handler)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dt, err := bs.b.Acquire(ctx, "javascript", "c1", codeSettings)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "running", 2*time.Second, func() bool { return r.Running() == 1 })
	if err := dt.Cancel(ctx, "Task cancelled by user"); err != nil {
		t.Fatal(err)
	}
	if _, open := <-dt.Incoming(); open {
		t.Error("Incoming still open after Cancel")
	}
	select {
	case got := <-reasons:
		if got != "Task cancelled by user|broker:taskcancel" {
			t.Errorf("handler saw %q", got)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("handler not cancelled")
	}
	waitFor(t, "slot freed and offered again", 3*time.Second, func() bool { return r.Running() == 0 && bs.b.openOffers("javascript") == 1 })
}

// broker:drain stops offers; the running task still completes; the broker then closes.
func TestBrokerDrainWithRunner(t *testing.T) {
	bs := startBroker(t, BrokerConfig{}, "")
	release := make(chan struct{})
	handler := handlerFunc(func(ctx context.Context, task *UpstreamTask) {
		<-release
		_ = task.Done(ctx, json.RawMessage(`{"result":[{"json":{"ok":true}}]}`))
	})
	r, _ := startRunner(t, fastRunnerConfig(t, bs.url(), 2), handler)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dt, err := bs.b.Acquire(ctx, "javascript", "d1", codeSettings)
	if err != nil {
		t.Fatal(err)
	}
	drained := make(chan error, 1)
	go func() { drained <- bs.b.Drain(ctx) }()
	// offers are 300-800 ms: after 1 s none is left because the runner stopped renewing
	time.Sleep(time.Second)
	if n := bs.b.openOffers("javascript"); n != 0 {
		t.Errorf("%d offers open after drain", n)
	}
	if _, err := bs.b.Acquire(ctx, "javascript", "d2", codeSettings); !errors.Is(err, ErrDraining) {
		t.Errorf("Acquire while draining = %v", err)
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v with a task in flight", err)
	default:
	}
	close(release)
	var last TaskMessage
	for m := range dt.Incoming() {
		last = m
	}
	if _, ok := last.(TaskDone); !ok || dt.Err() != nil {
		t.Fatalf("task ended with %T, err %v", last, dt.Err())
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "runner disconnected", 3*time.Second, func() bool { return !r.Connected() })
}

// The runner's own Drain (SIGTERM) stops offering; running tasks go on.
func TestRunnerDrain(t *testing.T) {
	bs := startBroker(t, BrokerConfig{}, "")
	r, _ := startRunner(t, fastRunnerConfig(t, bs.url(), 2), handlerFunc(func(ctx context.Context, task *UpstreamTask) {
		_ = task.Done(ctx, json.RawMessage(`{"result":[]}`))
	}))
	waitFor(t, "offers", 3*time.Second, func() bool { return bs.b.openOffers("javascript") == 2 })
	r.Drain()
	waitFor(t, "offers expired", 3*time.Second, func() bool { return bs.b.openOffers("javascript") == 0 })
	time.Sleep(300 * time.Millisecond)
	if n := bs.b.openOffers("javascript"); n != 0 {
		t.Fatalf("drained runner offers again (%d)", n)
	}
	if !r.Connected() {
		t.Error("drained runner disconnected")
	}
}

// After the broker goes away and comes back on the same address, the runner reconnects with a fresh grant.
func TestRunnerReconnectsAfterBrokerRestart(t *testing.T) {
	bs := startBroker(t, BrokerConfig{}, "")
	var handled atomic.Int32
	r, _ := startRunner(t, fastRunnerConfig(t, bs.url(), 1), handlerFunc(func(ctx context.Context, task *UpstreamTask) {
		handled.Add(1)
		_ = task.Done(ctx, json.RawMessage(`{"result":[]}`))
	}))
	waitFor(t, "registered", 3*time.Second, r.Connected)
	addr := bs.addr
	bs.stop()
	waitFor(t, "disconnect noticed", 3*time.Second, func() bool { return !r.Connected() })
	bs2 := startBroker(t, BrokerConfig{}, addr) // a new broker knows none of the old grants
	waitFor(t, "re-registered", 5*time.Second, func() bool { return r.Connected() && bs2.b.HasRunner("javascript") })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dt, err := bs2.b.Acquire(ctx, "javascript", "after-restart", codeSettings)
	if err != nil {
		t.Fatal(err)
	}
	for range dt.Incoming() {
	}
	if handled.Load() != 1 || dt.Err() != nil {
		t.Fatalf("handled %d, err %v", handled.Load(), dt.Err())
	}
}

// With the default back-off (no ReconnectMin/Max set, as the sidecar runs), a runner whose n8n was down for
// 8 s, long enough for the old 30 s cap to have grown the delay to 8-16 s, is back within 2.5 s of the
// broker's return: a restarted worker gets its runner within seconds. Fails with a cap above ~2.5 s.
func TestRunnerReconnectsFastAfterLongOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("an 8 s outage")
	}
	bs := startBroker(t, BrokerConfig{}, "")
	cfg := fastRunnerConfig(t, bs.url(), 1)
	cfg.ReconnectMin, cfg.ReconnectMax = 0, 0
	r, _ := startRunner(t, cfg, handlerFunc(func(ctx context.Context, task *UpstreamTask) {
		_ = task.Done(ctx, json.RawMessage(`{"result":[]}`))
	}))
	waitFor(t, "registered", 3*time.Second, r.Connected)
	addr := bs.addr
	bs.stop()
	waitFor(t, "disconnect noticed", 3*time.Second, func() bool { return !r.Connected() })
	time.Sleep(8 * time.Second)
	back := time.Now()
	bs2 := startBroker(t, BrokerConfig{}, addr)
	waitFor(t, "re-registered", 2500*time.Millisecond, func() bool { return r.Connected() && bs2.b.HasRunner("javascript") })
	t.Logf("reconnected %s after the broker came back", time.Since(back).Round(time.Millisecond))
}

// The back-off stays within [d/2, d] of the doubled delay and never above the cap.
func TestBackoffBounds(t *testing.T) {
	minD, maxD := 250*time.Millisecond, 2*time.Second
	for attempt := range 40 {
		want := minD << min(attempt, 3)
		want = min(want, maxD)
		for range 50 {
			d := backoff(minD, maxD, attempt)
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: %s outside [%s, %s]", attempt, d, want/2, want)
			}
		}
	}
}

// A wrong auth token is one fatal ErrUnauthorized, after exactly one auth attempt.
func TestRunnerWrongTokenIsFatal(t *testing.T) {
	bs := startBroker(t, BrokerConfig{AuthToken: "right"}, "")
	var attempts atomic.Int32
	inner := bs.srv.Handler
	bs.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/runners/auth" {
			attempts.Add(1)
		}
		inner.ServeHTTP(w, r)
	})
	cfg := fastRunnerConfig(t, bs.url(), 1)
	cfg.AuthToken = "wrong"
	r, err := NewRunner(cfg, handlerFunc(func(context.Context, *UpstreamTask) {}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = r.Run(ctx)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Run = %v, want ErrUnauthorized", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run only returned at the deadline")
	}
	if n := attempts.Load(); n != 1 {
		t.Errorf("%d auth attempts, want 1", n)
	}
	if !strings.Contains(err.Error(), "N8N_RUNNERS_AUTH_TOKEN") {
		t.Errorf("error does not say what to fix: %v", err)
	}
}

// Our runner answers the broker's pings, so a short heartbeat keeps it connected; a client that stops
// reading is dropped and its in-flight task ends with Err set.
func TestHeartbeat(t *testing.T) {
	bs := startBroker(t, BrokerConfig{HeartbeatInterval: 50 * time.Millisecond}, "")
	r, _ := startRunner(t, fastRunnerConfig(t, bs.url(), 1), handlerFunc(func(ctx context.Context, task *UpstreamTask) {
		_ = task.Done(ctx, json.RawMessage(`{"result":[]}`))
	}))
	waitFor(t, "registered", 3*time.Second, r.Connected)

	f := dialFakeRunner(t, bs, "silent", "fake")
	f.send(TaskOffer{OfferID: "o1", TaskType: "python", ValidFor: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan *DownstreamTask, 1)
	go func() {
		dt, err := bs.b.Acquire(ctx, "python", "p1", json.RawMessage(`{}`))
		if err != nil {
			t.Error(err)
		}
		got <- dt
	}()
	if m := f.recv(2 * time.Second).(TaskOfferAccept); m.TaskID != "p1" {
		t.Fatalf("%+v", m)
	}
	f.send(TaskAccepted{TaskID: "p1"})
	if _, ok := f.recv(2 * time.Second).(TaskSettings); !ok {
		t.Fatal("no settings")
	}
	dt := <-got
	// the fake stops reading: pings go unanswered
	start := time.Now()
	for range dt.Incoming() {
	}
	if !errors.Is(dt.Err(), ErrRunnerDisconnected) {
		t.Fatalf("Err = %v", dt.Err())
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("missed pong noticed only after %s", el)
	}
	if !r.Connected() {
		t.Error("our runner (answering pings) was dropped too")
	}
	if bs.b.HasRunner("python") {
		t.Error("dropped runner still listed")
	}
}

func TestBrokerHTTPEndpoints(t *testing.T) {
	bs := startBroker(t, BrokerConfig{AuthToken: "secret", GrantTTL: 200 * time.Millisecond}, "")
	post := func(body string) (int, string) {
		resp, err := http.Post(bs.url()+"/runners/auth", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	resp, err := http.Get(bs.url() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !jsonEqual(t, hb, []byte(`{"status":"ok"}`)) {
		t.Errorf("healthz %d %s", resp.StatusCode, hb)
	}
	if code, _ := post(`{"token":`); code != 400 {
		t.Errorf("bad JSON -> %d", code)
	}
	if code, _ := post(`{"token":5}`); code != 400 {
		t.Errorf("non-string token -> %d", code)
	}
	if code, body := post(`{"token":"nope"}`); code != 403 || !strings.Contains(body, "Forbidden") {
		t.Errorf("wrong token -> %d %s", code, body)
	}
	code, body := post(`{"token":"secret"}`)
	var g struct {
		Data struct {
			Token string `json:"token"`
		} `json:"data"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &g) != nil || len(g.Data.Token) != 64 {
		t.Fatalf("auth -> %d %s", code, body)
	}
	dial := func(query, authz string) int {
		hdr := http.Header{}
		if authz != "" {
			hdr.Set("Authorization", authz)
		}
		ws, resp, err := websocket.DefaultDialer.Dial("ws://"+bs.addr+"/runners/_ws"+query, hdr)
		if err == nil {
			ws.Close()
			return 101
		}
		if resp == nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	if c := dial("?id=a", ""); c != 401 {
		t.Errorf("no bearer -> %d", c)
	}
	if c := dial("?id=a", "Bearer bogus"); c != 403 {
		t.Errorf("bad grant -> %d", c)
	}
	if c := dial("", "Bearer "+g.Data.Token); c != 400 {
		t.Errorf("no id -> %d", c)
	}
	if c := dial("?id=a", "bearer "+g.Data.Token); c != 101 {
		t.Errorf("good grant -> %d", c)
	}
	if c := dial("?id=a", "Bearer "+g.Data.Token); c != 403 {
		t.Errorf("used grant -> %d", c)
	}
	expiring := bs.b.MintGrant()
	time.Sleep(250 * time.Millisecond)
	if c := dial("?id=a", "Bearer "+expiring); c != 403 {
		t.Errorf("expired grant -> %d", c)
	}
}

// A second connection with the same id replaces the first.
func TestBrokerSameIDReplaces(t *testing.T) {
	bs := startBroker(t, BrokerConfig{}, "")
	f1 := dialFakeRunner(t, bs, "dup", "one")
	f1.send(TaskOffer{OfferID: "o1", TaskType: "javascript", ValidFor: -1})
	waitFor(t, "offer", 2*time.Second, func() bool { return bs.b.openOffers("javascript") == 1 })
	f2 := dialFakeRunner(t, bs, "dup", "two")
	_ = f1.ws.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _, err := f1.ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("old connection: %v", err)
	}
	waitFor(t, "old offers dropped", 2*time.Second, func() bool { return bs.b.openOffers("javascript") == 0 })
	f2.send(TaskOffer{OfferID: "o2", TaskType: "javascript", ValidFor: -1})
	waitFor(t, "new offer", 2*time.Second, func() bool { return bs.b.openOffers("javascript") == 1 && bs.b.HasRunner("javascript") })
}

// Reject and accept timeout move on to the next offer; deferral waits for the next offer from anyone and
// the launcher's disconnect fails nothing.
func TestBrokerRejectTimeoutDefer(t *testing.T) {
	bs := startBroker(t, BrokerConfig{AcceptTimeout: 200 * time.Millisecond}, "")
	rejecter := dialFakeRunner(t, bs, "rejecter", "rejecter")
	mute := dialFakeRunner(t, bs, "mute", "mute")
	launcher := dialFakeRunner(t, bs, "launcher", "launcher-javascript")
	rejecter.send(TaskOffer{OfferID: "r1", TaskType: "javascript", ValidFor: 5000})
	time.Sleep(20 * time.Millisecond) // FIFO order of offers = arrival order
	mute.send(TaskOffer{OfferID: "m1", TaskType: "javascript", ValidFor: 5000})
	mute.send(TaskOffer{OfferID: "m2", TaskType: "javascript", ValidFor: 5000})
	time.Sleep(20 * time.Millisecond)
	launcher.send(TaskOffer{OfferID: "l1", TaskType: "javascript", ValidFor: -1})
	waitFor(t, "offers", 2*time.Second, func() bool { return bs.b.openOffers("javascript") == 4 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := acquireAsync(ctx, bs.b, "javascript", "job", codeSettings)
	if m := rejecter.recv(2 * time.Second).(TaskOfferAccept); m.OfferID != "r1" {
		t.Fatalf("%+v", m)
	}
	rejecter.send(TaskRejected{TaskID: "job", Reason: RejectAtCapacity})
	if m := mute.recv(2 * time.Second).(TaskOfferAccept); m.OfferID != "m1" {
		t.Fatalf("%+v", m)
	}
	if m := mute.recv(2 * time.Second).(TaskCancel); m.Reason != CancelAcceptTimeout || m.TaskID != "job" {
		t.Fatalf("%+v", m)
	}
	// m2 was dropped with the timeout: the launcher's offer is next
	if m := launcher.recv(2 * time.Second).(TaskOfferAccept); m.OfferID != "l1" {
		t.Fatalf("%+v", m)
	}
	launcher.send(TaskDeferred{TaskID: "job"})
	if !bs.b.HasRunner("javascript") {
		t.Error("HasRunner false right after a deferral")
	}
	_ = launcher.ws.Close() // as the launcher does: no close handshake
	time.Sleep(100 * time.Millisecond)
	select {
	case r := <-res:
		t.Fatalf("Acquire returned before a new offer: %+v", r)
	default:
	}
	// the "real runner" connects and offers
	real := dialFakeRunner(t, bs, "real", "JS Task Runner")
	real.send(TaskOffer{OfferID: "x1", TaskType: "javascript", ValidFor: 5000})
	if m := real.recv(2 * time.Second).(TaskOfferAccept); m.OfferID != "x1" || m.TaskID != "job" {
		t.Fatalf("%+v", m)
	}
	real.send(TaskAccepted{TaskID: "job"})
	if m := real.recv(2 * time.Second).(TaskSettings); !jsonEqual(t, m.Settings, codeSettings) {
		t.Fatalf("settings %s", m.Settings)
	}
	r := <-res
	if r.err != nil || r.dt.RunnerID != "real" {
		t.Fatalf("%+v", r)
	}
	real.send(TaskDone{TaskID: "job", Data: json.RawMessage(`{"result":[]}`)})
	var last TaskMessage
	for m := range r.dt.Incoming() {
		last = m
	}
	if _, ok := last.(TaskDone); !ok || r.dt.Err() != nil {
		t.Fatalf("%T %v", last, r.dt.Err())
	}
}

// Acquire gives up when its context ends and tells a runner that was asked.
func TestAcquireContextEnds(t *testing.T) {
	bs := startBroker(t, BrokerConfig{}, "")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := bs.b.Acquire(ctx, "javascript", "none", codeSettings); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v", err)
	}
	if bs.b.HasRunner("javascript") {
		t.Error("HasRunner with no runner")
	}
}

// A handler that returns without ending its task makes the runner fail it (n8n would wait forever);
// an RPC answered with status "error" is an *RPCError.
func TestRunnerHandlerContract(t *testing.T) {
	bs := startBroker(t, BrokerConfig{}, "")
	rpcErr := make(chan error, 1)
	r, _ := startRunner(t, fastRunnerConfig(t, bs.url(), 1), handlerFunc(func(ctx context.Context, task *UpstreamTask) {
		_, err := task.RPC(ctx, "helpers.nope", nil)
		rpcErr <- err
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dt, err := bs.b.Acquire(ctx, "javascript", "forgetful", codeSettings)
	if err != nil {
		t.Fatal(err)
	}
	var final TaskMessage
	for m := range dt.Incoming() {
		switch v := m.(type) {
		case RPC:
			if string(v.Params) != "[]" {
				t.Errorf("params %s", v.Params)
			}
			_ = dt.Send(ctx, RPCResponse{CallID: v.CallID, Status: RPCStatusError, Data: json.RawMessage(`"Method not allowed"`)})
		default:
			final = m
		}
	}
	var re *RPCError
	if err := <-rpcErr; !errors.As(err, &re) || err.Error() != "rpc helpers.nope failed: Method not allowed" {
		t.Errorf("RPC error = %v", err)
	}
	te, ok := final.(TaskError)
	if !ok || !strings.Contains(string(te.Error), "ended without a result") {
		t.Fatalf("final = %#v", final)
	}
	waitFor(t, "slot freed", 2*time.Second, func() bool { return r.Running() == 0 })
}

// A connection that never sends runner:info is closed after the grant TTL.
func TestBrokerRegistrationDeadline(t *testing.T) {
	bs := startBroker(t, BrokerConfig{GrantTTL: 100 * time.Millisecond}, "")
	hdr := http.Header{"Authorization": []string{"Bearer " + bs.b.MintGrant()}}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+bs.addr+"/runners/_ws?id=quiet", hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, ok := wsRecv(t, ws, time.Second).(InfoRequest); !ok {
		t.Fatal("no inforequest")
	}
	_ = ws.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, _, err := ws.ReadMessage(); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("silent connection not closed by the broker: %v", err)
	}
}

// AcquireWithin gives up like n8n's broker (broker:requestexpired after N8N_RUNNERS_TASK_REQUEST_TIMEOUT)
// when no runner takes the task; a launcher's deferral starts the wait over (at most
// maxRequestRefreshes times), so a runner on its way still gets the task.
func TestBrokerRequestTimeout(t *testing.T) {
	bs := startBroker(t, BrokerConfig{AcceptTimeout: 200 * time.Millisecond}, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("no runner", func(t *testing.T) {
		t0 := time.Now()
		_, err := bs.b.AcquireWithin(ctx, "javascript", "lonely", codeSettings, 300*time.Millisecond)
		if !errors.Is(err, ErrRequestTimeout) {
			t.Fatalf("err %v, want ErrRequestTimeout", err)
		}
		if el := time.Since(t0); el < 300*time.Millisecond || el > 2*time.Second {
			t.Errorf("gave up after %s, want about 300ms", el)
		}
	})

	t.Run("deferral refreshes the wait", func(t *testing.T) {
		const wait = time.Second
		res := make(chan acquired, 1)
		go func() {
			dt, err := bs.b.AcquireWithin(ctx, "javascript", "deferred", codeSettings, wait)
			res <- acquired{dt, err}
		}()
		// The launcher connects when most of the wait is gone, and defers.
		time.Sleep(700 * time.Millisecond)
		launcher := dialFakeRunner(t, bs, "launcher", "launcher-javascript")
		launcher.send(TaskOffer{OfferID: "l1", TaskType: "javascript", ValidFor: -1})
		if m := launcher.recv(2 * time.Second).(TaskOfferAccept); m.TaskID != "deferred" {
			t.Fatalf("%+v", m)
		}
		launcher.send(TaskDeferred{TaskID: "deferred"})
		_ = launcher.ws.Close()
		// Its runner comes 600 ms after the deferral: past the first deadline (1 s), within the refreshed one.
		time.Sleep(600 * time.Millisecond)
		real := dialFakeRunner(t, bs, "real", "JS Task Runner")
		real.send(TaskOffer{OfferID: "x1", TaskType: "javascript", ValidFor: 5000})
		if m := real.recv(2 * time.Second).(TaskOfferAccept); m.TaskID != "deferred" {
			t.Fatalf("%+v", m)
		}
		real.send(TaskAccepted{TaskID: "deferred"})
		real.recv(2 * time.Second) // settings
		if r := <-res; r.err != nil || r.dt.RunnerID != "real" {
			t.Fatalf("task not handed to the runner the launcher started: %+v", r)
		}
	})
}

// A registered runner that sends no offers while requests of its type keep expiring is disconnected
// (n8n: "sent no task offers while task requests expired, reporting it as unresponsive"), so its
// launcher or supervisor can replace it; a runner that offers is left alone.
func TestBrokerDropsSilentRunner(t *testing.T) {
	bs := startBroker(t, BrokerConfig{}, "")
	silent := dialFakeRunner(t, bs, "silent", "hung runner")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	expire := func(id string) {
		if _, err := bs.b.AcquireWithin(ctx, "javascript", id, codeSettings, 100*time.Millisecond); !errors.Is(err, ErrRequestTimeout) {
			t.Fatalf("%s: %v", id, err)
		}
	}
	expire("r1") // notes it as silent
	if !bs.b.HasRunner("javascript") {
		t.Fatal("silent runner dropped at the first expiry; n8n waits for a second one")
	}
	time.Sleep(silentRunnerGrace)
	expire("r2")
	_ = silent.ws.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		if _, _, err := silent.ws.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.CloseProtocolError {
				t.Fatalf("silent runner's connection ended with %v, want close 1002", err)
			}
			break
		}
	}
	waitFor(t, "silent runner deregistered", 2*time.Second, func() bool { return !bs.b.HasRunner("javascript") })

	// A runner that keeps an offer open is not silent, whatever expires for another type.
	busy := dialFakeRunner(t, bs, "busy", "JS Task Runner")
	busy.send(TaskOffer{OfferID: "b1", TaskType: "javascript", ValidFor: -1})
	waitFor(t, "offer", 2*time.Second, func() bool { return bs.b.openOffers("javascript") == 1 })
	bs.b.flagSilentRunners("javascript")
	time.Sleep(silentRunnerGrace)
	bs.b.flagSilentRunners("javascript")
	time.Sleep(100 * time.Millisecond)
	if !bs.b.HasRunner("javascript") || bs.b.openOffers("javascript") != 1 {
		t.Error("a runner with an open offer was dropped as silent")
	}
}
