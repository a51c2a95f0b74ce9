package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/n8n-fn/n8n-fn/internal/officialrunner"
	"github.com/n8n-fn/n8n-fn/n8nproto"
)

// These tests put the sidecar between a stand-in for n8n (a second n8nproto.Broker: n8n's broker role
// is the same protocol) and the official @n8n/task-runner, spawned by the sidecar itself. The
// baseline for "transparent" is the same official runner attached directly to a stand-in n8n.

const testToken = "test-auth-token"

// officialRunnerDir finds the installed @n8n/task-runner package: N8N_FN_RUNNER_DIR, else the runner
// of n8n $N8N_VERSION (internal/officialrunner: that version's install in the cache, or npm).
func officialRunnerDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("N8N_FN_RUNNER_DIR"); d != "" {
		return d
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	d, err := officialrunner.Dir(ctx)
	if err != nil {
		t.Fatalf("official runner not found: %v (install @n8n/task-runner and set N8N_FN_RUNNER_DIR to its directory)", err)
	}
	return d
}

func testLogger(t testing.TB) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	return l.WithField("test", t.Name())
}

// fakeN8N is the upstream broker the sidecar (or a directly attached runner) connects to.
type fakeN8N struct {
	broker *n8nproto.Broker
	srv    *httptest.Server
}

func newFakeN8N(t testing.TB) *fakeN8N {
	t.Helper()
	b, err := n8nproto.NewBroker(n8nproto.BrokerConfig{AuthToken: testToken, Logger: testLogger(t).WithField("role", "fake-n8n")})
	if err != nil {
		t.Fatalf("NewBroker: %v", err)
	}
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = b.Drain(ctx)
		srv.CloseClientConnections()
		srv.Close()
	})
	return &fakeN8N{broker: b, srv: srv}
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// transcript is what n8n saw of one task.
type transcript struct {
	types       []string          // message types from the runner side, in order
	dataParams  []json.RawMessage // requestParams of every data request
	rpcNames    []string
	final       n8nproto.TaskMessage // TaskDone or TaskError
	closedEarly bool                 // Incoming closed without a final message
}

// serveTask plays n8n for one task: acquire a runner, answer its data requests (with chunking and
// include flags applied like n8n's stripper), node-type requests and RPCs, until it ends.
func (f *fakeN8N) serveTask(ctx context.Context, t testing.TB, taskID, settings string, onMsg func(*n8nproto.DownstreamTask, n8nproto.TaskMessage)) transcript {
	t.Helper()
	d, err := f.broker.Acquire(ctx, "javascript", taskID, json.RawMessage(settings))
	if err != nil {
		t.Fatalf("acquire a runner for %s: %v", taskID, err)
	}
	var tr transcript
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("task %s: %v (so far %v)", taskID, ctx.Err(), tr.types)
		case m, ok := <-d.Incoming():
			if !ok {
				tr.closedEarly = true
				return tr
			}
			tr.types = append(tr.types, m.MessageType())
			if onMsg != nil {
				onMsg(d, m)
			}
			switch m := m.(type) {
			case n8nproto.TaskDataRequest:
				tr.dataParams = append(tr.dataParams, m.RequestParams)
				send(ctx, t, d, n8nproto.TaskDataResponse{RequestID: m.RequestID, Data: dataResponse(t, m.RequestParams)})
			case n8nproto.NodeTypesRequest:
				send(ctx, t, d, n8nproto.NodeTypes{RequestID: m.RequestID, NodeTypes: json.RawMessage(`[]`)})
			case n8nproto.RPC:
				tr.rpcNames = append(tr.rpcNames, m.Name)
				switch m.Name {
				case "logNodeOutput":
					send(ctx, t, d, n8nproto.RPCResponse{CallID: m.CallID, Status: "success", Data: json.RawMessage(`null`)})
				case "helpers.httpRequest":
					send(ctx, t, d, n8nproto.RPCResponse{CallID: m.CallID, Status: "success", Data: json.RawMessage(`{"status":"ok","from":"rpc"}`)})
				default:
					send(ctx, t, d, n8nproto.RPCResponse{CallID: m.CallID, Status: "error", Data: json.RawMessage(`"Method not allowed"`)})
				}
			case n8nproto.TaskDone, n8nproto.TaskError:
				tr.final = m
				return tr
			}
		}
	}
}

