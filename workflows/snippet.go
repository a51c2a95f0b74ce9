package workflows

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tidwall/gjson"
)

// Node type versions the snippets and the migration write (the latest in n8n 2.41).
const (
	WebhookTypeVersion = 2.1
	CodeTypeVersion    = 2
	SetTypeVersion     = 3.4
	TypeSet            = "n8n-nodes-base.set"
	nodeSpacing        = 220
)

// ThrowLine follows every directive header: if the node ever runs on a plain runner it fails
// with a message that says why instead of doing nothing.
const ThrowLine = `throw new Error("n8n-fn: this node must run on the n8n-fn sidecar runner (N8N_RUNNERS_MODE=external with n8n-fn in front of this n8n process); see the n8n-fn README");`

// DirectiveCode is the complete jsCode of a directive node: the header and the throw line. The
// result always parses back to an equal directive.
func DirectiveCode(d Directive) (string, error) {
	body, err := EncodeDirective(d)
	if err != nil {
		return "", err
	}
	code := "/* " + Marker + " " + body + " */\n" + ThrowLine + "\n"
	if _, err := ParseDirective("", code); err != nil {
		return "", fmt.Errorf("encode %s directive: %w", d.DirectiveOp(), err)
	}
	return code, nil
}

// obj writes a JSON object with fields in the order they are added (readable headers).
type obj struct{ b bytes.Buffer }

func (o *obj) add(k string, v any) {
	if o.b.Len() == 0 {
		o.b.WriteByte('{')
	} else {
		o.b.WriteByte(',')
	}
	kb, _ := json.Marshal(k)
	o.b.Write(kb)
	o.b.WriteByte(':')
	var vb []byte
	switch x := v.(type) {
	case json.RawMessage:
		vb = x
	default:
		vb = marshalNoEscape(v)
	}
	o.b.Write(vb)
}

func (o *obj) String() string {
	if o.b.Len() == 0 {
		return "{}"
	}
	return o.b.String() + "}"
}

