package workflows

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/internal/jsonlimit"
)

// ErrParams is wrapped by ParamsError: the call's params do not fit the function's declaration.
var ErrParams = errors.New("invalid function params")

// ParamProblem is one bad param of one call.
type ParamProblem struct {
	Param string `json:"param"`
	Msg   string `json:"message"`
}

// ParamsError lists every bad param of one call, so the caller fixes them all at once.
type ParamsError struct {
	Function string
	Problems []ParamProblem
}

func (e *ParamsError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		if p.Param == "" {
			parts[i] = p.Msg
		} else {
			parts[i] = fmt.Sprintf("%q %s", p.Param, p.Msg)
		}
	}
	return fmt.Sprintf("%v for function %q: %s", ErrParams, e.Function, strings.Join(parts, "; "))
}

func (e *ParamsError) Unwrap() error { return ErrParams }

// BindParams turns a call's params (a JSON object: the caller item's json) into the json of the item
// the function node emits, without the call context. Declared params are checked and coerced: a
// missing or null param gets its default, a missing required one without default is an error;
// strings are converted for number ("42"), boolean ("true"/"false", any case) and object/array
// (JSON text, the origin package's coercion), numbers and booleans for string params become their
// text. Undeclared fields pass through unchanged, in their order; a _functionCall field of the input
// is dropped (the function node sets its own). Every problem is reported in one *ParamsError.
func (d *FunctionDirective) BindParams(params []byte) ([]byte, error) {
	return Limits{}.BindParams(d, params)
}

// BindParams is FunctionDirective.BindParams with these limits: params over MaxParamsBytes or
// nesting deeper than MaxJSONDepth, and JSON-text values of object/array params nesting deeper,
// are refused before they are parsed.
func (l Limits) BindParams(d *FunctionDirective, params []byte) ([]byte, error) {
	l = l.withDefaults()
	if err := l.CheckParams(params); err != nil {
		return nil, &ParamsError{Function: d.Name, Problems: []ParamProblem{{Msg: err.Error()}}}
	}
	if len(bytes.TrimSpace(params)) > 0 && !gjson.ValidBytes(params) {
		return nil, &ParamsError{Function: d.Name, Problems: []ParamProblem{{Msg: fmt.Sprintf("params are not valid JSON: %s", excerpt(string(params)))}}}
	}
	in := gjson.ParseBytes(params)
	if len(bytes.TrimSpace(params)) == 0 || in.Type == gjson.Null {
		in = gjson.Parse("{}")
	}
	if !in.IsObject() {
		return nil, &ParamsError{Function: d.Name, Problems: []ParamProblem{{Msg: fmt.Sprintf("params must be a JSON object, got %s", excerpt(in.Raw))}}}
	}
	declared := make(map[string]int, len(d.Params))
	for i, p := range d.Params {
		declared[p.Name] = i
	}
	bound := make([]json.RawMessage, len(d.Params))
	var problems []ParamProblem
	var out strings.Builder
	out.WriteByte('{')
	n := 0
	write := func(key string, raw []byte) {
		if n > 0 {
			out.WriteByte(',')
		}
		n++
		k, _ := json.Marshal(key)
		out.Write(k)
		out.WriteByte(':')
		out.Write(raw)
	}
	seen := map[string]bool{}
	in.ForEach(func(k, v gjson.Result) bool {
		key := k.String()
		if key == ContextField || seen[key] {
			return true
		}
		seen[key] = true
		i, ok := declared[key]
		if !ok {
			write(key, []byte(v.Raw))
			return true
		}
		p := d.Params[i]
		switch {
		case v.Type == gjson.Null && p.Default != nil:
			bound[i] = p.Default
		case v.Type == gjson.Null && p.Required:
			problems = append(problems, ParamProblem{p.Name, "is required but null"})
		case v.Type == gjson.Null:
			bound[i] = json.RawMessage("null")
		default:
			c, err := l.coerce(p.Type, v)
			if err != nil {
				problems = append(problems, ParamProblem{p.Name, err.Error()})
				return true
			}
			bound[i] = c
		}
		if bound[i] != nil {
			write(key, bound[i])
		}
		return true
	})
	for _, p := range d.Params {
		if seen[p.Name] {
			continue
		}
		switch {
		case p.Default != nil:
			write(p.Name, p.Default)
		case p.Required:
			problems = append(problems, ParamProblem{p.Name, fmt.Sprintf("is required (type %s) but missing", p.Type)})
		}
	}
	out.WriteByte('}')
	if len(problems) > 0 {
		return nil, &ParamsError{Function: d.Name, Problems: problems}
	}
	return []byte(out.String()), nil
}

