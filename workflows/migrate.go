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
	// Origin is the origin package's version the workflows ran on ("0.1.5", "0.2.1"); "" detects
	// it from the parameters (see detectEra), which cannot always tell.
	Origin string
	// Typed declares the function params with their origin types, so n8n-fn checks and coerces
	// them; the default declares them "any", as loose as the origin, which never checked types.
	Typed bool
	// IDMap rewrites workflow ids: a call to a workflow-scoped function of workflow X gets the
	// scope IDMap[X] when X is in the map (for workflows imported as new ones, with new ids).
	IDMap map[string]string
}

// Field names the migration generates on both sides of a call.
const (
	// MigrateParamsField holds a converted call's params on the item, between the Edit Fields
	// node and the call (which removes it).
	MigrateParamsField = "_fnParams"
	// MigrateValueField wraps a return value that is not an object.
	MigrateValueField = "_fnValue"
)

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
	// Origin is the origin version whose semantics the conversion reproduces, and how it was chosen.
	Origin string `json:"origin,omitempty"`
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
	name   string // n8n-fn function name
	scope  string // ScopeGlobal or ScopeWorkflow
	params map[string]bool
	forced []string // declared params with a default or required, in order: see callParamsSet
	wfKey  string   // the workflow's key in the run (its id, or #index)
	wfID   string
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
	era, why, err := migrationEra(parsed, opts.Origin)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	keys := workflowKeys(parsed)
	// Decide every function's name and scope first, so calls in other workflows agree.
	funcs := planFunctions(parsed, keys, opts.Global)
	out := make([]Migration, len(wfs))
	for i, b := range wfs {
		m, err := migrateOne(b, parsed[i], keys[i], funcs, opts, era, why)
		if err == nil {
			err = m.remapScopes(opts.IDMap)
		}
		if err != nil {
			return nil, fmt.Errorf("migrate: workflow %s: %w", parsed[i].Label(), err)
		}
		out[i] = m
	}
	return out, nil
}

// migrationEra is the origin version the workflows were written for: the given one, or the one
// their nodes show; why says which.
func migrationEra(parsed []*Workflow, origin string) (OriginEra, string, error) {
	if origin == "" {
		era, why := detectEra(parsed)
		return era, why, nil
	}
	e, err := ParseOriginVersion(origin)
	if err != nil {
		return e, "", err
	}
	return e, "origin " + origin + " (given)", nil
}

// workflowKeys are the workflows' ids, "#index" for one without: files without ids must not share
// one entry.
func workflowKeys(parsed []*Workflow) []string {
	keys := make([]string, len(parsed))
	for i, w := range parsed {
		keys[i] = w.ID
		if keys[i] == "" {
			keys[i] = fmt.Sprintf("#%d", i)
		}
	}
	return keys
}

// planFunctions decides every origin Function node's function: workflow key -> origin node name ->
// decision.
func planFunctions(parsed []*Workflow, keys []string, allGlobal bool) map[string]map[string]migrationFunction {
	funcs := map[string]map[string]migrationFunction{}
	for i, w := range parsed {
		for _, n := range w.Nodes {
			if n.Type != OriginFunction {
				continue
			}
			if funcs[keys[i]] == nil {
				funcs[keys[i]] = map[string]migrationFunction{}
			}
			scope := ScopeWorkflow
			if allGlobal || n.Param("globalFunction").Bool() {
				scope = ScopeGlobal
			}
			declared, forced := originParams(n)
			funcs[keys[i]][n.Name] = migrationFunction{name: SanitizeFunctionName(n.Name), scope: scope, params: declared, forced: forced, wfKey: keys[i], wfID: w.ID}
		}
	}
	return funcs
}

// originParams are the params an origin Function node declares (the first of a name; unnamed ones
// and the call context are not params) and, in order, those with a default or required.
func originParams(n *Node) (declared map[string]bool, forced []string) {
	declared = map[string]bool{}
	for _, p := range n.Param("parameters.parameter").Array() {
		name := p.Get("name").String()
		if name == "" || name == ContextField || declared[name] {
			continue
		}
		declared[name] = true
		if p.Get("required").Bool() || p.Get("defaultValue").String() != "" {
			forced = append(forced, name)
		}
	}
	return declared, forced
}