func marshalNoEscape(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // only strings, numbers, booleans and RawMessage reach here
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// EncodeDirective writes a directive's JSON object, fields in a fixed readable order, defaults
// left out where they add nothing. "*/" inside strings is escaped so the comment stays closed.
func EncodeDirective(d Directive) (string, error) {
	var o obj
	o.add("op", d.DirectiveOp())
	o.add("v", CurrentVersion)
	switch d := d.(type) {
	case *FunctionDirective:
		encodeFunction(&o, d)
	case *CallDirective:
		encodeCall(&o, d)
	case *ReturnDirective:
		if d.Fail {
			o.add("fail", true)
		}
		if d.Message != "" {
			o.add("message", d.Message) // without fail the re-parse in DirectiveCode refuses it
		}
	case *EchoDirective:
	default:
		return "", fmt.Errorf("%w: cannot encode a %T", ErrDirective, d)
	}
	return strings.ReplaceAll(o.String(), "*/", `*\/`), nil
}

// encodeFunction writes a function directive's fields after "op" and "v".
func encodeFunction(o *obj, d *FunctionDirective) {
	o.add("name", d.Name)
	o.add("scope", d.Scope)
	if d.Description != "" {
		o.add("description", d.Description)
	}
	var ps []string
	for _, p := range d.Params {
		var po obj
		po.add("name", p.Name)
		po.add("type", p.Type)
		if p.Required {
			po.add("required", true)
		}
		if p.Default != nil {
			po.add("default", p.Default)
		}
		if p.Description != "" {
			po.add("description", p.Description)
		}
		ps = append(ps, po.String())
	}
	o.add("params", json.RawMessage("["+strings.Join(ps, ",")+"]"))
	o.add("timeoutMs", d.TimeoutMs)
	if d.MaxConcurrency != 0 {
		o.add("maxConcurrency", d.MaxConcurrency)
	}
	if d.GlobalConcurrency != 0 {
		o.add("globalConcurrency", d.GlobalConcurrency)
	}
	if d.Batch != nil {
		var b obj
		b.add("max", d.Batch.Max)
		b.add("waitMs", d.Batch.WaitMs)
		if d.Batch.Parallel > 0 {
			b.add("parallel", d.Batch.Parallel)
		}
		o.add("batch", json.RawMessage(b.String()))
	}
}

// encodeCall writes a call directive's fields after "op" and "v".
func encodeCall(o *obj, d *CallDirective) {
	o.add("function", d.Function)
	o.add("scope", d.Scope)
	o.add("mode", d.Mode)
	if d.TimeoutMs != 0 {
		o.add("timeoutMs", d.TimeoutMs)
	}
	if d.Retries != 0 {
		o.add("retries", d.Retries)
		o.add("retryBackoffMs", d.RetryBackoffMs)
	}
	if d.ResultField != "" {
		o.add("resultField", d.ResultField)
	}
	if d.IdempotencyKey != "" {
		o.add("idempotencyKey", d.IdempotencyKey)
	}
	if d.WaitForLiveMs != DefaultWaitForLiveMs {
		o.add("waitForLive", d.WaitForLiveMs)
	}
	if d.ParamsField != "" {
		o.add("paramsField", d.ParamsField)
	}
	if d.ParamsWithItem {
		o.add("paramsWithItem", true)
	}
	if d.ParseValues {
		o.add("parseValues", true)
	}
	// resultMode is written only when it is not what resultField alone implies.
	if implied := map[bool]string{true: ResultField, false: ResultItems}[d.ResultField != ""]; d.ResultMode != "" && d.ResultMode != implied {
		o.add("resultMode", d.ResultMode)
	}
	if d.ValueField != "" {
		o.add("valueField", d.ValueField)
	}
	if d.SkipNull {
		o.add("skipNull", true)
	}
	if d.ErrorOutput != "" && d.ErrorOutput != ErrorOutputError {
		o.add("errorOutput", d.ErrorOutput)
		if d.ErrorField != "" {
			o.add("errorField", d.ErrorField)
		}
	}
}

// ConnTarget is one target of an n8n connection.
type ConnTarget struct {
	Node  string `json:"node"`
	Type  string `json:"type"`
	Index int    `json:"index"`
}

// SnippetNode is one node as n8n's editor pastes and its API imports it.
type SnippetNode struct {
	Parameters  json.RawMessage `json:"parameters"`
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Type        string          `json:"type"`
	TypeVersion float64         `json:"typeVersion"`
	Position    [2]float64      `json:"position"`
	WebhookID   string          `json:"webhookId,omitempty"`
}

// Fragment is paste-ready n8n JSON: copy it and paste it into the n8n editor canvas.
type Fragment struct {
	Nodes       []SnippetNode                        `json:"nodes"`
	Connections map[string]map[string][][]ConnTarget `json:"connections"`
}

// SnippetOptions tune generated snippets.
type SnippetOptions struct {
	NewID    func() string // node ids and webhook ids; nil = random UUIDs
	Position [2]float64    // position of the first node
	// WithReturn adds a return node after the function node (function snippets only).
	WithReturn bool
}

func (o SnippetOptions) id() string {
	if o.NewID != nil {
		return o.NewID()
	}
	return NewUUID()
}

// NewUUID returns a random version 4 UUID, the form n8n uses for node and webhook ids.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// CodeParameters are the parameters of a directive Code node.
func CodeParameters(jsCode string) json.RawMessage {
	var o obj
	o.add("mode", CodeModeAllItems)
	o.add("language", CodeLanguageJS)
	o.add("jsCode", jsCode)
	return json.RawMessage(o.String())
}

// WebhookParameters are the parameters of the Webhook node in front of a function.
func WebhookParameters(path string) json.RawMessage {
	var o obj
	o.add("httpMethod", "POST")
	o.add("path", path)
	o.add("responseMode", ResponseLastNode)
	o.add("responseData", ResponseAll)
	o.add("options", json.RawMessage("{}"))
	return json.RawMessage(o.String())
}

// FunctionWebhookPath is the webhook path snippets give a function: n8n-fn/global/NAME, or for a
// workflow-scoped function n8n-fn/workflow/NAME-<suffix> (paths are unique per n8n instance,
// workflow-scoped names are not).
func FunctionWebhookPath(fn *FunctionDirective, suffix string) string {
	if fn.Scope == ScopeGlobal {
		return "n8n-fn/global/" + fn.Name
	}
	return "n8n-fn/workflow/" + fn.Name + "-" + suffix
}

func (f *Fragment) connect(from, to string) {
	if f.Connections == nil {
		f.Connections = map[string]map[string][][]ConnTarget{}
	}
	f.Connections[from] = map[string][][]ConnTarget{connectionMain: {{{Node: to, Type: connectionMain, Index: 0}}}}
}

func (f *Fragment) codeNode(opts SnippetOptions, name string, d Directive, x int) error {
	code, err := DirectiveCode(d)
	if err != nil {
		return err
	}
	f.Nodes = append(f.Nodes, SnippetNode{
		Parameters: CodeParameters(code), ID: opts.id(), Name: name, Type: TypeCode, TypeVersion: CodeTypeVersion,
		Position: [2]float64{opts.Position[0] + float64(x*nodeSpacing), opts.Position[1]},
	})
	return nil
}

// FunctionSnippet is the Webhook + function pair (and a return node with WithReturn).
func FunctionSnippet(fn *FunctionDirective, opts SnippetOptions) (*Fragment, error) {
	f := &Fragment{Connections: map[string]map[string][][]ConnTarget{}}
	webhookID := opts.id()
	hookName := "Webhook " + fn.Name
	fnName := "function " + fn.Name
	f.Nodes = append(f.Nodes, SnippetNode{
		Parameters: WebhookParameters(FunctionWebhookPath(fn, strings.SplitN(webhookID, "-", 2)[0])),
		ID:         opts.id(), Name: hookName, Type: TypeWebhook, TypeVersion: WebhookTypeVersion,
		Position: opts.Position, WebhookID: webhookID,
	})
	if err := f.codeNode(opts, fnName, fn, 1); err != nil {
		return nil, err
	}
	f.connect(hookName, fnName)
	if opts.WithReturn {
		retName := "return " + fn.Name
		if err := f.codeNode(opts, retName, &ReturnDirective{}, 2); err != nil {
			return nil, err
		}
		f.connect(fnName, retName)
	}
	return f, nil
}

// CallSnippet is one call node.
func CallSnippet(c *CallDirective, opts SnippetOptions) (*Fragment, error) {
	f := &Fragment{Connections: map[string]map[string][][]ConnTarget{}}
	if err := f.codeNode(opts, "call "+c.Function, c, 0); err != nil {
		return nil, err
	}
	return f, nil
}

// ReturnSnippet is one return node (or its fail form).
func ReturnSnippet(r *ReturnDirective, opts SnippetOptions) (*Fragment, error) {
	f := &Fragment{Connections: map[string]map[string][][]ConnTarget{}}
	name := "return"
	if r.Fail {
		name = "return fail"
	}
	if err := f.codeNode(opts, name, r, 0); err != nil {
		return nil, err
	}
	return f, nil
}

// JSON is the fragment as indented JSON, ready to paste.
func (f *Fragment) JSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("encode snippet: %w", err)
	}
	return buf.Bytes(), nil
}

