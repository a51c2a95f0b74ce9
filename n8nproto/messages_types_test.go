package n8nproto

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// taskMessages is one of every task message of this package, each field set, so a test can see
// that an operation on one field leaves the others alone.
func taskMessages() []TaskMessage {
	raw := json.RawMessage(`{"k":[1,"two"]}`)
	return []TaskMessage{
		TaskOfferAccept{TaskID: "t", OfferID: "o"},
		TaskSettings{TaskID: "t", Settings: raw},
		TaskCancel{TaskID: "t", Reason: "r"},
		TaskDataResponse{TaskID: "t", RequestID: "q", Data: raw},
		NodeTypes{TaskID: "t", RequestID: "q", NodeTypes: raw},
		RPCResponse{TaskID: "t", CallID: "c", Status: "success", Data: raw},
		TaskAccepted{TaskID: "t"},
		TaskRejected{TaskID: "t", Reason: "r"},
		TaskDeferred{TaskID: "t"},
		TaskDataRequest{TaskID: "t", RequestID: "q", RequestParams: raw},
		NodeTypesRequest{TaskID: "t", RequestID: "q", RequestParams: raw},
		RPC{TaskID: "t", CallID: "c", Name: "n", Params: raw},
		TaskDone{TaskID: "t", Data: raw},
		TaskError{TaskID: "t", Error: raw},
	}
}

// foreignTask is a TaskMessage from outside the package: withTaskID cannot copy it.
type foreignTask struct{}

func (foreignTask) MessageType() string { return "x:foreign" }
func (foreignTask) TaskKey() string     { return "t" }

