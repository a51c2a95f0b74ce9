package workflows

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// Node types of the origin package (mrowrpurr/n8n-nodes-function), all typeVersion 1.
const (
	OriginFunction   = OriginTypePrefix + "function"
	OriginCall       = OriginTypePrefix + "callFunction"
	OriginReturn     = OriginTypePrefix + "returnFromFunction"
	OriginTestTrig   = OriginTypePrefix + "testTrigger"
	OriginConfigure  = OriginTypePrefix + "configureFunctions"
	OriginCleanup    = OriginTypePrefix + "redisCleanup"
	defaultResultVar = "functionResult"
)

// MigrateOptions tune the migration.
type MigrateOptions struct {
	// Global makes every migrated function global and every call target it by name, instead of
	// keeping the origin's per-workflow scope (callers named the function's workflow id).
	Global bool
	// NewID makes node and webhook ids; nil = random UUIDs.
	NewID func() string
}

func (o MigrateOptions) id() string {
	if o.NewID != nil {
		return o.NewID()
	}
	return NewUUID()
}

// MigrateNote is one line of a migration report, about one node.
type MigrateNote struct {
	Node    string `json:"node"`
	Message string `json:"message"`
}

// MigrateReport says what the migration of one workflow did.
type MigrateReport struct {
	WorkflowID   string `json:"workflowId,omitempty"`
	WorkflowName string `json:"workflowName,omitempty"`
	// Converted: nodes replaced or added.
	Converted []MigrateNote `json:"converted"`
	// Review: converted, but behaviour differs from the origin or generated code needs a look.
	Review []MigrateNote `json:"review"`
	// Unconverted: origin nodes left as they were; the workflow still needs the origin package
	// until they are replaced by hand.
	Unconverted []MigrateNote `json:"unconverted"`
}

// Migration is one migrated workflow.
type Migration struct {
	Report   MigrateReport
	Workflow []byte // the converted workflow JSON (indented); the input unchanged if nothing applied
	Changed  bool
}

// migrationFunction is what the migration decided about one origin Function node.
type migrationFunction struct {
	name  string // n8n-fn function name
	scope string // ScopeGlobal or ScopeWorkflow
}

// Migrate converts workflows that use the origin package's nodes. All workflows that call each
// other should be migrated in one run, so a call can find its target's scope. Each input is one
// workflow object; an error means an input is not a workflow (nothing is converted then).
func Migrate(wfs [][]byte, opts MigrateOptions) ([]Migration, error) {
	parsed := make([]*Workflow, len(wfs))
	for i, b := range wfs {
		w, err := ParseWorkflow(b)
		if err != nil {
			return nil, fmt.Errorf("migrate: workflow #%d: %w", i+1, err)
		}
		parsed[i] = w
	}
	// Decide every function's name and scope first, so calls in other workflows agree.
	funcs := map[string]map[string]migrationFunction{} // workflow key -> origin node name -> decision
	keys := make([]string, len(parsed))
	for i, w := range parsed {
		keys[i] = w.ID
		if keys[i] == "" {
			keys[i] = fmt.Sprintf("#%d", i) // files without ids must not share one entry
		}
	}
	for i, w := range parsed {
		for _, n := range w.Nodes {
			if n.Type != OriginFunction {
				continue
			}
			if funcs[keys[i]] == nil {
				funcs[keys[i]] = map[string]migrationFunction{}
			}
			scope := ScopeWorkflow
			if opts.Global || n.Param("globalFunction").Bool() {
				scope = ScopeGlobal
			}
			funcs[keys[i]][n.Name] = migrationFunction{name: SanitizeFunctionName(n.Name), scope: scope}
		}
	}
	out := make([]Migration, len(wfs))
	for i, b := range wfs {
		m, err := migrateOne(b, parsed[i], keys[i], funcs, opts)
		if err != nil {
			return nil, fmt.Errorf("migrate: workflow %s: %w", parsed[i].Label(), err)
		}
		out[i] = m
	}
	return out, nil
}

var unsafeNameRun = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// SanitizeFunctionName turns an origin function name (a node's display name, e.g. "Add Numbers")
// into an n8n-fn function name ("Add_Numbers"). Callers' functionName goes through the same
// function, so both sides agree.
func SanitizeFunctionName(s string) string {
	s = strings.Trim(unsafeNameRun.ReplaceAllString(strings.TrimSpace(s), "_"), "_")
	s = strings.TrimLeft(s, ".-")
	if len(s) > MaxNameLength {
		s = s[:MaxNameLength]
	}
	if s == "" {
		return "fn"
	}
	return s
}

