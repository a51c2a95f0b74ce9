package workflows

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"

	"github.com/tidwall/gjson"
)

// Scopes a function can be registered in. A call may also name another workflow's id as its scope.
const (
	ScopeGlobal   = "global"
	ScopeWorkflow = "workflow"
)

// Call modes: one call per input item, or one call carrying all input items.
const (
	ModeEachItem = "eachItem"
	ModeAllItems = "allItems"
)

// Param types a function can declare.
const (
	TypeString  = "string"
	TypeNumber  = "number"
	TypeBoolean = "boolean"
	TypeObject  = "object"
	TypeArray   = "array"
	// TypeAny accepts every JSON value unchanged (no coercion): what the origin package's params
	// were, whose declared types only drove the editor and the parsing of defaults.
	TypeAny = "any"
)

// Result modes of a call: where the function's result goes (see CallDirective.Shape).
const (
	ResultItems   = "items"   // output the returned items
	ResultField   = "field"   // the input item with the result under resultField
	ResultMerge   = "merge"   // the input item with the result object's fields merged in
	ResultReplace = "replace" // one item per input item: the result object itself
	ResultNone    = "none"    // the input item unchanged (the result is discarded)
)

// Error outputs of a call with On Error: Continue (see CallDirective.ShapeError).
const (
	ErrorOutputError   = "error"   // {"error": message}
	ErrorOutputInput   = "input"   // the input item plus {"<errorField>": message}
	ErrorOutputDetails = "details" // the input item plus {"<errorField>": {functionName, parameters, success:false, error}}
)

// DefaultValueKey is where merge/replace put a result that is not an object, unless resultField says.
const DefaultValueKey = "result"

// Defaults and limits of the directive fields (docs/directives.md lists them for users).
const (
	DefaultFunctionTimeoutMs = 60_000     // how long a function execution may take
	MinTimeoutMs             = 100        // below this a call cannot even be dispatched
	MaxTimeoutMs             = 86_400_000 // 24 h; the caller's n8n task timeout is usually the tighter bound
	MaxConcurrencyLimit      = 10_000
	MaxRetries               = 10
	DefaultRetryBackoffMs    = 1_000
	MaxRetryBackoffMs        = 600_000
	DefaultWaitForLiveMs     = 2_000 // fail fast when no live sidecar serves the function
	MaxWaitForLiveMs         = 60_000
	MaxParams                = 100
	MaxNameLength            = 100
	MaxDescriptionLength     = 2_000
	MaxMessageLength         = 2_000
)

// ContextField is the item field that carries the signed call context (callctx.go).
const ContextField = "_functionCall"

var (
	nameRe       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	workflowIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	fieldPathRe  = regexp.MustCompile(`^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$`)
)

// DirectiveError is one problem with one field of one node's directive. It wraps ErrDirective.
type DirectiveError struct {
	Node  string // the Code node's name ("" when the caller did not say)
	Field string // the directive field ("" for the header as a whole)
	Msg   string

	cause error // the header error it was made from (a limit, say), for errors.Is
}

func (e *DirectiveError) Error() string {
	var b strings.Builder
	b.WriteString(ErrDirective.Error())
	if e.Node != "" {
		fmt.Fprintf(&b, " in node %s", quoted(e.Node))
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ", field %s", quoted(e.Field))
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

func (e *DirectiveError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrDirective, e.cause}
	}
	return []error{ErrDirective}
}

// DirectiveErrors is every problem found in one directive; parsers return it (never empty) so a
// user fixes everything in one round.
type DirectiveErrors []*DirectiveError

// Error names the node once and then every field problem: invalid n8n-fn directive in node "N":
// field "a": ...; field "b": ...
func (es DirectiveErrors) Error() string {
	if len(es) == 1 {
		return es[0].Error()
	}
	parts := make([]string, len(es))
	sameNode := true
	for i, e := range es {
		sameNode = sameNode && e.Node == es[0].Node
		parts[i] = e.Error()
	}
	if !sameNode {
		return strings.Join(parts, "; ")
	}
	for i, e := range es {
		parts[i] = e.Msg
		if e.Field != "" {
			parts[i] = fmt.Sprintf("field %s: %s", quoted(e.Field), e.Msg)
		}
	}
	head := ErrDirective.Error()
	if es[0].Node != "" {
		head += fmt.Sprintf(" in node %s", quoted(es[0].Node))
	}
	return head + ": " + strings.Join(parts, "; ")
}