// TestWithTaskIDEveryType pins withTaskID for every task message, as a value and as a pointer:
// the copy is the value type, only its TaskID differs, and the original is not changed.
func TestWithTaskIDEveryType(t *testing.T) {
	for _, m := range taskMessages() {
		ptr := reflect.New(reflect.TypeOf(m))
		ptr.Elem().Set(reflect.ValueOf(m))
		for _, in := range []TaskMessage{m, ptr.Interface().(TaskMessage)} {
			got, err := withTaskID(in, "new")
			if err != nil {
				t.Fatalf("%T: %v", in, err)
			}
			if reflect.TypeOf(got) != reflect.TypeOf(m) || got.TaskKey() != "new" {
				t.Fatalf("withTaskID(%T) = %#v", in, got)
			}
			want := reflect.New(reflect.TypeOf(m)).Elem()
			want.Set(reflect.ValueOf(m))
			want.FieldByName("TaskID").SetString("new")
			if !reflect.DeepEqual(got, want.Interface()) {
				t.Errorf("withTaskID(%T) = %#v, want %#v", in, got, want.Interface())
			}
		}
		if ptr.Elem().FieldByName("TaskID").String() != "t" {
			t.Errorf("%T: the original was changed", m)
		}
	}
	for _, tc := range []struct {
		in   TaskMessage
		want string
	}{
		{nil, "n8nproto: nil task message"},
		{foreignTask{}, "n8nproto: n8nproto.foreignTask is not a task message of this package"},
		{&foreignTask{}, "n8nproto: *n8nproto.foreignTask is not a task message of this package"},
	} {
		if _, err := withTaskID(tc.in, "x"); err == nil || err.Error() != tc.want {
			t.Errorf("withTaskID(%#v) error = %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestDecodeFastEveryType pins what the fast decoder makes of each type it reads: every field, a
// missing or null id ("" either way), a missing payload (nil) against a null one (kept as null),
// and the error for an id that is not a string, naming the field.
func TestDecodeFastEveryType(t *testing.T) {
	fast := 0
	for _, m := range taskMessages() {
		frame, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, handled, _ := decodeFast(m.MessageType(), frame, false); !handled { // decoded by encoding/json instead
			continue
		}
		fast++
		for _, alias := range []bool{false, true} {
			got, _, err := decodeFast(m.MessageType(), frame, alias)
			if err != nil || !reflect.DeepEqual(got, m) {
				t.Errorf("decodeFast(%s, alias=%v) = %#v, %v; want %#v", frame, alias, got, err, m)
			}
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(frame, &fields); err != nil {
			t.Fatal(err)
		}
		checkFastIDs(t, m, fields)
		checkFastPayload(t, m, fields)
		if _, handled, err := decodeFast(m.MessageType(), []byte(`{"type":"`+m.MessageType()+`",`), false); !handled || err == nil || err.Error() != "invalid JSON" {
			t.Errorf("%s: invalid JSON: handled=%v err=%v", m.MessageType(), handled, err)
		}
	}
	if fast != 9 {
		t.Errorf("decodeFast read %d of the task message types, want 9", fast)
	}
	for _, typ := range []string{TypeTaskOfferAccept, TypeTaskCancel, TypeTaskAccepted, TypeTaskRejected,
		TypeTaskDeferred, TypeInfoRequest, TypeRunnerInfo, TypeTaskOffer, "x:y"} {
		// Not a fast type: passed on before the frame is even validated.
		if m, handled, err := decodeFast(typ, []byte(`{broken`), false); handled || m != nil || err != nil {
			t.Errorf("decodeFast(%s) = %v %v %v", typ, m, handled, err)
		}
	}
}

// edited is fields with key set to raw (removed when raw is ""), as a frame.
func edited(fields map[string]json.RawMessage, key, raw string) []byte {
	out := map[string]json.RawMessage{}
	for k, v := range fields {
		out[k] = v
	}
	if raw == "" {
		delete(out, key)
	} else {
		out[key] = json.RawMessage(raw)
	}
	b, _ := json.Marshal(out)
	return b
}

// checkFastIDs: every string field of m's frame reads as "" when null or missing, and a number
// there is refused by name, by decodeFast and by Decode.
func checkFastIDs(t *testing.T, m Message, fields map[string]json.RawMessage) {
	t.Helper()
	for k, v := range fields {
		if k == "type" || v[0] != '"' {
			continue
		}
		in := edited(fields, k, "5")
		want := fmt.Sprintf("field %q is not a string", k)
		if _, _, err := decodeFast(m.MessageType(), in, false); err == nil || err.Error() != want {
			t.Errorf("decodeFast(%s) error = %v, want %q", in, err, want)
		}
		wantFull := "n8nproto: malformed message: " + m.MessageType() + ": " + want
		if full, err := Decode(in); full != nil || err == nil || err.Error() != wantFull {
			t.Errorf("Decode(%s) = %v, %v; want %q", in, full, err, wantFull)
		}
		for _, repl := range []string{"null", ""} {
			in := edited(fields, k, repl)
			got, _, err := decodeFast(m.MessageType(), in, false)
			if err != nil {
				t.Fatalf("decodeFast(%s): %v", in, err)
			}
			if reflect.ValueOf(got).FieldByName(fieldOf(t, m, k)).String() != "" {
				t.Errorf("decodeFast(%s): field %s = %#v, want \"\"", in, k, got)
			}
		}
	}
}

// checkFastPayload: the payload of m's frame is nil when missing, stays null when null, and is
// the raw value without the spaces around it.
func checkFastPayload(t *testing.T, m Message, fields map[string]json.RawMessage) {
	t.Helper()
	payloadKey := ""
	for k, v := range fields {
		if v[0] == '{' {
			payloadKey = k
		}
	}
	for _, tc := range []struct {
		in   []byte
		want json.RawMessage
	}{
		{edited(fields, payloadKey, ""), nil},
		{edited(fields, payloadKey, "null"), json.RawMessage("null")},
		// json.Marshal compacts: a frame with spaces around the payload, by hand
		{[]byte(`{"type":"` + m.MessageType() + `","taskId":"t","` + payloadKey + `": [ ] }`), json.RawMessage("[ ]")},
	} {
		got, _, err := decodeFast(m.MessageType(), tc.in, false)
		if err != nil {
			t.Fatal(err)
		}
		p := reflect.ValueOf(got).FieldByName(fieldOf(t, m, payloadKey)).Interface().(json.RawMessage)
		if !reflect.DeepEqual(p, tc.want) {
			t.Errorf("decodeFast(%s) payload = %q, want %q", tc.in, p, tc.want)
		}
	}
}

// fieldOf is the Go field of m's type whose JSON name is key.
func fieldOf(t *testing.T, m Message, key string) string {
	t.Helper()
	typ := reflect.TypeOf(m)
	for i := range typ.NumField() {
		f := typ.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name == key {
			return f.Name
		}
	}
	t.Fatalf("%T has no field %q", m, key)
	return ""
}

// BenchmarkDecodeSmallFrames decodes one small frame of each task message type (the fast decoder's
// per-frame cost where there is no big payload to dominate it).
func BenchmarkDecodeSmallFrames(b *testing.B) {
	var frames [][]byte
	for _, m := range taskMessages() {
		f, err := Encode(m)
		if err != nil {
			b.Fatal(err)
		}
		frames = append(frames, f)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, f := range frames {
			if _, err := Decode(f); err != nil {
				b.Fatal(err)
			}
		}
	}
}