// migration state of one workflow.
type migrator struct {
	wf      *Workflow
	key     string // workflow id, or "#index" for a file without one
	opts    MigrateOptions
	funcs   map[string]map[string]migrationFunction
	report  MigrateReport
	nodes   []json.RawMessage                    // output nodes, in order
	conns   map[string]map[string][][]ConnTarget // output connections
	names   map[string]bool
	changed bool
}

func migrateOne(raw []byte, wf *Workflow, key string, funcs map[string]map[string]migrationFunction, opts MigrateOptions) (Migration, error) {
	m := &migrator{wf: wf, key: key, opts: opts, funcs: funcs, names: map[string]bool{},
		report: MigrateReport{WorkflowID: wf.ID, WorkflowName: wf.Name, Converted: []MigrateNote{}, Review: []MigrateNote{}, Unconverted: []MigrateNote{}}}
	root := gjson.ParseBytes(raw)
	if err := json.Unmarshal([]byte(orEmpty(root.Get("connections").Raw, "{}")), &m.conns); err != nil {
		return Migration{}, fmt.Errorf("read connections: %w", err)
	}
	if m.conns == nil {
		m.conns = map[string]map[string][][]ConnTarget{}
	}
	for _, n := range wf.Nodes {
		m.names[n.Name] = true
	}
	for _, n := range wf.Nodes {
		var err error
		switch n.Type {
		case OriginFunction:
			err = m.function(n)
		case OriginCall:
			err = m.call(n)
		case OriginReturn:
			err = m.ret(n)
		case OriginTestTrig:
			m.keep(n, "Test Trigger (emits every 30 s) has no n8n-fn equivalent: replace it with a Schedule Trigger or a Manual Trigger")
		case OriginConfigure:
			m.keep(n, "Configure Functions is not needed with n8n-fn (the sidecar is configured by environment variables): delete this node")
		default:
			if strings.HasPrefix(n.Type, OriginTypePrefix) {
				m.keep(n, fmt.Sprintf("%s has no n8n-fn equivalent: delete it or replace it by hand", n.Type))
			} else {
				m.nodes = append(m.nodes, json.RawMessage(n.Raw.Raw))
			}
		}
		if err != nil {
			return Migration{}, err
		}
	}
	if !m.changed {
		return Migration{Report: m.report, Workflow: raw}, nil
	}
	b, err := m.output(root)
	if err != nil {
		return Migration{}, err
	}
	return Migration{Report: m.report, Workflow: b, Changed: true}, nil
}

func orEmpty(s, def string) string {
	if strings.TrimSpace(s) == "" || s == "null" {
		return def
	}
	return s
}

func (m *migrator) keep(n *Node, why string) {
	m.nodes = append(m.nodes, json.RawMessage(n.Raw.Raw))
	m.report.Unconverted = append(m.report.Unconverted, MigrateNote{n.Name, why})
}

func (m *migrator) converted(node, msg string) {
	m.report.Converted = append(m.report.Converted, MigrateNote{node, msg})
}

func (m *migrator) review(node, msg string) {
	m.report.Review = append(m.report.Review, MigrateNote{node, msg})
}

func (m *migrator) uniqueName(base string) string {
	name := base
	for i := 2; m.names[name]; i++ {
		name = fmt.Sprintf("%s %d", base, i)
	}
	m.names[name] = true
	return name
}

