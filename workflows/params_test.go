package workflows

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// gjsonEscape makes a field name a literal gjson path.
func gjsonEscape(name string) string {
	var b strings.Builder
	for _, r := range name {
		if strings.ContainsRune(".*?|#@\\!=<>%()[]{},:\"", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func raws(s ...string) []json.RawMessage {
	out := make([]json.RawMessage, len(s))
	for i, x := range s {
		out[i] = json.RawMessage(x)
	}
	return out
}

func mustFunction(t *testing.T, header string) *FunctionDirective {
	t.Helper()
	d, err := ParseDirective("fn", code(header))
	if err != nil {
		t.Fatal(err)
	}
	return d.(*FunctionDirective)
}

func TestBindParams(t *testing.T) {
	f := mustFunction(t, `{"op":"function","name":"f","params":[
		{"name":"n","type":"number","required":true},
		{"name":"flag","type":"boolean","default":false},
		{"name":"obj","type":"object"},
		{"name":"list","type":"array","default":"[1,2]"},
		{"name":"s","type":"string"},
		{"name":"opt","type":"number"}]}`)
	cases := []struct {
		in, want string
	}{
		// undeclared fields pass through in order, _functionCall of the caller is dropped, defaults appended
		{`{"x":1,"n":"42","_functionCall":{"callId":"a"},"obj":"{\"k\":true}","s":7}`, `{"x":1,"n":42,"obj":{"k":true},"s":"7","flag":false,"list":[1,2]}`},
		{`{"n":1.5e3,"flag":"TRUE","list":"[3]","s":"hi"}`, `{"n":1.5e3,"flag":true,"list":[3],"s":"hi"}`},
		{`{"n":" 7 ","flag":null,"opt":null}`, `{"n":7,"flag":false,"opt":null,"list":[1,2]}`},
		{`{"n":0,"obj":{"deep":[1, 2]}}`, `{"n":0,"obj":{"deep":[1,2]},"flag":false,"list":[1,2]}`},
		{`{"s":true,"n":-1}`, `{"s":"true","n":-1,"flag":false,"list":[1,2]}`},
	}
	for _, tc := range cases {
		got, err := f.BindParams([]byte(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.in, got, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("invalid JSON %s", got)
		}
	}
}

func TestBindParamsErrorsListEveryParam(t *testing.T) {
	f := mustFunction(t, `{"op":"function","name":"f","params":[
		{"name":"n","type":"number","required":true},
		{"name":"b","type":"boolean"},
		{"name":"o","type":"object"},
		{"name":"a","type":"array"},
		{"name":"s","type":"string"},
		{"name":"r","type":"string","required":true}]}`)
	_, err := f.BindParams([]byte(`{"b":"yes","o":"[1]","a":{"x":1},"s":{"k":1},"r":null}`))
	var pe *ParamsError
	if !errors.As(err, &pe) || !errors.Is(err, ErrParams) {
		t.Fatalf("want ParamsError, got %v", err)
	}
	got := map[string]string{}
	for _, p := range pe.Problems {
		got[p.Param] = p.Msg
	}
	want := map[string]string{
		"n": "missing", "b": "boolean", "o": "not object JSON", "a": "expected an array, got an object",
		"s": "expected a string, got an object", "r": "required but null",
	}
	for k, w := range want {
		if !strings.Contains(got[k], w) {
			t.Errorf("param %s: %q does not contain %q", k, got[k], w)
		}
	}
	if len(pe.Problems) != len(want) {
		t.Errorf("problems: %+v", pe.Problems)
	}
	if !strings.Contains(err.Error(), `function "f"`) {
		t.Errorf("error does not name the function: %v", err)
	}
}

func TestBindParamsNonObject(t *testing.T) {
	f := mustFunction(t, `{"op":"function","name":"f","params":[{"name":"a","default":"x"}]}`)
	if _, err := f.BindParams([]byte(`[1,2]`)); !errors.Is(err, ErrParams) {
		t.Fatalf("array params: %v", err)
	}
	got, err := f.BindParams(nil)
	if err != nil || string(got) != `{"a":"x"}` {
		t.Fatalf("empty params: %s %v", got, err)
	}
}

func TestCoerceNumberKeepsPrecision(t *testing.T) {
	f := mustFunction(t, `{"op":"function","name":"f","params":[{"name":"big","type":"number"}]}`)
	got, err := f.BindParams([]byte(`{"big":"12345678901234567890"}`))
	if err != nil || string(got) != `{"big":12345678901234567890}` {
		t.Fatalf("%s %v", got, err)
	}
	for _, bad := range []string{`"NaN"`, `"Infinity"`, `""`, `"0x10"`, `"1e999"`} {
		if _, err := f.BindParams([]byte(`{"big":` + bad + `}`)); err == nil {
			t.Errorf("%s accepted as a number", bad)
		}
	}
}

func BenchmarkBindParams(b *testing.B) {
	d, err := ParseDirective("fn", code(`{"op":"function","name":"f","params":[{"name":"a","type":"number","required":true},{"name":"b","type":"number","default":0},{"name":"o","type":"object"}]}`))
	if err != nil {
		b.Fatal(err)
	}
	f := d.(*FunctionDirective)
	in := []byte(`{"a":"12","o":"{\"k\":[1,2,3]}","extra":"pass me through","n":{"deep":true}}`)
	for b.Loop() {
		if _, err := f.BindParams(in); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzBindParams(f *testing.F) {
	fn := &FunctionDirective{Name: "f", Params: []Param{
		{Name: "s", Type: TypeString}, {Name: "n", Type: TypeNumber, Required: true, Default: []byte("1")},
		{Name: "b", Type: TypeBoolean}, {Name: "o", Type: TypeObject}, {Name: "a", Type: TypeArray, Required: true},
	}}
	for _, s := range []string{`{}`, `{"a":"[1]","n":"2","s":3}`, `{"o":"{}","b":"TRUE","a":[]}`, `[]`, `null`, `{"a":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}`))
	f.Add([]byte(`{"o":"{\"k\":{\"k\":{\"k\":[[[]]]}}}","a":[[[[[]]]]]}`))
	small := Limits{MaxParamsBytes: 256, MaxJSONDepth: 4}
	f.Fuzz(func(t *testing.T, in []byte) {
		if _, err := small.BindParams(fn, in); err != nil && !errors.Is(err, ErrParams) {
			t.Fatalf("small limits: error does not wrap ErrParams: %v", err)
		}
		out, err := fn.BindParams(in)
		if err != nil {
			if !errors.Is(err, ErrParams) {
				t.Fatalf("error does not wrap ErrParams: %v", err)
			}
			if len(err.Error()) > 2000 {
				t.Fatalf("a %d-byte error for a %d-byte input: values are copied into it", len(err.Error()), len(in))
			}
			return
		}
		if !json.Valid(out) || !gjson.ParseBytes(out).IsObject() {
			t.Fatalf("invalid JSON %q from %q", out, in)
		}
		// Every declared param that is bound has its declared type.
		for _, p := range fn.Params {
			v := gjson.GetBytes(out, gjsonEscape(p.Name))
			if !v.Exists() || v.Type == gjson.Null {
				continue
			}
			ok := map[string]bool{
				TypeString: v.Type == gjson.String, TypeNumber: v.Type == gjson.Number,
				TypeBoolean: v.IsBool(), TypeObject: v.IsObject(), TypeArray: v.IsArray(),
			}[p.Type]
			if !ok {
				t.Fatalf("param %q bound as %s, declared %s (in %q, out %q)", p.Name, v.Raw, p.Type, in, out)
			}
		}
		if gjson.GetBytes(out, ContextField).Exists() {
			t.Fatalf("_functionCall of the caller kept: %q", out)
		}
	})
}
