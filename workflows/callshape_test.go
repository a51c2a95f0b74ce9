package workflows

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func parseCallHeader(t testing.TB, header string) (*CallDirective, error) {
	t.Helper()
	h, err := ParseHeader("/* @n8n-fn " + header + " */")
	if err != nil {
		t.Fatalf("header %s: %v", header, err)
	}
	return ParseCall("n", h)
}

func mustCall(t testing.TB, header string) *CallDirective {
	t.Helper()
	d, err := parseCallHeader(t, header)
	if err != nil {
		t.Fatalf("%s: %v", header, err)
	}
	return d
}

func TestParseCallShapingFields(t *testing.T) {
	d := mustCall(t, `{"op":"call","function":"f","paramsField":"p","paramsWithItem":true,"parseValues":true,"resultMode":"merge","valueField":"_v","errorOutput":"details","errorField":"_functionCall"}`)
	want := &CallDirective{Function: "f", Scope: ScopeGlobal, Mode: ModeEachItem, RetryBackoffMs: DefaultRetryBackoffMs, WaitForLiveMs: DefaultWaitForLiveMs,
		ParamsField: "p", ParamsWithItem: true, ParseValues: true, ResultMode: ResultMerge, ValueField: "_v", ErrorOutput: ErrorOutputDetails, ErrorField: "_functionCall"}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("got  %+v\nwant %+v", d, want)
	}
	// defaults: resultField alone means field mode, nothing means items
	if m := mustCall(t, `{"op":"call","function":"f","resultField":"r"}`).EffectiveResultMode(); m != ResultField {
		t.Errorf("resultField alone: %s", m)
	}
	if m := mustCall(t, `{"op":"call","function":"f"}`).EffectiveResultMode(); m != ResultItems {
		t.Errorf("default: %s", m)
	}
	// every shaping field survives the encoder
	code, err := DirectiveCode(d)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseDirective("n", code)
	if err != nil || !reflect.DeepEqual(back, d) {
		t.Fatalf("round trip %v\n%+v\n%s", err, back, code)
	}
}

func TestParseCallShapingErrors(t *testing.T) {
	for _, tc := range []struct{ header, field, msg string }{
		{`{"op":"call","function":"f","paramsField":"a.b"}`, "paramsField", "one top-level field name"},
		{`{"op":"call","function":"f","paramsField":""}`, "paramsField", "must not be empty"},
		{`{"op":"call","function":"f","paramsField":"_functionCall"}`, "paramsField", "reserved"},
		{`{"op":"call","function":"f","paramsWithItem":true}`, "paramsWithItem", `only applies with "paramsField"`},
		{`{"op":"call","function":"f","parseValues":true}`, "parseValues", `only applies with "paramsField"`},
		{`{"op":"call","function":"f","paramsField":"p","parseValues":"yes"}`, "parseValues", "expected true or false"},
		{`{"op":"call","function":"f","resultMode":"append"}`, "resultMode", `"append" is not a result mode`},
		{`{"op":"call","function":"f","resultMode":"field"}`, "resultMode", `needs "resultField"`},
		{`{"op":"call","function":"f","resultMode":"none","resultField":"r"}`, "resultField", `resultMode "none" puts no result in a field`},
		{`{"op":"call","function":"f","resultMode":"items","resultField":"r"}`, "resultField", `resultMode "items" puts no result`},
		{`{"op":"call","function":"f","paramsField":"p","resultField":"p"}`, "resultField", "also the paramsField"},
		{`{"op":"call","function":"f","valueField":"a.b"}`, "valueField", "one top-level field name"},
		{`{"op":"call","function":"f","resultMode":"merge","skipNull":true}`, "skipNull", `only applies with resultMode "field"`},
		{`{"op":"call","function":"f","errorOutput":"all"}`, "errorOutput", `"all" is not an error output`},
		{`{"op":"call","function":"f","errorField":"e"}`, "errorField", `errorOutput "error" always writes`},
		{`{"op":"call","function":"f","errorOutput":"input","errorField":"x.y"}`, "errorField", "one top-level field name"},
	} {
		_, err := parseCallHeader(t, tc.header)
		var es DirectiveErrors
		if !errors.As(err, &es) || !errors.Is(err, ErrDirective) {
			t.Errorf("%s: want a directive error, got %v", tc.header, err)
			continue
		}
		found := false
		for _, e := range es {
			found = found || (e.Field == tc.field && strings.Contains(e.Msg, tc.msg))
		}
		if !found {
			t.Errorf("%s: want field %q with %q, got %v", tc.header, tc.field, tc.msg, err)
		}
	}
}