// replaceNode writes node n as a new node of type typ with params, keeping its id, name,
// position and node settings (disabled, notes, retry, continueOnFail/onError, ...).
func (m *migrator) replaceNode(n *Node, typ string, version float64, params json.RawMessage) {
	var o obj
	o.add("parameters", params)
	o.add("id", orString(n.ID, m.opts.id()))
	o.add("name", n.Name)
	o.add("type", typ)
	o.add("typeVersion", json.RawMessage(strconv.FormatFloat(version, 'f', -1, 64)))
	o.add("position", json.RawMessage(orEmpty(n.Raw.Get("position").Raw, "[0,0]")))
	n.Raw.ForEach(func(k, v gjson.Result) bool {
		switch k.String() {
		case "parameters", "id", "name", "type", "typeVersion", "position", "webhookId", "credentials":
		default:
			o.add(k.String(), json.RawMessage(v.Raw))
		}
		return true
	})
	m.nodes = append(m.nodes, json.RawMessage(o.String()))
	m.changed = true
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// addNode appends a new node and returns its name.
func (m *migrator) addNode(base, typ string, version float64, params json.RawMessage, pos [2]float64, webhookID string) string {
	name := m.uniqueName(base)
	n := SnippetNode{Parameters: params, ID: m.opts.id(), Name: name, Type: typ, TypeVersion: version, Position: pos, WebhookID: webhookID}
	b, _ := json.Marshal(n) // only strings, numbers and valid RawMessage
	m.nodes = append(m.nodes, b)
	m.changed = true
	return name
}

// insertAfter puts node mid between from and everything from's main outputs fed.
func (m *migrator) insertAfter(from, mid string) {
	byType := m.conns[from]
	if byType == nil {
		byType = map[string][][]ConnTarget{}
	}
	outs := byType[connectionMain]
	if len(outs) > 0 {
		m.conns[mid] = map[string][][]ConnTarget{connectionMain: outs}
	}
	byType[connectionMain] = [][]ConnTarget{{{Node: mid, Type: connectionMain, Index: 0}}}
	m.conns[from] = byType
}

// insertBefore puts node mid between every main input of to and to.
func (m *migrator) insertBefore(to, mid string) {
	for _, byType := range m.conns {
		for _, out := range byType[connectionMain] {
			for i := range out {
				if out[i].Node == to {
					out[i].Node = mid
				}
			}
		}
	}
	m.conns[mid] = map[string][][]ConnTarget{connectionMain: {{{Node: to, Type: connectionMain, Index: 0}}}}
}

func (m *migrator) connect(from, to string) {
	byType := m.conns[from]
	if byType == nil {
		byType = map[string][][]ConnTarget{}
		m.conns[from] = byType
	}
	outs := byType[connectionMain]
	if len(outs) == 0 {
		outs = [][]ConnTarget{nil}
	}
	outs[0] = append(outs[0], ConnTarget{Node: to, Type: connectionMain, Index: 0})
	byType[connectionMain] = outs
}

func codeNodeParams(mode, jsCode string) json.RawMessage {
	var o obj
	o.add("mode", mode)
	o.add("language", CodeLanguageJS)
	o.add("jsCode", jsCode)
	return json.RawMessage(o.String())
}

// function converts a Function trigger into Webhook -> function Code node.
func (m *migrator) function(n *Node) error {
	dec := m.funcs[m.key][n.Name]
	fn := &FunctionDirective{Name: dec.name, Scope: dec.scope, TimeoutMs: DefaultFunctionTimeoutMs,
		Description: n.Param("functionDescription").String()}
	if len(fn.Description) > MaxDescriptionLength {
		fn.Description = fn.Description[:MaxDescriptionLength]
	}
	if dec.name != n.Name {
		m.review(n.Name, fmt.Sprintf("function name %q became %q (n8n-fn names use letters, digits, '_', '-', '.'); migrated callers use the new name", n.Name, dec.name))
	}
	if dec.scope == ScopeWorkflow && m.wf.ID == "" {
		m.review(n.Name, "workflow-scoped function in a workflow without an id: callers in other workflows must name this workflow's id once n8n assigns one")
	}
	seen := map[string]bool{}
	for i, p := range n.Param("parameters.parameter").Array() {
		prm := Param{Name: p.Get("name").String(), Type: orString(p.Get("type").String(), TypeString),
			Required: p.Get("required").Bool(), Description: p.Get("description").String()}
		if prm.Name == "" || prm.Name == ContextField || seen[prm.Name] || len(prm.Name) > MaxNameLength {
			m.review(n.Name, fmt.Sprintf("parameter #%d (%q) dropped: empty, reserved, too long or declared twice", i+1, prm.Name))
			continue
		}
		seen[prm.Name] = true
		switch prm.Type {
		case TypeString, TypeNumber, TypeBoolean, TypeObject, TypeArray:
		default:
			m.review(n.Name, fmt.Sprintf("parameter %q had type %q; declared as string", prm.Name, prm.Type))
			prm.Type = TypeString
		}
		if dv := p.Get("defaultValue"); dv.Exists() && dv.String() != "" {
			d, err := originDefault(prm.Type, dv.String())
			if err != nil {
				m.review(n.Name, fmt.Sprintf("parameter %q: default %q dropped: %v (the origin passed the raw string on)", prm.Name, dv.String(), err))
			} else {
				prm.Default = d
			}
		}
		fn.Params = append(fn.Params, prm)
	}
	code, err := DirectiveCode(fn)
	if err != nil {
		return fmt.Errorf("node %q: %w", n.Name, err)
	}
	m.replaceNode(n, TypeCode, CodeTypeVersion, CodeParameters(code))
	webhookID := m.opts.id()
	hook := m.addNode("Webhook "+dec.name, TypeWebhook, WebhookTypeVersion,
		WebhookParameters(FunctionWebhookPath(fn, strings.SplitN(webhookID, "-", 2)[0])),
		[2]float64{n.Position[0] - nodeSpacing, n.Position[1]}, webhookID)
	m.connect(hook, n.Name)
	m.converted(n.Name, fmt.Sprintf("Function trigger -> Webhook %q + function node (function %q, scope %s, %d params)", hook, dec.name, dec.scope, len(fn.Params)))
	m.review(n.Name, fmt.Sprintf("the function now has a timeout of %d ms (the origin waited forever); change timeoutMs in the header if it needs longer", fn.TimeoutMs))

	if n.Param("enableCode").Bool() && strings.TrimSpace(n.Param("jsCode").String()) != "" {
		name := m.addNode(n.Name+" code", TypeCode, CodeTypeVersion,
			codeNodeParams("runOnceForEachItem", functionCodeJS(fn.Params, n.Param("jsCode").String())),
			[2]float64{n.Position[0] + nodeSpacing/2, n.Position[1] + 160}, "")
		m.insertAfter(n.Name, name)
		m.converted(n.Name, fmt.Sprintf("its \"Code\" option -> Code node %q after the function node", name))
		m.review(name, "generated from the Function node's code option (it ran with eval inside the trigger): check it, it now runs in n8n's task runner")
	}
	return nil
}

// originDefault applies the origin's default coercion (seed §1.3.1) and checks the result fits.
func originDefault(typ, s string) (json.RawMessage, error) {
	switch typ {
	case TypeBoolean:
		return json.RawMessage(strconv.FormatBool(strings.EqualFold(s, "true"))), nil
	case TypeString:
		return json.RawMessage(marshalNoEscape(s)), nil
	}
	q, _ := json.Marshal(s)
	return coerce(typ, gjson.ParseBytes(q))
}

var jsIdent = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*$`)

func functionCodeJS(params []Param, code string) string {
	var names []string
	for _, p := range params {
		if jsIdent.MatchString(p.Name) {
			names = append(names, p.Name)
		}
	}
	var b strings.Builder
	b.WriteString("// n8n-fn migrate: the Function node's \"Code\" option, run once per item. Review it.\n")
	b.WriteString("// Params are variables as before; a returned object is merged into the item, another value\n")
	b.WriteString("// is stored as \"result\", an error as \"_codeError\". Keep _functionCall on the item.\n")
	if len(names) > 0 {
		fmt.Fprintf(&b, "const { %s } = $json;\n", strings.Join(names, ", "))
	}
	b.WriteString("let __result;\ntry {\n  __result = (() => {\n")
	b.WriteString(indent(code, "    "))
	b.WriteString("\n  })();\n} catch (error) {\n  return { json: { ...$json, _codeError: String((error && error.message) || error) } };\n}\n")
	b.WriteString("if (__result !== null && typeof __result === 'object' && !Array.isArray(__result)) return { json: { ...$json, ...__result } };\n")
	b.WriteString("if (__result !== undefined) return { json: { ...$json, result: __result } };\nreturn { json: $json };\n")
	return b.String()
}

func indent(code, pad string) string {
	lines := strings.Split(strings.TrimRight(code, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}

// call converts a CallFunction node into an optional Set node (its parameters) + a call node.
func (m *migrator) call(n *Node) error {
	fnName := n.Param("functionName")
	if fnName.Type != gjson.String || fnName.Str == "" || strings.HasPrefix(fnName.Str, "=") || strings.HasPrefix(fnName.Str, "__") {
		m.keep(n, fmt.Sprintf("functionName %s is empty or an expression; set the function by hand (`n8n-fn snippet call NAME`)", excerpt(fnName.Raw)))
		return nil
	}
	target := SanitizeFunctionName(fnName.Str)
	scope, why := m.callScope(n, fnName.Str)
	if scope == "" {
		m.keep(n, why)
		return nil
	}
	c := &CallDirective{Function: target, Scope: scope, Mode: ModeEachItem, RetryBackoffMs: DefaultRetryBackoffMs, WaitForLiveMs: DefaultWaitForLiveMs}
	resultVar := n.Param("responseVariableName").String()
	if resultVar == "" {
		resultVar = defaultResultVar
	}
	if resultVar == ContextField || strings.Contains(resultVar, ".") || len(resultVar) > MaxNameLength {
		m.review(n.Name, fmt.Sprintf("responseVariableName %q cannot be a result field; using %q", resultVar, defaultResultVar))
		resultVar = defaultResultVar
	}
	c.ResultField = resultVar
	if !n.Param("storeResponse").Bool() {
		m.review(n.Name, fmt.Sprintf("the origin discarded the return value (Store Response off); it is now stored under %q on the item", resultVar))
	}
	code, err := DirectiveCode(c)
	if err != nil {
		return fmt.Errorf("node %q: %w", n.Name, err)
	}
	m.replaceNode(n, TypeCode, CodeTypeVersion, CodeParameters(code))
	if target != fnName.Str {
		m.review(n.Name, fmt.Sprintf("calls %q, the migrated name of %q", target, fnName.Str))
	}
	m.converted(n.Name, fmt.Sprintf("Call Function -> call node (function %q, scope %s, result under %q)", target, scope, resultVar))
	m.review(n.Name, "calls now run in parallel per item and time out with the function's timeout (the origin called one item after another and waited forever)")

	setParams, count := callParamsSet(n, m.opts)
	if setParams != nil {
		set := m.addNode(n.Name+" params", TypeSet, SetTypeVersion, setParams, [2]float64{n.Position[0] - nodeSpacing/2, n.Position[1] - 160}, "")
		m.insertBefore(n.Name, set)
		m.converted(n.Name, fmt.Sprintf("its %d parameter value(s) -> Edit Fields node %q before the call (the call sends the item's fields as params)", count, set))
	}
	return nil
}

// callScope decides a call's scope: "" and a reason when it cannot.
func (m *migrator) callScope(n *Node, fnName string) (string, string) {
	if m.opts.Global || n.Param("globalFunction").Bool() {
		return ScopeGlobal, ""
	}
	wfID := n.Param("workflowId")
	if wfID.IsObject() {
		wfID = wfID.Get("value")
	}
	id := wfID.String()
	switch {
	case strings.HasPrefix(id, "="):
		return "", fmt.Sprintf("the target workflow is an expression (%s); set the call's scope by hand", excerpt(id))
	case id == "" || id == m.wf.ID:
		if d, ok := m.funcs[m.key][fnName]; ok && d.scope == ScopeGlobal {
			return ScopeGlobal, ""
		}
		if id == "" && m.funcs[m.key] == nil {
			return "", "no target workflow selected and this workflow defines no function of that name; set the call's scope by hand"
		}
		return ScopeWorkflow, ""
	}
	if d, ok := m.funcs[id][fnName]; ok {
		if d.scope == ScopeGlobal {
			return ScopeGlobal, ""
		}
		return id, ""
	}
	if !workflowIDRe.MatchString(id) {
		return "", fmt.Sprintf("target workflow id %q is not an id; set the call's scope by hand", excerpt(id))
	}
	return id, "" // target workflow not in this run: keep addressing it by id
}

// callParamsSet builds the Edit Fields (Set) node that puts a CallFunction's parameter values
// on the item: individual values as strings (expressions stay n8n expressions; the function
// node coerces them to the declared types, as the origin JSON-parsed them), or the JSON mode's
// object merged in. nil when the call had no parameters.
func callParamsSet(n *Node, opts MigrateOptions) (json.RawMessage, int) {
	if n.Param("parameterMode").String() == "json" {
		pj := strings.TrimSpace(n.Param("parametersJson").String())
		if pj == "" || pj == "{}" || pj == "={}" {
			return nil, 0
		}
		var o obj
		o.add("mode", "raw")
		o.add("jsonOutput", pj)
		o.add("includeOtherFields", true)
		o.add("options", json.RawMessage("{}"))
		return json.RawMessage(o.String()), 1
	}
	var assigns []string
	for _, p := range n.Param("parameters.parameter").Array() {
		name := p.Get("name").String()
		if name == "" || strings.HasPrefix(name, "__") {
			continue // the origin's UI sentinels (__no_params_available__, ...)
		}
		var a obj
		a.add("id", opts.id())
		a.add("name", name)
		a.add("value", p.Get("value").String())
		a.add("type", "string")
		assigns = append(assigns, a.String())
	}
	if len(assigns) == 0 {
		return nil, 0
	}
	var o obj
	o.add("assignments", json.RawMessage(`{"assignments":[`+strings.Join(assigns, ",")+`]}`))
	o.add("includeOtherFields", true)
	o.add("options", json.RawMessage("{}"))
	return json.RawMessage(o.String()), len(assigns)
}

var trivialReturn = regexp.MustCompile(`^return\s+\$json\s*;?$`)

// ret converts a ReturnFromFunction node into a return node (with a Code node before it when its
// returnCode did more than return $json).
func (m *migrator) ret(n *Node) error {
	code, err := DirectiveCode(&ReturnDirective{})
	if err != nil {
		return fmt.Errorf("node %q: %w", n.Name, err)
	}
	rc := n.Param("returnCode")
	m.replaceNode(n, TypeCode, CodeTypeVersion, CodeParameters(code))
	m.converted(n.Name, "Return from Function -> return node")
	m.review(n.Name, "every item that reaches return is now part of the return value (the origin sent one response per item and the caller kept the first)")
	if !rc.Exists() || trivialReturn.MatchString(stripJSComments(rc.String())) {
		return nil
	}
	name := m.addNode(n.Name+" value", TypeCode, CodeTypeVersion, codeNodeParams("runOnceForEachItem", returnCodeJS(rc.String())),
		[2]float64{n.Position[0] - nodeSpacing/2, n.Position[1] - 160}, "")
	m.insertBefore(n.Name, name)
	m.converted(n.Name, fmt.Sprintf("its return code -> Code node %q before the return node", name))
	msg := "generated from the Return node's code (it ran with eval): check it; a non-object value is returned as {\"value\": ...}"
	if strings.Contains(rc.String(), "$binary") || strings.Contains(rc.String(), "$item") || strings.Contains(rc.String(), "$index") {
		msg += "; it uses $index/$item/$binary, which are emulated with $itemIndex and $input.item"
	}
	m.review(name, msg)
	return nil
}

func stripJSComments(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "//") {
			keep = append(keep, t)
		}
	}
	return strings.Join(keep, " ")
}

func returnCodeJS(code string) string {
	var b strings.Builder
	b.WriteString("// n8n-fn migrate: the Return from Function node's code, run once per item. Review it.\n")
	b.WriteString("const __value = (($index, $item, $binary) => {\n")
	b.WriteString(indent(code, "  "))
	b.WriteString("\n})($itemIndex, $input.item, $input.item.binary || {});\n")
	b.WriteString("const __json = (__value !== null && typeof __value === 'object' && !Array.isArray(__value)) ? { ...__value } : { value: __value };\n")
	b.WriteString("__json._functionCall = $json._functionCall; // the return node needs it to answer the caller\n")
	b.WriteString("return { json: __json };\n")
	return b.String()
}

// output writes the workflow with the new nodes and connections, other fields in their order.
func (m *migrator) output(root gjson.Result) ([]byte, error) {
	var o obj
	wroteConns := false
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.String() {
		case "nodes":
			o.add("nodes", json.RawMessage("["+string(bytes.Join(rawSlice(m.nodes), []byte(",")))+"]"))
		case "connections":
			o.add("connections", json.RawMessage(marshalNoEscape(m.sortedConns())))
			wroteConns = true
		case "activeVersion", "activeVersionId":
			// the published version still has the origin nodes; n8n rebuilds it on publish
		default:
			o.add(k.String(), json.RawMessage(v.Raw))
		}
		return true
	})
	if !wroteConns {
		o.add("connections", json.RawMessage(marshalNoEscape(m.sortedConns())))
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, []byte(o.String()), "", "  "); err != nil {
		return nil, fmt.Errorf("write migrated workflow: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

func rawSlice(rs []json.RawMessage) [][]byte {
	out := make([][]byte, len(rs))
	for i, r := range rs {
		out[i] = r
	}
	return out
}

// sortedConns drops sources without targets; json.Marshal sorts map keys, so the output is stable.
func (m *migrator) sortedConns() map[string]map[string][][]ConnTarget {
	keys := make([]string, 0, len(m.conns))
	for k := range m.conns {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]map[string][][]ConnTarget, len(keys))
	for _, k := range keys {
		if len(m.conns[k]) > 0 {
			out[k] = m.conns[k]
		}
	}
	return out
}
