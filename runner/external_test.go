package runner

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/n8n-fn/n8n-fn/internal/officialrunner"
	"github.com/n8n-fn/n8n-fn/n8nproto"
)

// External mode behind the sidecar as n8n's own broker behaves toward its runners: an ordinary Code
// task waits for a runner (N8N_FN_NO_RUNNER_WAIT, n8n's N8N_RUNNERS_TASK_REQUEST_TIMEOUT) while
// directives keep running, and a runner that goes away before it started a task does not fail it.

// startExternalRunner starts the official runner against the sidecar's broker with a grant from its
// POST /runners/auth path (what the launcher does).
func startExternalRunner(t *testing.T, s *Sidecar, id string) *officialrunner.Process {
	t.Helper()
	return officialrunner.StartT(t, officialRunnerDir(t), officialrunner.Options{
		BrokerURI: "http://" + s.BrokerAddr(), GrantToken: s.broker.MintGrant(), RunnerID: id, MaxConcurrency: 2, TaskTimeout: 25,
	})
}

// TestExternalTaskWaitsForLateRunner: the task arrives while no runner is behind the sidecar (the
// compose runners container starts after the sidecar's first health check); it runs once the runner
// registers 2 s later, and a directive sent in the meantime is answered at once.
func TestExternalTaskWaitsForLateRunner(t *testing.T) {
	s, n8n, _ := testSidecar(t, func(c *Config) { c.RunnerMode = ModeExternal; c.NoRunnerWait = 45 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Second)
	defer cancel()
	t0 := time.Now()
	done := make(chan transcript, 1)
	go func() {
		done <- n8n.serveTask(ctx, t, "early", settingsJSON(t, "return $input.all().map(i => ({json: {n: i.json.a}}));", "runOnceForAllItems", false, nil), nil)
	}()
	waitFor(t, "ordinary task accepted by the sidecar", 5*time.Second, func() bool { return s.runner.Running() == 1 })

	tr := n8n.serveTask(ctx, t, "directive", settingsJSON(t, `/* @n8n-fn {"op":"echo"} */`, "runOnceForAllItems", false, nil), nil)
	if typ, v := finalJSON(t, tr.final); typ != n8nproto.TypeTaskDone {
		t.Fatalf("directive while the ordinary task waits: %s %v", typ, v)
	}
	if el := time.Since(t0); el > 2*time.Second {
		t.Errorf("directive took %s: it waited behind the ordinary task", el)
	}
	select {
	case tr := <-done:
		t.Fatalf("ordinary task ended before any runner was behind the sidecar: %v %v", tr.types, tr.final)
	case <-time.After(2 * time.Second):
	}
	startExternalRunner(t, s, "late")
	tr = <-done
	if typ, v := finalJSON(t, tr.final); typ != n8nproto.TypeTaskDone || len(v.(map[string]any)["result"].([]any)) != 3 {
		t.Fatalf("task after the runner came: %s %v", typ, v)
	}
	t.Logf("ordinary task done %s after it arrived (runner started after 2 s)", time.Since(t0).Round(time.Millisecond))
}

// fakeBehindRunner is a runner behind the sidecar scripted frame by frame: it registers, offers one
// slot, accepts the task, takes its settings and then does what the test says.
func fakeBehindRunner(t *testing.T, s *Sidecar, id string) (*websocket.Conn, n8nproto.TaskSettings) {
	t.Helper()
	hdr := http.Header{"Authorization": []string{"Bearer " + s.broker.MintGrant()}}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+s.BrokerAddr()+"/runners/_ws?id="+id, hdr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	send := func(m n8nproto.Message) {
		b, err := n8nproto.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(typ string) n8nproto.Message {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("fake runner waiting for %s: %v", typ, err)
			}
			m, err := n8nproto.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if m.MessageType() == typ {
				return m
			}
		}
	}
	recv(n8nproto.TypeInfoRequest)
	send(n8nproto.RunnerInfo{Name: "JS Task Runner", Types: []string{"javascript"}})
	recv(n8nproto.TypeRunnerRegistered)
	send(n8nproto.TaskOffer{OfferID: "only", TaskType: "javascript", ValidFor: -1})
	acc := recv(n8nproto.TypeTaskOfferAccept).(n8nproto.TaskOfferAccept)
	send(n8nproto.TaskAccepted{TaskID: acc.TaskID})
	return ws, recv(n8nproto.TypeTaskSettings).(n8nproto.TaskSettings)
}