func (es DirectiveErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Directive is a parsed, validated directive of any op.
type Directive interface {
	DirectiveOp() string
}

// Param declares one parameter of a function.
type Param struct {
	Name        string          `json:"name"`
	Type        string          `json:"type"`
	Required    bool            `json:"required,omitempty"`
	Default     json.RawMessage `json:"default,omitempty"` // already coerced to Type; nil = no default
	Description string          `json:"description,omitempty"`
}

// FunctionDirective is {"op":"function",...}: it defines a callable function.
type FunctionDirective struct {
	Name           string  `json:"name"`
	Scope          string  `json:"scope"` // ScopeGlobal or ScopeWorkflow
	Params         []Param `json:"params,omitempty"`
	TimeoutMs      int     `json:"timeoutMs"`
	MaxConcurrency int     `json:"maxConcurrency"` // per dispatcher; 0 = the dispatcher's default
	// GlobalConcurrency bounds the calls that run at once across every sidecar (a rate-limited
	// API that allows one call at a time); 0 = no global bound.
	GlobalConcurrency int    `json:"globalConcurrency,omitempty"`
	Description       string `json:"description,omitempty"`
	// Batch, when set, lets one execution serve up to Batch.Max pending calls, one item per call
	// (opt-in: a body written for one call never sees several).
	Batch *Batch `json:"batch,omitempty"`
}

// Batch is a function's {"batch":{"max":16,"waitMs":5}}: the dispatcher hands up to Max pending
// calls to one execution, waiting at most WaitMs after the first for more.
//
// Parallel (opt-in, 0 = off) trades a little latency for bigger batches under load, as Nagle's
// algorithm does for small packets: one sidecar at a time reads the function's calls, and a batch
// that is not full waits while Parallel batches of the function are running, gathering the calls
// that arrive meanwhile (a full batch goes at once, up to maxConcurrency).
type Batch struct {
	Max      int `json:"max"`
	WaitMs   int `json:"waitMs"`
	Parallel int `json:"parallel,omitempty"`
}

// Batch limits.
const (
	MaxBatch           = 256
	DefaultBatchWaitMs = 5
	MaxBatchWaitMs     = 1000
	MaxBatchParallel   = 256
)

// CallDirective is {"op":"call",...}: it calls a function and waits for its return value.
type CallDirective struct {
	Function string `json:"function"`
	// Scope is ScopeGlobal, ScopeWorkflow (the caller's own workflow) or another workflow's id.
	Scope          string `json:"scope"`
	Mode           string `json:"mode"`      // ModeEachItem or ModeAllItems
	TimeoutMs      int    `json:"timeoutMs"` // 0 = the function's own timeout
	Retries        int    `json:"retries"`
	RetryBackoffMs int    `json:"retryBackoffMs"`
	// ResultField "" outputs the returned items; otherwise the input item is output with
	// ResultValue(returned items) stored under this top-level field.
	ResultField string `json:"resultField,omitempty"`
	// IdempotencyKey "" = none; otherwise a dotted field path into the input item's json whose
	// value identifies the call (see IdempotencyValue).
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	WaitForLiveMs  int    `json:"waitForLive"`

	// ParamsField "" sends the input item's json as the params; otherwise the params are this
	// top-level field of the item (an object, or a string holding a JSON object), and the field is
	// removed from every item the call outputs. See CallParams.
	ParamsField string `json:"paramsField,omitempty"`
	// ParamsWithItem (with ParamsField) also sends the item's other fields; the field's win.
	ParamsWithItem bool `json:"paramsWithItem,omitempty"`
	// ParseValues (with ParamsField): string values of the params object that hold JSON are sent
	// parsed ("5" -> 5, "{\"a\":1}" -> {"a":1}, "abc" stays a string).
	ParseValues bool `json:"parseValues,omitempty"`
	// ResultMode is one of ResultItems, ResultField, ResultMerge, ResultReplace, ResultNone, or ""
	// (not given): ResultField when resultField is set, else ResultItems (EffectiveResultMode).
	ResultMode string `json:"resultMode,omitempty"`
	// ValueField: a returned item whose json is exactly {"<ValueField>": X} stands for the value X
	// (items are objects, so a function returns a number, string, array or null wrapped like this).
	ValueField string `json:"valueField,omitempty"`
	// SkipNull (resultMode field): a null result leaves the item without the field.
	SkipNull bool `json:"skipNull,omitempty"`
	// ErrorOutput is ErrorOutputError ("" = not given, the same), ErrorOutputInput or ErrorOutputDetails.
	ErrorOutput string `json:"errorOutput,omitempty"`
	// ErrorField names the error's field for ErrorOutputInput and ErrorOutputDetails ("error").
	ErrorField string `json:"errorField,omitempty"`
}

// ReturnDirective is {"op":"return"} or its fail form {"op":"return","fail":true,"message":"..."}.
type ReturnDirective struct {
	Fail    bool   `json:"fail,omitempty"`
	Message string `json:"message,omitempty"` // "" = the item's json.error or json.message
}

// EchoDirective is the diagnostic op: the sidecar returns the input items with a marker.
type EchoDirective struct{}

func (*FunctionDirective) DirectiveOp() string { return OpFunction }
func (*CallDirective) DirectiveOp() string     { return OpCall }
func (*ReturnDirective) DirectiveOp() string   { return OpReturn }
func (*EchoDirective) DirectiveOp() string     { return OpEcho }

// ParseDirective reads a Code node's code. It returns (nil, nil) when the code is no directive;
// otherwise the op's typed directive or an error wrapping ErrDirective that names node and field.
func ParseDirective(node, code string) (Directive, error) {
	h, err := ParseHeader(code)
	if err != nil {
		return nil, NodeError(node, err)
	}
	if h == nil {
		return nil, nil
	}
	return ParseHeaderDirective(node, h)
}

// ParseHeaderDirective parses an already split header with the parser of its op.
func ParseHeaderDirective(node string, h *Header) (Directive, error) {
	// Each case returns explicitly so a failed parse yields a nil interface, not a typed nil.
	switch h.Op {
	case OpFunction:
		d, err := ParseFunction(node, h)
		if err != nil {
			return nil, err
		}
		return d, nil
	case OpCall:
		d, err := ParseCall(node, h)
		if err != nil {
			return nil, err
		}
		return d, nil
	case OpReturn:
		d, err := ParseReturn(node, h)
		if err != nil {
			return nil, err
		}
		return d, nil
	case OpEcho:
		d, err := ParseEcho(node, h)
		if err != nil {
			return nil, err
		}
		return d, nil
	}
	return nil, DirectiveErrors{{Node: node, Field: "op", Msg: fmt.Sprintf("unknown op %s (expected function, call or return)", quoted(h.Op))}}
}

// fields reads one JSON object strictly: unknown and duplicate fields are errors, and every
// problem is collected.
type fields struct {
	lim   Limits // the limits the header was read with
	node  string
	op    string
	vals  map[string]gjson.Result
	order map[string]int // field -> position in the object, so errors follow the header's order
	errs  DirectiveErrors
}

func newFields(node, op string, raw []byte, allowed ...string) *fields {
	f := &fields{node: node, op: op, vals: map[string]gjson.Result{}, order: map[string]int{}}
	obj := gjson.ParseBytes(raw)
	if !obj.IsObject() {
		if op == "" {
			f.fail("", fmt.Sprintf("expected an object {\"name\",\"type\",...}, got %s", excerpt(obj.Raw)))
		} else {
			f.fail("", "the directive must be one JSON object")
		}
		return f
	}
	ok := map[string]bool{}
	if op != "" {
		ok["op"], ok["v"] = true, true
	}
	for _, a := range allowed {
		ok[a] = true
	}
	obj.ForEach(func(k, v gjson.Result) bool {
		name := k.String()
		if _, seen := f.order[name]; !seen {
			f.order[name] = len(f.order)
		}
		switch {
		case !ok[name]:
			what := fmt.Sprintf("op %q", op)
			if op == "" {
				what = "a param"
			}
			f.fail(name, fmt.Sprintf("unknown field for %s (allowed: %s)", what, strings.Join(sortedKeys(ok), ", ")))
		case f.has(name):
			f.fail(name, "given twice")
		default:
			f.vals[name] = v
		}
		return true
	})
	return f
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (f *fields) has(name string) bool { _, ok := f.vals[name]; return ok }

func (f *fields) fail(field, msg string) {
	f.errs = append(f.errs, &DirectiveError{Node: f.node, Field: field, Msg: msg})
}

func (f *fields) err() error {
	if len(f.errs) == 0 {
		return nil
	}
	pos := func(e *DirectiveError) int {
		root, _, _ := strings.Cut(e.Field, "[")
		if p, ok := f.order[root]; ok {
			return p
		}
		return len(f.order) // missing fields last
	}
	sort.SliceStable(f.errs, func(i, j int) bool { return pos(f.errs[i]) < pos(f.errs[j]) })
	return f.errs
}

func (f *fields) str(name, def string) string {
	v, ok := f.vals[name]
	if !ok {
		return def
	}
	if v.Type != gjson.String {
		f.fail(name, fmt.Sprintf("expected a string, got %s", excerpt(v.Raw)))
		return def
	}
	return v.Str
}

func (f *fields) boolean(name string) bool {
	v, ok := f.vals[name]
	if !ok {
		return false
	}
	if v.Type != gjson.True && v.Type != gjson.False {
		f.fail(name, fmt.Sprintf("expected true or false, got %s", excerpt(v.Raw)))
		return false
	}
	return v.Bool()
}

// integer reads a whole number in [lo, hi]; zeroOK also admits 0 (meaning "not set").
func (f *fields) integer(name string, def, lo, hi int, zeroOK bool, unit string) int {
	v, ok := f.vals[name]
	if !ok {
		return def
	}
	// An integer is written as one: 15000.0 and 1.5e4 are refused like "v":1.0 in the header
	// (encoding/json refuses those for an int), so one rule holds for every integer field.
	n := v.Float()
	if v.Type != gjson.Number || strings.ContainsAny(v.Raw, ".eE") || n != math.Trunc(n) || math.IsInf(n, 0) {
		f.fail(name, fmt.Sprintf("expected a whole number%s, got %s", unit, excerpt(v.Raw)))
		return def
	}
	if zeroOK && n == 0 {
		return 0
	}
	if n < float64(lo) || n > float64(hi) {
		rng := fmt.Sprintf("%d..%d", lo, hi)
		if zeroOK {
			rng = "0 or " + rng
		}
		f.fail(name, fmt.Sprintf("%s is out of range (allowed %s%s)", v.Raw, rng, unit))
		return def
	}
	return int(n)
}

func (f *fields) name(field string, required bool, what string) string {
	s := f.str(field, "")
	if _, given := f.vals[field]; !given {
		if required {
			f.fail(field, fmt.Sprintf("missing: the %s is required", what))
		}
		return ""
	}
	if err := checkName(s); err != nil {
		f.fail(field, err.Error())
	}
	return s
}

// paramName reads a param's name: any non-empty field name without control characters (params
// are fields of the item's json, and origin workflows used display-style names).
func (f *fields) paramName() string {
	s := f.str("name", "")
	if _, given := f.vals["name"]; !given {
		f.fail("name", "missing: the param name is required")
		return ""
	}
	switch {
	case s == "":
		f.fail("name", "must not be empty")
	case len(s) > MaxNameLength:
		f.fail("name", fmt.Sprintf("longer than %d characters", MaxNameLength))
	case strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		f.fail("name", fmt.Sprintf("%s contains control characters", quoted(s)))
	}
	return s
}

func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("must not be empty")
	case len(s) > MaxNameLength:
		return fmt.Errorf("longer than %d characters", MaxNameLength)
	case !nameRe.MatchString(s):
		return fmt.Errorf("%s may only contain letters, digits, '_', '-' and '.' (and must not start with '-' or '.')", quoted(s))
	}
	return nil
}

