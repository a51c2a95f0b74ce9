package workflows

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Severity of a lint finding: errors make `n8n-fn lint` exit non-zero.
type Severity string

const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// OriginTypePrefix starts the node types of the origin package (n8n-nodes-function).
const OriginTypePrefix = "n8n-nodes-function."

// Finding is one lint result.
type Finding struct {
	WorkflowID   string   `json:"workflowId,omitempty"`
	WorkflowName string   `json:"workflowName,omitempty"`
	Node         string   `json:"node,omitempty"`
	Severity     Severity `json:"severity"`
	Message      string   `json:"message"`
	Hint         string   `json:"hint,omitempty"`
}

func (f Finding) String() string {
	var b strings.Builder
	if f.WorkflowName != "" || f.WorkflowID != "" {
		fmt.Fprintf(&b, "workflow %q", f.WorkflowName)
		if f.WorkflowID != "" {
			fmt.Fprintf(&b, " (%s)", f.WorkflowID)
		}
		b.WriteString(": ")
	}
	if f.Node != "" {
		fmt.Fprintf(&b, "node %q: ", f.Node)
	}
	fmt.Fprintf(&b, "%s: %s", f.Severity, f.Message)
	if f.Hint != "" {
		fmt.Fprintf(&b, "\n    hint: %s", f.Hint)
	}
	return b.String()
}

// HasErrors reports whether any finding is an error.
func HasErrors(fs []Finding) bool {
	for _, f := range fs {
		if f.Severity == SeverityError {
			return true
		}
	}
	return false
}

// Lint checks one workflow (its JSON as exported or as returned by n8n's API; the draft is
// checked, since that is what the user edits).
func Lint(wf []byte) []Finding {
	w, err := ParseWorkflow(wf)
	if err != nil {
		return []Finding{{Severity: SeverityError, Message: err.Error(), Hint: "pass a workflow exported from n8n (Download) or n8n's API"}}
	}
	return LintWorkflow(w)
}

// LintSet checks several workflows and, across them, global functions defined twice and calls to
// global functions no workflow of the set defines.
func LintSet(wfs [][]byte) []Finding {
	var out []Finding
	var parsed []*Workflow
	for i, b := range wfs {
		w, err := ParseWorkflow(b)
		if err != nil {
			out = append(out, Finding{Severity: SeverityError, Message: fmt.Sprintf("workflow #%d: %v", i+1, err)})
			continue
		}
		parsed = append(parsed, w)
	}
	return append(out, LintWorkflows(parsed)...)
}

// LintWorkflows is LintSet for parsed workflows.
func LintWorkflows(wfs []*Workflow) []Finding {
	var out []Finding
	for _, w := range wfs {
		out = append(out, LintWorkflow(w)...)
	}
	globals, calls := lintSites(wfs)
	out = append(out, duplicateGlobals(globals)...)
	return append(out, unknownCallTargets(wfs, globals, calls)...)
}

// lintSite is a node of one of a set's workflows.
type lintSite struct {
	wf   *Workflow
	node string
}

// lintCall is a call node of a set's workflows.
type lintCall struct {
	lintSite
	d *CallDirective
}

// lintSites are the set's enabled global function nodes by function name, and its enabled call
// nodes, in workflow and node order.
func lintSites(wfs []*Workflow) (map[string][]lintSite, []lintCall) {
	globals := map[string][]lintSite{}
	var calls []lintCall
	for _, w := range wfs {
		for _, n := range w.Nodes {
			d, err := n.Directive()
			if err != nil || d == nil || n.Disabled {
				continue
			}
			switch d := d.(type) {
			case *FunctionDirective:
				if d.Scope == ScopeGlobal {
					globals[d.Name] = append(globals[d.Name], lintSite{w, n.Name})
				}
			case *CallDirective:
				calls = append(calls, lintCall{lintSite{w, n.Name}, d})
			}
		}
	}
	return globals, calls
}

