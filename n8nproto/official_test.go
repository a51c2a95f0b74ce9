package n8nproto

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/internal/officialrunner"
)

// These tests run the OFFICIAL @n8n/task-runner against our Broker, executing real Code-node tasks.

// capturedDataResponse is data of the real broker:taskdataresponse (captures/10), whose inputData we swap.
func capturedDataResponse(t testing.TB) map[string]any {
	t.Helper()
	raw, err := os.ReadFile("testdata/10-broker_taskdataresponse.json")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Message struct {
			Data map[string]any `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c.Message.Data
}

// dataFor answers a taskdatarequest the way n8n strips the response: input only when asked, sliced to
// the requested chunk.
func dataFor(t testing.TB, params json.RawMessage, items []map[string]any) json.RawMessage {
	var p struct {
		Input struct {
			Include bool   `json:"include"`
			Chunk   *Chunk `json:"chunk"`
		} `json:"input"`
	}
	if err := json.Unmarshal(params, &p); err != nil {
		t.Fatalf("request params %s: %v", params, err)
	}
	d := capturedDataResponse(t)
	switch {
	case !p.Input.Include:
		d["inputData"] = map[string]any{}
	case p.Input.Chunk != nil:
		end := min(p.Input.Chunk.StartIndex+p.Input.Chunk.Count, len(items))
		d["inputData"] = map[string]any{"main": [][]map[string]any{items[p.Input.Chunk.StartIndex:end]}}
	default:
		d["inputData"] = map[string]any{"main": [][]map[string]any{items}}
	}
	return rawJSON(t, d)
}

type taskOutcome struct {
	done     *TaskDone
	fail     *TaskError
	rpcs     []RPC
	dataReqs []TaskDataRequest
}

// serveTask plays n8n's requester for one task until it ends.
func serveTask(t testing.TB, ctx context.Context, dt *DownstreamTask, items []map[string]any) taskOutcome {
	t.Helper()
	var out taskOutcome
	for m := range dt.Incoming() {
		switch v := m.(type) {
		case TaskDataRequest:
			out.dataReqs = append(out.dataReqs, v)
			if err := dt.Send(ctx, TaskDataResponse{RequestID: v.RequestID, Data: dataFor(t, v.RequestParams, items)}); err != nil {
				t.Fatal(err)
			}
		case NodeTypesRequest:
			if err := dt.Send(ctx, NodeTypes{RequestID: v.RequestID, NodeTypes: json.RawMessage(`[]`)}); err != nil {
				t.Fatal(err)
			}
		case RPC:
			out.rpcs = append(out.rpcs, v)
			// The official runner does not await logNodeOutput: its taskdone may already have ended the task.
			if err := dt.Send(ctx, RPCResponse{CallID: v.CallID, Status: RPCStatusSuccess}); err != nil && !errors.Is(err, ErrTaskEnded) {
				t.Fatal(err)
			}
		case TaskDone:
			out.done = &v
		case TaskError:
			out.fail = &v
		}
	}
	if err := dt.Err(); err != nil {
		t.Fatalf("task %s: %v", dt.ID, err)
	}
	return out
}

func settingsJSON(t testing.TB, code, mode string, continueOnFail bool, chunk *Chunk) json.RawMessage {
	s := map[string]any{"code": code, "nodeMode": mode, "workflowMode": "manual", "continueOnFail": continueOnFail, "additionalProperties": map[string]any{}}
	if chunk != nil {
		s["chunk"] = chunk
	}
	return rawJSON(t, s)
}

func startOfficialRunner(t testing.TB, dir string, bs *brokerServer, id string, max int) *officialrunner.Process {
	t.Helper()
	p := officialrunner.StartT(t, dir, officialrunner.Options{
		BrokerURI: bs.url(), GrantToken: bs.b.MintGrant(), RunnerID: id, MaxConcurrency: max, TaskTimeout: 30,
	})
	deadline := time.Now().Add(30 * time.Second)
	for bs.b.openOffers("javascript") == 0 {
		select {
		case <-p.Done():
			t.Fatalf("official runner exited with code %d before offering", p.ExitCode())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("official runner did not offer within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

func TestOfficialRunnerCodeTasks(t *testing.T) {
	dir := officialrunner.Require(t)
	info := officialrunner.RequireInfo(t, dir)
	t.Logf("official runner @n8n/task-runner %s (n8n %s)", info.Version, officialrunner.N8NVersion())
	bs := startBroker(t, BrokerConfig{}, "")
	p := startOfficialRunner(t, dir, bs, "official-1", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	items := []map[string]any{{"json": map[string]any{"a": 1}}, {"json": map[string]any{"a": 2}}, {"json": map[string]any{"a": 3}}}

	run := func(t *testing.T, id string, settings json.RawMessage) taskOutcome {
		dt, err := bs.b.Acquire(ctx, "javascript", id, settings)
		if err != nil {
			t.Fatal(err)
		}
		// 1.x runners ignore N8N_RUNNERS_ID and register under an id of their own.
		if info.ReadsRunnerID && dt.RunnerID != "official-1" || dt.RunnerID == "" {
			t.Errorf("task went to %q", dt.RunnerID)
		}
		return serveTask(t, ctx, dt, items)
	}

	t.Run("run-once-for-all-items", func(t *testing.T) {
		out := run(t, "all1", settingsJSON(t, "return $input.all().map(i => ({json: {...i.json, doubled: i.json.a * 2}}));", NodeModeAllItems, false, nil))
		if out.done == nil {
			t.Fatalf("no taskdone: %+v", out.fail)
		}
		if out.done.TaskID != "all1" || !jsonEqual(t, out.done.Data, []byte(`{"result":[{"json":{"a":1,"doubled":2}},{"json":{"a":2,"doubled":4}},{"json":{"a":3,"doubled":6}}]}`)) {
			t.Errorf("result %s", out.done.Data)
		}
		if len(out.dataReqs) != 1 || !jsonEqual(t, out.dataReqs[0].RequestParams, []byte(`{"dataOfNodes":[],"env":false,"input":{"include":true},"prevNode":false}`)) {
			t.Errorf("data requests %+v", out.dataReqs)
		}
	})

	t.Run("run-once-for-each-item-chunk", func(t *testing.T) {
		out := run(t, "each1", settingsJSON(t, "return {json: {...$json, idx: $itemIndex}};", NodeModeEachItem, false, &Chunk{StartIndex: 1, Count: 2}))
		if out.done == nil {
			t.Fatalf("no taskdone: %+v", out.fail)
		}
		if !jsonEqual(t, out.done.Data, []byte(`{"result":[{"json":{"a":2,"idx":1},"pairedItem":{"item":1}},{"json":{"a":3,"idx":2},"pairedItem":{"item":2}}]}`)) {
			t.Errorf("result %s", out.done.Data)
		}
		if len(out.dataReqs) != 1 || !strings.Contains(string(out.dataReqs[0].RequestParams), `"chunk":{"startIndex":1,"count":2}`) {
			t.Errorf("data request does not carry the chunk: %+v", out.dataReqs)
		}
	})

	t.Run("thrown-error", func(t *testing.T) {
		out := run(t, "err1", settingsJSON(t, "const x = 1;\nthrow new Error('boom');", NodeModeAllItems, false, nil))
		if out.fail == nil {
			t.Fatalf("no taskerror, done=%v", out.done)
		}
		var e struct {
			Message    string `json:"message"`
			LineNumber int    `json:"lineNumber"`
			Stack      string `json:"stack"`
		}
		if err := json.Unmarshal(out.fail.Error, &e); err != nil {
			t.Fatal(err)
		}
		if e.Message != "boom [line 2]" || e.LineNumber != 2 || !strings.Contains(e.Stack, "Error: boom") {
			t.Errorf("error %s", out.fail.Error)
		}
	})

	t.Run("continue-on-fail", func(t *testing.T) {
		out := run(t, "cof1", settingsJSON(t, "throw new Error('soft');", NodeModeAllItems, true, nil))
		if out.done == nil || !jsonEqual(t, out.done.Data, []byte(`{"result":[{"json":{"error":"soft [line 1]"}}]}`)) {
			t.Errorf("continueOnFail: done=%v fail=%v", out.done, out.fail)
		}
	})

	t.Run("console-log", func(t *testing.T) {
		out := run(t, "log1", settingsJSON(t, "console.log('hello', 42);\nreturn [];", NodeModeAllItems, false, nil))
		if out.done == nil || !jsonEqual(t, out.done.Data, []byte(`{"result":[]}`)) {
			t.Fatalf("done=%v fail=%v", out.done, out.fail)
		}
		if len(out.rpcs) != 1 || out.rpcs[0].Name != "logNodeOutput" || !jsonEqual(t, out.rpcs[0].Params, []byte(`["'hello'","42"]`)) {
			t.Errorf("rpcs %+v", out.rpcs)
		}
	})

	t.Run("cancel-running-task", func(t *testing.T) {
		dt, err := bs.b.Acquire(ctx, "javascript", "slow1", settingsJSON(t, "await new Promise(r => setTimeout(r, 10000));\nreturn [];", NodeModeAllItems, false, nil))
		if err != nil {
			t.Fatal(err)
		}
		m := <-dt.Incoming()
		req, ok := m.(TaskDataRequest)
		if !ok {
			t.Fatalf("first message %T", m)
		}
		if err := dt.Send(ctx, TaskDataResponse{RequestID: req.RequestID, Data: dataFor(t, req.RequestParams, items)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // now inside the setTimeout
		if n := bs.b.openOffers("javascript"); n > 1 {
			t.Fatalf("%d offers with 1 of 2 slots busy", n)
		}
		start := time.Now()
		if err := dt.Cancel(ctx, "Task cancelled by user"); err != nil {
			t.Fatal(err)
		}
		// the runner aborts silently and offers the freed slot again, long before the 10 s timer
		waitFor(t, "freed slot offered again", 5*time.Second, func() bool { return bs.b.openOffers("javascript") == 2 })
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("slot freed after %s", el)
		}
		// and it still works
		out := run(t, "after-cancel", settingsJSON(t, "return [{json: {ok: true}}];", NodeModeAllItems, false, nil))
		if out.done == nil || !jsonEqual(t, out.done.Data, []byte(`{"result":[{"json":{"ok":true}}]}`)) {
			t.Errorf("after cancel: done=%v fail=%v", out.done, out.fail)
		}
	})

	t.Run("drain", func(t *testing.T) {
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		defer dcancel()
		if err := bs.b.Drain(dctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("official runner did not exit after drain + close")
		}
		// 2.x runners know broker:drain and exit 0 when the broker then closes; 1.x runners (n8n 1.123.x)
		// have no drain and exit 1 on a close they did not start, which is why the sidecar stops the
		// runner it spawned with SIGTERM as well (runner.TestShutdownLetsTasksFinish: exit 0 on both).
		want := 0
		if !info.HandlesDrain {
			want = 1
		}
		if c := p.ExitCode(); c != want {
			t.Errorf("exit code after drain %d, want %d for @n8n/task-runner %s", c, want, info.Version)
		}
	})
}

// A launcher-style client defers the task and disconnects; the official runner it "spawns" gets the task.
func TestOfficialRunnerAfterLauncherDeferral(t *testing.T) {
	dir := officialrunner.Require(t)
	bs := startBroker(t, BrokerConfig{}, "")
	launcher := dialFakeRunner(t, bs, "0123456789abcdef", "launcher-javascript")
	launcher.send(TaskOffer{OfferID: "5b3222c51775a3ae", TaskType: "javascript", ValidFor: -1})
	waitFor(t, "launcher offer", 2*time.Second, func() bool { return bs.b.openOffers("javascript") == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := acquireAsync(ctx, bs.b, "javascript", "deferred1", settingsJSON(t, "return $input.all().map(i => ({json: {...i.json, via: 'deferral'}}));", NodeModeAllItems, false, nil))
	acc, ok := launcher.recv(5 * time.Second).(TaskOfferAccept)
	if !ok || acc.TaskID != "deferred1" {
		t.Fatalf("launcher got %+v", acc)
	}
	launcher.send(TaskDeferred{TaskID: acc.TaskID})
	_ = launcher.ws.Close() // the launcher drops the socket without a close handshake
	if !bs.b.HasRunner("javascript") {
		t.Error("HasRunner false while the launcher's runner is starting")
	}
	startOfficialRunner(t, dir, bs, "spawned-by-launcher", 5)
	var r acquired
	select {
	case r = <-res:
	case <-ctx.Done():
		t.Fatal("deferred task never reached the official runner")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if officialrunner.RequireInfo(t, dir).ReadsRunnerID && r.dt.RunnerID != "spawned-by-launcher" {
		t.Errorf("task ran on %q", r.dt.RunnerID)
	}
	out := serveTask(t, ctx, r.dt, []map[string]any{{"json": map[string]any{"a": 1}}})
	if out.done == nil || !jsonEqual(t, out.done.Data, []byte(`{"result":[{"json":{"a":1,"via":"deferral"}}]}`)) {
		t.Fatalf("done=%v fail=%v", out.done, out.fail)
	}
}