// ValidName reports whether s can name a function or a param (letters, digits, '_', '-', '.').
func ValidName(s string) bool { return checkName(s) == nil }

// ParseFunction parses {"op":"function",...}.
func ParseFunction(node string, h *Header) (*FunctionDirective, error) {
	f := newFields(node, OpFunction, h.Raw, "name", "scope", "params", "timeoutMs", "maxConcurrency", "globalConcurrency", "description", "batch")
	f.lim = h.lim
	d := &FunctionDirective{
		Name:              f.name("name", true, "function name"),
		Scope:             f.str("scope", ScopeGlobal),
		TimeoutMs:         f.integer("timeoutMs", DefaultFunctionTimeoutMs, MinTimeoutMs, MaxTimeoutMs, false, " ms"),
		MaxConcurrency:    f.integer("maxConcurrency", 0, 1, MaxConcurrencyLimit, true, ""),
		GlobalConcurrency: f.integer("globalConcurrency", 0, 1, MaxConcurrencyLimit, true, ""),
		Description:       f.str("description", ""),
	}
	if d.Scope != ScopeGlobal && d.Scope != ScopeWorkflow {
		f.fail("scope", fmt.Sprintf("%s is not a scope (use %q or %q)", quoted(d.Scope), ScopeGlobal, ScopeWorkflow))
	}
	if len(d.Description) > MaxDescriptionLength {
		f.fail("description", fmt.Sprintf("longer than %d characters", MaxDescriptionLength))
	}
	if p, ok := f.vals["params"]; ok {
		d.Params = parseParams(f, p)
	}
	if b, ok := f.vals["batch"]; ok && b.Type != gjson.Null {
		d.Batch = parseBatch(f, b)
		if d.Batch != nil && d.GlobalConcurrency > 0 {
			f.fail("batch", "cannot be combined with globalConcurrency (a batch is one execution for many calls); drop one of them")
		}
	}
	if err := f.err(); err != nil {
		return nil, err
	}
	return d, nil
}