// remapScopes applies an id map (workflows moved to other ids) to the migrated workflow's calls,
// noting each change as converted.
func (m *Migration) remapScopes(idMap map[string]string) error {
	if len(idMap) == 0 {
		return nil
	}
	b, notes, err := RemapScopes(m.Workflow, idMap)
	if err != nil {
		return err
	}
	if len(notes) > 0 {
		m.Workflow, m.Changed = b, true
		m.Report.Converted = append(m.Report.Converted, notes...)
	}
	return nil
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
	era     OriginEra
	funcs   map[string]map[string]migrationFunction
	report  MigrateReport
	nodes   []json.RawMessage                    // output nodes, in order
	conns   map[string]map[string][][]ConnTarget // output connections
	names   map[string]bool
	changed bool
}

func migrateOne(raw []byte, wf *Workflow, key string, funcs map[string]map[string]migrationFunction, opts MigrateOptions, era OriginEra, why string) (Migration, error) {
	m := &migrator{wf: wf, key: key, opts: opts, era: era, funcs: funcs, names: map[string]bool{},
		report: MigrateReport{WorkflowID: wf.ID, WorkflowName: wf.Name, Origin: era.String() + ": " + why,
			Converted: []MigrateNote{}, Review: []MigrateNote{}, Unconverted: []MigrateNote{}}}
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
	var ignored []string
	for i, p := range n.Param("parameters.parameter").Array() {
		prm, ok, ignoredRules := m.functionParam(n.Name, i, p, seen)
		if !ok {
			continue
		}
		if ignoredRules {
			ignored = append(ignored, prm.Name)
		}
		fn.Params = append(fn.Params, prm)
	}
	if len(ignored) > 0 {
		m.review(n.Name, fmt.Sprintf("origin %s ignored \"required\" and defaults in queue mode: params %s are declared without them, as the origin behaved; add them back to have n8n-fn check them", m.era, strings.Join(ignored, ", ")))
	}
	if len(fn.Params) > 0 && !m.opts.Typed {
		m.review(n.Name, "params are declared with type \"any\" (the origin never checked or converted them; its types only parsed defaults): migrate with --typed, or set the types in the header, to have them checked")
	}
	if m.era != EraParamsOnly {
		m.review(n.Name, "the caller item's binary data no longer reaches the function (the origin copied it onto the function's item); send a reference instead")
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

	m.functionCodeOption(n, fn)
	return nil
}

// functionParam converts the origin's parameter #i of Function node node. ok is false when the
// parameter is dropped (a review line says why); ignoredRules is true when the origin's era ignored
// its "required" flag and default, so they are left out as the origin behaved.
func (m *migrator) functionParam(node string, i int, p gjson.Result, seen map[string]bool) (prm Param, ok, ignoredRules bool) {
	prm = Param{Name: p.Get("name").String(), Type: orString(p.Get("type").String(), TypeString),
		Required: p.Get("required").Bool(), Description: p.Get("description").String()}
	if prm.Name == "" || prm.Name == ContextField || seen[prm.Name] || len(prm.Name) > MaxNameLength {
		m.review(node, fmt.Sprintf("parameter #%d (%q) dropped: empty, reserved, too long or declared twice", i+1, prm.Name))
		return prm, false, false
	}
	seen[prm.Name] = true
	switch prm.Type {
	case TypeString, TypeNumber, TypeBoolean, TypeObject, TypeArray:
	default:
		m.review(node, fmt.Sprintf("parameter %q had type %q; declared as string", prm.Name, prm.Type))
		prm.Type = TypeString
	}
	originType := prm.Type
	if !m.opts.Typed {
		prm.Type = TypeAny
	}
	// The origin checked required params and applied defaults up to 0.1.11; 0.1.12 on, its
	// queue-mode consumer passed the params on as they came.
	applies := m.era == EraMemory || m.era == EraStreams
	dv := p.Get("defaultValue")
	hasDefault := dv.Exists() && dv.String() != ""
	switch {
	case !applies && (prm.Required || hasDefault):
		prm.Required = false
		return prm, true, true
	case prm.Required && hasDefault:
		// the origin checked "required" before it looked at the default: the default never applied
		m.review(node, fmt.Sprintf("parameter %q: required with default %q; the origin failed a call without it (the default never applied), so does n8n-fn", prm.Name, dv.String()))
	case hasDefault:
		d, err := originDefault(originType, dv.String(), m.opts.Typed)
		if err != nil {
			m.review(node, fmt.Sprintf("parameter %q: default %q dropped: %v (the origin passed the raw string on)", prm.Name, dv.String(), err))
		} else {
			prm.Default = d
		}
	}
	return prm, true, false
}

// functionCodeOption converts the Function node's "Code" option (up to 0.1.11 the trigger ran it
// with eval) into a Code node right after the function node, where the origin's era ran it.
func (m *migrator) functionCodeOption(n *Node, fn *FunctionDirective) {
	if !n.Param("enableCode").Bool() || strings.TrimSpace(n.Param("jsCode").String()) == "" {
		return
	}
	if m.era == EraParamsOnly || m.era == EraPrefixed {
		// 0.1.12 dropped the option: a workflow saved by an older version keeps the parameters,
		// but the origin no longer ran the code.
		m.review(n.Name, fmt.Sprintf("its \"Code\" option (up to 0.1.11) was not run by origin %s and is not converted; pass --origin 0.1.x if the workflows ran on a version that ran it", m.era))
		return
	}
	name := m.addNode(n.Name+" code", TypeCode, CodeTypeVersion,
		codeNodeParams("runOnceForEachItem", functionCodeJS(fn.Params, n.Param("jsCode").String())),
		[2]float64{n.Position[0] + nodeSpacing/2, n.Position[1] + 160}, "")
	m.insertAfter(n.Name, name)
	m.converted(n.Name, fmt.Sprintf("its \"Code\" option -> Code node %q after the function node", name))
	m.review(name, "generated from the Function node's code option (it ran with eval inside the trigger): check it, it now runs in n8n's task runner")
}

// originDefault applies the origin's default coercion (Function.node.ts up to 0.1.11): number ->
// Number(s), boolean -> s.toLowerCase() === "true", object/array -> JSON.parse(s) with the raw
// string when that fails, string as is. typed: the value must also fit the declared type (an
// error otherwise); untyped (params of type any), the origin's value is kept whatever it is.
func originDefault(typ, s string, typed bool) (json.RawMessage, error) {
	switch typ {
	case TypeBoolean:
		return json.RawMessage(strconv.FormatBool(strings.ToLower(s) == "true")), nil
	case TypeString:
		return json.RawMessage(marshalNoEscape(s)), nil
	case TypeNumber:
		if f, ok := jsNumber(s); ok {
			return json.RawMessage(strconv.FormatFloat(f, 'g', -1, 64)), nil
		}
		if typed {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		return json.RawMessage("null"), nil // NaN, which JSON (and so n8n's item) holds as null
	}
	if gjson.Valid(s) {
		v := gjson.Parse(s)
		if !typed || (typ == TypeObject && v.IsObject()) || (typ == TypeArray && v.IsArray()) {
			return compactJSON(s), nil
		}
		return nil, fmt.Errorf("not %s %s", article(typ), typ)
	}
	if typed {
		return nil, fmt.Errorf("not valid JSON")
	}
	return json.RawMessage(marshalNoEscape(s)), nil
}

// jsNumber is JavaScript's Number(s) for the strings a default holds: decimal (with exponent),
// 0x/0o/0b integers, Infinity (not finite: false), "" or blanks -> 0.
func jsNumber(s string) (float64, bool) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, true
	}
	if len(t) > 2 && t[0] == '0' && strings.ContainsRune("xXoObB", rune(t[1])) {
		n, err := strconv.ParseInt(t, 0, 64)
		return float64(n), err == nil
	}
	if strings.ContainsAny(t, "_xXpP") || strings.EqualFold(strings.TrimLeft(t, "+-"), "inf") || strings.EqualFold(strings.TrimLeft(t, "+-"), "infinity") || strings.EqualFold(t, "nan") {
		return 0, false // Go accepts forms JavaScript does not (or gives non-finite numbers)
	}
	f, err := strconv.ParseFloat(t, 64)
	return f, err == nil
}

