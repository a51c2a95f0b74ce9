package workflows

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tidwall/gjson"
)

// n8n node types n8n-fn cares about.
const (
	TypeWebhook      = "n8n-nodes-base.webhook"
	TypeCode         = "n8n-nodes-base.code"
	CodeLanguageJS   = "javaScript"
	CodeModeAllItems = "runOnceForAllItems"
	ResponseLastNode = "lastNode"
	ResponseAll      = "allEntries"
	connectionMain   = "main"
)

// ErrWorkflow is wrapped when bytes are not n8n workflow JSON.
var ErrWorkflow = errors.New("not an n8n workflow")

// Node is one node of a workflow.
type Node struct {
	ID          string
	Name        string
	Type        string
	TypeVersion float64
	Position    [2]float64
	Disabled    bool
	WebhookID   string
	Parameters  gjson.Result // the "parameters" object (may not exist)
	Raw         gjson.Result // the whole node object
}

// Param reads a parameter by gjson path.
func (n *Node) Param(path string) gjson.Result { return n.Parameters.Get(path) }

func (n *Node) paramString(path, def string) string {
	v := n.Param(path)
	if v.Type != gjson.String {
		return def // n8n omits parameters left at their default in saved JSON
	}
	return v.Str
}

// IsCode reports whether n is an n8n Code node.
func (n *Node) IsCode() bool { return n.Type == TypeCode }

// IsWebhook reports whether n is an n8n Webhook node.
func (n *Node) IsWebhook() bool { return n.Type == TypeWebhook }

// Code is a Code node's JavaScript (parameters.jsCode), or "" for other nodes.
func (n *Node) Code() string {
	if !n.IsCode() {
		return ""
	}
	return n.Param("jsCode").String()
}

// CodeLanguage is the Code node's language, with n8n's default (javaScript) when not saved.
func (n *Node) CodeLanguage() string { return n.paramString("language", CodeLanguageJS) }

// CodeMode is the Code node's mode, with n8n's default (runOnceForAllItems) when not saved.
func (n *Node) CodeMode() string { return n.paramString("mode", CodeModeAllItems) }

// Directive parses a Code node's directive: (nil, nil) for other nodes and plain Code nodes.
func (n *Node) Directive() (Directive, error) {
	if !n.IsCode() {
		return nil, nil
	}
	return ParseDirective(n.Name, n.Code())
}

// WebhookParams are the Webhook node parameters n8n-fn uses, with n8n's defaults filled in.
type WebhookParams struct {
	Path           string // without leading/trailing '/'
	Method         string // upper case; POST when several methods are allowed and POST is one
	ResponseMode   string // onReceived (n8n's default), lastNode, responseNode, streaming
	ResponseData   string // firstEntryJson (n8n's default), allEntries, firstEntryBinary, noData
	Authentication string // none (default), basicAuth, headerAuth, jwtAuth
}

// Webhook reads a Webhook node's parameters.
func (n *Node) Webhook() WebhookParams {
	w := WebhookParams{
		Path:           strings.Trim(n.paramString("path", ""), "/"),
		Method:         "GET",
		ResponseMode:   n.paramString("responseMode", "onReceived"),
		ResponseData:   n.paramString("responseData", "firstEntryJson"),
		Authentication: n.paramString("authentication", "none"),
	}
	switch m := n.Param("httpMethod"); {
	case m.Type == gjson.String && m.Str != "":
		w.Method = strings.ToUpper(m.Str)
	case m.IsArray() && len(m.Array()) > 0:
		w.Method = strings.ToUpper(m.Array()[0].String())
		for _, x := range m.Array() {
			if strings.EqualFold(x.String(), "POST") {
				w.Method = "POST"
			}
		}
	}
	return w
}

// Connection is one edge of the workflow graph.
type Connection struct {
	From       string
	FromOutput int
	To         string
	ToInput    int
	Type       string // "main" for data; "ai_*" for AI sub-nodes
}

// Workflow is an n8n workflow as exported by the editor or returned by the public API.
type Workflow struct {
	ID          string
	Name        string
	Active      bool
	Nodes       []*Node
	Connections []Connection
	byName      map[string]*Node
}

// ParseWorkflow reads one workflow object (top-level nodes and connections: the draft).
func ParseWorkflow(b []byte) (*Workflow, error) {
	if !gjson.ValidBytes(b) {
		return nil, fmt.Errorf("%w: invalid JSON", ErrWorkflow)
	}
	return parseWorkflow(gjson.ParseBytes(b), false)
}

// ParsePublished reads one workflow from n8n's API and uses its published version
// (activeVersion.nodes/connections) when there is one: that is what n8n runs.
func ParsePublished(b []byte) (*Workflow, error) {
	if !gjson.ValidBytes(b) {
		return nil, fmt.Errorf("%w: invalid JSON", ErrWorkflow)
	}
	return parseWorkflow(gjson.ParseBytes(b), true)
}

