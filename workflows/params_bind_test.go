package workflows

import (
	"errors"
	"strings"
	"testing"
)

func bindPinFunction(t *testing.T) *FunctionDirective {
	return mustFunction(t, `{"op":"function","name":"f","params":[
		{"name":"req","type":"number","required":true},
		{"name":"reqDef","type":"string","required":true,"default":"d"},
		{"name":"def","type":"boolean","default":true},
		{"name":"opt","type":"array"},
		{"name":"any","type":"any"}]}`)
}

// bindPinInputs are params that take every path of BindParams: size, depth, validity and shape of
// the whole, then per field null/missing with and without default and required, a bad value,
// duplicates, _functionCall and undeclared fields.
var bindPinInputs = []string{
	``, `  `, `null`, `[]`, `"s"`, `{`, `{"req":1,"pad":"` + strings.Repeat("x", 200) + `"}`, `{"a":[[[[1]]]]}`,
	`{}`, `{"req":1}`, `{"req":null}`, `{"req":1,"reqDef":null,"def":null,"opt":null,"any":null}`,
	`{"req":"x","def":"maybe","opt":{}}`, `{"req":1,"req":2,"x":1,"x":2}`, `{"z":1,"_functionCall":{"a":1},"req":" 5 ","y":{ "k" : 1 }}`,
	`{"any":{ "a" : 1 },"req":2,"opt":"[1, 2]","reqDef":3}`, `{"req":1,"\u0041":"\"esc\""}`,
}

// TestBindParamsEveryPath pins BindParams word for word over bindPinInputs: the bound json, or the
// ParamsError's text (and that it is one).
func TestBindParamsEveryPath(t *testing.T) {
	f := bindPinFunction(t)
	for i, in := range bindPinInputs {
		want := bindPinWant[i]
		if want.in != in {
			t.Fatalf("table out of step at %d", i)
		}
		got, err := Limits{MaxParamsBytes: 200, MaxJSONDepth: 3}.BindParams(f, []byte(in))
		msg := ""
		if err != nil {
			msg = err.Error()
			var pe *ParamsError
			if !errors.As(err, &pe) || !errors.Is(err, ErrParams) {
				t.Errorf("%s: %T is not a ParamsError", in, err)
			}
		}
		if string(got) != want.out || msg != want.err {
			t.Errorf("BindParams(%s) = %s, %q\nwant %s, %q", in, got, msg, want.out, want.err)
		}
	}
}

// bindPinWant is what BindParams gave for bindPinInputs before it was split.
var bindPinWant = []struct{ in, out, err string }{
	{"", "", "invalid function params for function \"f\": \"req\" is required (type number) but missing"},
	{"  ", "", "invalid function params for function \"f\": \"req\" is required (type number) but missing"},
	{"null", "", "invalid function params for function \"f\": \"req\" is required (type number) but missing"},
	{"[]", "", "invalid function params for function \"f\": params must be a JSON object, got []"},
	{"\"s\"", "", "invalid function params for function \"f\": params must be a JSON object, got \"s\""},
	{"{", "", "invalid function params for function \"f\": params are not valid JSON: {"},
	{"{\"req\":1,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}", "", "invalid function params for function \"f\": the params are 218 bytes, at most 200 can be sent in one call (N8N_FN_MAX_PARAMS_BYTES); send a reference (an id, a URL, a binary-data key) instead of the data itself"},
	{"{\"a\":[[[[1]]]]}", "", "invalid function params for function \"f\": the params object has arrays/objects nested more than 3 levels deep (level 4 opens at byte 7); flatten the data or raise N8N_FN_MAX_JSON_DEPTH on every sidecar"},
	{"{}", "", "invalid function params for function \"f\": \"req\" is required (type number) but missing"},
	{"{\"req\":1}", "{\"req\":1,\"reqDef\":\"d\",\"def\":true}", ""},
	{"{\"req\":null}", "", "invalid function params for function \"f\": \"req\" is required but null"},
	{"{\"req\":1,\"reqDef\":null,\"def\":null,\"opt\":null,\"any\":null}", "{\"req\":1,\"reqDef\":\"d\",\"def\":true,\"opt\":null,\"any\":null}", ""},
	{"{\"req\":\"x\",\"def\":\"maybe\",\"opt\":{}}", "", "invalid function params for function \"f\": \"req\" expected a number, got the string \"x\"; \"def\" expected a boolean, got the string \"maybe\" (use true/false or \"true\"/\"false\"); \"opt\" expected an array, got an object"},
	{"{\"req\":1,\"req\":2,\"x\":1,\"x\":2}", "{\"req\":1,\"x\":1,\"reqDef\":\"d\",\"def\":true}", ""},
	{"{\"z\":1,\"_functionCall\":{\"a\":1},\"req\":\" 5 \",\"y\":{ \"k\" : 1 }}", "{\"z\":1,\"req\":5,\"y\":{ \"k\" : 1 },\"reqDef\":\"d\",\"def\":true}", ""},
	{"{\"any\":{ \"a\" : 1 },\"req\":2,\"opt\":\"[1, 2]\",\"reqDef\":3}", "{\"any\":{\"a\":1},\"req\":2,\"opt\":[1,2],\"reqDef\":\"3\",\"def\":true}", ""},
	{"{\"req\":1,\"\\u0041\":\"\\\"esc\\\"\"}", "{\"req\":1,\"A\":\"\\\"esc\\\"\",\"reqDef\":\"d\",\"def\":true}", ""},
}