func send(ctx context.Context, t testing.TB, d *n8nproto.DownstreamTask, m n8nproto.TaskMessage) {
	t.Helper()
	if err := d.Send(ctx, m); err != nil {
		t.Errorf("send %s: %v", m.MessageType(), err)
	}
}

// dataResponse is testdata/dataresponse.json shaped by the request params the way n8n's
// data-request-response-stripper does it for input.
func dataResponse(t testing.TB, params json.RawMessage) json.RawMessage {
	t.Helper()
	raw, err := os.ReadFile("testdata/dataresponse.json")
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	var p struct {
		Input struct {
			Include bool            `json:"include"`
			Chunk   *n8nproto.Chunk `json:"chunk"`
		} `json:"input"`
		Env bool `json:"env"`
	}
	_ = json.Unmarshal(params, &p)
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	if p.Env {
		// env access allowed (N8N_BLOCK_ENV_ACCESS_IN_NODE=false): n8n sends its environment
		data["envProviderState"] = map[string]any{"env": map[string]any{"FOO": "bar"}, "isEnvAccessBlocked": false, "isProcessAvailable": true}
	}
	if !p.Input.Include {
		data["inputData"] = map[string]any{}
	} else if c := p.Input.Chunk; c != nil {
		main := data["inputData"].(map[string]any)["main"].([]any)
		items := main[0].([]any)
		end := min(c.StartIndex+c.Count, len(items))
		main[0] = items[min(c.StartIndex, end):end]
	}
	out, _ := json.Marshal(data)
	return out
}

