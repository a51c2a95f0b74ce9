package n8nproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/n8n-fn/n8n-fn/internal/jsonlimit"
)

type capture struct {
	Direction string          `json:"direction"`
	Message   json.RawMessage `json:"message"`
}

func loadCaptures(t testing.TB) map[string]capture {
	t.Helper()
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no capture fixtures in testdata: %v", err)
	}
	out := map[string]capture{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c capture
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = c
	}
	return out
}

func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("unmarshal %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// Every real frame decodes to its typed struct and encodes back to the same JSON.
func TestCapturesRoundTrip(t *testing.T) {
	caps := loadCaptures(t)
	seen := map[string]bool{}
	for name, c := range caps {
		m, err := Decode(c.Message)
		if err != nil {
			t.Errorf("%s: decode: %v", name, err)
			continue
		}
		if _, unknown := m.(Unknown); unknown {
			t.Errorf("%s: decoded as Unknown", name)
		}
		wantPrefix := "broker:"
		if c.Direction == "runner->broker" {
			wantPrefix = "runner:"
		}
		if !strings.HasPrefix(m.MessageType(), wantPrefix) {
			t.Errorf("%s: type %s does not match direction %s", name, m.MessageType(), c.Direction)
		}
		seen[m.MessageType()] = true
		out, err := Encode(m)
		if err != nil {
			t.Errorf("%s: encode: %v", name, err)
			continue
		}
		if !jsonEqual(t, out, c.Message) {
			t.Errorf("%s: round trip differs\n got %s\nwant %s", name, out, c.Message)
		}
		if !bytes.HasPrefix(out, []byte(`{"type":"`+m.MessageType()+`"`)) {
			t.Errorf("%s: encoded frame does not start with its type: %.60s", name, out)
		}
	}
	for _, typ := range []string{TypeInfoRequest, TypeRunnerRegistered, TypeTaskOfferAccept, TypeTaskSettings,
		TypeTaskDataResponse, TypeRPCResponse, TypeDrain, TypeRunnerInfo, TypeTaskOffer, TypeTaskAccepted,
		TypeTaskDataRequest, TypeRPC, TypeTaskDone, TypeTaskError} {
		if !seen[typ] {
			t.Errorf("no capture exercised %s", typ)
		}
	}
}

// Captured fields land in the right struct fields.
func TestCapturesDecodeFields(t *testing.T) {
	caps := loadCaptures(t)
	dec := func(name string) Message {
		m, err := Decode(caps[name].Message)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return m
	}
	if m := dec("04-runner_taskoffer.json").(TaskOffer); m.OfferID != "DSBm-NJHsN97xaO3jrgJz" || m.TaskType != "javascript" || m.ValidFor != 5449 {
		t.Errorf("taskoffer: %+v", m)
	}
	if m := dec("06-broker_taskofferaccept.json").(TaskOfferAccept); m.TaskID != "O7oSIX3E" || m.OfferID != "SbwMWCw-RbmkWu_l0fHgf" {
		t.Errorf("taskofferaccept: %+v", m)
	}
	if m := dec("02-runner_info-JSTaskRunner.json").(RunnerInfo); m.Name != "JS Task Runner" || !reflect.DeepEqual(m.Types, []string{"javascript"}) {
		t.Errorf("runner:info: %+v", m)
	}
	st := dec("18-broker_tasksettings-2.json").(TaskSettings)
	cs, err := ParseCodeSettings(st.Settings)
	if err != nil {
		t.Fatal(err)
	}
	if cs.NodeMode != NodeModeEachItem || cs.WorkflowMode != "webhook" || cs.Chunk == nil || cs.Chunk.Count != 1 || !strings.Contains(cs.Code, "doubled") {
		t.Errorf("each-item settings: %+v", cs)
	}
	if m := dec("11-runner_rpc-logNodeOutput.json").(RPC); m.Name != "logNodeOutput" || m.CallID != "SRzcGk9HOABcOYN6eYJ1M" || string(m.Params) == "" {
		t.Errorf("rpc: %+v", m)
	}
	if m := dec("13-broker_rpcresponse.json").(RPCResponse); m.Status != RPCStatusSuccess || m.Data != nil {
		t.Errorf("rpcresponse without data: %+v", m)
	}
	if m := dec("14-broker_rpcresponse-2.json").(RPCResponse); !jsonEqual(t, m.Data, []byte(`{"status":"ok"}`)) {
		t.Errorf("rpcresponse data: %s", m.Data)
	}
	if m := dec("10-broker_taskdataresponse.json").(TaskDataResponse); m.RequestID != "OLRRlNC9mNx2KrcBeKPnP" || !bytes.Contains(m.Data, []byte(`"inputData"`)) {
		t.Errorf("taskdataresponse: %s", m.RequestID)
	}
	e := dec("error-06-runner_taskerror.json").(TaskError)
	var ed struct {
		Message    string `json:"message"`
		LineNumber int    `json:"lineNumber"`
	}
	if err := json.Unmarshal(e.Error, &ed); err != nil || ed.Message != "boom from code node [line 1]" || ed.LineNumber != 1 {
		t.Errorf("taskerror: %+v %v", ed, err)
	}
	if _, ok := dec("23-broker_drain.json").(Drain); !ok {
		t.Error("drain")
	}
}

// Messages without captures (never seen on the wire in our session) still round-trip.
func TestUncapturedTypesRoundTrip(t *testing.T) {
	msgs := []Message{
		TaskCancel{TaskID: "t1", Reason: "Task cancelled by user"},
		NodeTypes{TaskID: "t1", RequestID: "r1", NodeTypes: json.RawMessage(`[]`)},
		TaskRejected{TaskID: "t1", Reason: RejectAtCapacity},
		TaskDeferred{TaskID: "t1"},
		NodeTypesRequest{TaskID: "t1", RequestID: "r2", RequestParams: json.RawMessage(`[{"name":"n8n-nodes-base.code","version":2}]`)},
		TaskOffer{OfferID: "5b3222c51775a3ae", TaskType: "javascript", ValidFor: -1},
		RPCResponse{TaskID: "t1", CallID: "c1", Status: RPCStatusError, Data: json.RawMessage(`"Method not allowed"`)},
		TaskDone{TaskID: "t<&>\"", Data: json.RawMessage(`{"result":[]}`)},
	}
	for _, m := range msgs {
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		back, err := Decode(b)
		if err != nil {
			t.Fatalf("%T: decode %s: %v", m, b, err)
		}
		if !reflect.DeepEqual(normalize(back), normalize(m)) {
			t.Errorf("%T: round trip %+v != %+v (%s)", m, back, m, b)
		}
	}
	// Pointers encode like values.
	a, _ := Encode(TaskAccepted{TaskID: "x"})
	b, _ := Encode(&TaskAccepted{TaskID: "x"})
	if !bytes.Equal(a, b) {
		t.Errorf("pointer encode %s != %s", b, a)
	}
}

func normalize(m Message) string { b, _ := json.Marshal(m); return m.MessageType() + string(b) }

func TestDecodeUnknownAndMalformed(t *testing.T) {
	m, err := Decode([]byte(`{"type":"broker:somethingnew","x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	u, ok := m.(Unknown)
	if !ok || u.Type != "broker:somethingnew" || !jsonEqual(t, u.Raw, []byte(`{"type":"broker:somethingnew","x":1}`)) {
		t.Fatalf("unknown: %#v", m)
	}
	if out, err := Encode(u); err != nil || !jsonEqual(t, out, u.Raw) {
		t.Errorf("encode unknown: %s %v", out, err)
	}
	for _, bad := range []string{``, `[]`, `{}`, `{"type":1}`, `not json`, `{"type":"runner:taskdone","taskId":5}`,
		`{"type":"runner:taskdone","data":{`, `{"type":"broker:drain",}`, `{"type":"x:y",`} {
		if _, err := Decode([]byte(bad)); !errors.Is(err, ErrMalformedMessage) {
			t.Errorf("Decode(%q) = %v, want ErrMalformedMessage", bad, err)
		}
	}
	if _, err := Encode(TaskDone{TaskID: "t", Data: json.RawMessage(`{broken`)}); err == nil {
		t.Error("encode of invalid raw data succeeded")
	}
	if _, err := Encode(nil); err == nil {
		t.Error("encode nil succeeded")
	}
}

func TestWithTaskID(t *testing.T) {
	m, err := withTaskID(&RPC{TaskID: "old", CallID: "c"}, "new")
	if err != nil || m.(RPC).TaskID != "new" || m.(RPC).CallID != "c" {
		t.Fatalf("%#v %v", m, err)
	}
	if _, err := withTaskID(nil, "x"); err == nil {
		t.Error("nil accepted")
	}
}

func TestParseCodeSettingsErrors(t *testing.T) {
	for _, raw := range []string{``, `[]`, `{"nodeMode":"runOnceForAllItems"}`, `{"code":5}`} {
		if _, err := ParseCodeSettings(json.RawMessage(raw)); err == nil {
			t.Errorf("ParseCodeSettings(%q) succeeded", raw)
		}
	}
	cs, err := ParseCodeSettings(json.RawMessage(`{"code":"return []","nodeMode":"runOnceForAllItems","workflowMode":"manual","continueOnFail":true,"additionalProperties":{}}`))
	if err != nil || !cs.ContinueOnFail || cs.Chunk != nil || cs.Code != "return []" {
		t.Errorf("%+v %v", cs, err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, c := range loadCaptures(f) {
		f.Add([]byte(c.Message))
	}
	f.Add([]byte(`{"type":"x"}`))
	f.Add([]byte(`{"type":"broker:taskdataresponse","taskId":"t","requestId":"r","data":[[[[[[{"a":[[[]]]}]]]]]]}`))
	f.Add([]byte(`{"type":"runner:taskdone","taskId":"t","data":{"result":[{"json":{"s":"\"[[[[[[[[["}}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// A small limit makes the refusal path reachable: it gives a FrameError, and only for
		// frames that really nest deeper.
		if _, err := DecodeLimited(data, 4); err != nil {
			var fe *FrameError
			if !errors.As(err, &fe) || !errors.Is(err, ErrMalformedMessage) {
				t.Fatalf("DecodeLimited error is not a FrameError: %T %v", err, err)
			}
			if errors.Is(err, ErrFrameTooDeep) && jsonlimit.Check(data, 4) == nil {
				t.Fatalf("refused as too deep but is not: %q", data)
			}
		}
		m, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedMessage) {
				t.Fatalf("Decode error does not wrap ErrMalformedMessage: %v", err)
			}
			return
		}
		out, err := Encode(m)
		if err != nil {
			t.Fatalf("decoded %q but cannot encode %#v: %v", data, m, err)
		}
		m2, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decode of %q: %v", out, err)
		}
		if m2.MessageType() != m.MessageType() {
			t.Fatalf("type changed %s -> %s", m.MessageType(), m2.MessageType())
		}
	})
}

// Decoded messages never alias the frame (the caller may reuse its buffer).
func TestDecodeDoesNotAlias(t *testing.T) {
	frame := []byte(`{"type":"broker:taskdataresponse","taskId":"abc","requestId":"req","data":{"k":"v"}}`)
	m, err := Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	for i := range frame {
		frame[i] = 'x'
	}
	r := m.(TaskDataResponse)
	if r.TaskID != "abc" || r.RequestID != "req" || string(r.Data) != `{"k":"v"}` {
		t.Fatalf("decoded message changed with the frame: %+v %s", r, r.Data)
	}
}

// decodeOwned (the socket readers' decode) shares the frame's buffer instead of copying a big
// payload, and an append to the payload cannot write into the rest of the frame.
func TestDecodeOwnedSharesThePayload(t *testing.T) {
	frame := []byte(`{"type":"broker:taskdataresponse","taskId":"abc","requestId":"req","data":{"k":"v"},"z":1}`)
	m, err := decodeOwned(frame, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := m.(TaskDataResponse)
	start := bytes.Index(frame, []byte(`{"k"`))
	if string(r.Data) != `{"k":"v"}` || &r.Data[0] != &frame[start] {
		t.Fatalf("payload %s is not the frame's own bytes", r.Data)
	}
	_ = append(r.Data, 'X')
	if !bytes.HasSuffix(frame, []byte(`},"z":1}`)) {
		t.Fatalf("an append to the payload wrote into the frame: %s", frame)
	}
	// The ids never alias: the frame may go while the message lives.
	for i := range frame {
		frame[i] = 'x'
	}
	if r.TaskID != "abc" || r.RequestID != "req" {
		t.Fatalf("ids changed with the frame: %+v", r)
	}
}