// parseBatch reads {"max":N,"waitMs":M}; max 1 means no batching (nil).
func parseBatch(f *fields, b gjson.Result) *Batch {
	if !b.IsObject() {
		f.fail("batch", fmt.Sprintf("expected an object {\"max\":16,\"waitMs\":5}, got %s", excerpt(b.Raw)))
		return nil
	}
	bf := newFields(f.node, "", []byte(b.Raw), "max", "waitMs", "parallel")
	bf.lim = f.lim
	out := &Batch{
		Max:      bf.integer("max", 0, 1, MaxBatch, false, ""),
		WaitMs:   bf.integer("waitMs", DefaultBatchWaitMs, 0, MaxBatchWaitMs, true, " ms"),
		Parallel: bf.integer("parallel", 0, 1, MaxBatchParallel, true, ""),
	}
	if !bf.has("max") {
		bf.fail("max", fmt.Sprintf("is required: how many calls one execution may serve (2..%d)", MaxBatch))
	}
	for _, e := range bf.errs {
		e.Field = "batch." + e.Field
		f.errs = append(f.errs, e)
	}
	if len(bf.errs) > 0 || out.Max <= 1 {
		return nil
	}
	return out
}

func parseParams(f *fields, p gjson.Result) []Param {
	if !p.IsArray() {
		f.fail("params", fmt.Sprintf("expected an array of {\"name\",\"type\",...} objects, got %s", excerpt(p.Raw)))
		return nil
	}
	items := p.Array()
	if len(items) > MaxParams {
		f.fail("params", fmt.Sprintf("%d params declared, at most %d allowed", len(items), MaxParams))
		return nil
	}
	seen := map[string]bool{}
	var out []Param
	for i, it := range items {
		pf := newFields(f.node, "", []byte(it.Raw), "name", "type", "required", "default", "description")
		pf.lim = f.lim
		prm := Param{
			Name:        pf.paramName(),
			Type:        pf.str("type", TypeString),
			Required:    pf.boolean("required"),
			Description: pf.str("description", ""),
		}
		switch prm.Type {
		case TypeString, TypeNumber, TypeBoolean, TypeObject, TypeArray, TypeAny:
		default:
			pf.fail("type", fmt.Sprintf("%s is not a param type (use string, number, boolean, object, array or any)", quoted(prm.Type)))
		}
		if prm.Name == ContextField {
			pf.fail("name", fmt.Sprintf("%q is reserved for the call context", ContextField))
		}
		if prm.Name != "" && seen[prm.Name] {
			pf.fail("name", fmt.Sprintf("param %s is declared twice", quoted(prm.Name)))
		}
		seen[prm.Name] = true
		if dv, ok := pf.vals["default"]; ok && dv.Type != gjson.Null && len(pf.errs) == 0 {
			c, err := f.lim.coerce(prm.Type, dv)
			if err != nil {
				pf.fail("default", fmt.Sprintf("does not fit type %s: %v", prm.Type, err))
			} else {
				prm.Default = c
			}
		}
		for _, e := range pf.errs {
			label := fmt.Sprintf("params[%d]", i)
			if prm.Name != "" {
				label = fmt.Sprintf("params[%d] (%s)", i, prm.Name)
			}
			if e.Field != "" {
				label += "." + e.Field
			}
			e.Field = label
			f.errs = append(f.errs, e)
		}
		out = append(out, prm)
	}
	return out
}