// TestRunnerGoneBeforeStartHandsTaskOn: the first runner takes the task and vanishes (killed, or
// dropped for missing heartbeats) before it asked for the task's data, so it ran none of its code:
// the task goes to the next runner and n8n gets its result, not an error. A runner that vanishes
// after it started is TestRunnerLostFailsTaskAndRestarts (the task fails: it may have run).
func TestRunnerGoneBeforeStartHandsTaskOn(t *testing.T) {
	s, n8n, _ := testSidecar(t, func(c *Config) { c.RunnerMode = ModeExternal; c.NoRunnerWait = 45 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Second)
	defer cancel()
	done := make(chan transcript, 1)
	go func() {
		done <- n8n.serveTask(ctx, t, "handover", settingsJSON(t, "return [{json: {ran: 'second runner'}}];", "runOnceForAllItems", false, nil), nil)
	}()
	ws, settings := fakeBehindRunner(t, s, "doomed")
	if !strings.Contains(string(settings.Settings), "second runner") {
		t.Fatalf("fake runner got other settings: %s", settings.Settings)
	}
	_ = ws.UnderlyingConn().Close() // gone without a close frame, like a killed process
	startExternalRunner(t, s, "next")
	tr := <-done
	typ, v := finalJSON(t, tr.final)
	if typ != n8nproto.TypeTaskDone {
		t.Fatalf("task of the vanished runner: %s %v, want it done by the next runner", typ, v)
	}
	if got := v.(map[string]any)["result"].([]any)[0].(map[string]any)["json"].(map[string]any)["ran"]; got != "second runner" {
		t.Errorf("result %v", v)
	}
}

// TestRunCodeTaskIsNotHandedOn: a runCode task (no data request before its code runs) whose runner
// vanishes may have run, so it fails like any task whose runner died mid-way.
func TestRunCodeTaskIsNotHandedOn(t *testing.T) {
	s, n8n, _ := testSidecar(t, func(c *Config) { c.RunnerMode = ModeExternal; c.NoRunnerWait = 45 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan transcript, 1)
	go func() {
		done <- n8n.serveTask(ctx, t, "runcode", settingsJSON(t, "return 1;", n8nproto.NodeModeRunCode, false, nil), nil)
	}()
	ws, _ := fakeBehindRunner(t, s, "doomed")
	_ = ws.UnderlyingConn().Close()
	msg, _ := errorMessage(t, <-done)
	if !strings.Contains(msg, "disconnected") {
		t.Errorf("runCode task of a vanished runner: %q, want the runner-disconnected error", msg)
	}
}

// TestSpawnKillsHungRunner: a spawned runner whose connection is gone (the broker dropped it for
// missed heartbeats) but whose process lives on is hung; the spawner kills it so that it can start a
// working one. The "runner" is a process that never exits by itself, registered by a scripted client
// with the process's grant token.
func TestSpawnKillsHungRunner(t *testing.T) {
	b, err := n8nproto.NewBroker(n8nproto.BrokerConfig{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(srv.Close)
	cfg := Config{ID: "hung", RunnerCommand: "sleep", RunnerArgs: []string{"600"}, RunnerDir: t.TempDir(), MaxConcurrency: 1, TaskTimeout: 30 * time.Second}
	sp := newSpawner(cfg, srv.URL, b, testLogger(t))
	sp.hungAfter = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	sp.start(ctx, &wg)
	t.Cleanup(func() {
		sp.stopRestarting()
		sctx, scancel := context.WithTimeout(context.Background(), time.Second)
		sp.shutdown(sctx)
		scancel()
		cancel()
		wg.Wait()
	})
	waitFor(t, "process started", 5*time.Second, func() bool { sp.mu.Lock(); defer sp.mu.Unlock(); return sp.cmd != nil })
	sp.mu.Lock()
	first := sp.cmd.Process.Pid
	sp.mu.Unlock()

	// Connect with the grant the spawner gave the process, under an id of our own (as a 1.x runner,
	// which ignores N8N_RUNNERS_ID, would).
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", first))
	if err != nil {
		t.Skipf("needs /proc: %v", err)
	}
	var grant string
	for _, kv := range strings.Split(string(environ), "\x00") {
		if v, ok := strings.CutPrefix(kv, "N8N_RUNNERS_GRANT_TOKEN="); ok {
			grant = v
		}
	}
	hdr := http.Header{"Authorization": []string{"Bearer " + grant}}
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/runners/_ws?id=random-id-1x", hdr)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []n8nproto.Message{nil, n8nproto.RunnerInfo{Name: "JS Task Runner", Types: []string{"javascript"}}} {
		if step == nil {
			_, _, _ = ws.ReadMessage() // broker:inforequest
			continue
		}
		raw, _ := n8nproto.Encode(step)
		if err := ws.WriteMessage(websocket.TextMessage, raw); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "runner registered", 5*time.Second, func() bool { return b.RegisteredWithGrant(grant) })
	time.Sleep(time.Second) // longer than hungAfter: a registered runner is never killed
	sp.mu.Lock()
	alive := sp.cmd != nil && sp.cmd.Process.Pid == first
	sp.mu.Unlock()
	if !alive {
		t.Fatal("a registered runner was stopped")
	}
	_ = ws.UnderlyingConn().Close() // the connection goes, the process stays: hung
	waitFor(t, "hung runner killed and a new one started", 10*time.Second, func() bool {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		return sp.cmd != nil && sp.cmd.Process.Pid != first // killed (exit -1: by a signal) and restarted
	})
}

// TestNoRunnerWaitDefaultsToN8NsRequestTimeout: without N8N_FN_NO_RUNNER_WAIT a task waits as long
// as n8n 2.41.1's broker does by default (N8N_RUNNERS_TASK_REQUEST_TIMEOUT=60).
func TestNoRunnerWaitDefaultsToN8NsRequestTimeout(t *testing.T) {
	c, err := ConfigFromEnv(func(k string) string {
		return map[string]string{"N8N_RUNNERS_AUTH_TOKEN": "x", "N8N_FN_RUNNER_MODE": ModeExternal}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.NoRunnerWait != 60*time.Second {
		t.Errorf("default NoRunnerWait %s, want n8n's 60s", c.NoRunnerWait)
	}
}
