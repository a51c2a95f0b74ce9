package functions

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"unsafe"
	"weak"

	"github.com/n8n-fn/n8n-fn/internal/jsonlimit"
	"github.com/n8n-fn/n8n-fn/registry"
)

// resultParts makes what json.Marshal makes of the items, whichever are big enough to be parts of
// their own.
func TestResultPartsIsTheMarshalledResult(t *testing.T) {
	big := json.RawMessage(`{"s":"` + strings.Repeat("b", bigValue) + `"}`)
	bigBin := json.RawMessage(`{"data":{"data":"` + strings.Repeat("Q", bigValue) + `"}}`)
	for name, items := range map[string][]outItem{
		"none":  nil,
		"small": {{JSON: json.RawMessage(`{"a":1}`)}, {JSON: json.RawMessage(`{"b":"x"}`), Binary: json.RawMessage(`{"f":{"id":"k"}}`), PairedItem: pairedItem{Item: 7}}},
		"big":   {{JSON: big}},
		"mixed": {{JSON: json.RawMessage(`{"a":1}`)}, {JSON: big, Binary: bigBin, PairedItem: pairedItem{Item: 1}}, {JSON: nil, PairedItem: pairedItem{Item: 2}}, {JSON: big}},
	} {
		p, err := resultParts(items)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if items == nil {
			items = []outItem{}
		}
		want, _ := json.Marshal(map[string]any{"result": items})
		if got := p.JSON(); string(got) != string(want) {
			t.Fatalf("%s: resultParts wrote %.200s…\nwant %.200s…", name, got, want)
		}
	}
	if _, err := resultParts([]outItem{{JSON: json.RawMessage(`{"a":`)}}); err == nil {
		t.Fatal("resultParts took an item that is not JSON")
	}
	deep := json.RawMessage(strings.Repeat("[", 9998) + strings.Repeat("]", 9998))
	if _, err := resultParts([]outItem{{JSON: deep}}); err == nil || !strings.Contains(err.Error(), jsonlimit.ErrTooDeep.Error()) {
		t.Fatalf("an item whose frame would be 10001 levels deep: %v", err)
	}
}

// The output of a call or return node that passes on a 30 MB item costs the sidecar no copy of
// it: the item is a part of its own (resultJSON copied it into the frame's data).
func TestResultPartsDoesNotCopyBigItems(t *testing.T) {
	const n = 30 << 20
	big := json.RawMessage(`{"s":"` + strings.Repeat("r", n) + `"}`)
	items := []outItem{{JSON: big}, {JSON: json.RawMessage(`{"i":1}`), PairedItem: pairedItem{Item: 1}}}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	p, err := resultParts(items)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<10 {
		t.Errorf("the output of a %d MiB item allocated %d bytes", n>>20, alloc)
	}
	if len(p) != 3 || &p[1][0] != &big[0] {
		t.Errorf("the big item is not a part of its own, as it is: %d parts", len(p))
	}
}

// encodeEarly points a big result's output at the items in the encoded reply, so nothing refers
// to n8n's data response any more and it is collected before the reply is pushed.
func TestEncodeEarlyLetsTheDataResponseGo(t *testing.T) {
	build := func(binary bool) (*taskData, []outItem, weak.Pointer[byte], string) {
		big := `{"s":"` + strings.Repeat("r", earlyEncodeMin) + `"}`
		bin := ""
		if binary {
			bin = `,"binary":{"f":{"id":"k"}}`
		}
		raw := []byte(`{"workflow":{"id":"w"},"inputData":{"main":[[{"json":` + big + bin + `},{"json":{"i":1}}]]}}`)
		data, err := parseTaskData(raw)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]outItem, len(data.Items))
		for i, it := range data.Items {
			out[i] = outItem{JSON: it.JSON, Binary: it.Binary, PairedItem: pairedItem{Item: i}}
		}
		return data, out, weak.Make(&raw[0]), big
	}
	data, out, frame, big := build(false)
	groups := [][]int{{0, 1}}
	replies := []registry.Reply{{CallID: "c1", OK: true}}
	replies[0].ItemList, replies[0].Binaries = replyItems(out, groups[0])
	if err := encodeEarly(data, out, groups, replies); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	if frame.Value() != nil {
		t.Error("the data response is still referenced after encodeEarly")
	}
	runtime.KeepAlive(data) // the task's data lives on: only its items must let the response go
	enc := replies[0].Encoded
	if len(enc) == 0 || replies[0].ItemList != nil || string(out[0].JSON) != big || string(out[1].JSON) != `{"i":1}` {
		t.Fatalf("encoded %d bytes; output %.40s… / %s", len(enc), out[0].JSON, out[1].JSON)
	}
	if p := &out[0].JSON[0]; uintptr(unsafe.Pointer(p)) < uintptr(unsafe.Pointer(&enc[0])) || uintptr(unsafe.Pointer(p)) >= uintptr(unsafe.Pointer(&enc[0]))+uintptr(len(enc)) {
		t.Error("the output's big item is not a slice of the encoded reply")
	}
	var got registry.Reply
	if err := json.Unmarshal(enc, &got); err != nil || got.CallID != "c1" || !got.OK || len(got.Items) != len(big)+len(`[,{"i":1}]`) {
		t.Fatalf("encoded reply %+v, %v", got, err)
	}

	// With binary data on an item the data response stays (its binary is a slice of it), and the
	// reply is pushed the usual way.
	data, out, frame, _ = build(true)
	replies = []registry.Reply{{CallID: "c1", OK: true}}
	replies[0].ItemList, replies[0].Binaries = replyItems(out, groups[0])
	if err := encodeEarly(data, out, groups, replies); err != nil {
		t.Fatal(err)
	}
	if replies[0].Encoded != nil || data.Items == nil {
		t.Error("encodeEarly encoded a result whose binary data refers to the data response")
	}
	runtime.KeepAlive(frame)
}