// ParseCall parses {"op":"call",...}.
func ParseCall(node string, h *Header) (*CallDirective, error) {
	f := newFields(node, OpCall, h.Raw, "function", "scope", "mode", "timeoutMs", "retries", "retryBackoffMs", "resultField", "idempotencyKey", "waitForLive",
		"paramsField", "paramsWithItem", "parseValues", "resultMode", "valueField", "skipNull", "errorOutput", "errorField")
	d := &CallDirective{
		Function:       f.name("function", true, "name of the function to call"),
		Scope:          f.str("scope", ScopeGlobal),
		Mode:           f.str("mode", ModeEachItem),
		TimeoutMs:      f.integer("timeoutMs", 0, MinTimeoutMs, MaxTimeoutMs, true, " ms"),
		Retries:        f.integer("retries", 0, 0, MaxRetries, false, ""),
		RetryBackoffMs: f.integer("retryBackoffMs", DefaultRetryBackoffMs, 0, MaxRetryBackoffMs, false, " ms"),
		ResultField:    f.str("resultField", ""),
		IdempotencyKey: f.str("idempotencyKey", ""),
		WaitForLiveMs:  f.integer("waitForLive", DefaultWaitForLiveMs, 0, MaxWaitForLiveMs, false, " ms"),
		ParamsField:    f.str("paramsField", ""),
		ParamsWithItem: f.boolean("paramsWithItem"),
		ParseValues:    f.boolean("parseValues"),
		ResultMode:     f.str("resultMode", ""),
		ValueField:     f.str("valueField", ""),
		SkipNull:       f.boolean("skipNull"),
		ErrorOutput:    f.str("errorOutput", ""),
		ErrorField:     f.str("errorField", ""),
	}
	if d.Scope != ScopeGlobal && d.Scope != ScopeWorkflow && !workflowIDRe.MatchString(d.Scope) {
		f.fail("scope", fmt.Sprintf("%s is neither %q, %q nor a workflow id (letters, digits, '_', '-')", quoted(d.Scope), ScopeGlobal, ScopeWorkflow))
	}
	if d.Mode != ModeEachItem && d.Mode != ModeAllItems {
		f.fail("mode", fmt.Sprintf("%s is not a mode (use %q or %q)", quoted(d.Mode), ModeEachItem, ModeAllItems))
	}
	switch {
	case d.ResultField == ContextField:
		f.fail("resultField", fmt.Sprintf("%q is reserved for the call context", ContextField))
	case d.ResultField != "" && (len(d.ResultField) > MaxNameLength || strings.ContainsAny(d.ResultField, ".\x00")):
		f.fail("resultField", fmt.Sprintf("%s must be one top-level field name (no '.', at most %d characters)", quoted(d.ResultField), MaxNameLength))
	}
	parseCallShaping(f, d)
	if d.IdempotencyKey != "" && !fieldPathRe.MatchString(d.IdempotencyKey) {
		f.fail("idempotencyKey", fmt.Sprintf("%s is not a field path like \"orderId\" or \"order.id\" (letters, digits, '_', '$', '-', separated by '.')", quoted(d.IdempotencyKey)))
	}
	if err := f.err(); err != nil {
		return nil, err
	}
	return d, nil
}

