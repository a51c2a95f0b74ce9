package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"
)

// This file holds the pure parts of the call op that the directive decides: which params a call
// sends for an input item (CallParams, CallParamsAll), and which items the node outputs for the
// result (Shape) or the failure (ShapeError). The runtime does the queueing and waiting and maps
// ShapedItem.Pair back to its input items (pairedItem, binary).

// ErrCallParams is wrapped when an input item cannot give the params its call directive asks for.
var ErrCallParams = errors.New("call params")

// ShapedItem is one output item of a call node.
type ShapedItem struct {
	JSON json.RawMessage
	// Pair is the index (into the inputs given to Shape/ShapeError) of the input item this item
	// comes from: its pairedItem.
	Pair int
	// FromInput: the item is the input item with changes, so it keeps the input's binary data.
	// False for items the function returned and for {"error": ...} items.
	FromInput bool
}

// CallParams returns the params one call sends for an input item's json (mode eachItem): the item
// without _functionCall, or with paramsField the object in that field (parsed when it is a string
// holding JSON), its string values parsed with parseValues, on top of the item's other fields
// with paramsWithItem. The result is a compact JSON object.
func (d *CallDirective) CallParams(itemJSON []byte) (json.RawMessage, error) {
	// Read through an unsafe string view: ParseBytes would copy the item (of up to the frame
	// size) only to look at it. Nothing kept from it aliases itemJSON except as noted.
	item := gjson.Parse(unsafe.String(unsafe.SliceData(itemJSON), len(itemJSON)))
	if !gjson.ValidBytes(itemJSON) || !item.IsObject() {
		return nil, fmt.Errorf("%w: the item's json is not an object: %s", ErrCallParams, excerpt(string(itemJSON[:min(len(itemJSON), 4096)])))
	}
	if d.ParamsField == "" {
		// The item itself, without _functionCall, compacted: n8n sends compact JSON, so this is
		// usually itemJSON as it is, not a copy (a 200 MB item is refused by its size next).
		return json.RawMessage(compactBytes(WithoutContext(itemJSON))), nil
	}
	v := item.Get(gjson.Escape(d.ParamsField))
	var params gjson.Result
	switch {
	case !v.Exists() || v.Type == gjson.Null:
		return nil, fmt.Errorf("%w: the item has no field %q (paramsField): set it before the call (e.g. an Edit Fields node) or remove paramsField", ErrCallParams, d.ParamsField)
	case v.IsObject():
		params = v
	case v.Type == gjson.String:
		inner := gjson.Parse(v.Str)
		if !gjson.Valid(v.Str) || !inner.IsObject() {
			return nil, fmt.Errorf("%w: field %q (paramsField) is a string that is not a JSON object: %s", ErrCallParams, d.ParamsField, excerpt(v.Raw))
		}
		params = inner
	default:
		return nil, fmt.Errorf("%w: field %q (paramsField) must be an object (or a string holding one), got %s", ErrCallParams, d.ParamsField, describe(v))
	}
	var out orderedObject
	if d.ParamsWithItem {
		item.ForEach(func(k, val gjson.Result) bool {
			if key := k.String(); key != d.ParamsField && key != ContextField {
				out.set(key, val.Raw)
			}
			return true
		})
	}
	params.ForEach(func(k, val gjson.Result) bool {
		raw := val.Raw
		if d.ParseValues && val.Type == gjson.String && gjson.Valid(val.Str) {
			raw = compactRaw(val.Str) // the origin package's JSON.parse with the string as fallback
		}
		out.set(k.String(), raw)
		return true
	})
	return json.RawMessage(out.String()), nil
}

// CallParamsAll returns the params of the one call of mode allItems: {"items":[<CallParams of
// every item>]}.
func (d *CallDirective) CallParamsAll(itemsJSON [][]byte) (json.RawMessage, error) {
	parts := make([]string, len(itemsJSON))
	for i, it := range itemsJSON {
		p, err := d.CallParams(it)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		parts[i] = string(p)
	}
	return json.RawMessage(`{"items":[` + strings.Join(parts, ",") + `]}`), nil
}

// ResultOf is the value a call's result stands for: each returned item unwrapped through
// valueField, then null for no item, the one value, or an array of them for several.
func (d *CallDirective) ResultOf(returned []json.RawMessage) json.RawMessage {
	vals := make([]json.RawMessage, len(returned))
	for i, r := range returned {
		vals[i] = d.unwrap(r)
	}
	return ResultValue(vals)
}

func (d *CallDirective) unwrap(item json.RawMessage) json.RawMessage {
	if d.ValueField == "" {
		return item
	}
	o := gjson.ParseBytes(item)
	if !o.IsObject() {
		return item
	}
	n := 0
	o.ForEach(func(_, _ gjson.Result) bool { n++; return n < 2 })
	if v := o.Get(gjson.Escape(d.ValueField)); n == 1 && v.Exists() {
		return json.RawMessage(v.Raw)
	}
	return item
}

// resultKey is where merge and replace put a value that is not an object.
func (d *CallDirective) resultKey() string {
	if d.ResultField != "" {
		return d.ResultField
	}
	return DefaultValueKey
}

func (d *CallDirective) errorField() string {
	if d.ErrorField != "" {
		return d.ErrorField
	}
	return "error"
}

// EffectiveResultMode is resultMode, or what it defaults to: field when resultField is set, else items.
func (d *CallDirective) EffectiveResultMode() string {
	switch {
	case d.ResultMode != "":
		return d.ResultMode
	case d.ResultField != "":
		return ResultField
	}
	return ResultItems
}

