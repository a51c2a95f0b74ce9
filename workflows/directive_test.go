package workflows

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func code(header string) string {
	return "/* @n8n-fn " + header + " */\nthrow new Error(\"n8n-fn: this node must run on the n8n-fn sidecar runner\");"
}

func TestParseDirectiveFunction(t *testing.T) {
	d, err := ParseDirective("add", code(`{"op":"function","v":1,"name":"add","params":[{"name":"a","type":"number","required":true},{"name":"b","type":"number","default":"2"},{"name":"tags","type":"array","default":"[\"x\"]","description":"labels"}],"timeoutMs":5000,"maxConcurrency":4}`))
	if err != nil {
		t.Fatal(err)
	}
	f, ok := d.(*FunctionDirective)
	if !ok {
		t.Fatalf("got %T", d)
	}
	if f.Name != "add" || f.Scope != ScopeGlobal || f.TimeoutMs != 5000 || f.MaxConcurrency != 4 {
		t.Fatalf("unexpected %+v", f)
	}
	if string(f.Params[1].Default) != "2" || string(f.Params[2].Default) != `["x"]` || f.Params[0].Default != nil {
		t.Fatalf("defaults not coerced: %q %q", f.Params[1].Default, f.Params[2].Default)
	}
	if f.Params[2].Description != "labels" || !f.Params[0].Required {
		t.Fatalf("param fields lost: %+v", f.Params)
	}
	if got := f.Ref("wf1"); got != (FunctionRef{ScopeGlobal, "add"}) {
		t.Fatalf("ref %v", got)
	}
}

func TestParseDirectiveDefaults(t *testing.T) {
	d, err := ParseDirective("n", code(`{"op":"function","name":"f","scope":"workflow"}`))
	if err != nil {
		t.Fatal(err)
	}
	f := d.(*FunctionDirective)
	if f.TimeoutMs != DefaultFunctionTimeoutMs || f.MaxConcurrency != 0 || f.Ref("wfX") != (FunctionRef{"wfX", "f"}) {
		t.Fatalf("defaults: %+v", f)
	}
	d, err = ParseDirective("n", code(`{"op":"call","function":"f"}`))
	if err != nil {
		t.Fatal(err)
	}
	c := d.(*CallDirective)
	want := &CallDirective{Function: "f", Scope: ScopeGlobal, Mode: ModeEachItem, RetryBackoffMs: DefaultRetryBackoffMs, WaitForLiveMs: DefaultWaitForLiveMs}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v want %+v", c, want)
	}
	d, err = ParseDirective("n", code(`{"op":"return","v":1}`))
	if err != nil || d.(*ReturnDirective).Fail {
		t.Fatalf("return: %v %+v", err, d)
	}
	d, err = ParseDirective("n", code(`{"op":"echo"}`))
	if _, ok := d.(*EchoDirective); err != nil || !ok {
		t.Fatalf("echo: %v %T", err, d)
	}
}

func TestParseDirectiveNotADirective(t *testing.T) {
	for _, c := range []string{"", "return $input.all();", "// @n8n-fn {\"op\":\"call\"}", "/* normal comment */ return [];"} {
		d, err := ParseDirective("n", c)
		if d != nil || err != nil {
			t.Errorf("%q: got %v, %v", c, d, err)
		}
	}
}