// duplicateGlobals is an error at each global function node whose name another workflow of the set
// defines too, by function name, naming the others.
func duplicateGlobals(globals map[string][]lintSite) []Finding {
	var out []Finding
	fnames := make([]string, 0, len(globals))
	for name := range globals {
		fnames = append(fnames, name)
	}
	sort.Strings(fnames)
	for _, name := range fnames {
		sites := globals[name]
		for _, s := range sites {
			var others []string
			for _, o := range sites {
				if o.wf != s.wf {
					others = append(others, fmt.Sprintf("%s node %q", o.wf.Label(), o.node))
				}
			}
			if len(others) == 0 {
				continue // duplicates inside one workflow are reported by LintWorkflow
			}
			out = append(out, Finding{WorkflowID: s.wf.ID, WorkflowName: s.wf.Name, Node: s.node, Severity: SeverityError,
				Message: fmt.Sprintf("global function %q is also defined in %s", name, strings.Join(others, ", ")),
				Hint:    "a global name must be unique across all published workflows: rename one, or give it \"scope\":\"workflow\""})
		}
	}
	return out
}

// unknownCallTargets warns at calls no workflow of the set can answer: a global function none
// defines, or a workflow id that is not in the set (only when the set has ids to compare with).
func unknownCallTargets(wfs []*Workflow, globals map[string][]lintSite, calls []lintCall) []Finding {
	var out []Finding
	ids := map[string]*Workflow{}
	for _, w := range wfs {
		if w.ID != "" {
			ids[w.ID] = w
		}
	}
	for _, c := range calls {
		switch {
		case c.d.Scope == ScopeGlobal && len(globals[c.d.Function]) == 0:
			out = append(out, Finding{WorkflowID: c.wf.ID, WorkflowName: c.wf.Name, Node: c.node, Severity: SeverityWarning,
				Message: fmt.Sprintf("calls global function %q, which none of the checked workflows defines", c.d.Function),
				Hint:    "check the name; the call fails fast at run time if no published workflow defines it"})
		case c.d.Scope != ScopeGlobal && c.d.Scope != ScopeWorkflow && len(ids) > 0 && ids[c.d.Scope] == nil:
			out = append(out, Finding{WorkflowID: c.wf.ID, WorkflowName: c.wf.Name, Node: c.node, Severity: SeverityWarning,
				Message: fmt.Sprintf("calls %q in workflow %s, which is not among the checked workflows", c.d.Function, c.d.Scope),
				Hint:    "check the workflow id in \"scope\""})
		}
	}
	return out
}

// LintWorkflow checks one parsed workflow: each node on its own, then how its directives relate.
func LintWorkflow(w *Workflow) []Finding {
	l := &workflowLint{w: w, directives: map[string]Directive{}}
	for _, n := range w.Nodes {
		l.node(n)
	}
	localNames := map[string]string{} // scope+name -> first node
	for _, n := range w.Nodes {
		switch d := l.directives[n.Name].(type) {
		case *FunctionDirective:
			key := d.Scope + "/" + d.Name
			if first, dup := localNames[key]; dup {
				l.add(n.Name, SeverityError, fmt.Sprintf("function %q (%s scope) is also defined by node %q in this workflow", d.Name, d.Scope, first),
					"give each function node its own name")
			} else {
				localNames[key] = n.Name
			}
			l.out = append(l.out, lintFunction(w, n, l.directives)...)
		case *ReturnDirective:
			if !hasAncestorOp(w, n, l.directives, OpFunction) {
				l.add(n.Name, SeverityError, "return with no function node upstream: nothing to return to",
					"connect it after a function node (Webhook -> function -> ... -> return)")
			}
		case *CallDirective:
			if d.Scope == ScopeWorkflow && !definesLocal(w, l.directives, d.Function) {
				l.add(n.Name, SeverityWarning, fmt.Sprintf("calls workflow-scoped function %q, which this workflow does not define", d.Function),
					"define it here with \"scope\":\"workflow\", or call the global function (\"scope\":\"global\")")
			}
		}
	}
	return l.out
}

// workflowLint collects the findings of one workflow and its nodes' usable directives (parsed,
// enabled) by node name.
type workflowLint struct {
	w          *Workflow
	directives map[string]Directive
	out        []Finding
}

func (l *workflowLint) add(node string, sev Severity, msg, hint string) {
	l.out = append(l.out, Finding{WorkflowID: l.w.ID, WorkflowName: l.w.Name, Node: node, Severity: sev, Message: msg, Hint: hint})
}

