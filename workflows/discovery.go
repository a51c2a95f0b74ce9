package workflows

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tidwall/gjson"
)

// FunctionDef is one function found in a published workflow: what the registry and the
// dispatcher need to route calls to it.
type FunctionDef struct {
	Ref           FunctionRef // registry identity (scope "global" or the workflow id, and name)
	WorkflowID    string
	WorkflowName  string
	Node          string // the function Code node
	Function      *FunctionDirective
	WebhookNode   string
	WebhookPath   string // relative to n8n's webhook base URL (N8N_FN_WEBHOOK_URL)
	WebhookMethod string
	// LastNodeResponse: the Webhook answers when the execution ends, so the dispatcher learns about
	// a function that failed or never reached return at once.
	LastNodeResponse bool
	// Conflicts lists the other definitions of the same function ("<workflow name> (<id>) node
	// <node>"): a name defined twice is ambiguous, and calls to it fail until one is renamed,
	// made workflow-scoped or unpublished.
	Conflicts []string
}

// Problem is something discovery could not use or had to choose around.
type Problem struct {
	WorkflowID   string `json:"workflowId,omitempty"`
	WorkflowName string `json:"workflowName,omitempty"`
	Node         string `json:"node,omitempty"`
	Message      string `json:"message"`
	// Skipped: the function was not registered because of this problem.
	Skipped bool `json:"skipped"`
}

func (p Problem) String() string {
	var b strings.Builder
	if p.WorkflowName != "" || p.WorkflowID != "" {
		fmt.Fprintf(&b, "workflow %q (%s)", p.WorkflowName, p.WorkflowID)
	}
	if p.Node != "" {
		fmt.Fprintf(&b, " node %q", p.Node)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Discover finds every function defined in the given workflows (their JSON as n8n's public API
// returns them; the published version is used when there is one). The caller fetches only
// published workflows; workflows marked "active":false or "isArchived":true are skipped anyway. Results are sorted by ref. Duplicates (two global functions with one name,
// or two functions with one name in one workflow) keep the one from the lowest workflow id and
// node name, so every sidecar picks the same, and report the others as skipped problems.
func Discover(wfs [][]byte) ([]FunctionDef, []Problem) {
	var defs []FunctionDef
	var problems []Problem
	for i, b := range wfs {
		wf, err := ParsePublished(b)
		if err != nil {
			problems = append(problems, Problem{Message: fmt.Sprintf("workflow #%d: %v", i+1, err), Skipped: true})
			continue
		}
		// n8n serves no webhook of an archived or unpublished workflow; workflow files without
		// these fields (exports, bundled test workflows) count as published.
		if v := gjson.GetBytes(b, "isArchived"); v.Bool() {
			continue
		}
		if v := gjson.GetBytes(b, "active"); v.Exists() && !v.Bool() {
			continue
		}
		d, p := discoverWorkflow(wf)
		defs = append(defs, d...)
		problems = append(problems, p...)
	}
	sort.SliceStable(defs, func(i, j int) bool {
		a, b := defs[i], defs[j]
		if a.Ref != b.Ref {
			return a.Ref.String() < b.Ref.String()
		}
		if a.WorkflowID != b.WorkflowID {
			return a.WorkflowID < b.WorkflowID
		}
		return a.Node < b.Node
	})
	out := defs[:0]
	for i, d := range defs {
		if i > 0 && defs[i-1].Ref == d.Ref {
			first := &out[len(out)-1]
			problems = append(problems, Problem{
				WorkflowID: d.WorkflowID, WorkflowName: d.WorkflowName, Node: d.Node, Skipped: true,
				Message: fmt.Sprintf("function %s is also defined in workflow %q (%s) node %q: the name is ambiguous and calls to it fail; rename one of them or make it workflow-scoped",
					d.Ref.Display(), first.WorkflowName, first.WorkflowID, first.Node),
			})
			first.Conflicts = append(first.Conflicts, fmt.Sprintf("%q (%s) node %q", d.WorkflowName, d.WorkflowID, d.Node))
			continue
		}
		out = append(out, d)
	}
	return out, problems
}

func discoverWorkflow(wf *Workflow) ([]FunctionDef, []Problem) {
	var defs []FunctionDef
	var problems []Problem
	problem := func(node, msg string, skipped bool) {
		problems = append(problems, Problem{WorkflowID: wf.ID, WorkflowName: wf.Name, Node: node, Message: msg, Skipped: skipped})
	}
	for _, n := range wf.Nodes {
		if !n.IsCode() || n.Disabled || !IsDirective(n.Code()) {
			continue
		}
		d, err := n.Directive()
		if err != nil {
			if h, herr := ParseHeader(n.Code()); herr == nil && h != nil && h.Op == OpFunction {
				problem(n.Name, err.Error(), true)
			}
			continue
		}
		fn, ok := d.(*FunctionDirective)
		if !ok {
			continue
		}
		if wf.ID == "" && fn.Scope == ScopeWorkflow {
			problem(n.Name, "a workflow-scoped function needs the workflow's id; this workflow JSON has none", true)
			continue
		}
		hook, msg := webhookBefore(wf, n)
		if hook == nil {
			problem(n.Name, msg, true)
			continue
		}
		w := hook.Webhook()
		switch {
		case w.Path == "":
			problem(n.Name, fmt.Sprintf("Webhook node %q has no path", hook.Name), true)
			continue
		case strings.Contains(w.Path, ":"):
			problem(n.Name, fmt.Sprintf("Webhook node %q has a dynamic path %q; the dispatcher needs a fixed path", hook.Name, w.Path), true)
			continue
		}
		if w.ResponseMode != ResponseLastNode {
			problem(n.Name, fmt.Sprintf("Webhook node %q responds %q, not \"When Last Node Finishes\" (lastNode): a failed function is only noticed at the caller's timeout", hook.Name, w.ResponseMode), false)
		}
		defs = append(defs, FunctionDef{
			Ref: fn.Ref(wf.ID), WorkflowID: wf.ID, WorkflowName: wf.Name, Node: n.Name, Function: fn,
			WebhookNode: hook.Name, WebhookPath: w.Path, WebhookMethod: w.Method,
			LastNodeResponse: w.ResponseMode == ResponseLastNode,
		})
	}
	return defs, problems
}

// webhookBefore returns the Webhook node that directly and only feeds the function node n, or a
// message saying what is wrong.
func webhookBefore(wf *Workflow, n *Node) (*Node, string) {
	up := wf.Upstream(n.Name)
	switch {
	case len(up) == 0:
		return nil, "no Webhook node right before this function node (connect Webhook -> function)"
	case len(up) > 1:
		names := make([]string, len(up))
		for i, u := range up {
			names[i] = fmt.Sprintf("%q", u.Name)
		}
		return nil, fmt.Sprintf("the function node has several inputs (%s); it must have exactly one, a Webhook node", strings.Join(names, ", "))
	case !up[0].IsWebhook():
		return nil, fmt.Sprintf("node %q (%s) is right before the function node; it must be a Webhook node", up[0].Name, up[0].Type)
	case up[0].Disabled:
		return nil, fmt.Sprintf("Webhook node %q is disabled", up[0].Name)
	}
	return up[0], ""
}
