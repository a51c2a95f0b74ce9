package workflows

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tidwall/gjson"
)

// ParseIDMap reads an id map file: a JSON object {"<old workflow id>": "<new workflow id>", ...}.
func ParseIDMap(b []byte) (map[string]string, error) {
	if !gjson.ValidBytes(b) || !gjson.ParseBytes(b).IsObject() {
		return nil, fmt.Errorf("id map: expected a JSON object {\"<old workflow id>\": \"<new workflow id>\", ...}, got %s", excerpt(string(b)))
	}
	out := map[string]string{}
	var errs []string
	gjson.ParseBytes(b).ForEach(func(k, v gjson.Result) bool {
		switch {
		case !workflowIDRe.MatchString(k.String()):
			errs = append(errs, fmt.Sprintf("key %q is not a workflow id", k.String()))
		case v.Type != gjson.String || !workflowIDRe.MatchString(v.Str):
			errs = append(errs, fmt.Sprintf("%q maps to %s, which is not a workflow id (a string of letters, digits, '_', '-')", k.String(), excerpt(v.Raw)))
		case v.Str == ScopeGlobal || v.Str == ScopeWorkflow || k.String() == ScopeGlobal || k.String() == ScopeWorkflow:
			errs = append(errs, fmt.Sprintf("%q -> %q: %q and %q are scopes, not workflow ids", k.String(), v.Str, ScopeGlobal, ScopeWorkflow))
		default:
			out[k.String()] = v.Str
		}
		return true
	})
	if len(errs) > 0 {
		return nil, fmt.Errorf("id map: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

// RemapScopes rewrites the call directives of one workflow whose scope is a workflow id in idMap
// to the new id, so that cross-workflow calls keep working when the workflows are imported as new
// ones (n8n gives them new ids), and the workflow's own id when it is in the map. It returns the
// workflow (indented when changed) and one note per change. Only the header's scope changes; the
// rest of the node is kept.
func RemapScopes(raw []byte, idMap map[string]string) ([]byte, []MigrateNote, error) {
	if len(idMap) == 0 {
		return raw, nil, nil
	}
	if !gjson.ValidBytes(raw) {
		return nil, nil, fmt.Errorf("remap: the workflow is not valid JSON")
	}
	root := gjson.ParseBytes(raw)
	var notes []MigrateNote
	var nodes []string
	root.Get("nodes").ForEach(func(_, n gjson.Result) bool {
		nodes = append(nodes, n.Raw)
		if n.Get("type").String() != TypeCode {
			return true
		}
		code := n.Get("parameters.jsCode").String()
		d, err := ParseDirective(n.Get("name").String(), code)
		c, ok := d.(*CallDirective)
		if err != nil || !ok {
			return true
		}
		to, ok := idMap[c.Scope]
		if !ok || to == c.Scope {
			return true
		}
		from := c.Scope
		c.Scope = to
		newCode, err := DirectiveCode(c)
		if err != nil {
			return true
		}
		nodes[len(nodes)-1] = replaceJSCode(n, newCode)
		notes = append(notes, MigrateNote{Node: n.Get("name").String(), Message: fmt.Sprintf("call scope: workflow %s -> %s (id map)", from, to)})
		return true
	})
	// The workflow's own id moves too, so that the converted set is consistent (lint, and an
	// import that keeps ids).
	newID, ownMoved := idMap[root.Get("id").String()]
	if ownMoved {
		notes = append(notes, MigrateNote{Message: fmt.Sprintf("workflow id %s -> %s (id map)", root.Get("id").String(), newID)})
	}
	if len(notes) == 0 {
		return raw, nil, nil
	}
	var o obj
	root.ForEach(func(k, v gjson.Result) bool {
		switch {
		case k.String() == "nodes":
			o.add("nodes", json.RawMessage("["+strings.Join(nodes, ",")+"]"))
		case k.String() == "id" && ownMoved:
			o.add("id", newID)
		default:
			o.add(k.String(), json.RawMessage(v.Raw))
		}
		return true
	})
	var buf bytes.Buffer
	if err := json.Indent(&buf, []byte(o.String()), "", "  "); err != nil {
		return nil, nil, fmt.Errorf("remap: write workflow: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), notes, nil
}

// replaceJSCode returns the node with parameters.jsCode set to code, every other field in place.
func replaceJSCode(n gjson.Result, code string) string {
	var node obj
	n.ForEach(func(k, v gjson.Result) bool {
		if k.String() != "parameters" {
			node.add(k.String(), json.RawMessage(v.Raw))
			return true
		}
		var params obj
		v.ForEach(func(pk, pv gjson.Result) bool {
			if pk.String() == "jsCode" {
				params.add("jsCode", code)
			} else {
				params.add(pk.String(), json.RawMessage(pv.Raw))
			}
			return true
		})
		node.add("parameters", json.RawMessage(params.String()))
		return true
	})
	return node.String()
}