// node checks one node on its own: an origin package node, a header that is not at the start, a
// directive in a Code node set up to run something else, a directive that does not parse, a
// disabled one. A usable directive is kept for the checks across nodes.
func (l *workflowLint) node(n *Node) {
	if strings.HasPrefix(n.Type, OriginTypePrefix) {
		l.add(n.Name, SeverityWarning, fmt.Sprintf("node of the n8n-nodes-function package (%s)", n.Type),
			"convert it with `n8n-fn migrate` (see MIGRATION.md)")
		return
	}
	if !n.IsCode() {
		return
	}
	code := n.Code()
	if !IsDirective(code) {
		if strings.Contains(code, "/* "+Marker) || strings.Contains(code, "/*"+Marker) {
			l.add(n.Name, SeverityWarning, "the code holds an @n8n-fn header but not at its very start, so it runs as ordinary code",
				"move the /* @n8n-fn {...} */ comment to the first line")
		}
		return
	}
	if lang := n.CodeLanguage(); lang != CodeLanguageJS {
		l.add(n.Name, SeverityError, fmt.Sprintf("directive in a Code node whose language is %q", lang), "set Language to JavaScript")
	}
	if mode := n.CodeMode(); mode != CodeModeAllItems {
		l.add(n.Name, SeverityError, fmt.Sprintf("directive in a Code node whose mode is %q", mode), "set Mode to \"Run Once for All Items\"")
	}
	d, err := n.Directive()
	if err != nil {
		l.directiveError(n, err)
		return
	}
	if n.Disabled {
		l.add(n.Name, SeverityWarning, fmt.Sprintf("%s node is disabled", d.DirectiveOp()), "")
		return
	}
	l.directives[n.Name] = d
}

// directiveError reports a header that does not parse: each of its problems when it lists them.
func (l *workflowLint) directiveError(n *Node, err error) {
	var es DirectiveErrors
	if !errors.As(err, &es) {
		l.add(n.Name, SeverityError, err.Error(), "see docs/directives.md")
		return
	}
	for _, e := range es {
		l.add(n.Name, SeverityError, directiveMessage(e), directiveHint(e))
	}
}

func definesLocal(w *Workflow, directives map[string]Directive, name string) bool {
	for _, n := range w.Nodes {
		if f, ok := directives[n.Name].(*FunctionDirective); ok && f.Scope == ScopeWorkflow && f.Name == name {
			return true
		}
	}
	return false
}

func hasAncestorOp(w *Workflow, n *Node, directives map[string]Directive, op string) bool {
	for _, a := range w.Ancestors(n.Name) {
		if d, ok := directives[a.Name]; ok && d.DirectiveOp() == op {
			return true
		}
	}
	return false
}

func lintFunction(w *Workflow, n *Node, directives map[string]Directive) []Finding {
	var out []Finding
	add := func(sev Severity, msg, hint string) {
		out = append(out, Finding{WorkflowID: w.ID, WorkflowName: w.Name, Node: n.Name, Severity: sev, Message: msg, Hint: hint})
	}
	hook, msg := webhookBefore(w, n)
	if hook == nil {
		add(SeverityError, msg, "run `n8n-fn snippet function NAME` and paste its Webhook + function pair")
	} else {
		p := hook.Webhook()
		if p.ResponseMode != ResponseLastNode {
			add(SeverityError, fmt.Sprintf("Webhook node %q responds %q; it must respond \"When Last Node Finishes\"", hook.Name, p.ResponseMode),
				"in the Webhook node set Respond to \"When Last Node Finishes\" (responseMode lastNode), so a failed function is reported at once")
		} else if p.ResponseData != ResponseAll {
			add(SeverityWarning, fmt.Sprintf("Webhook node %q returns %q, not all entries", hook.Name, p.ResponseData),
				"set Response Data to \"All Entries\" (responseData allEntries)")
		}
		if p.Path == "" {
			add(SeverityError, fmt.Sprintf("Webhook node %q has no path", hook.Name), "give it a fixed path, e.g. n8n-fn/global/NAME")
		} else if strings.Contains(p.Path, ":") {
			add(SeverityError, fmt.Sprintf("Webhook node %q has a dynamic path %q", hook.Name, p.Path), "use a fixed path: the dispatcher cannot fill in path parameters")
		}
		if p.Method != "POST" {
			add(SeverityWarning, fmt.Sprintf("Webhook node %q accepts %s; the dispatcher posts the call reference", hook.Name, p.Method), "set HTTP Method to POST")
		}
		if p.Authentication != "none" {
			add(SeverityError, fmt.Sprintf("Webhook node %q requires %s authentication, which the dispatcher does not send", hook.Name, p.Authentication),
				"set Authentication to None: the function node verifies the signed call reference instead")
		}
		for _, o := range w.Downstream(hook.Name) {
			if o.Name != n.Name {
				add(SeverityWarning, fmt.Sprintf("Webhook node %q also feeds node %q, which then runs on every call", hook.Name, o.Name),
					"connect the Webhook only to the function node")
			}
		}
	}
	reaches := false
	for _, dn := range w.Descendants(n.Name) {
		if d, ok := directives[dn.Name]; ok && d.DirectiveOp() == OpReturn {
			reaches = true
			break
		}
	}
	if !reaches {
		add(SeverityWarning, "no return node after this function: callers get \"ended without return\"",
			"end the function body with a return node (`n8n-fn snippet return`)")
	}
	if d, ok := directives[n.Name].(*FunctionDirective); ok && d.Batch != nil {
		out = append(out, lintBatch(w, n, hook)...)
	}
	return out
}