func TestCallParams(t *testing.T) {
	ctx := `"_functionCall":{"callId":"x"}`
	for _, tc := range []struct {
		name, header, item, want, err string
	}{
		{"the item without the context", `{"op":"call","function":"f"}`, `{"a":1,` + ctx + `,"b":"x"}`, `{"a":1,"b":"x"}`, ""},
		{"the field's object only", `{"op":"call","function":"f","paramsField":"p"}`, `{"a":1,"p":{"x":"5","y":{"k":1}}}`, `{"x":"5","y":{"k":1}}`, ""},
		{"a string holding JSON", `{"op":"call","function":"f","paramsField":"p"}`, `{"p":"{\"x\": 1}"}`, `{"x":1}`, ""},
		{"values parsed like JSON.parse", `{"op":"call","function":"f","paramsField":"p","parseValues":true}`,
			`{"p":{"n":"5","b":"true","o":"{\"k\":[1]}","s":"abc","e":"","q":"\"quoted\"","raw":7,"nul":"null","sp":" 12 "}}`,
			`{"n":5,"b":true,"o":{"k":[1]},"s":"abc","e":"","q":"quoted","raw":7,"nul":null,"sp":12}`, ""},
		{"with the item's fields, the field's win in place", `{"op":"call","function":"f","paramsField":"p","paramsWithItem":true}`,
			`{"a":1,"b":2,` + ctx + `,"p":{"a":3,"c":4}}`, `{"a":3,"b":2,"c":4}`, ""},
		{"missing field", `{"op":"call","function":"f","paramsField":"p"}`, `{"a":1}`, "", `the item has no field "p" (paramsField)`},
		{"null field", `{"op":"call","function":"f","paramsField":"p"}`, `{"p":null}`, "", `no field "p"`},
		{"a number", `{"op":"call","function":"f","paramsField":"p"}`, `{"p":5}`, "", `must be an object (or a string holding one), got the number 5`},
		{"a string that is no object", `{"op":"call","function":"f","paramsField":"p"}`, `{"p":"[1]"}`, "", "is a string that is not a JSON object"},
		{"item not an object", `{"op":"call","function":"f"}`, `[1]`, "", "not an object"},
	} {
		got, err := mustCall(t, tc.header).CallParams([]byte(tc.item))
		switch {
		case tc.err != "":
			if err == nil || !errors.Is(err, ErrCallParams) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: want error %q, got %v (%s)", tc.name, tc.err, err, got)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case string(got) != tc.want:
			t.Errorf("%s:\n got  %s\n want %s", tc.name, got, tc.want)
		}
	}
	all, err := mustCall(t, `{"op":"call","function":"f","mode":"allItems","paramsField":"p"}`).CallParamsAll([][]byte{[]byte(`{"p":{"a":1}}`), []byte(`{"p":{"a":2}}`)})
	if err != nil || string(all) != `{"items":[{"a":1},{"a":2}]}` {
		t.Errorf("all items: %s %v", all, err)
	}
	if _, err := mustCall(t, `{"op":"call","function":"f","mode":"allItems","paramsField":"p"}`).CallParamsAll([][]byte{[]byte(`{"p":{}}`), []byte(`{}`)}); err == nil || !strings.Contains(err.Error(), "item 1") {
		t.Errorf("all items, second bad: %v", err)
	}
}