// base is an input item's json as the start of an output item: without paramsField.
func (d *CallDirective) base(input json.RawMessage) (orderedObject, error) {
	var o orderedObject
	in := gjson.ParseBytes(input)
	if !gjson.ValidBytes(input) || !in.IsObject() {
		return o, fmt.Errorf("the input item's json is not an object: %s", excerpt(string(input)))
	}
	in.ForEach(func(k, v gjson.Result) bool {
		if key := k.String(); d.ParamsField == "" || key != d.ParamsField {
			o.set(key, v.Raw)
		}
		return true
	})
	return o, nil
}

// Shape returns the items a call node outputs for a successful call. inputs are the json of the
// input items the call covered (one for eachItem, all for allItems), returned the json of the
// items the function returned. By resultMode:
//
//   - items: the returned items (paired with the input of the same index when the counts match,
//     else with the first input);
//   - field: each input item with the result (ResultOf) under resultField (skipNull: not when null);
//   - merge: each input item with the result's fields merged in (the result's win); a null result
//     leaves the item as it is, any other non-object result goes under resultField ("result");
//   - replace: per input item, the result object (a non-object result as {"<resultField>": value});
//   - none: each input item unchanged.
//
// paramsField is removed from every item built on an input item.
func (d *CallDirective) Shape(inputs []json.RawMessage, returned []json.RawMessage) ([]ShapedItem, error) {
	mode := d.EffectiveResultMode()
	if mode == ResultItems {
		out := make([]ShapedItem, 0, len(returned))
		for k, r := range returned {
			pair := 0
			if len(inputs) == len(returned) {
				pair = k
			}
			out = append(out, ShapedItem{JSON: json.RawMessage(compactBytes(r)), Pair: pair}) // r itself when compact
		}
		return out, nil
	}
	value := d.ResultOf(returned)
	val := gjson.ParseBytes(value)
	out := make([]ShapedItem, 0, len(inputs))
	for i, in := range inputs {
		o, err := d.base(in)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		switch mode {
		case ResultField:
			if !(d.SkipNull && val.Type == gjson.Null) {
				o.set(d.ResultField, val.Raw)
			}
		case ResultMerge:
			switch {
			case val.IsObject():
				val.ForEach(func(k, v gjson.Result) bool { o.set(k.String(), v.Raw); return true })
			case val.Type != gjson.Null:
				o.set(d.resultKey(), val.Raw)
			}
		case ResultReplace:
			o = orderedObject{}
			if val.IsObject() {
				val.ForEach(func(k, v gjson.Result) bool { o.set(k.String(), v.Raw); return true })
			} else {
				o.set(d.resultKey(), val.Raw)
			}
		case ResultNone:
		}
		out = append(out, ShapedItem{JSON: json.RawMessage(o.String()), Pair: i, FromInput: true})
	}
	return out, nil
}

// ownParams are the params an item gives itself, without the item's other fields (paramsWithItem):
// the details of an error item. {} when they cannot be built.
func (d *CallDirective) ownParams(itemJSON []byte) string {
	own := *d
	own.ParamsWithItem = false
	p, err := own.CallParams(itemJSON)
	if err != nil {
		return "{}"
	}
	return string(p)
}

// ShapeError returns the items a call node with On Error: Continue outputs for a failed call, one
// per input item: {"error": message} (errorOutput error), the input item plus
// {"<errorField>": message} (input), or the input item plus {"<errorField>": {"functionName",
// "parameters", "success": false, "error": message}} (details, the origin package's
// _functionCall error object; parameters are the item's own params: its paramsField, parsed, or
// the item without _functionCall; {} when they cannot be built).
func (d *CallDirective) ShapeError(inputs []json.RawMessage, message string) ([]ShapedItem, error) {
	msg, _ := json.Marshal(message)
	out := make([]ShapedItem, 0, len(inputs))
	for i, in := range inputs {
		if d.ErrorOutput == "" || d.ErrorOutput == ErrorOutputError {
			out = append(out, ShapedItem{JSON: json.RawMessage(`{"error":` + string(msg) + `}`), Pair: i})
			continue
		}
		o, err := d.base(in)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		if d.ErrorOutput == ErrorOutputDetails {
			var det orderedObject
			fn, _ := json.Marshal(d.Function)
			det.set("functionName", string(fn))
			det.set("parameters", d.ownParams(in))
			det.set("success", "false")
			det.set("error", string(msg))
			o.set(d.errorField(), det.String())
		} else {
			o.set(d.errorField(), string(msg))
		}
		out = append(out, ShapedItem{JSON: json.RawMessage(o.String()), Pair: i, FromInput: true})
	}
	return out, nil
}

// orderedObject builds a JSON object whose keys keep their first position, like a JS object: a
// key set again keeps its place and takes the new value ({...a, ...b}).
type orderedObject struct {
	keys []string
	vals map[string]string
}

func (o *orderedObject) set(key, raw string) {
	if o.vals == nil {
		o.vals = map[string]string{}
	}
	if _, ok := o.vals[key]; !ok {
		o.keys = append(o.keys, key)
	}
	o.vals[key] = raw
}

func (o *orderedObject) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(marshalNoEscape(k))
		b.WriteByte(':')
		b.WriteString(compactRaw(o.vals[k]))
	}
	b.WriteByte('}')
	return b.String()
}
