package n8nproto

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A frame of millions of nested '[' is refused before gjson's recursive validator sees it (which
// would end in a fatal stack overflow of this test binary), with the task it belonged to named.
func TestDecodeRefusesDeepFrames(t *testing.T) {
	frame := []byte(`{"type":"broker:taskdataresponse","taskId":"t1","requestId":"r1","data":` + strings.Repeat("[", 8<<20) + `}`)
	_, err := Decode(frame)
	var fe *FrameError
	if !errors.As(err, &fe) || !errors.Is(err, ErrMalformedMessage) || !errors.Is(err, ErrFrameTooDeep) {
		t.Fatalf("err = %v", err)
	}
	if fe.Type != TypeTaskDataResponse || fe.TaskID != "t1" || fe.Key != "r1" {
		t.Errorf("frame error = %+v", fe)
	}
	if !strings.Contains(err.Error(), "more than 10000 levels") || !strings.Contains(err.Error(), "N8N_FN_MAX_FRAME_DEPTH") {
		t.Errorf("error %q does not say the limit and how to raise it", err)
	}
	ok := []byte(`{"type":"runner:taskdone","taskId":"t","data":{"result":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`)
	if _, err := DecodeLimited(ok, 102); err != nil {
		t.Fatalf("102 levels within a limit of 102: %v", err)
	}
	if _, err := DecodeLimited(ok, 101); !errors.Is(err, ErrFrameTooDeep) {
		t.Fatalf("102 levels over a limit of 101: %v", err)
	}
	if _, err := Encode(TaskDone{TaskID: "t", Data: json.RawMessage(strings.Repeat("[", 8<<20))}); err == nil {
		t.Fatal("encode of a payload nested 8 Mi levels deep succeeded")
	}
	long := &FrameError{Type: strings.Repeat("x", 1000), Err: errors.New("e")}
	if len(long.Error()) > 200 {
		t.Errorf("a frame error copies a 1000-byte type: %d bytes", len(long.Error()))
	}
}

func deepFrame(typ, taskID, keyField, key string, depth int) []byte {
	return []byte(`{"type":"` + typ + `","taskId":"` + taskID + `","` + keyField + `":"` + key + `","data":` +
		strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`)
}

// n8n's answer to a data request that is too deep fails the RequestData waiting for it, at once.
func TestRunnerRefusedAnswerFailsTheWaiter(t *testing.T) {
	bs := startBroker(t, BrokerConfig{}, "")
	got := make(chan error, 1)
	handler := handlerFunc(func(ctx context.Context, task *UpstreamTask) {
		_, err := task.RequestData(ctx, json.RawMessage(`{}`))
		got <- err
		if err != nil {
			_ = task.Fail(ctx, errorJSON(err.Error()))
		}
	})
	cfg := fastRunnerConfig(t, bs.url(), 1)
	cfg.MaxFrameDepth = 50
	startRunner(t, cfg, handler)
	waitFor(t, "runner registered", 3*time.Second, func() bool { return bs.b.HasRunner("javascript") })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dt, err := bs.b.Acquire(ctx, "javascript", "deep-1", codeSettings)
	if err != nil {
		t.Fatal(err)
	}
	req := (<-dt.Incoming()).(TaskDataRequest)
	if err := dt.rc.conn.sendRaw(ctx, TypeTaskDataResponse, deepFrame(TypeTaskDataResponse, dt.ID, "requestId", req.RequestID, 60)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, ErrFrameTooDeep) {
			t.Fatalf("RequestData = %v, want ErrFrameTooDeep", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RequestData still waits for the refused answer")
	}
	if te, ok := (<-dt.Incoming()).(TaskError); !ok || !strings.Contains(string(te.Error), "more than 50 levels") {
		t.Fatalf("n8n got %v, want the task error", te)
	}
}

// A refused frame of a task nothing waits on (a relayed one) fails the task toward n8n and cancels it.
func TestRunnerRefusedFrameFailsTheTask(t *testing.T) {
	bs := startBroker(t, BrokerConfig{}, "")
	cancelled := make(chan string, 1)
	handler := handlerFunc(func(ctx context.Context, task *UpstreamTask) {
		select { // failing the task ends ctx, the abort that follows closes Cancelled: either stops it
		case <-task.Cancelled():
		case <-ctx.Done():
		}
		cancelled <- task.CancelReason()
	})
	cfg := fastRunnerConfig(t, bs.url(), 1)
	cfg.MaxFrameDepth = 50
	startRunner(t, cfg, handler)
	waitFor(t, "runner registered", 3*time.Second, func() bool { return bs.b.HasRunner("javascript") })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dt, err := bs.b.Acquire(ctx, "javascript", "deep-2", codeSettings)
	if err != nil {
		t.Fatal(err)
	}
	if err := dt.rc.conn.sendRaw(ctx, TypeRPCResponse, deepFrame(TypeRPCResponse, dt.ID, "callId", "nobody-waits", 60)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-dt.Incoming():
		te, ok := m.(TaskError)
		if !ok || !strings.Contains(string(te.Error), "was refused") {
			t.Fatalf("n8n got %#v, want a task error", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the task hangs after a refused frame")
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler was not cancelled")
	}
}

// A runner behind the broker that answers with a frame too deep ends its task with the FrameError.
func TestBrokerRefusedTaskDone(t *testing.T) {
	bs := startBroker(t, BrokerConfig{MaxFrameDepth: 50}, "")
	fr := dialFakeRunner(t, bs, "fr", "fake")
	fr.send(TaskOffer{OfferID: "o1", TaskType: "javascript", ValidFor: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := acquireAsync(ctx, bs.b, "javascript", "deep-3", codeSettings)
	if acc := fr.recv(2 * time.Second).(TaskOfferAccept); acc.TaskID != "deep-3" {
		t.Fatalf("accept = %+v", acc)
	}
	fr.send(TaskAccepted{TaskID: "deep-3"})
	a := <-res
	if a.err != nil {
		t.Fatal(a.err)
	}
	_ = fr.recv(2 * time.Second) // tasksettings
	if err := fr.ws.WriteMessage(websocket.TextMessage, deepFrame(TypeTaskDone, "deep-3", "x", "", 60)); err != nil {
		t.Fatal(err)
	}
	select {
	case _, open := <-a.dt.Incoming():
		if open {
			t.Fatal("a message came through")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the task hangs after a refused taskdone")
	}
	if err := a.dt.Err(); !errors.Is(err, ErrFrameTooDeep) {
		t.Fatalf("Err = %v", err)
	}
}