// WorkflowJSON wraps the fragment as a complete workflow, importable through n8n's API or
// "Import from File".
func (f *Fragment) WorkflowJSON(name string) ([]byte, error) {
	w := struct {
		Name        string                               `json:"name"`
		Nodes       []SnippetNode                        `json:"nodes"`
		Connections map[string]map[string][][]ConnTarget `json:"connections"`
		Settings    map[string]string                    `json:"settings"`
	}{name, f.Nodes, f.Connections, map[string]string{"executionOrder": "v1"}}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(w); err != nil {
		return nil, fmt.Errorf("encode workflow: %w", err)
	}
	return buf.Bytes(), nil
}

// ParseParamSpec reads the command-line form of a param: name:type[:required][=default], e.g.
// "a:number:required", "tags:array=[\"x\"]", "greeting:string=hello". The type defaults to string.
func ParseParamSpec(spec string) (Param, error) {
	head, def, hasDef := strings.Cut(spec, "=")
	parts := strings.Split(head, ":")
	p := Param{Name: parts[0], Type: TypeString}
	if p.Name == "" || p.Name == ContextField || len(p.Name) > MaxNameLength {
		return Param{}, fmt.Errorf("param %q: expected name:type[:required][=default] with a name (not %s, at most %d characters)", spec, ContextField, MaxNameLength)
	}
	if len(parts) > 1 && parts[1] != "" {
		p.Type = parts[1]
	}
	switch p.Type {
	case TypeString, TypeNumber, TypeBoolean, TypeObject, TypeArray, TypeAny:
	default:
		return Param{}, fmt.Errorf("param %q: type %q is not one of string, number, boolean, object, array, any", spec, p.Type)
	}
	switch {
	case len(parts) == 3 && parts[2] == "required":
		p.Required = true
	case len(parts) > 2:
		return Param{}, fmt.Errorf("param %q: expected name:type[:required][=default]", spec)
	}
	if hasDef {
		q, _ := json.Marshal(def)
		c, err := coerce(p.Type, gjson.ParseBytes(q))
		if err != nil {
			return Param{}, fmt.Errorf("param %q: default %w", spec, err)
		}
		p.Default = c
	}
	return p, nil
}