// topField reports why s cannot be one top-level item field name ("" when it can).
func topField(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > MaxNameLength || strings.ContainsAny(s, ".\x00"):
		return fmt.Sprintf("%q must be one top-level field name (no '.', at most %d characters)", s, MaxNameLength)
	}
	return ""
}

// parseCallShaping checks the fields that say where a call's params come from and where its
// result and errors go, and fills in the result mode.
func parseCallShaping(f *fields, d *CallDirective) {
	checkParamsShaping(f, d)
	checkResultShaping(f, d)
	checkErrorShaping(f, d)
}

// checkParamsShaping checks paramsField and the options that only mean something with it.
func checkParamsShaping(f *fields, d *CallDirective) {
	if f.has("paramsField") {
		if why := topField(d.ParamsField); why != "" {
			f.fail("paramsField", why)
		} else if d.ParamsField == ContextField {
			f.fail("paramsField", fmt.Sprintf("%q is reserved for the call context", ContextField))
		}
	}
	for _, opt := range []string{"paramsWithItem", "parseValues"} {
		if f.has(opt) && !f.has("paramsField") {
			f.fail(opt, "only applies with \"paramsField\" (the field that holds the params)")
		}
	}
}

// checkResultShaping checks resultMode against the fields it uses or ignores (resultField,
// valueField, skipNull).
func checkResultShaping(f *fields, d *CallDirective) {
	mode := d.EffectiveResultMode()
	switch d.ResultMode {
	case "", ResultItems, ResultField, ResultMerge, ResultReplace, ResultNone:
	default:
		f.fail("resultMode", fmt.Sprintf("%q is not a result mode (use %s, %s, %s, %s or %s)", d.ResultMode, ResultItems, ResultField, ResultMerge, ResultReplace, ResultNone))
	}
	switch {
	case mode == ResultField && d.ResultField == "":
		f.fail("resultMode", "resultMode \"field\" needs \"resultField\" (the field that gets the result)")
	case (mode == ResultItems || mode == ResultNone) && f.has("resultField"):
		f.fail("resultField", fmt.Sprintf("resultMode %q puts no result in a field: remove resultField or use field, merge or replace", mode))
	case d.ParamsField != "" && d.ParamsField == d.ResultField:
		f.fail("resultField", fmt.Sprintf("%q is also the paramsField, which is removed from the output", d.ResultField))
	}
	if f.has("valueField") {
		if why := topField(d.ValueField); why != "" {
			f.fail("valueField", why)
		}
	}
	if f.has("skipNull") && mode != ResultField {
		f.fail("skipNull", "only applies with resultMode \"field\" (merge skips a null result anyway)")
	}
}

