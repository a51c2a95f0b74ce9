package workflows

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// deepArrayString is a JSON string holding n nested '[' (what the 16 MB call sent).
func deepArrayString(n int) string { return `"` + strings.Repeat("[", n) + `"` }

// A string of millions of '[' given to an array or object param is refused with an error naming the
// param and the limit; before the limit existed it ended in "fatal error: stack overflow", which
// kills this test binary: the test cannot pass without the depth scan.
func TestBindParamsRefusesDeepJSONText(t *testing.T) {
	fn := &FunctionDirective{Name: "f", Params: []Param{{Name: "list", Type: TypeArray}, {Name: "obj", Type: TypeObject}}}
	deep := deepArrayString(8 << 20)
	for _, param := range []string{"list", "obj"} {
		_, err := fn.BindParams([]byte(`{"` + param + `":` + deep + `}`))
		var pe *ParamsError
		if !errors.As(err, &pe) || len(pe.Problems) != 1 || pe.Problems[0].Param != param {
			t.Fatalf("%s: err = %v, want one problem for the param", param, err)
		}
		msg := err.Error()
		for _, want := range []string{`"` + param + `"`, "more than 128 levels", EnvMaxJSONDepth} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: error %q does not contain %q", param, msg, want)
			}
		}
		if len(msg) > 600 {
			t.Errorf("%s: error is %d bytes: the value is copied into it", param, len(msg))
		}
	}
}

func TestBindParamsDepthBoundary(t *testing.T) {
	fn := &FunctionDirective{Name: "f", Params: []Param{{Name: "list", Type: TypeArray}}}
	nested := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	// 128 levels inside the string pass; at the top level the params object is one level more.
	if _, err := fn.BindParams([]byte(fmt.Sprintf(`{"list":%q}`, nested(128)))); err != nil {
		t.Fatalf("128 levels in the string: %v", err)
	}
	if _, err := fn.BindParams([]byte(fmt.Sprintf(`{"list":%q}`, nested(129)))); !errors.Is(err, ErrParams) || !strings.Contains(err.Error(), "more than 128 levels") {
		t.Fatalf("129 levels in the string: %v", err)
	}
	if _, err := fn.BindParams([]byte(`{"list":` + nested(127) + `}`)); err != nil {
		t.Fatalf("127 levels in the params object: %v", err)
	}
	if _, err := fn.BindParams([]byte(`{"list":` + nested(128) + `}`)); !errors.Is(err, ErrParams) {
		t.Fatalf("128 levels inside the params object (129 in all): %v", err)
	}
	lim := Limits{MaxJSONDepth: 300}
	if _, err := lim.BindParams(fn, []byte(fmt.Sprintf(`{"list":%q}`, nested(300)))); err != nil {
		t.Fatalf("a raised limit: %v", err)
	}
}

// Params nested millions of levels deep (not in a string) never reach gjson's recursive validator.
func TestBindParamsRefusesDeepParams(t *testing.T) {
	fn := &FunctionDirective{Name: "f"}
	_, err := fn.BindParams([]byte(`{"x":` + strings.Repeat("[", 8<<20) + `}`))
	if !errors.Is(err, ErrParams) || !errors.Is(errors.Unwrap(err), ErrParams) || !strings.Contains(err.Error(), "the params object has arrays/objects nested more than 128 levels") {
		t.Fatalf("err = %v", err)
	}
	if err := DefaultLimits().CheckParams([]byte(`{"x":` + strings.Repeat("[", 8<<20) + `}`)); !errors.Is(err, ErrLimit) {
		t.Fatalf("CheckParams: %v", err)
	}
}

func TestParamsSizeLimit(t *testing.T) {
	lim := Limits{MaxParamsBytes: 1024}
	big := []byte(`{"s":"` + strings.Repeat("x", 2000) + `"}`)
	err := lim.CheckParams(big)
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "2008 bytes, at most 1024") || !strings.Contains(err.Error(), EnvMaxParamsBytes) {
		t.Fatalf("CheckParams = %v", err)
	}
	fn := &FunctionDirective{Name: "f", Params: []Param{{Name: "s", Type: TypeString}}}
	if _, err := lim.BindParams(fn, big); !errors.Is(err, ErrParams) || !strings.Contains(err.Error(), "at most 1024") {
		t.Fatalf("BindParams = %v", err)
	}
	if err := DefaultLimits().CheckParams(big); err != nil {
		t.Fatalf("default limit: %v", err)
	}
	if DefaultLimits().MaxParamsBytes != 16<<20 {
		t.Fatalf("the documented 16 MiB default changed: %d", DefaultLimits().MaxParamsBytes)
	}
}