// testSidecar starts a sidecar in front of a fresh fake n8n. mutate adjusts its config.
func testSidecar(t testing.TB, mutate func(*Config)) (*Sidecar, *fakeN8N, func() error) {
	t.Helper()
	n8n := newFakeN8N(t)
	cfg := Config{
		BrokerURI: n8n.srv.URL, AuthToken: testToken, ID: "sc-" + strings.ReplaceAll(t.Name(), "/", "-"),
		BrokerListen: "127.0.0.1:0", HealthListen: "127.0.0.1:0",
		RunnerMode: ModeSpawn, RunnerDir: officialRunnerDir(t),
		MaxConcurrency: 2, TaskTimeout: 30 * time.Second, ShutdownGrace: 10 * time.Second, NoRunnerWait: time.Second,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var runErr error
	shutdown := func() error {
		once.Do(func() {
			stop()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				t.Errorf("sidecar did not stop within 30s")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = shutdown() })
	waitFor(t, "sidecar registered with n8n", 15*time.Second, func() bool { return n8n.broker.HasRunner("javascript") })
	if cfg.RunnerMode == ModeSpawn {
		waitFor(t, "official runner registered behind the sidecar", 30*time.Second, func() bool { return s.broker.HasRunner("javascript") })
	}
	return s, n8n, shutdown
}

// directRunner attaches the official runner straight to a fresh fake n8n: the baseline. It gets the
// same settings a sidecar with taskTimeout would give its spawned runner.
func directRunner(t testing.TB, taskTimeout time.Duration) *fakeN8N {
	t.Helper()
	n8n := newFakeN8N(t)
	cfg := Config{ID: "direct", RunnerCommand: "node", RunnerArgs: strings.Fields(defaultRunnerArgs), RunnerDir: officialRunnerDir(t),
		MaxConcurrency: 2, MaxPayload: 1 << 30, TaskTimeout: taskTimeout}
	sp := newSpawner(cfg, n8n.srv.URL, n8n.broker, testLogger(t).WithField("part", "direct-runner"))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	sp.start(ctx, &wg)
	t.Cleanup(func() {
		sp.stopRestarting()
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = n8n.broker.Drain(dctx)
		sp.shutdown(dctx)
		dcancel()
		cancel()
		wg.Wait()
	})
	waitFor(t, "official runner registered directly", 30*time.Second, func() bool { return n8n.broker.HasRunner("javascript") })
	return n8n
}

func settingsJSON(t testing.TB, code, mode string, continueOnFail bool, chunk *n8nproto.Chunk) string {
	t.Helper()
	s := map[string]any{"code": code, "nodeMode": mode, "workflowMode": "manual", "continueOnFail": continueOnFail, "additionalProperties": map[string]any{}}
	if chunk != nil {
		s["chunk"] = chunk
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func finalJSON(t testing.TB, m n8nproto.TaskMessage) (string, any) {
	t.Helper()
	var raw json.RawMessage
	switch m := m.(type) {
	case n8nproto.TaskDone:
		raw = m.Data
	case n8nproto.TaskError:
		raw = m.Error
	default:
		t.Fatalf("task did not end with done/error but %T", m)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("final payload is not JSON: %v", err)
	}
	return m.MessageType(), v
}

// TestRelayIsTransparent runs the same Code-node tasks through the sidecar and against the official
// runner attached directly, and requires the same messages and the same result.
func TestRelayIsTransparent(t *testing.T) {
	// 4 s upstream: both runners get a 2 s task timeout, so the timeout case is quick.
	const timeout = 4 * time.Second
	_, viaSidecar, _ := testSidecar(t, func(c *Config) { c.TaskTimeout = timeout })
	direct := directRunner(t, timeout)

	cases := []struct {
		name, code, mode string
		continueOnFail   bool
		chunk            *n8nproto.Chunk
		check            func(t *testing.T, tr transcript)
	}{
		{name: "all items", mode: "runOnceForAllItems",
			code: "return $input.all().map(i => ({json: {...i.json, doubled: i.json.a * 2}}));",
			check: func(t *testing.T, tr transcript) {
				_, v := finalJSON(t, tr.final)
				if got := len(v.(map[string]any)["result"].([]any)); got != 3 {
					t.Errorf("want 3 items, got %d", got)
				}
			}},
		{name: "each item chunk", mode: "runOnceForEachItem", chunk: &n8nproto.Chunk{StartIndex: 1, Count: 2},
			code: "return {json: {...$json, idx: $itemIndex}};",
			check: func(t *testing.T, tr transcript) {
				_, v := finalJSON(t, tr.final)
				res := v.(map[string]any)["result"].([]any)
				if len(res) != 2 || res[0].(map[string]any)["json"].(map[string]any)["idx"] != 1.0 {
					t.Errorf("unexpected chunk result %v", res)
				}
			}},
		{name: "thrown error", mode: "runOnceForAllItems", code: "const x = 1;\nthrow new Error('boom');",
			check: func(t *testing.T, tr transcript) {
				typ, v := finalJSON(t, tr.final)
				if typ != n8nproto.TypeTaskError || !strings.Contains(v.(map[string]any)["message"].(string), "boom [line 2]") {
					t.Errorf("want taskerror 'boom [line 2]', got %s %v", typ, v)
				}
			}},
		{name: "continue on fail", mode: "runOnceForAllItems", continueOnFail: true, code: "throw new Error('soft');"},
		{name: "console.log and httpRequest", mode: "runOnceForAllItems",
			code: "console.log('hello', {x: 1});\nconst r = await this.helpers.httpRequest({url: 'http://127.0.0.1:1/x', json: true});\nreturn [{json: {r}}];",
			check: func(t *testing.T, tr transcript) {
				if !reflect.DeepEqual(tr.rpcNames, []string{"logNodeOutput", "helpers.httpRequest"}) {
					t.Errorf("rpcs %v", tr.rpcNames)
				}
			}},
		{name: "other node", mode: "runOnceForAllItems", code: "return [{json: {ct: $('Webhook').first().json.headers['content-type']}}];"},
		{name: "task timeout", mode: "runOnceForAllItems", code: "await new Promise(r => setTimeout(r, 10000));\nreturn [];",
			check: func(t *testing.T, tr transcript) {
				typ, v := finalJSON(t, tr.final)
				if typ != n8nproto.TypeTaskError || !strings.Contains(v.(map[string]any)["message"].(string), "timed out") {
					t.Errorf("want the runner's timeout error, got %s %v", typ, v)
				}
			}},
		{name: "env allowed", mode: "runOnceForAllItems", code: "return [{json: {foo: $env.FOO}}];",
			check: func(t *testing.T, tr transcript) {
				_, v := finalJSON(t, tr.final)
				if !strings.Contains(fmt.Sprint(v), "result:[map[json:map[foo:bar]]]") {
					t.Errorf("want foo=bar from $env, got %v", v)
				}
			}},
		{name: "dynamic node name", mode: "runOnceForAllItems", code: "const n = ['Web', 'hook'].join('');\nreturn [{json: {x: $(n).first().json.body.x}}];"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			settings := settingsJSON(t, c.code, c.mode, c.continueOnFail, c.chunk)
			id := "task" + string(rune('A'+i))
			want := direct.serveTask(ctx, t, id, settings, nil)
			got := viaSidecar.serveTask(ctx, t, id, settings, nil)
			if want.closedEarly || got.closedEarly {
				t.Fatalf("task ended without a result: direct %v, sidecar %v", want.closedEarly, got.closedEarly)
			}
			if !reflect.DeepEqual(got.types, want.types) {
				t.Errorf("message sequence differs:\n sidecar %v\n direct  %v", got.types, want.types)
			}
			if !reflect.DeepEqual(got.dataParams, want.dataParams) {
				t.Errorf("data request params differ:\n sidecar %s\n direct  %s", got.dataParams, want.dataParams)
			}
			gt, gv := finalJSON(t, got.final)
			wt, wv := finalJSON(t, want.final)
			if gt != wt || !reflect.DeepEqual(gv, wv) {
				t.Errorf("result differs:\n sidecar %s %v\n direct  %s %v", gt, gv, wt, wv)
			}
			if c.check != nil {
				c.check(t, got)
			}
		})
	}
}

func errorMessage(t *testing.T, tr transcript) (string, map[string]any) {
	t.Helper()
	typ, v := finalJSON(t, tr.final)
	if typ != n8nproto.TypeTaskError {
		t.Fatalf("want a taskerror, got %s %v", typ, v)
	}
	m := v.(map[string]any)
	for _, k := range []string{"message", "description", "stack"} {
		if _, ok := m[k]; !ok {
			t.Errorf("task error has no %q field: %v", k, m)
		}
	}
	msg, _ := m["message"].(string)
	return msg, m
}

// checkEcho checks an echo task: one input-only data request, the items back with the marker and
// their pairedItem.
func checkEcho(t *testing.T, tr transcript, sidecarID string) {
	t.Helper()
	if !reflect.DeepEqual(tr.types, []string{n8nproto.TypeTaskDataRequest, n8nproto.TypeTaskDone}) {
		t.Fatalf("messages %v", tr.types)
	}
	var p, want any
	_ = json.Unmarshal(tr.dataParams[0], &p)
	_ = json.Unmarshal([]byte(n8nproto.InputOnlyParams), &want)
	if !reflect.DeepEqual(p, want) {
		t.Errorf("data request params %s, want %s", tr.dataParams[0], n8nproto.InputOnlyParams)
	}
	_, v := finalJSON(t, tr.final)
	res := v.(map[string]any)["result"].([]any)
	if len(res) != 3 {
		t.Fatalf("want 3 items back, got %v", res)
	}
	for i, it := range res {
		item := it.(map[string]any)
		j := item["json"].(map[string]any)
		if j["a"] != float64(i+1) {
			t.Errorf("item %d lost its fields: %v", i, j)
		}
		marker, _ := j["_n8nfn"].(map[string]any)
		if marker["echo"] != true || marker["sidecar"] != sidecarID {
			t.Errorf("item %d marker %v", i, j["_n8nfn"])
		}
		if !reflect.DeepEqual(item["pairedItem"], map[string]any{"item": float64(i)}) {
			t.Errorf("item %d pairedItem %v", i, item["pairedItem"])
		}
	}
}

func TestNativeOps(t *testing.T) {
	s, n8n, _ := testSidecar(t, func(c *Config) { c.RunnerMode = ModeNone })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const throwLine = "\nthrow new Error('n8n-fn: this node must run on the n8n-fn sidecar runner');"

	t.Run("echo", func(t *testing.T) {
		tr := n8n.serveTask(ctx, t, "echo1", settingsJSON(t, `/* @n8n-fn {"op":"echo"} */`+throwLine, "runOnceForAllItems", false, nil), nil)
		checkEcho(t, tr, s.cfg.ID)
	})
	t.Run("malformed header", func(t *testing.T) {
		tr := n8n.serveTask(ctx, t, "bad1", settingsJSON(t, `/* @n8n-fn {"op":"echo" */`+throwLine, "runOnceForAllItems", false, nil), nil)
		msg, m := errorMessage(t, tr)
		if !strings.Contains(msg, "does not parse") || !strings.Contains(msg, `{\"op\":\"echo\"`) && !strings.Contains(msg, `{"op":"echo"`) {
			t.Errorf("message does not quote the problem: %q", msg)
		}
		if d, _ := m["description"].(string); !strings.Contains(d, "@n8n-fn") {
			t.Errorf("description does not say what to fix: %q", d)
		}
		// Only the node's name may be asked for (to name it in the error): no items, no env.
		for _, p := range tr.dataParams {
			if string(p) != n8nproto.NodeOnlyParams {
				t.Errorf("a broken header must not pull data, got a request for %s", p)
			}
		}
	})
	t.Run("unknown op", func(t *testing.T) {
		tr := n8n.serveTask(ctx, t, "bad2", settingsJSON(t, `/* @n8n-fn {"op":"frobnicate"} */`+throwLine, "runOnceForAllItems", false, nil), nil)
		msg, _ := errorMessage(t, tr)
		if !strings.Contains(msg, `"frobnicate"`) {
			t.Errorf("message does not name the op: %q", msg)
		}
	})
	t.Run("op not served", func(t *testing.T) {
		// "call" is a valid op the stub function runtime does not serve.
		if _, served := s.ops["call"]; served {
			t.Skip("function runtime serves call")
		}
		tr := n8n.serveTask(ctx, t, "bad3", settingsJSON(t, `/* @n8n-fn {"op":"call","function":"add"} */`+throwLine, "runOnceForAllItems", false, nil), nil)
		msg, _ := errorMessage(t, tr)
		if !strings.Contains(msg, `"call"`) || !strings.Contains(msg, "echo") {
			t.Errorf("message does not name the op and what is served: %q", msg)
		}
	})
	t.Run("each item mode", func(t *testing.T) {
		tr := n8n.serveTask(ctx, t, "bad4", settingsJSON(t, `/* @n8n-fn {"op":"echo"} */`+throwLine, "runOnceForEachItem", false, &n8nproto.Chunk{Count: 3}), nil)
		msg, _ := errorMessage(t, tr)
		if !strings.Contains(msg, "Run Once for All Items") {
			t.Errorf("message does not say which mode: %q", msg)
		}
	})
	t.Run("continue on fail", func(t *testing.T) {
		tr := n8n.serveTask(ctx, t, "bad5", settingsJSON(t, `/* @n8n-fn {"op":"echo" */`+throwLine, "runOnceForAllItems", true, nil), nil)
		typ, v := finalJSON(t, tr.final)
		if typ != n8nproto.TypeTaskDone {
			t.Fatalf("continueOnFail must give an error item like the official runner, got %s %v", typ, v)
		}
		res := v.(map[string]any)["result"].([]any)
		e, _ := res[0].(map[string]any)["json"].(map[string]any)["error"].(string)
		if len(res) != 1 || !strings.Contains(e, "does not parse") {
			t.Errorf("want one error item quoting the problem, got %v", res)
		}
	})
	t.Run("no runner behind", func(t *testing.T) {
		tr := n8n.serveTask(ctx, t, "plain1", settingsJSON(t, "return [];", "runOnceForAllItems", false, nil), nil)
		msg, m := errorMessage(t, tr)
		if !strings.Contains(msg, "no javascript task runner") || !strings.Contains(m["description"].(string), "N8N_FN_RUNNER_MODE") {
			t.Errorf("error does not say what to configure: %q / %v", msg, m["description"])
		}
	})
}

func TestNoRunnerExternalWaitsThenFails(t *testing.T) {
	_, n8n, _ := testSidecar(t, func(c *Config) { c.RunnerMode = ModeExternal; c.NoRunnerWait = 500 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr := n8n.serveTask(ctx, t, "plain2", settingsJSON(t, "return [];", "runOnceForAllItems", false, nil), nil)
	msg, m := errorMessage(t, tr)
	if !strings.Contains(msg, "no javascript task runner") || !strings.Contains(m["description"].(string), "N8N_RUNNERS_TASK_BROKER_URI=http://127.0.0.1:") {
		t.Errorf("error does not say where to point the runner: %q / %v", msg, m["description"])
	}
}

// TestCancelIsRelayed cancels a long task upstream; the runner behind must drop it and take new work
// at once (with one slot, a task still running would block the next one for 60 s).
func TestCancelIsRelayed(t *testing.T) {
	s, n8n, _ := testSidecar(t, func(c *Config) { c.MaxConcurrency = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := n8n.broker.Acquire(ctx, "javascript", "long1", json.RawMessage(settingsJSON(t, "await new Promise(r => setTimeout(r, 60000));\nreturn [];", "runOnceForAllItems", false, nil)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "task running behind the sidecar", 10*time.Second, func() bool { return s.runner.Running() == 1 })
	time.Sleep(300 * time.Millisecond) // let the runner start the code
	if err := d.Cancel(ctx, "Task cancelled by user"); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	waitFor(t, "sidecar slot freed", 10*time.Second, func() bool { return s.runner.Running() == 0 })
	tr := n8n.serveTask(ctx, t, "after1", settingsJSON(t, "return [{json: {ok: true}}];", "runOnceForAllItems", false, nil), nil)
	if typ, v := finalJSON(t, tr.final); typ != n8nproto.TypeTaskDone {
		t.Fatalf("task after cancel: %s %v", typ, v)
	}
}

// TestRunnerLostFailsTaskAndRestarts kills the spawned runner mid-task: n8n gets a clear error, and
// the sidecar starts a new runner that takes the next task.
func TestRunnerLostFailsTaskAndRestarts(t *testing.T) {
	s, n8n, _ := testSidecar(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	killed := false
	tr := n8n.serveTask(ctx, t, "doomed", settingsJSON(t, "console.log('started');\nawait new Promise(r => setTimeout(r, 60000));\nreturn [];", "runOnceForAllItems", false, nil),
		func(_ *n8nproto.DownstreamTask, m n8nproto.TaskMessage) {
			if m.MessageType() == n8nproto.TypeRPC && !killed {
				killed = true
				s.spawn.mu.Lock()
				pid := s.spawn.cmd.Process.Pid
				s.spawn.mu.Unlock()
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		})
	msg, _ := errorMessage(t, tr)
	if !strings.Contains(msg, "disconnected") {
		t.Errorf("error does not say the runner went away: %q", msg)
	}
	waitFor(t, "runner restarted", 30*time.Second, func() bool { return s.broker.HasRunner("javascript") })
	tr = n8n.serveTask(ctx, t, "next", settingsJSON(t, "return [{json: {ok: true}}];", "runOnceForAllItems", false, nil), nil)
	if typ, v := finalJSON(t, tr.final); typ != n8nproto.TypeTaskDone {
		t.Fatalf("task after restart: %s %v", typ, v)
	}
}

// TestShutdownLetsTasksFinish stops the sidecar while a task runs: the task still completes, the
// sidecar leaves n8n, the spawned runner exits and Run returns nil.
func TestShutdownLetsTasksFinish(t *testing.T) {
	s, n8n, shutdown := testSidecar(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	tr := n8n.serveTask(ctx, t, "inflight", settingsJSON(t, "console.log('go');\nawait new Promise(r => setTimeout(r, 1500));\nreturn [{json: {finished: true}}];", "runOnceForAllItems", false, nil),
		func(_ *n8nproto.DownstreamTask, m n8nproto.TaskMessage) {
			if m.MessageType() == n8nproto.TypeRPC {
				go func() { stopped <- shutdown() }()
				waitFor(t, "sidecar draining", 5*time.Second, func() bool { return s.draining.Load() })
			}
		})
	typ, v := finalJSON(t, tr.final)
	if typ != n8nproto.TypeTaskDone {
		t.Fatalf("in-flight task did not finish during shutdown: %s %v", typ, v)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run returned %v", err)
	}
	s.spawn.mu.Lock()
	cmd := s.spawn.cmd
	s.spawn.mu.Unlock()
	if cmd != nil {
		t.Errorf("spawned runner still running after shutdown")
	}
	if code := s.spawn.lastExit.Load(); code != 0 {
		t.Errorf("spawned runner exited with %d after the drain, want 0", code)
	}
	waitFor(t, "sidecar gone from n8n", 5*time.Second, func() bool { return !n8n.broker.HasRunner("javascript") })
}

func TestHealth(t *testing.T) {
	s, _, shutdown := testSidecar(t, nil)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.HealthAddr() + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d %s", code, body)
	}
	waitFor(t, "ready", 10*time.Second, func() bool { code, _ := get("/readyz"); return code == 200 })
	s.draining.Store(true)
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while draining: %d %s", code, body)
	}
	s.draining.Store(false)
	if code, _ := get("/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without N8N_FN_PPROF: %d, want 404", code)
	}
	_ = shutdown
}

func TestHealthPprofOptIn(t *testing.T) {
	s, _, _ := testSidecar(t, func(c *Config) { c.Pprof = true })
	resp, err := http.Get("http://" + s.HealthAddr() + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "goroutine") {
		t.Errorf("/debug/pprof/ with N8N_FN_PPROF: %d %.200s", resp.StatusCode, b)
	}
}

// TestConcurrentTasksStayApart runs more tasks at once than there are slots, relayed and native
// mixed: every task gets its own answer.
func TestConcurrentTasksStayApart(t *testing.T) {
	_, n8n, _ := testSidecar(t, func(c *Config) { c.MaxConcurrency = 4 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 24; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("c%02d", i)
			code := fmt.Sprintf("await new Promise(r => setTimeout(r, %d));\nreturn $input.all().map(it => ({json: {task: %q, a: it.json.a}}));", 10*(i%5), id)
			if i%3 == 0 {
				code = `/* @n8n-fn {"op":"echo"} */`
			}
			tr := n8n.serveTask(ctx, t, id, settingsJSON(t, code, "runOnceForAllItems", false, nil), nil)
			typ, v := finalJSON(t, tr.final)
			if typ != n8nproto.TypeTaskDone {
				t.Errorf("%s: %s %v", id, typ, v)
				return
			}
			res := v.(map[string]any)["result"].([]any)
			if len(res) != 3 {
				t.Errorf("%s: %d items", id, len(res))
				return
			}
			j := res[2].(map[string]any)["json"].(map[string]any)
			if i%3 == 0 && j["_n8nfn"] == nil || i%3 != 0 && j["task"] != id || j["a"] != 3.0 {
				t.Errorf("%s got someone else's answer: %v", id, j)
			}
		}()
	}
	wg.Wait()
}

// TestSpawnFailingTellsWhatToConfigure: the runner command does not exist, so no runner ever
// registers; an ordinary task fails after NoRunnerWait naming the spawn settings, /readyz says why.
func TestSpawnFailingTellsWhatToConfigure(t *testing.T) {
	n8n := newFakeN8N(t)
	s, err := New(Config{
		BrokerURI: n8n.srv.URL, AuthToken: testToken, ID: "sc-spawnfail", BrokerListen: "127.0.0.1:0", HealthListen: "127.0.0.1:0",
		RunnerMode: ModeSpawn, RunnerDir: officialRunnerDir(t), RunnerCommand: "/nonexistent/node",
		MaxConcurrency: 1, NoRunnerWait: 500 * time.Millisecond, ShutdownGrace: 2 * time.Second,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { stop(); <-done }()
	waitFor(t, "sidecar registered with n8n", 15*time.Second, func() bool { return n8n.broker.HasRunner("javascript") })

	resp, err := http.Get("http://" + s.HealthAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "no javascript runner registered") {
		t.Errorf("/readyz = %d %s, want 503 naming the missing runner", resp.StatusCode, body)
	}
	tctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tr := n8n.serveTask(tctx, t, "plain3", settingsJSON(t, "return [];", "runOnceForAllItems", false, nil), nil)
	msg, m := errorMessage(t, tr)
	if !strings.Contains(msg, "no javascript task runner") || !strings.Contains(m["description"].(string), "N8N_FN_RUNNER_COMMAND=/nonexistent/node") {
		t.Errorf("error does not name the spawn settings: %q / %v", msg, m["description"])
	}
}

// TestWrongAuthTokenIsFatal: n8n refuses the token; Run stops with a clear error instead of retrying,
// and takes the spawned runner down with it.
func TestWrongAuthTokenIsFatal(t *testing.T) {
	n8n := newFakeN8N(t)
	s, err := New(Config{
		BrokerURI: n8n.srv.URL, AuthToken: "wrong-token", ID: "sc-wrongtoken", BrokerListen: "127.0.0.1:0", HealthListen: healthOff,
		RunnerMode: ModeSpawn, RunnerDir: officialRunnerDir(t), ShutdownGrace: 2 * time.Second,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, n8nproto.ErrUnauthorized) {
			t.Errorf("Run returned %v, want ErrUnauthorized", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not give up on a wrong auth token")
	}
	s.spawn.mu.Lock()
	defer s.spawn.mu.Unlock()
	if s.spawn.cmd != nil {
		t.Error("spawned runner left running after the fatal error")
	}
}

// TestExternalModeRunnerConnects: in external mode nothing is spawned; an official runner that gets
// its grant from the sidecar's POST /runners/auth (as the launcher does) takes relayed tasks.
func TestExternalModeRunnerConnects(t *testing.T) {
	s, n8n, _ := testSidecar(t, func(c *Config) { c.RunnerMode = ModeExternal; c.BrokerAuthToken = "behind-token" })
	if s.spawn != nil {
		t.Fatal("external mode must not spawn a runner")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := "http://" + s.BrokerAddr()
	grant := func(token string) (int, string) {
		resp, err := http.Post(base+"/runners/auth", "application/json", strings.NewReader(`{"token":"`+token+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Token string `json:"token"`
			} `json:"data"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&r)
		return resp.StatusCode, r.Data.Token
	}
	if code, _ := grant(testToken); code != http.StatusForbidden {
		t.Errorf("the upstream token must not work behind when N8N_FN_BROKER_AUTH_TOKEN differs: HTTP %d", code)
	}
	code, g := grant("behind-token")
	if code != 200 || g == "" {
		t.Fatalf("auth: HTTP %d", code)
	}
	cmd := exec.Command("node", strings.Fields(defaultRunnerArgs)...)
	cmd.Dir = officialRunnerDir(t)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "N8N_RUNNERS_TASK_BROKER_URI=" + base, "N8N_RUNNERS_GRANT_TOKEN=" + g, "N8N_RUNNERS_MAX_CONCURRENCY=1"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "external runner registered", 20*time.Second, func() bool { return s.broker.HasRunner("javascript") })
	tr := n8n.serveTask(ctx, t, "ext1", settingsJSON(t, "return $input.all().map(i => ({json: {n: i.json.a}}));", "runOnceForAllItems", false, nil), nil)
	if typ, v := finalJSON(t, tr.final); typ != n8nproto.TypeTaskDone || len(v.(map[string]any)["result"].([]any)) != 3 {
		t.Fatalf("task through the external runner: %s %v", typ, v)
	}
}

// BenchmarkRelayedTask is one small all-items Code task (settings, one data request, done) through
// the sidecar; BenchmarkDirectTask is the same task against the official runner attached directly.
// The difference is the relay's cost per task, without n8n's queue around it.
func BenchmarkRelayedTask(b *testing.B) {
	_, n8n, _ := testSidecar(b, nil)
	benchTasks(b, n8n)
}

func BenchmarkDirectTask(b *testing.B) { benchTasks(b, directRunner(b, 30*time.Second)) }

func benchTasks(b *testing.B, n8n *fakeN8N) {
	benchTasksWith(b, n8n, "return $input.all().map(i => ({json: {...i.json, doubled: i.json.a * 2}}));")
}

func benchTasksWith(b *testing.B, n8n *fakeN8N, code string) {
	settings := settingsJSON(b, code, "runOnceForAllItems", false, nil)
	ctx := context.Background()
	run := func(id string) {
		d, err := n8n.broker.Acquire(ctx, "javascript", id, json.RawMessage(settings))
		if err != nil {
			b.Fatal(err)
		}
		for m := range d.Incoming() {
			switch m := m.(type) {
			case n8nproto.TaskDataRequest:
				if err := d.Send(ctx, n8nproto.TaskDataResponse{RequestID: m.RequestID, Data: dataResponse(b, m.RequestParams)}); err != nil {
					b.Fatal(err)
				}
			case n8nproto.TaskDone:
				return
			case n8nproto.TaskError:
				b.Fatalf("task error %s", m.Error)
			}
		}
		b.Fatal("task ended without a result")
	}
	for i := 0; i < 20; i++ {
		run(fmt.Sprintf("warm%d", i))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run(fmt.Sprintf("t%d", i))
	}
}

// BenchmarkNativeEchoTask is an echo directive task answered by the sidecar itself: the cost of the
// protocol round trips on the Go side alone (no JS runner involved).
func BenchmarkNativeEchoTask(b *testing.B) {
	_, n8n, _ := testSidecar(b, func(c *Config) { c.RunnerMode = ModeNone })
	benchTasksWith(b, n8n, `/* @n8n-fn {"op":"echo"} */`)
}
