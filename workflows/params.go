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
	in, err := l.paramsObject(params)
	if err != nil {
		return nil, &ParamsError{Function: d.Name, Problems: []ParamProblem{{Msg: err.Error()}}}
	}
	declared := make(map[string]int, len(d.Params))
	for i, p := range d.Params {
		declared[p.Name] = i
	}
	var (
		out      objectWriter
		problems []ParamProblem
	)
	seen := map[string]bool{}
	in.ForEach(func(k, v gjson.Result) bool {
		key := k.String()
		if key == ContextField || seen[key] { // the first of duplicate keys wins
			return true
		}
		seen[key] = true
		i, ok := declared[key]
		if !ok {
			out.field(key, []byte(v.Raw))
			return true
		}
		raw, problem := l.bindParam(d.Params[i], v)
		if problem != "" {
			problems = append(problems, ParamProblem{key, problem})
		} else if raw != nil {
			out.field(key, raw)
		}
		return true
	})
	// The declared params the call left out follow, in declaration order.
	for _, p := range d.Params {
		if seen[p.Name] {
			continue
		}
		switch {
		case p.Default != nil:
			out.field(p.Name, p.Default)
		case p.Required:
			problems = append(problems, ParamProblem{p.Name, fmt.Sprintf("is required (type %s) but missing", p.Type)})
		}
	}
	if len(problems) > 0 {
		return nil, &ParamsError{Function: d.Name, Problems: problems}
	}
	return out.close(), nil
}

// paramsObject checks a call's params as a whole, before anything recursive reads them: within
// the limits, valid JSON and an object. Empty params and null are the empty object.
func (l Limits) paramsObject(params []byte) (gjson.Result, error) {
	if err := l.CheckParams(params); err != nil {
		return gjson.Result{}, err
	}
	empty := len(bytes.TrimSpace(params)) == 0
	if !empty && !gjson.ValidBytes(params) {
		return gjson.Result{}, fmt.Errorf("params are not valid JSON: %s", excerpt(string(params)))
	}
	in := gjson.ParseBytes(params)
	if empty || in.Type == gjson.Null {
		in = gjson.Parse("{}")
	}
	if !in.IsObject() {
		return gjson.Result{}, fmt.Errorf("params must be a JSON object, got %s", excerpt(in.Raw))
	}
	return in, nil
}

// bindParam is the value a declared param given in the call binds to: null takes the default
// (a required param without one is a problem, an optional one stays null), anything else is
// coerced to the param's type. The problem is "" when there is none.
func (l Limits) bindParam(p Param, v gjson.Result) (json.RawMessage, string) {
	switch {
	case v.Type == gjson.Null && p.Default != nil:
		return p.Default, ""
	case v.Type == gjson.Null && p.Required:
		return nil, "is required but null"
	case v.Type == gjson.Null:
		return json.RawMessage("null"), ""
	}
	c, err := l.coerce(p.Type, v)
	if err != nil {
		return nil, err.Error()
	}
	return c, ""
}

// objectWriter writes a JSON object field by field, in the order given.
type objectWriter struct {
	b strings.Builder
	n int
}

func (w *objectWriter) field(key string, raw []byte) {
	if w.n == 0 {
		w.b.WriteByte('{')
	} else {
		w.b.WriteByte(',')
	}
	w.n++
	k, _ := json.Marshal(key)
	w.b.Write(k)
	w.b.WriteByte(':')
	w.b.Write(raw)
}

// close ends the object ("{}" when it has no fields) and returns it.
func (w *objectWriter) close() []byte {
	if w.n == 0 {
		w.b.WriteByte('{')
	}
	w.b.WriteByte('}')
	return []byte(w.b.String())
}

// coerce converts one value with the default limits (CLI input: migration, snippets).
func coerce(typ string, v gjson.Result) (json.RawMessage, error) { return Limits{}.coerce(typ, v) }

// coerce converts one value to a param type; the result is compact JSON. Each type reads its own
// kind of value and the strings the origin package converted; anything else is a mismatch.
func (l Limits) coerce(typ string, v gjson.Result) (json.RawMessage, error) {
	l = l.withDefaults()
	switch typ {
	case TypeAny:
		return compactJSON(v.Raw), nil
	case TypeString:
		return coerceString(v)
	case TypeNumber:
		return coerceNumber(v)
	case TypeBoolean:
		return coerceBoolean(v)
	case TypeObject, TypeArray:
		return l.coerceJSON(typ, v)
	}
	return nil, mismatch(typ, v)
}

// coerceString takes a string, and a number or boolean as its JSON text ("42", "true").
func coerceString(v gjson.Result) (json.RawMessage, error) {
	switch v.Type {
	case gjson.String:
		return json.RawMessage(v.Raw), nil
	case gjson.Number, gjson.True, gjson.False:
		b, _ := json.Marshal(v.Raw)
		return b, nil
	}
	return nil, mismatch(TypeString, v)
}

// coerceNumber takes a number, and a string holding a finite one (spaces trimmed). A string that
// is not JSON's spelling of its number ("007", "0x10") becomes the shortest spelling of its value.
func coerceNumber(v gjson.Result) (json.RawMessage, error) {
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
	return nil, mismatch(TypeNumber, v)
}

// coerceBoolean takes a boolean, and the strings "true" and "false" in any case, spaces trimmed.
func coerceBoolean(v gjson.Result) (json.RawMessage, error) {
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
	return nil, mismatch(TypeBoolean, v)
}

// coerceJSON takes an object (or array, by typ), and a string holding one as JSON text.
func (l Limits) coerceJSON(typ string, v gjson.Result) (json.RawMessage, error) {
	isTyp := func(r gjson.Result) bool {
		if typ == TypeArray {
			return r.IsArray()
		}
		return r.IsObject()
	}
	if isTyp(v) {
		return compactJSON(v.Raw), nil
	}
	if v.Type != gjson.String {
		return nil, mismatch(typ, v)
	}
	// The string's JSON is checked before gjson.Valid, which recurses once per level: a string of
	// millions of '[' must get this error, not a stack overflow of the sidecar.
	if err := jsonlimit.CheckString(v.Str, l.MaxJSONDepth); err != nil {
		return nil, l.depthError("the JSON text in the string", err)
	}
	if gjson.Valid(v.Str) && isTyp(gjson.Parse(v.Str)) {
		return compactJSON(v.Str), nil
	}
	return nil, fmt.Errorf("expected an %s, got a string that is not %s JSON: %s", typ, typ, excerpt(v.Raw))
}

// mismatch is the error for a value of another kind than the param type takes.
func mismatch(typ string, v gjson.Result) error {
	return fmt.Errorf("expected %s %s, got %s", article(typ), typ, describe(v))
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