var jsIdent = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*$`)

func functionCodeJS(params []Param, code string) string {
	var names []string
	for _, p := range params {
		if jsIdent.MatchString(p.Name) && p.Name != "item" && p.Name != "console" {
			names = append(names, p.Name)
		}
	}
	var b strings.Builder
	b.WriteString("// n8n-fn migrate: the Function node's \"Code\" option, run once per item. Review it.\n")
	b.WriteString("// As in the origin: params are variables, `item` is the item's json (changes to it are kept),\n")
	b.WriteString("// a returned object is merged into the item, another value is stored as \"result\", an error\n")
	b.WriteString("// as \"_codeError\".\n")
	b.WriteString("const item = { ...$json };\n")
	if len(names) > 0 {
		fmt.Fprintf(&b, "const { %s } = item;\n", strings.Join(names, ", "))
	}
	b.WriteString("let __result;\ntry {\n  __result = (() => {\n")
	b.WriteString(indent(code, "    "))
	b.WriteString("\n  })();\n} catch (error) {\n  return { json: { ...item, _codeError: String((error && error.message) || error) } };\n}\n")
	b.WriteString("if (__result !== null && typeof __result === 'object') return { json: { ...item, ...__result } };\n")
	b.WriteString("if (__result !== undefined) return { json: { ...item, result: __result } };\nreturn { json: item };\n")
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

// call converts a CallFunction node into an Edit Fields (Set) node that puts the call's params
// under MigrateParamsField + a call node that takes them from there and places the result as the
// origin version did.
func (m *migrator) call(n *Node) error {
	fnName := n.Param("functionName")
	if fnName.Type != gjson.String || fnName.Str == "" || strings.HasPrefix(fnName.Str, "=") || strings.HasPrefix(fnName.Str, "__") {
		m.keep(n, fmt.Sprintf("functionName %s is empty or an expression; set the function by hand (`n8n-fn snippet call NAME`)", excerpt(fnName.Raw)))
		return nil
	}
	target := SanitizeFunctionName(fnName.Str)
	scope, def, why := m.callScope(n, fnName.Str)
	if scope == "" {
		m.keep(n, why)
		return nil
	}
	if why != "" {
		m.review(n.Name, why)
	}
	c := &CallDirective{Function: target, Scope: scope, Mode: ModeEachItem, RetryBackoffMs: DefaultRetryBackoffMs, WaitForLiveMs: DefaultWaitForLiveMs,
		ParamsField: MigrateParamsField, ParamsWithItem: m.era != EraParamsOnly, ValueField: MigrateValueField,
		ErrorOutput: ErrorOutputDetails, ErrorField: ContextField,
		// individual values were JSON-parsed one by one; the JSON mode's text is parsed as a whole
		ParseValues: n.Param("parameterMode").String() != "json"}

	// Result placement: Store Response with a variable name stores the value under it (nothing
	// when the value is null); otherwise 0.1.2-0.1.12 merged it into the item and the others
	// dropped it. The origin's test is `storeResponse && responseVariableName && .trim()`.
	resultVar := n.Param("responseVariableName").String()
	if !n.Param("responseVariableName").Exists() {
		resultVar = defaultResultVar
	}
	store := n.Param("storeResponse").Bool() && strings.TrimSpace(resultVar) != ""
	merges := m.era == EraStreams || m.era == EraParamsOnly
	switch {
	case store:
		if resultVar == ContextField || resultVar == MigrateParamsField || strings.Contains(resultVar, ".") || len(resultVar) > MaxNameLength {
			m.review(n.Name, fmt.Sprintf("responseVariableName %q cannot be a result field (no '.', not %s or %s); the result goes under %q instead", resultVar, ContextField, MigrateParamsField, defaultResultVar))
			resultVar = defaultResultVar
		}
		c.ResultField, c.SkipNull = resultVar, true
	case merges:
		c.ResultMode = ResultMerge
	default:
		c.ResultMode = ResultNone
	}
	code, err := DirectiveCode(c)
	if err != nil {
		return fmt.Errorf("node %q: %w", n.Name, err)
	}
	m.replaceNode(n, TypeCode, CodeTypeVersion, CodeParameters(code))
	if target != fnName.Str {
		m.review(n.Name, fmt.Sprintf("calls %q, the migrated name of %q", target, fnName.Str))
	}
	placed := map[string]string{
		ResultField: fmt.Sprintf("result under %q", resultVar),
		ResultMerge: "result merged into the item (Store Response off, origin " + m.era.String() + ")",
		ResultNone:  "result discarded (Store Response off, origin " + m.era.String() + ")",
	}[c.EffectiveResultMode()]
	m.converted(n.Name, fmt.Sprintf("Call Function -> call node (function %q, scope %s, %s)", target, scope, placed))
	m.review(n.Name, "calls now run in parallel per item and fail after the function's timeout (the origin called one item after another and waited forever); error messages are n8n-fn's")

	setParams, count := m.callParamsSet(n, c, def)
	set := m.addNode(n.Name+" params", TypeSet, SetTypeVersion, setParams, [2]float64{n.Position[0] - nodeSpacing/2, n.Position[1] - 160}, "")
	m.insertBefore(n.Name, set)
	m.converted(n.Name, fmt.Sprintf("its %d parameter value(s) -> Edit Fields node %q before the call, under %q (the call sends them and removes the field)", count, set, MigrateParamsField))
	return nil
}

// callScope decides a call's scope and finds the target function when it is in this run: "" and
// a reason when it cannot; a non-empty reason with a scope is a note for review.
func (m *migrator) callScope(n *Node, fnName string) (string, *migrationFunction, string) {
	own, hasOwn := m.funcs[m.key][fnName]
	if m.opts.Global {
		if d := m.findFunction(fnName, false); d != nil {
			return ScopeGlobal, d, ""
		}
		return ScopeGlobal, nil, ""
	}
	if n.Param("globalFunction").Bool() {
		if d := m.findFunction(fnName, true); d != nil {
			return ScopeGlobal, d, ""
		}
		return ScopeGlobal, nil, fmt.Sprintf("no workflow in this run defines the global function %q; the call names it anyway", fnName)
	}
	wfID := n.Param("workflowId")
	if wfID.IsObject() {
		wfID = wfID.Get("value")
	}
	id := wfID.String()
	switch {
	case strings.HasPrefix(id, "="):
		return "", nil, fmt.Sprintf("the target workflow is an expression (%s); set the call's scope by hand", excerpt(id))
	case id == "" && m.era == EraMemory:
		return m.memoryEraScope(fnName, own, hasOwn)
	case id == "" || id == m.wf.ID:
		return m.ownWorkflowScope(id, fnName, own, hasOwn)
	}
	if d, ok := m.funcs[id][fnName]; ok {
		if d.scope == ScopeGlobal {
			return ScopeGlobal, &d, ""
		}
		return id, &d, ""
	}
	if !workflowIDRe.MatchString(id) {
		return "", nil, fmt.Sprintf("target workflow id %q is not an id; set the call's scope by hand", excerpt(id))
	}
	return id, nil, "" // target workflow not in this run: keep addressing it by id
}

// memoryEraScope is callScope for origin 0.1.0/0.1.1 without a target workflow: those found a
// non-global function of that name in any active workflow.
func (m *migrator) memoryEraScope(fnName string, own migrationFunction, hasOwn bool) (string, *migrationFunction, string) {
	// 0.1.0/0.1.1 found a non-global function of that name in any active workflow.
	if hasOwn && own.scope == ScopeWorkflow {
		return ScopeWorkflow, &own, ""
	}
	var found []migrationFunction
	for _, k := range m.sortedFuncKeys() {
		if d, ok := m.funcs[k][fnName]; ok && d.scope == ScopeWorkflow {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		return "", nil, fmt.Sprintf("no workflow in this run defines a non-global function %q (origin 0.1.0/0.1.1 called it in whichever active workflow had it): migrate that workflow in the same run", fnName)
	}
	d := found[0]
	if d.wfID == "" {
		return "", nil, fmt.Sprintf("function %q is defined in a workflow without an id; give it one (export it from n8n) and migrate again", fnName)
	}
	note := ""
	if len(found) > 1 {
		note = fmt.Sprintf("%d workflows define a non-global function %q; the origin called the one activated last, the call now names workflow %s", len(found), fnName, d.wfID)
	}
	return d.wfID, &d, note
}

// ownWorkflowScope is callScope for a call without a target workflow or naming its own.
func (m *migrator) ownWorkflowScope(id, fnName string, own migrationFunction, hasOwn bool) (string, *migrationFunction, string) {
	if id == "" && hasOwn {
		// 0.1.2 on, a call without a workflow failed ("Please select a workflow first.")
		scope := ScopeWorkflow
		if own.scope == ScopeGlobal {
			scope = ScopeGlobal
		}
		return scope, &own, fmt.Sprintf("no target workflow selected: origin %s failed this call every time; it now calls this workflow's %q", m.era, fnName)
	}
	if hasOwn && own.scope == ScopeGlobal {
		return ScopeGlobal, &own, ""
	}
	if id == "" && !hasOwn {
		return "", nil, "no target workflow selected and this workflow defines no function of that name; set the call's scope by hand"
	}
	if hasOwn {
		return ScopeWorkflow, &own, ""
	}
	return ScopeWorkflow, nil, ""
}

// findFunction finds the function of that origin name in the run; global only when asked.
func (m *migrator) findFunction(name string, globalOnly bool) *migrationFunction {
	for _, k := range m.sortedFuncKeys() {
		if d, ok := m.funcs[k][name]; ok && (!globalOnly || d.scope == ScopeGlobal) {
			return &d
		}
	}
	return nil
}

func (m *migrator) sortedFuncKeys() []string {
	keys := make([]string, 0, len(m.funcs))
	for k := range m.funcs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// callParamsSet builds the Edit Fields (Set) node that puts a CallFunction's parameter values
// under MigrateParamsField: individual values as strings (expressions stay n8n expressions; the
// call's parseValues JSON-parses each, as the origin did), or the JSON mode's text (parsed by the
// call). Names the target function does not declare are dropped, as the origin dropped them.
func (m *migrator) callParamsSet(n *Node, c *CallDirective, def *migrationFunction) (json.RawMessage, int) {
	assign := func(name, typ, value string) string {
		var a obj
		a.add("id", m.opts.id())
		a.add("name", name)
		a.add("value", value)
		a.add("type", typ)
		return a.String()
	}
	var assigns []string
	count := 0
	if n.Param("parameterMode").String() == "json" {
		pj := n.Param("parametersJson")
		text := "{}"
		if pj.Exists() {
			text = pj.String()
		}
		assigns = append(assigns, assign(MigrateParamsField, "string", text))
		count = 1
		if m.era == EraMemory || m.era == EraStreams {
			m.review(n.Name, "JSON mode: params the function does not declare now reach the function's item (the origin kept only declared ones), and a declared param missing from the JSON takes the caller item's field of that name (the origin used the default)")
		}
	} else {
		assigns = append(assigns, assign(MigrateParamsField, "object", "{}"))
		var dropped []string
		for _, p := range n.Param("parameters.parameter").Array() {
			name := p.Get("name").String()
			if name == "" || strings.HasPrefix(name, "__") {
				continue // the origin's UI sentinels (__no_params_available__, ...)
			}
			if def != nil && !def.params[name] {
				dropped = append(dropped, name)
				continue
			}
			key, _ := json.Marshal(name)
			assigns = append(assigns, assign(MigrateParamsField+"["+string(key)+"]", "string", p.Get("value").String()))
			count++
		}
		if len(dropped) > 0 {
			m.review(n.Name, fmt.Sprintf("parameters %s dropped: function %q does not declare them (the origin dropped them at run time)", strings.Join(dropped, ", "), def.name))
		}
		// Up to 0.1.11 the function item was {...caller item, ...declared params}, the params
		// bound from what the call passed alone: a declared param the call does not pass got its
		// default (or failed the call when required) even when the caller's item had a field of
		// that name. Passing it as null does the same here. (A declared param without default
		// that the call does not pass was removed from the function's item; here the caller's
		// field of that name, if any, stays.)
		if m.era == EraMemory || m.era == EraStreams {
			if def == nil {
				m.review(n.Name, "the target function is not in this run: a param it declares that the call does not pass takes the caller item's field of the same name (the origin used the default); migrate both workflows together")
			} else {
				passed := map[string]bool{}
				for _, p := range n.Param("parameters.parameter").Array() {
					passed[p.Get("name").String()] = true
				}
				for _, name := range def.forced {
					if !passed[name] {
						key, _ := json.Marshal(name)
						assigns = append(assigns, assign(MigrateParamsField+"["+string(key)+"]", "string", "={{ null }}"))
					}
				}
			}
		}
	}
	var o obj
	o.add("assignments", json.RawMessage(`{"assignments":[`+strings.Join(assigns, ",")+`]}`))
	o.add("includeOtherFields", true)
	o.add("options", json.RawMessage("{}"))
	return json.RawMessage(o.String()), count
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
	name := m.addNode(n.Name+" value", TypeCode, CodeTypeVersion, codeNodeParams("runOnceForEachItem", returnCodeJS(rc.String(), m.era)),
		[2]float64{n.Position[0] - nodeSpacing/2, n.Position[1] - 160}, "")
	m.insertBefore(n.Name, name)
	m.converted(n.Name, fmt.Sprintf("its return code -> Code node %q before the return node", name))
	msg := fmt.Sprintf("generated from the Return node's code (it ran with eval): check it; a value that is not an object is returned as {%q: value}, which migrated calls unwrap (valueField)", MigrateValueField)
	if m.era != EraMemory {
		msg += "; code that throws fails the call (as in the origin), with n8n-fn's message"
	}
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

func returnCodeJS(code string, era OriginEra) string {
	var b strings.Builder
	b.WriteString("// n8n-fn migrate: the Return from Function node's code, run once per item. Review it.\n")
	fmt.Fprintf(&b, "// Its value is normalised as origin %s did, then returned as the item (an object) or as\n", era)
	fmt.Fprintf(&b, "// {%q: value}, which migrated calls unwrap.\n", MigrateValueField)
	b.WriteString("const __run = ($json, $index, $item, $binary) => {\n")
	b.WriteString(indent(code, "  "))
	b.WriteString("\n};\n")
	if era == EraMemory {
		// 0.1.0/0.1.1 stored an error object as the value, and read the value back with `|| null`.
		b.WriteString("let __value;\ntry {\n  __value = __run({ ...$json }, $itemIndex, $input.item, $input.item.binary || {});\n} catch (error) {\n")
		b.WriteString("  __value = { _error: 'Return code execution failed', _errorMessage: error.message, _errorCode: " + jsString(code) + " };\n}\n")
		b.WriteString("__value = __value || null;\n")
	} else {
		// 0.1.2 on: a thrown error failed the call; an object value was copied without _functionCall
		// (`{ ...value }`: an array became {"0": ...}); undefined arrived as nothing, like null.
		b.WriteString("let __value = __run({ ...$json }, $itemIndex, $input.item, $input.item.binary || {});\n")
		b.WriteString("if (__value && typeof __value === 'object') { __value = { ...__value }; delete __value._functionCall; }\n")
		b.WriteString("if (__value === undefined) __value = null;\n")
	}
	b.WriteString("const __json = (__value !== null && typeof __value === 'object' && !Array.isArray(__value)) ? { ...__value } : { " + MigrateValueField + ": __value };\n")
	b.WriteString("if ($json._functionCall !== undefined) __json._functionCall = $json._functionCall; // kept as the origin did (informational)\n")
	b.WriteString("return { json: __json };\n")
	return b.String()
}

func jsString(s string) string {
	b, _ := json.Marshal(s) // a JSON string is a JavaScript string literal
	return string(b)
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