// checkErrorShaping checks errorOutput and errorField, which only the input and details outputs
// take.
func checkErrorShaping(f *fields, d *CallDirective) {
	switch d.ErrorOutput {
	case "", ErrorOutputError:
		if f.has("errorField") {
			f.fail("errorField", "errorOutput \"error\" always writes {\"error\": message}: use errorOutput input or details to name the field")
		}
	case ErrorOutputInput, ErrorOutputDetails:
		if f.has("errorField") {
			if why := topField(d.ErrorField); why != "" {
				f.fail("errorField", why)
			}
		}
	default:
		f.fail("errorOutput", fmt.Sprintf("%q is not an error output (use %s, %s or %s)", d.ErrorOutput, ErrorOutputError, ErrorOutputInput, ErrorOutputDetails))
	}
}

// ParseReturn parses {"op":"return"} and {"op":"return","fail":true,"message":"..."}.
func ParseReturn(node string, h *Header) (*ReturnDirective, error) {
	f := newFields(node, OpReturn, h.Raw, "fail", "message")
	d := &ReturnDirective{Fail: f.boolean("fail"), Message: f.str("message", "")}
	if f.has("message") && !d.Fail {
		f.fail("message", "only the fail form takes a message: add \"fail\":true or remove \"message\"")
	}
	if len(d.Message) > MaxMessageLength {
		f.fail("message", fmt.Sprintf("longer than %d characters", MaxMessageLength))
	}
	if err := f.err(); err != nil {
		return nil, err
	}
	return d, nil
}

// ParseEcho parses the diagnostic {"op":"echo"}.
func ParseEcho(node string, h *Header) (*EchoDirective, error) {
	f := newFields(node, OpEcho, h.Raw)
	if err := f.err(); err != nil {
		return nil, err
	}
	return &EchoDirective{}, nil
}

// Target is the function a call directive names, resolved against the caller's workflow id.
func (d *CallDirective) Target(callerWorkflowID string) FunctionRef {
	if d.Scope == ScopeWorkflow {
		return FunctionRef{Scope: callerWorkflowID, Name: d.Function}
	}
	return FunctionRef{Scope: d.Scope, Name: d.Function}
}