// ParseWorkflows reads a file holding one workflow, an array of workflows (n8n export:workflow
// --all) or an API list page ({"data":[...]}).
func ParseWorkflows(b []byte) ([]*Workflow, error) {
	if !gjson.ValidBytes(b) {
		return nil, fmt.Errorf("%w: invalid JSON", ErrWorkflow)
	}
	v := gjson.ParseBytes(b)
	var list []gjson.Result
	switch {
	case v.IsArray():
		list = v.Array()
	case v.IsObject() && v.Get("data").IsArray() && !v.Get("nodes").Exists():
		list = v.Get("data").Array()
	default:
		list = []gjson.Result{v}
	}
	out := make([]*Workflow, 0, len(list))
	for i, w := range list {
		wf, err := parseWorkflow(w, false)
		if err != nil {
			if len(list) > 1 {
				return nil, fmt.Errorf("workflow #%d: %w", i+1, err)
			}
			return nil, err
		}
		out = append(out, wf)
	}
	return out, nil
}

func parseWorkflow(v gjson.Result, published bool) (*Workflow, error) {
	if !v.IsObject() {
		return nil, fmt.Errorf("%w: expected a JSON object with \"nodes\" and \"connections\"", ErrWorkflow)
	}
	src := v
	if av := v.Get("activeVersion"); published && av.IsObject() && av.Get("nodes").IsArray() {
		src = av
	}
	nodes := src.Get("nodes")
	if !nodes.IsArray() {
		return nil, fmt.Errorf("%w: no \"nodes\" array", ErrWorkflow)
	}
	wf := &Workflow{ID: v.Get("id").String(), Name: v.Get("name").String(), Active: v.Get("active").Bool(), byName: map[string]*Node{}}
	var problems []string
	for i, nv := range nodes.Array() {
		n := &Node{
			ID: nv.Get("id").String(), Name: nv.Get("name").String(), Type: nv.Get("type").String(),
			TypeVersion: nv.Get("typeVersion").Float(), Disabled: nv.Get("disabled").Bool(),
			WebhookID: nv.Get("webhookId").String(), Parameters: nv.Get("parameters"), Raw: nv,
		}
		if p := nv.Get("position").Array(); len(p) == 2 {
			n.Position = [2]float64{p[0].Float(), p[1].Float()}
		}
		switch {
		case !nv.IsObject():
			problems = append(problems, fmt.Sprintf("nodes[%d] is not an object", i))
			continue
		case n.Name == "":
			problems = append(problems, fmt.Sprintf("nodes[%d] has no name", i))
			continue
		case wf.byName[n.Name] != nil:
			problems = append(problems, fmt.Sprintf("two nodes are named %q", n.Name))
			continue
		}
		wf.Nodes = append(wf.Nodes, n)
		wf.byName[n.Name] = n
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrWorkflow, strings.Join(problems, "; "))
	}
	src.Get("connections").ForEach(func(from, byType gjson.Result) bool {
		byType.ForEach(func(typ, outputs gjson.Result) bool {
			for out, targets := range outputs.Array() {
				for _, t := range targets.Array() { // a null output holds no targets
					wf.Connections = append(wf.Connections, Connection{
						From: from.String(), FromOutput: out, To: t.Get("node").String(),
						ToInput: int(t.Get("index").Int()), Type: typ.String(),
					})
				}
			}
			return true
		})
		return true
	})
	return wf, nil
}

// Node returns the node with that name, or nil.
func (w *Workflow) Node(name string) *Node { return w.byName[name] }

// Label names the workflow for messages: "name" (id).
func (w *Workflow) Label() string {
	switch {
	case w.ID != "" && w.Name != "":
		return fmt.Sprintf("%q (%s)", w.Name, w.ID)
	case w.Name != "":
		return fmt.Sprintf("%q", w.Name)
	case w.ID != "":
		return w.ID
	}
	return "(unnamed workflow)"
}

// Upstream lists the nodes with a main connection into name, once each, in connection order.
func (w *Workflow) Upstream(name string) []*Node {
	return w.neighbours(name, func(c Connection) (string, string) { return c.To, c.From })
}

// Downstream lists the nodes name has a main connection to, once each, in connection order.
func (w *Workflow) Downstream(name string) []*Node {
	return w.neighbours(name, func(c Connection) (string, string) { return c.From, c.To })
}

func (w *Workflow) neighbours(name string, ends func(Connection) (self, other string)) []*Node {
	var out []*Node
	seen := map[string]bool{}
	for _, c := range w.Connections {
		if c.Type != connectionMain {
			continue
		}
		self, other := ends(c)
		if self != name || seen[other] {
			continue
		}
		seen[other] = true
		if n := w.byName[other]; n != nil {
			out = append(out, n)
		}
	}
	return out
}

// Ancestors lists every node from which name can be reached over main connections (not name
// itself unless it is on a loop), nearest first.
func (w *Workflow) Ancestors(name string) []*Node { return w.walk(name, w.Upstream) }

// Descendants lists every node reachable from name over main connections, nearest first.
func (w *Workflow) Descendants(name string) []*Node { return w.walk(name, w.Downstream) }

// walk is a breadth-first search from name along next (Upstream or Downstream).
func (w *Workflow) walk(name string, next func(string) []*Node) []*Node {
	var out []*Node
	seen := map[string]bool{}
	queue := []string{name}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, n := range next(cur) {
			if seen[n.Name] {
				continue
			}
			seen[n.Name] = true
			out = append(out, n)
			queue = append(queue, n.Name)
		}
	}
	return out
}