func shapedJSON(items []ShapedItem) string {
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = string(it.JSON)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func TestShape(t *testing.T) {
	in := raws(`{"a":1,"b":2,"p":{"x":1}}`)
	for _, tc := range []struct {
		name, header string
		inputs       []json.RawMessage
		returned     []json.RawMessage
		want         string
		fromInput    bool
		pairs        []int
	}{
		// items: today's default, the returned items as they are
		{"items", `{"op":"call","function":"f"}`, in, raws(`{"s":3}`, `{"s":4}`), `[{"s":3},{"s":4}]`, false, []int{0, 0}},
		{"items, counts match: pairwise", `{"op":"call","function":"f","mode":"allItems"}`, raws(`{"a":1}`, `{"a":2}`), raws(`{"s":1}`, `{"s":2}`), `[{"s":1},{"s":2}]`, false, []int{0, 1}},
		{"items, none returned", `{"op":"call","function":"f"}`, in, nil, `[]`, false, nil},
		// field: today's resultField, minus the params field
		{"field, one item", `{"op":"call","function":"f","resultField":"r","paramsField":"p"}`, in, raws(`{"s":3}`), `[{"a":1,"b":2,"r":{"s":3}}]`, true, []int{0}},
		{"field, none: null", `{"op":"call","function":"f","resultField":"r"}`, raws(`{"a":1}`), nil, `[{"a":1,"r":null}]`, true, []int{0}},
		{"field, several: array", `{"op":"call","function":"f","resultField":"r"}`, raws(`{"a":1}`), raws(`{"s":1}`, `{"s":2}`), `[{"a":1,"r":[{"s":1},{"s":2}]}]`, true, []int{0}},
		{"field replaces a field of the same name in place", `{"op":"call","function":"f","resultField":"a"}`, raws(`{"a":1,"b":2}`), raws(`{"s":1}`), `[{"a":{"s":1},"b":2}]`, true, []int{0}},
		{"field, skipNull", `{"op":"call","function":"f","resultField":"r","skipNull":true,"valueField":"_v"}`, raws(`{"a":1,"r":"old"}`), raws(`{"_v":null}`), `[{"a":1,"r":"old"}]`, true, []int{0}},
		{"field, unwrapped number", `{"op":"call","function":"f","resultField":"r","valueField":"_v"}`, raws(`{"a":1}`), raws(`{"_v":42}`), `[{"a":1,"r":42}]`, true, []int{0}},
		{"field, valueField only unwraps a lone field", `{"op":"call","function":"f","resultField":"r","valueField":"_v"}`, raws(`{"a":1}`), raws(`{"_v":42,"x":1}`), `[{"a":1,"r":{"_v":42,"x":1}}]`, true, []int{0}},
		{"field, allItems: every input gets it", `{"op":"call","function":"f","mode":"allItems","resultField":"r"}`, raws(`{"a":1}`, `{"a":2}`), raws(`{"s":3}`), `[{"a":1,"r":{"s":3}},{"a":2,"r":{"s":3}}]`, true, []int{0, 1}},
		// merge: the origin's Store Response off in 0.1.2-0.1.12
		{"merge, object", `{"op":"call","function":"f","resultMode":"merge","paramsField":"p"}`, in, raws(`{"a":3,"c":4}`), `[{"a":3,"b":2,"c":4}]`, true, []int{0}},
		{"merge, non-object under result", `{"op":"call","function":"f","resultMode":"merge","valueField":"_v"}`, raws(`{"a":1}`), raws(`{"_v":"hi"}`), `[{"a":1,"result":"hi"}]`, true, []int{0}},
		{"merge, non-object under resultField", `{"op":"call","function":"f","resultMode":"merge","resultField":"out","valueField":"_v"}`, raws(`{"a":1}`), raws(`{"_v":false}`), `[{"a":1,"out":false}]`, true, []int{0}},
		{"merge, null: unchanged", `{"op":"call","function":"f","resultMode":"merge","valueField":"_v","paramsField":"p"}`, in, raws(`{"_v":null}`), `[{"a":1,"b":2}]`, true, []int{0}},
		{"merge, nothing returned: unchanged", `{"op":"call","function":"f","resultMode":"merge"}`, raws(`{"a":1}`), nil, `[{"a":1}]`, true, []int{0}},
		{"merge, several: an array under result", `{"op":"call","function":"f","resultMode":"merge"}`, raws(`{"a":1}`), raws(`{"s":1}`, `{"s":2}`), `[{"a":1,"result":[{"s":1},{"s":2}]}]`, true, []int{0}},
		// replace
		{"replace, object", `{"op":"call","function":"f","resultMode":"replace"}`, in, raws(`{"s":3}`), `[{"s":3}]`, true, []int{0}},
		{"replace, non-object", `{"op":"call","function":"f","resultMode":"replace","valueField":"_v"}`, in, raws(`{"_v":[1,2]}`), `[{"result":[1,2]}]`, true, []int{0}},
		// none: the origin's Store Response off in 0.1.0/0.1.1 and 0.2.x
		{"none", `{"op":"call","function":"f","resultMode":"none","paramsField":"p"}`, in, raws(`{"s":3}`), `[{"a":1,"b":2}]`, true, []int{0}},
	} {
		got, err := mustCall(t, tc.header).Shape(tc.inputs, tc.returned)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if s := shapedJSON(got); s != tc.want {
			t.Errorf("%s:\n got  %s\n want %s", tc.name, s, tc.want)
		}
		for i, it := range got {
			if it.FromInput != tc.fromInput || i >= len(tc.pairs) || it.Pair != tc.pairs[i] {
				t.Errorf("%s: item %d: FromInput %v Pair %d, want %v %v", tc.name, i, it.FromInput, it.Pair, tc.fromInput, tc.pairs)
			}
		}
	}
	if _, err := mustCall(t, `{"op":"call","function":"f","resultField":"r"}`).Shape(raws(`[1]`), nil); err == nil {
		t.Error("a non-object input must be an error")
	}
}

func TestShapeError(t *testing.T) {
	in := raws(`{"a":1,"p":{"x":"1"}}`, `{"a":2,"p":{"x":"2"}}`)
	for _, tc := range []struct{ name, header, want string }{
		{"error (default)", `{"op":"call","function":"f","paramsField":"p"}`, `[{"error":"boom \"x\""},{"error":"boom \"x\""}]`},
		{"input", `{"op":"call","function":"f","paramsField":"p","errorOutput":"input"}`, `[{"a":1,"error":"boom \"x\""},{"a":2,"error":"boom \"x\""}]`},
		{"input, named field", `{"op":"call","function":"f","errorOutput":"input","errorField":"why"}`, `[{"a":1,"p":{"x":"1"},"why":"boom \"x\""},{"a":2,"p":{"x":"2"},"why":"boom \"x\""}]`},
		{"details (the origin's)", `{"op":"call","function":"f","paramsField":"p","errorOutput":"details","errorField":"_functionCall"}`,
			`[{"a":1,"_functionCall":{"functionName":"f","parameters":{"x":"1"},"success":false,"error":"boom \"x\""}},{"a":2,"_functionCall":{"functionName":"f","parameters":{"x":"2"},"success":false,"error":"boom \"x\""}}]`},
		{"details, parsed, without the item's fields", `{"op":"call","function":"f","paramsField":"p","paramsWithItem":true,"parseValues":true,"errorOutput":"details"}`,
			`[{"a":1,"error":{"functionName":"f","parameters":{"x":1},"success":false,"error":"boom \"x\""}},{"a":2,"error":{"functionName":"f","parameters":{"x":2},"success":false,"error":"boom \"x\""}}]`},
	} {
		got, err := mustCall(t, tc.header).ShapeError(in, `boom "x"`)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if s := shapedJSON(got); s != tc.want {
			t.Errorf("%s:\n got  %s\n want %s", tc.name, s, tc.want)
		}
		wantFromInput := !strings.Contains(tc.name, "default")
		for i, it := range got {
			if it.Pair != i || it.FromInput != wantFromInput {
				t.Errorf("%s: item %d pair %d fromInput %v", tc.name, i, it.Pair, it.FromInput)
			}
		}
	}
	got, _ := mustCall(t, `{"op":"call","function":"f","errorOutput":"details"}`).ShapeError(raws(`{"a":1,"_functionCall":{}}`), "x")
	if s := shapedJSON(got); s != `[{"a":1,"_functionCall":{},"error":{"functionName":"f","parameters":{"a":1},"success":false,"error":"x"}}]` {
		t.Errorf("details without paramsField: %s", s)
	}
	got, _ = mustCall(t, `{"op":"call","function":"f","paramsField":"p","errorOutput":"details"}`).ShapeError(raws(`{"a":1}`), "x")
	if s := shapedJSON(got); s != `[{"a":1,"error":{"functionName":"f","parameters":{},"success":false,"error":"x"}}]` {
		t.Errorf("details, params unreadable: %s", s)
	}
}

func TestParamTypeAny(t *testing.T) {
	h, _ := ParseHeader(`/* @n8n-fn {"op":"function","name":"f","params":[{"name":"v","type":"any","default":"5"}]} */`)
	d, err := ParseFunction("n", h)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"v":"42"}`, `{"v":"42"}`},
		{`{"v":42}`, `{"v":42}`},
		{`{"v":{"k": [1]}}`, `{"v":{"k":[1]}}`},
		{`{}`, `{"v":"5"}`},
		{`{"v":null}`, `{"v":"5"}`},
	} {
		got, err := d.BindParams([]byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("BindParams(%s) = %s %v, want %s", tc.in, got, err, tc.want)
		}
	}
}

// FuzzCallShape feeds outside input (an item's json, the function's returned items) through every
// params and result mode: it must never panic, and what comes out must be JSON objects.
func FuzzCallShape(f *testing.F) {
	for _, s := range [][2]string{
		{`{"a":1,"p":{"x":"5"}}`, `{"s":1}`},
		{`{"p":"{\"x\":1}"}`, `{"_v":42}`},
		{`{"p":null}`, `[]`},
		{`[1]`, `"x"`},
		{`{"a":1,"a":2,"p":{"x":"{\"k\":"}}`, `{"_v":null}`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	headers := []string{
		`{"op":"call","function":"f"}`,
		`{"op":"call","function":"f","paramsField":"p","parseValues":true,"paramsWithItem":true,"resultField":"r","valueField":"_v","skipNull":true,"errorOutput":"input"}`,
		`{"op":"call","function":"f","paramsField":"p","resultMode":"merge","valueField":"_v","errorOutput":"details","errorField":"_functionCall"}`,
		`{"op":"call","function":"f","resultMode":"replace"}`,
		`{"op":"call","function":"f","resultMode":"none","paramsField":"p"}`,
	}
	var ds []*CallDirective
	for _, h := range headers {
		ds = append(ds, mustCall(f, h))
	}
	f.Fuzz(func(t *testing.T, item, ret []byte) {
		for _, d := range ds {
			p, err := d.CallParams(item)
			if err == nil && !isObject(p) {
				t.Fatalf("params %s from %s is not an object", p, item)
			}
			if !json.Valid(item) || !json.Valid(ret) {
				continue
			}
			out, err := d.Shape([]json.RawMessage{item}, []json.RawMessage{ret})
			if err == nil {
				for _, it := range out {
					if !json.Valid(it.JSON) {
						t.Fatalf("shape wrote invalid JSON %s", it.JSON)
					}
				}
			}
			errs, err := d.ShapeError([]json.RawMessage{item}, "m")
			if err == nil {
				for _, it := range errs {
					if !isObject(it.JSON) {
						t.Fatalf("error item %s is not an object", it.JSON)
					}
				}
			}
		}
	})
}

func isObject(b []byte) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil && m != nil
}
