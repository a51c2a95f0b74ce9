package functions

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/n8n-fn/n8n-fn/internal/jsonlimit"
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