func TestParseDirectiveErrors(t *testing.T) {
	cases := []struct {
		name   string
		header string
		want   []string // substrings that must all appear
	}{
		{"unknown op", `{"op":"calll"}`, []string{`node "N"`, `unknown op "calll"`}},
		{"bad json", `{"op":"call",}`, []string{`node "N"`, "does not parse"}},
		{"version", `{"op":"call","v":2,"function":"f"}`, []string{`"v":2`}},
		{"unknown field", `{"op":"call","function":"f","timeout":5}`, []string{`field "timeout"`, "unknown field", "timeoutMs"}},
		{"missing function", `{"op":"call"}`, []string{`field "function"`, "required"}},
		{"bad scope", `{"op":"call","function":"f","scope":"a b"}`, []string{`field "scope"`}},
		{"bad mode", `{"op":"call","function":"f","mode":"each"}`, []string{`field "mode"`, "eachItem"}},
		{"timeout type", `{"op":"call","function":"f","timeoutMs":"5s"}`, []string{`field "timeoutMs"`, "whole number"}},
		{"timeout range", `{"op":"function","name":"f","timeoutMs":5}`, []string{`field "timeoutMs"`, "out of range"}},
		{"fraction", `{"op":"call","function":"f","retries":1.5}`, []string{`field "retries"`}},
		{"retries range", `{"op":"call","function":"f","retries":11}`, []string{`field "retries"`, "0..10"}},
		{"result reserved", `{"op":"call","function":"f","resultField":"_functionCall"}`, []string{`field "resultField"`, "reserved"}},
		{"idem path", `{"op":"call","function":"f","idempotencyKey":"a..b"}`, []string{`field "idempotencyKey"`}},
		{"bad name", `{"op":"function","name":"add numbers"}`, []string{`field "name"`, "letters"}},
		{"missing name", `{"op":"function"}`, []string{`field "name"`, "required"}},
		{"function scope", `{"op":"function","name":"f","scope":"abc"}`, []string{`field "scope"`}},
		{"params not array", `{"op":"function","name":"f","params":{}}`, []string{`field "params"`, "array"}},
		{"param type", `{"op":"function","name":"f","params":[{"name":"a","type":"int"}]}`, []string{`params[0] (a).type`, `"int"`}},
		{"param unknown field", `{"op":"function","name":"f","params":[{"name":"a","reqired":true}]}`, []string{`params[0] (a).reqired`}},
		{"param duplicate", `{"op":"function","name":"f","params":[{"name":"a"},{"name":"a"}]}`, []string{`params[1] (a).name`, "twice"}},
		{"param default type", `{"op":"function","name":"f","params":[{"name":"a","type":"number","default":"abc"}]}`, []string{`params[0] (a).default`, "number"}},
		{"param not object", `{"op":"function","name":"f","params":[1]}`, []string{`params[0]`, "expected an object"}},
		{"message without fail", `{"op":"return","message":"x"}`, []string{`field "message"`, "fail"}},
		{"fail type", `{"op":"return","fail":"yes"}`, []string{`field "fail"`, "true or false"}},
		{"echo strict", `{"op":"echo","x":1}`, []string{`field "x"`}},
		{"duplicate field", `{"op":"call","function":"f","function":"g"}`, []string{`field "function"`, "twice"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDirective("N", code(tc.header))
			if err == nil {
				t.Fatalf("no error, got %+v", d)
			}
			if !errors.Is(err, ErrDirective) {
				t.Fatalf("error does not wrap ErrDirective: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseDirectiveCollectsEveryProblem(t *testing.T) {
	_, err := ParseDirective("N", code(`{"op":"call","function":"","mode":"x","retries":-1}`))
	var es DirectiveErrors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
	var one *DirectiveError
	if !errors.As(err, &one) || one.Node != "N" {
		t.Fatalf("errors.As DirectiveError: %v", one)
	}
	want := `invalid n8n-fn directive in node "N": field "function": must not be empty; field "mode": "x" is not a mode (use "eachItem" or "allItems"); field "retries": -1 is out of range (allowed 0..10)`
	if err.Error() != want {
		t.Fatalf("message\n got %s\nwant %s", err, want)
	}
}

func TestCallDirectiveHelpers(t *testing.T) {
	c := &CallDirective{Function: "f", Scope: ScopeWorkflow, RetryBackoffMs: 500}
	if c.Target("wf9") != (FunctionRef{"wf9", "f"}) {
		t.Fatal("workflow scope target")
	}
	c.Scope = "otherWf"
	if c.Target("wf9") != (FunctionRef{"otherWf", "f"}) {
		t.Fatal("explicit workflow target")
	}
	if got := []int{c.RetryDelayMs(1), c.RetryDelayMs(2), c.RetryDelayMs(3)}; !reflect.DeepEqual(got, []int{500, 1000, 2000}) {
		t.Fatalf("backoff %v", got)
	}
	c.RetryBackoffMs = MaxRetryBackoffMs - 1
	if c.RetryDelayMs(9) != MaxRetryBackoffMs {
		t.Fatal("backoff cap")
	}

	c.IdempotencyKey = "order.id"
	for in, want := range map[string]string{`{"order":{"id":"A1"}}`: "A1", `{"order":{"id":7}}`: "7", `{"order":{"id":{"x": 1}}}`: `{"x":1}`} {
		got, err := c.IdempotencyValue([]byte(in))
		if err != nil || got != want {
			t.Errorf("%s: %q %v", in, got, err)
		}
	}
	for _, in := range []string{`{}`, `{"order":{"id":null}}`, `{"order":{"id":""}}`} {
		if _, err := c.IdempotencyValue([]byte(in)); !errors.Is(err, ErrIdempotencyKey) {
			t.Errorf("%s: want ErrIdempotencyKey, got %v", in, err)
		}
	}
}

func TestResultValueAndFailMessage(t *testing.T) {
	if string(ResultValue(nil)) != "null" || string(ResultValue(raws())) != "null" {
		t.Fatal("empty")
	}
	one := ResultValue(raws(`{"a":1}`))
	two := ResultValue(raws(`{"a":1}`, `{"b":2}`))
	if string(one) != `{"a":1}` || string(two) != `[{"a":1},{"b":2}]` {
		t.Fatalf("%s %s", one, two)
	}
	r := &ReturnDirective{Fail: true}
	for in, want := range map[string]string{
		`{"error":"boom"}`:                   "boom",
		`{"error":{"message":"deep"}}`:       "deep",
		`{"message":"msg"}`:                  "msg",
		`{"error":{"code":5}}`:               `{"code":5}`,
		`{"x":1}`:                            "the function failed (return with fail:true; the item had no error or message field)",
		`{"error":"", "message":"fallback"}`: "fallback",
	} {
		if got := r.FailMessage([]byte(in)); got != want {
			t.Errorf("%s: %q want %q", in, got, want)
		}
	}
	r.Message = "fixed"
	if r.FailMessage([]byte(`{"error":"x"}`)) != "fixed" {
		t.Fatal("explicit message")
	}
}

func FuzzParseDirective(f *testing.F) {
	for _, s := range []string{
		code(`{"op":"function","name":"add","params":[{"name":"a","type":"number","default":"1"}]}`),
		code(`{"op":"call","function":"f","scope":"wf1","mode":"allItems","retries":2}`),
		code(`{"op":"return","fail":true,"message":"m"}`),
		"/* @n8n-fn {\"op\":\"echo\"}",
		"/*** @n8n-fn {} */",
		"  /* @n8n-fn {\"op\":\"call\"} trailing */",
	} {
		f.Add(s)
	}
	f.Add(`/* @n8n-fn {"op":"function","name":"f","params":[{"name":"a","type":"array","default":"[[[[[[[["}]} */`)
	f.Add(`/* @n8n-fn {"op":"call","function":"f","x":[[[[[[{"a":[[[]]]}]]]]]]} */`)
	small := Limits{MaxHeaderBytes: 1024, MaxJSONDepth: 4}
	f.Fuzz(func(t *testing.T, s string) {
		// The small limits are hit by fuzzed inputs; whatever they refuse is a clean error too.
		if h, err := small.ParseHeader(s); err != nil {
			if !errors.Is(err, ErrDirective) {
				t.Fatalf("small limits: error does not wrap ErrDirective: %v", err)
			}
		} else if h != nil {
			if _, err := ParseHeaderDirective("fuzz", h); err != nil && !errors.Is(err, ErrDirective) {
				t.Fatalf("small limits: error does not wrap ErrDirective: %v", err)
			}
		}
		d, err := ParseDirective("fuzz", s)
		if err != nil {
			if !errors.Is(err, ErrDirective) {
				t.Fatalf("error does not wrap ErrDirective: %v", err)
			}
			if d != nil {
				t.Fatalf("both a directive and an error")
			}
			var des DirectiveErrors
			if !errors.As(err, &des) || len(des) == 0 {
				t.Fatalf("error is not DirectiveErrors: %T %v", err, err)
			}
			for _, de := range des {
				if de.Node != "fuzz" {
					t.Fatalf("an error does not name the node: %v", de)
				}
			}
			if !strings.Contains(err.Error(), `in node "fuzz"`) {
				t.Fatalf("the message does not name the node: %v", err)
			}
			return
		}
		if d == nil && IsDirective(s) {
			t.Fatalf("a directive header parsed to nothing")
		}
		if d == nil {
			return
		}
		if fn, ok := d.(*FunctionDirective); ok {
			// Whatever parses must also bind an empty call without panicking.
			_, _ = fn.BindParams([]byte(`{}`))
		}
		// Whatever parses encodes to a header that parses to the same directive.
		enc, err := EncodeDirective(d)
		if err != nil {
			t.Fatalf("EncodeDirective(%#v): %v", d, err)
		}
		d2, err := ParseDirective("fuzz", code(enc))
		if err != nil {
			t.Fatalf("re-parse of %s: %v", enc, err)
		}
		if c, ok := d.(*CallDirective); ok && c.Retries == 0 {
			c.RetryBackoffMs = d2.(*CallDirective).RetryBackoffMs // not written without retries
		}
		if a, b := fmt.Sprintf("%#v", d), fmt.Sprintf("%#v", d2); a != b {
			t.Fatalf("round trip changed the directive:\n%s\n%s", a, b)
		}
	})
}

func TestIsDirective(t *testing.T) {
	yes := []string{"/* @n8n-fn {}", "\ufeff\n  /** @n8n-fn {\"op\":\"return\"} */", "/*@n8n-fn{\"op\":\"return\"}*/", "/* @n8n-fn\n{} */", "/* @n8n-fn*/"}
	no := []string{"", "// @n8n-fn {}", "/* @n8n-fn-notes: not a header */ return [];", "/* @n8n-fnx {} */", "return 1; /* @n8n-fn {} */", "/* see @n8n-fn */"}
	for _, s := range yes {
		if !IsDirective(s) {
			t.Errorf("%q should be a directive", s)
		}
	}
	for _, s := range no {
		if IsDirective(s) {
			t.Errorf("%q should not be a directive", s)
		}
	}
}

func BenchmarkIsDirectivePlainCode(b *testing.B) {
	c := "// compute totals\nreturn $input.all().map(i => ({ json: { ...i.json, total: i.json.a * 2 } }));"
	for b.Loop() {
		if IsDirective(c) {
			b.Fatal("directive")
		}
	}
}

func BenchmarkParseDirectiveCall(b *testing.B) {
	c := code(`{"op":"call","v":1,"function":"add","scope":"global","mode":"eachItem","timeoutMs":15000,"retries":2,"resultField":"sum"}`)
	for b.Loop() {
		if _, err := ParseDirective("n", c); err != nil {
			b.Fatal(err)
		}
	}
}