// coerce converts one value to a param type; the result is compact JSON.
// coerce converts one value with the default limits (CLI input: migration, snippets).
func coerce(typ string, v gjson.Result) (json.RawMessage, error) { return Limits{}.coerce(typ, v) }

func (l Limits) coerce(typ string, v gjson.Result) (json.RawMessage, error) {
	l = l.withDefaults()
	switch typ {
	case TypeAny:
		return compactJSON(v.Raw), nil
	case TypeString:
		switch v.Type {
		case gjson.String:
			return json.RawMessage(v.Raw), nil
		case gjson.Number, gjson.True, gjson.False:
			b, _ := json.Marshal(v.Raw)
			return b, nil
		}
	case TypeNumber:
		switch v.Type {
		case gjson.Number:
			return json.RawMessage(v.Raw), nil
		case gjson.String:
			s := strings.TrimSpace(v.Str)
			if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) && s != "" {
				if gjson.Valid(s) {
					return json.RawMessage(s), nil
				}
				return json.RawMessage(strconv.FormatFloat(f, 'g', -1, 64)), nil
			}
			return nil, fmt.Errorf("expected a number, got the string %s", excerpt(v.Raw))
		}
	case TypeBoolean:
		switch v.Type {
		case gjson.True, gjson.False:
			return json.RawMessage(v.Raw), nil
		case gjson.String:
			switch strings.ToLower(strings.TrimSpace(v.Str)) {
			case "true":
				return json.RawMessage("true"), nil
			case "false":
				return json.RawMessage("false"), nil
			}
			return nil, fmt.Errorf("expected a boolean, got the string %s (use true/false or \"true\"/\"false\")", excerpt(v.Raw))
		}
	case TypeObject, TypeArray:
		want := v.IsObject()
		if typ == TypeArray {
			want = v.IsArray()
		}
		if want {
			return compactJSON(v.Raw), nil
		}
		if v.Type == gjson.String {
			// The string's JSON is checked before gjson.Valid, which recurses once per level: a
			// string of millions of '[' must get this error, not a stack overflow of the sidecar.
			if err := jsonlimit.CheckString(v.Str, l.MaxJSONDepth); err != nil {
				return nil, l.depthError("the JSON text in the string", err)
			}
			inner := gjson.Parse(v.Str)
			if gjson.Valid(v.Str) && ((typ == TypeObject && inner.IsObject()) || (typ == TypeArray && inner.IsArray())) {
				return compactJSON(v.Str), nil
			}
			return nil, fmt.Errorf("expected an %s, got a string that is not %s JSON: %s", typ, typ, excerpt(v.Raw))
		}
	}
	return nil, fmt.Errorf("expected %s %s, got %s", article(typ), typ, describe(v))
}

func article(typ string) string {
	if typ == TypeObject || typ == TypeArray {
		return "an"
	}
	return "a"
}

func describe(v gjson.Result) string {
	switch {
	case v.IsObject():
		return "an object"
	case v.IsArray():
		return "an array"
	case v.Type == gjson.String:
		return "the string " + excerpt(v.Raw)
	case v.Type == gjson.Number:
		return "the number " + v.Raw
	case v.Type == gjson.True || v.Type == gjson.False:
		return "the boolean " + v.Raw
	}
	return excerpt(v.Raw)
}

func compactJSON(raw string) json.RawMessage {
	return json.RawMessage(compactRaw(raw))
}