// batchBreaker says why a node type breaks a batch: it combines or drops the items of a whole
// batch, so its output cannot be given back call by call (n8n's lineage of an aggregate names
// every item it aggregates).
func batchBreaker(nodeType string) (string, bool) {
	switch nodeType {
	case "n8n-nodes-base.aggregate":
		return "aggregates the items of every call in the batch into one", true
	case "n8n-nodes-base.summarize":
		return "summarizes the items of every call in the batch into one", true
	case "n8n-nodes-base.itemLists":
		return "can aggregate or limit the items of the whole batch", true
	case "n8n-nodes-base.limit":
		return "keeps the first items of the whole batch, dropping other calls' items", true
	case "n8n-nodes-base.removeDuplicates":
		return "compares items across the calls of the batch", true
	case "n8n-nodes-base.splitInBatches":
		return "loops over the items of the whole batch", true
	case "n8n-nodes-base.merge":
		return "can combine items of different calls (by position, or all combinations)", true
	}
	return "", false
}

// lintBatch warns about what breaks a batching function's one-item-per-call rule: nodes between
// the function and its return that treat the batch as one set of items, nodes that run once for
// the whole batch, and a Webhook that answers before the execution ends.
func lintBatch(w *Workflow, fn *Node, hook *Node) []Finding {
	var out []Finding
	warn := func(node, msg, hint string) {
		out = append(out, Finding{WorkflowID: w.ID, WorkflowName: w.Name, Node: node, Severity: SeverityWarning, Message: msg, Hint: hint})
	}
	if hook != nil && hook.Webhook().ResponseMode != ResponseLastNode {
		warn(fn.Name, "function with batch, but its Webhook does not respond when the last node finishes: its calls are dispatched one by one",
			"set the Webhook's Respond to \"When Last Node Finishes\"")
	}
	for _, dn := range w.Descendants(fn.Name) {
		if dn.Disabled {
			continue
		}
		if why, bad := batchBreaker(dn.Type); bad {
			warn(dn.Name, fmt.Sprintf("in a function with batch, node %q %s", dn.Name, why),
				"a batched execution gets one item per call and every item must derive from one call's item: move this node to the caller, or remove batch")
		}
		if dn.Raw.Get("executeOnce").Bool() {
			warn(dn.Name, fmt.Sprintf("in a function with batch, node %q runs once (\"Execute Once\") for the whole batch, on the first call's item only", dn.Name),
				"turn Execute Once off, or remove batch")
		}
	}
	return out
}

func directiveMessage(e *DirectiveError) string {
	if e.Field == "" {
		return e.Msg
	}
	return fmt.Sprintf("field %q: %s", e.Field, e.Msg)
}

func directiveHint(e *DirectiveError) string {
	switch {
	case strings.Contains(e.Msg, "unknown op"):
		return "the op is one of function, call, return"
	case strings.HasPrefix(e.Field, "params"):
		return `a param is {"name":"a","type":"string|number|boolean|object|array","required":false,"default":...,"description":"..."}`
	case strings.Contains(e.Msg, "does not parse") || strings.Contains(e.Msg, "not closed"):
		return "the header is /* @n8n-fn {...one JSON object...} */; `n8n-fn snippet` prints a correct one"
	}
	return "see docs/directives.md for every field and its allowed values"
}