func TestHeaderLimits(t *testing.T) {
	long := `/* @n8n-fn {"op":"function","name":"f","description":"` + strings.Repeat("d", 70<<10) + `"} */`
	_, err := ParseDirective("Big node", long)
	if err == nil || !errors.Is(err, ErrDirective) || !strings.Contains(err.Error(), "within its first 65536 bytes") || !strings.Contains(err.Error(), EnvMaxHeaderBytes) || !strings.Contains(err.Error(), `"Big node"`) {
		t.Fatalf("long header: %v", err)
	}
	// Without a closing "*/" at all, a huge code is refused for its size, not scanned to its end.
	if _, err := ParseHeader("/* @n8n-fn {" + strings.Repeat(" ", 100<<20)); err == nil || !strings.Contains(err.Error(), "within its first") {
		t.Fatalf("unclosed huge header: %v", err)
	}
	// The limit counts from "/*" to "*/", code after the header does not count.
	ok := `/* @n8n-fn {"op":"echo"} */` + strings.Repeat("// code\n", 20<<10)
	if _, err := ParseDirective("n", ok); err != nil {
		t.Fatalf("long code after a short header: %v", err)
	}
	exact := `/* @n8n-fn {"op":"echo"} */`
	if _, err := (Limits{MaxHeaderBytes: len(exact)}).ParseHeader(exact); err != nil {
		t.Fatalf("header of exactly the limit: %v", err)
	}
	if _, err := (Limits{MaxHeaderBytes: len(exact) - 1}).ParseHeader(exact); err == nil {
		t.Fatal("header one byte over the limit accepted")
	}
	deep := `/* @n8n-fn {"op":"function","name":"f","x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `} */`
	if _, err := ParseDirective("n", deep); err == nil || !strings.Contains(err.Error(), "the header's JSON has arrays/objects nested more than 128 levels") {
		t.Fatalf("deep header: %v", err)
	}
}

// A string default of an array param is checked like a call's value: a raised header limit must
// not let a default of millions of '[' reach gjson.Valid.
func TestDefaultDepth(t *testing.T) {
	hdr := `/* @n8n-fn {"op":"function","name":"f","params":[{"name":"a","type":"array","default":` + deepArrayString(4<<20) + `}]} */`
	h, err := (Limits{MaxHeaderBytes: 16 << 20}).ParseHeader(hdr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseHeaderDirective("n", h)
	if err == nil || !strings.Contains(err.Error(), "more than 128 levels") || !strings.Contains(err.Error(), "params[0] (a).default") {
		t.Fatalf("deep default: %v", err)
	}
}

func TestContextAndCallRefLimits(t *testing.T) {
	huge := []byte(`{"_functionCall":{"callId":"c","function":"global/f","stack":[` + strings.Repeat(`{"callId":"x","function":"global/f"},`, 3000) + `{}]}}`)
	if _, err := ContextFromItem(huge); !errors.Is(err, ErrBadContext) || !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "at most 65536") {
		t.Fatalf("huge context: %v", err)
	}
	// An item nested millions of levels deep elsewhere: found or not without recursion.
	deep := []byte(`{"x":` + strings.Repeat("[", 8<<20) + `}`)
	if cc, err := ContextFromItem(deep); cc != nil || err != nil {
		t.Fatalf("deep item without context: %v %v", cc, err)
	}
	if _, err := ParseCallRef(deep); !errors.Is(err, ErrMalformedSig) {
		t.Fatalf("deep call ref: %v", err)
	}
	body := []byte(`{"headers":{},"body":{"function":"global/f","entryId":"1-0","callId":"c","exp":1,"sig":"` + strings.Repeat("s", 5000) + `"}}`)
	if _, err := ParseCallRef(body); !errors.Is(err, ErrMalformedSig) || !strings.Contains(err.Error(), "at most 4096") {
		t.Fatalf("big call ref: %v", err)
	}
	deepBody := []byte(`{"headers":{},"body":{"function":` + strings.Repeat("[", 8<<20) + `}}`)
	if _, err := ParseCallRef(deepBody); !errors.Is(err, ErrMalformedSig) {
		t.Fatalf("deep call ref body: %v", err)
	}
}

func TestLimitsFromEnv(t *testing.T) {
	env := map[string]string{EnvMaxParamsBytes: "1048576", EnvMaxJSONDepth: " 256 "}
	l, err := LimitsFromEnv(func(k string) string { return env[k] })
	if err != nil || l.MaxParamsBytes != 1<<20 || l.MaxJSONDepth != 256 || l.MaxHeaderBytes != DefaultMaxHeaderBytes || l.MaxContextBytes != DefaultMaxContextBytes {
		t.Fatalf("%+v %v", l, err)
	}
	env = map[string]string{EnvMaxJSONDepth: "1e9", EnvMaxHeaderBytes: "12", EnvMaxParamsBytes: "lots"}
	_, err = LimitsFromEnv(func(k string) string { return env[k] })
	for _, want := range []string{EnvMaxJSONDepth + "=1e9: expected a whole number from 16 to 10000", EnvMaxHeaderBytes + "=12", EnvMaxParamsBytes + "=lots"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
}

func TestExcerpt(t *testing.T) {
	if got := excerpt("short"); got != "short" {
		t.Errorf("excerpt(short) = %q", got)
	}
	long := strings.Repeat("é", 50)
	if got, want := excerpt(long), strings.Repeat("é", 40)+"…(100 bytes)"; got != want {
		t.Errorf("excerpt = %q, want %q", got, want)
	}
	if got, want := quoted(strings.Repeat("a", 41)), `"`+strings.Repeat("a", 40)+`"…(41 bytes)`; got != want {
		t.Errorf("quoted = %q, want %q", got, want)
	}
}

func TestResultAndItemLimits(t *testing.T) {
	l := DefaultLimits()
	if err := l.CheckResult(16 << 20); err != nil {
		t.Errorf("16 MiB result: %v", err)
	}
	err := l.CheckResult(30 << 20)
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "the result is 31457280 bytes, at most 16777216") || !strings.Contains(err.Error(), EnvMaxResultBytes) {
		t.Errorf("30 MiB result: %v", err)
	}
	if err := l.CheckItems(10_000); err != nil {
		t.Errorf("10,000 items: %v", err)
	}
	err = (Limits{MaxCallItems: 100}).CheckItems(101)
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "the node got 101 items, at most 100") || !strings.Contains(err.Error(), EnvMaxCallItems) {
		t.Errorf("101 items over 100: %v", err)
	}
	env := map[string]string{EnvMaxResultBytes: "2048", EnvMaxCallItems: "0"}
	if _, err := LimitsFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), EnvMaxCallItems+"=0") {
		t.Errorf("items 0: %v", err)
	}
}