// Ref is the registry identity of a function defined in workflowID.
func (d *FunctionDirective) Ref(workflowID string) FunctionRef {
	if d.Scope == ScopeGlobal {
		return FunctionRef{Scope: ScopeGlobal, Name: d.Name}
	}
	return FunctionRef{Scope: workflowID, Name: d.Name}
}

// RetryDelayMs is the wait before retry number attempt (1-based): RetryBackoffMs doubled per
// retry, capped at MaxRetryBackoffMs.
func (d *CallDirective) RetryDelayMs(attempt int) int {
	if attempt < 1 {
		attempt = 1
	}
	delay := d.RetryBackoffMs
	for i := 1; i < attempt && delay < MaxRetryBackoffMs; i++ {
		delay *= 2
	}
	return min(delay, MaxRetryBackoffMs)
}

// ErrIdempotencyKey is wrapped when an item lacks the field its call's idempotencyKey names.
var ErrIdempotencyKey = errors.New("idempotency key missing")

// IdempotencyValue reads the call's idempotency key from one input item's json: the field's string
// value, or the compact JSON of a number, boolean, object or array. ("", nil) when the directive
// has no idempotencyKey; an error when the item lacks the field or it is null or "".
func (d *CallDirective) IdempotencyValue(itemJSON []byte) (string, error) {
	if d.IdempotencyKey == "" {
		return "", nil
	}
	v := gjson.GetBytes(itemJSON, d.IdempotencyKey)
	switch {
	case !v.Exists() || v.Type == gjson.Null:
		return "", fmt.Errorf("%w: the item has no field %s (idempotencyKey); set it before the call or remove idempotencyKey", ErrIdempotencyKey, quoted(d.IdempotencyKey))
	case v.Type == gjson.String:
		if v.Str == "" {
			return "", fmt.Errorf("%w: field %s (idempotencyKey) is an empty string", ErrIdempotencyKey, quoted(d.IdempotencyKey))
		}
		return v.Str, nil
	default:
		return compactRaw(v.Raw), nil
	}
}

// ResultValue is what a call with resultField stores under that field: the returned item's json
// when exactly one item came back (the common case, and what the origin package stored), null for
// none, and an array of the items' json for several.
func ResultValue(returned []json.RawMessage) json.RawMessage {
	switch len(returned) {
	case 0:
		return json.RawMessage("null")
	case 1:
		return returned[0]
	}
	var b strings.Builder
	b.WriteByte('[')
	for i, r := range returned {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(r)
	}
	b.WriteByte(']')
	return json.RawMessage(b.String())
}

// FailMessage is the message a fail-form return sends for one item: the directive's message, else
// the item's json.error (a string, or an object's message), else json.message, else a generic text.
func (d *ReturnDirective) FailMessage(itemJSON []byte) string {
	if d.Message != "" {
		return d.Message
	}
	e := gjson.GetBytes(itemJSON, "error")
	switch {
	case e.Type == gjson.String && e.Str != "":
		return e.Str
	case e.IsObject() && e.Get("message").Type == gjson.String && e.Get("message").Str != "":
		return e.Get("message").Str
	case e.Exists() && e.Type != gjson.Null && e.Type != gjson.String:
		return compactRaw(e.Raw)
	}
	if m := gjson.GetBytes(itemJSON, "message"); m.Type == gjson.String && m.Str != "" {
		return m.Str
	}
	return "the function failed (return with fail:true; the item had no error or message field)"
}

// compactBytes is raw compacted: raw itself when it has no whitespace outside strings (the JSON
// n8n sends), else one compacted copy. raw must be valid JSON.
func compactBytes(raw []byte) []byte {
	if isCompact(raw) {
		return raw
	}
	var b bytes.Buffer
	b.Grow(len(raw))
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

// isCompact reports whether JSON text has no whitespace outside its strings.
func isCompact(raw []byte) bool {
	inStr, esc := false, false
	for _, c := range raw {
		switch {
		case esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case c == '"':
			inStr = !inStr
		case !inStr && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
}

func compactRaw(raw string) string {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(raw)); err != nil {
		return raw
	}
	return b.String()
}
