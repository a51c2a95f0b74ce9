package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/workflows"
)

// The migration corpus (test-workflows/migration): origin workflows of each n8n-nodes-function
// version with the items the origin gave for an input (derived from its code, the reasoning in each
// case's note). TestMigrationCorpus converts each with its version and runs the converted workflow
// without n8n, node by node:
//
//   - the Edit Fields node the migration put before a call is applied as n8n's Set node 3.4 does
//     (string assignments stringify their value, `_fnParams["k"]` is a lodash path), with the only
//     expressions the corpus uses: {{ $json.<path> }} and {{ null }};
//   - the call: CallDirective.CallParams, then the target function's BindParams, its body, and
//     CallDirective.Shape / ShapeError on what came back;
//   - the Code nodes the migration generated (the Function's code option, the Return's code) run in
//     node as n8n's "Run Once for Each Item" mode would ($json, $input.item, $itemIndex).
//
// The output must equal the origin's items exactly, or, for a case with a knownDifference, match
// them as a replay does (every expected key, extra keys allowed).
//
// With N8N_FN_MIGRATION_OUT=DIR the converted single-workflow suites are also written to DIR
// (workflow + cases), for `n8n-fn replay DIR` on a stack whose sidecars apply the call directive.

const corpusDir = "../../test-workflows/migration"

type corpusCase struct {
	file   string
	origin string
	wfs    [][]byte
	suite  Suite
}

func loadCorpus(t *testing.T) []corpusCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []corpusCase
	for _, f := range files {
		if strings.HasSuffix(f, CasesSuffix) {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var wfs [][]byte
		if v := gjson.ParseBytes(b); v.IsArray() {
			for _, w := range v.Array() {
				wfs = append(wfs, []byte(w.Raw))
			}
		} else {
			wfs = [][]byte{b}
		}
		cb, err := os.ReadFile(strings.TrimSuffix(f, ".json") + CasesSuffix)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var cf casesFile
		dec := json.NewDecoder(strings.NewReader(string(cb)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		base := filepath.Base(f)
		if v, _, ok := strings.Cut(base, "--"); !ok || v != cf.Origin {
			t.Fatalf("%s: the file name must start with its origin version %q and --", f, cf.Origin)
		}
		out = append(out, corpusCase{file: base, origin: cf.Origin, wfs: wfs, suite: Suite{File: base, Description: cf.Description, Origin: cf.Origin, Cases: cf.Cases}})
	}
	if len(out) < 6 {
		t.Fatalf("the corpus has %d workflows files, want at least 6", len(out))
	}
	return out
}

func TestMigrationCorpus(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: the generated Code nodes cannot run")
	}
	// The converted suites are always written (and loaded back as a replay would), to a temporary
	// directory unless N8N_FN_MIGRATION_OUT names one to keep.
	outDir := os.Getenv("N8N_FN_MIGRATION_OUT")
	if outDir == "" {
		outDir = t.TempDir()
	}
	exported := 0
	versions := map[string]bool{}
	for _, cc := range loadCorpus(t) {
		versions[cc.origin] = true
		t.Run(cc.file, func(t *testing.T) {
			ms, err := workflows.Migrate(cc.wfs, workflows.MigrateOptions{Origin: cc.origin})
			if err != nil {
				t.Fatal(err)
			}
			var converted []*workflows.Workflow
			var raws [][]byte
			for _, m := range ms {
				if len(m.Report.Unconverted) > 0 {
					t.Errorf("unconverted: %+v", m.Report.Unconverted)
				}
				w, err := workflows.ParseWorkflow(m.Workflow)
				if err != nil {
					t.Fatal(err)
				}
				converted = append(converted, w)
				raws = append(raws, m.Workflow)
			}
			if fs := workflows.LintSet(raws); workflows.HasErrors(fs) {
				t.Errorf("the converted workflows do not lint clean: %v", fs)
			}
			sim := &simulator{t: t, node: nodeBin, wfs: converted}
			for _, c := range cc.suite.Cases {
				got, err := sim.request(c.Webhook, c.Body)
				if err != nil {
					t.Errorf("case %q: %v", c.Name, err)
					continue
				}
				if c.KnownDifference == "" {
					if !jsonEqual(got, c.Expect) {
						t.Errorf("case %q:\n got  %s\n want %s (the origin's items)", c.Name, got, compact(c.Expect))
					}
				} else if d := Match(c.Expect, got); d != "" {
					t.Errorf("case %q (known difference: %s): %s\n got %s", c.Name, c.KnownDifference, d, got)
				}
			}
			if len(ms) == 1 {
				writeConvertedSuite(t, outDir, cc, ms[0].Workflow)
				exported++
			}
		})
	}
	suites, err := Load(outDir)
	if err != nil || len(suites) != exported {
		t.Errorf("the converted corpus does not load as replay suites: %d of %d, %v", len(suites), exported, err)
	}
	for _, v := range []string{"0.1.1", "0.1.5", "0.1.12", "0.2.1"} {
		if !versions[v] {
			t.Errorf("no corpus workflow for origin %s", v)
		}
	}
}

func writeConvertedSuite(t *testing.T, dir string, cc corpusCase, wf []byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cases, err := json.MarshalIndent(casesFile{Description: cc.suite.Description, Origin: cc.origin, Cases: cc.suite.Cases}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSuffix(cc.file, ".json")
	if err := os.WriteFile(filepath.Join(dir, base+".json"), wf, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, base+CasesSuffix), append(cases, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func compact(b []byte) string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// simulator runs converted workflows the way n8n and the sidecar would, for the node kinds the
// migration writes.
type simulator struct {
	t    *testing.T
	node string
	wfs  []*workflows.Workflow
}

// request runs the workflow whose Webhook serves path with body and returns the items of its last
// node (the Webhook answers "When Last Node Finishes", all entries).
func (s *simulator) request(path string, body json.RawMessage) ([]byte, error) {
	for _, w := range s.wfs {
		for _, n := range w.Nodes {
			if n.IsWebhook() && strings.Trim(n.Param("path").String(), "/") == path {
				// Webhook -> Input (returns the body as the item) -> the converted chain
				in := w.Downstream(n.Name)
				if len(in) != 1 || in[0].Name != "Input" || !strings.Contains(in[0].Code(), "i.json.body") {
					return nil, fmt.Errorf("workflow %s: the Webhook must feed the Input node", w.Label())
				}
				items, err := s.run(w, in[0].Name, []json.RawMessage{compactRaw(body)})
				if err != nil {
					return nil, err
				}
				return json.Marshal(items)
			}
		}
	}
	return nil, fmt.Errorf("no workflow serves %s", path)
}

func compactRaw(b []byte) json.RawMessage { return json.RawMessage(compact(b)) }

// run feeds items to the nodes after `after`, one chain, until a node with no output (or a return
// node, whose input items are the returned ones).
func (s *simulator) run(w *workflows.Workflow, after string, items []json.RawMessage) ([]json.RawMessage, error) {
	for {
		next := w.Downstream(after)
		if len(next) == 0 {
			return items, nil
		}
		if len(next) > 1 {
			return nil, fmt.Errorf("node %q feeds %d nodes; the simulator follows one chain", after, len(next))
		}
		n := next[0]
		var err error
		switch {
		case n.Type == workflows.TypeSet:
			items, err = s.set(n, items)
		case n.IsCode():
			d, derr := n.Directive()
			if derr != nil {
				return nil, derr
			}
			switch d := d.(type) {
			case nil:
				items, err = s.code(n, items)
			case *workflows.CallDirective:
				items, err = s.call(w, n, d, items)
			case *workflows.ReturnDirective:
				return items, nil
			default:
				return nil, fmt.Errorf("node %q: unexpected %s directive", n.Name, d.DirectiveOp())
			}
		default:
			return nil, fmt.Errorf("node %q: the simulator does not run %s nodes", n.Name, n.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("node %q: %w", n.Name, err)
		}
		after = n.Name
	}
}

var lodashKey = regexp.MustCompile(`^([A-Za-z0-9_]+)\[("(?:[^"\\]|\\.)*")\]$`)

// set applies an Edit Fields (Set 3.4) node with "include other fields".
func (s *simulator) set(n *workflows.Node, items []json.RawMessage) ([]json.RawMessage, error) {
	if !n.Param("includeOtherFields").Bool() {
		return nil, errors.New("the simulator only applies Edit Fields nodes that include the other fields")
	}
	out := make([]json.RawMessage, len(items))
	for i, it := range items {
		obj := map[string]any{}
		order := gjsonKeys(it)
		if err := json.Unmarshal(it, &obj); err != nil {
			return nil, err
		}
		for _, a := range n.Param("assignments.assignments").Array() {
			val, err := evalValue(a.Get("value").String(), it)
			if err != nil {
				return nil, err
			}
			switch a.Get("type").String() {
			case "string": // validateEntry: null stays null, objects are JSON-stringified, the rest String(v)
				switch v := val.(type) {
				case nil, string:
				case map[string]any, []any:
					b, _ := json.Marshal(v)
					val = string(b)
				case json.Number:
					val = v.String()
				default:
					val = fmt.Sprint(v)
				}
			case "object":
				if str, ok := val.(string); ok {
					var o map[string]any
					if err := json.Unmarshal([]byte(str), &o); err != nil {
						return nil, fmt.Errorf("object assignment %q: %v", a.Get("name").String(), err)
					}
					val = o
				}
			default:
				return nil, fmt.Errorf("assignment type %q not simulated", a.Get("type").String())
			}
			name := a.Get("name").String()
			if m := lodashKey.FindStringSubmatch(name); m != nil {
				var key string
				if err := json.Unmarshal([]byte(m[2]), &key); err != nil {
					return nil, err
				}
				parent, ok := obj[m[1]].(map[string]any)
				if !ok {
					return nil, fmt.Errorf("assignment %q: %s is not an object yet", name, m[1])
				}
				parent[key] = val
				continue
			}
			if strings.ContainsAny(name, ".[") {
				return nil, fmt.Errorf("assignment name %q not simulated", name)
			}
			if _, ok := obj[name]; !ok {
				order = append(order, name)
			}
			obj[name] = val
		}
		b, err := marshalOrdered(obj, order)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func gjsonKeys(b []byte) []string {
	var keys []string
	gjson.ParseBytes(b).ForEach(func(k, _ gjson.Result) bool { keys = append(keys, k.String()); return true })
	return keys
}

func marshalOrdered(obj map[string]any, order []string) (json.RawMessage, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range order {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(obj[k])
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return json.RawMessage(b.String()), nil
}

var jsonPathExpr = regexp.MustCompile(`^=\{\{\s*\$json\.([A-Za-z0-9_.]+)\s*\}\}$`)

// evalValue evaluates an assignment value: a literal, {{ null }} or {{ $json.path }}.
func evalValue(v string, item json.RawMessage) (any, error) {
	if !strings.HasPrefix(v, "=") {
		return v, nil
	}
	if regexp.MustCompile(`^=\{\{\s*null\s*\}\}$`).MatchString(v) {
		return nil, nil
	}
	m := jsonPathExpr.FindStringSubmatch(v)
	if m == nil {
		return nil, fmt.Errorf("expression %q is not one the simulator evaluates ({{ $json.path }}, {{ null }})", v)
	}
	r := gjson.GetBytes(item, m[1])
	if !r.Exists() {
		return nil, nil // undefined: Set 3.4 writes null
	}
	var out any
	dec := json.NewDecoder(strings.NewReader(r.Raw))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// code runs a generated "Run Once for Each Item" Code node in node.
func (s *simulator) code(n *workflows.Node, items []json.RawMessage) ([]json.RawMessage, error) {
	if n.CodeMode() != "runOnceForEachItem" {
		return nil, fmt.Errorf("the simulator runs only per-item Code nodes (the migration's), not %s", n.CodeMode())
	}
	out := make([]json.RawMessage, len(items))
	for i, it := range items {
		j, err := s.js(n.Code(), it, i)
		if err != nil {
			return nil, err
		}
		out[i] = j
	}
	return out, nil
}

const jsHarness = `
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const $json = input.json;
const $input = { item: { json: $json, binary: {} } };
let out;
try {
  const r = new Function('$json', '$input', '$itemIndex', input.code)($json, $input, input.index);
  out = { ok: true, json: r.json };
} catch (e) {
  out = { ok: false, error: String((e && e.message) || e) };
}
process.stdout.write(JSON.stringify(out));
`

var errJS = errors.New("the Code node threw")

func (s *simulator) js(code string, item json.RawMessage, index int) (json.RawMessage, error) {
	in, _ := json.Marshal(map[string]any{"code": code, "json": item, "index": index})
	cmd := exec.Command(s.node, "-e", jsHarness)
	cmd.Stdin = strings.NewReader(string(in))
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var r struct {
		OK    bool            `json:"ok"`
		JSON  json.RawMessage `json:"json"`
		Error string          `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("node said %s: %w", b, err)
	}
	if !r.OK {
		return nil, fmt.Errorf("%w: %s", errJS, r.Error)
	}
	return r.JSON, nil
}

// call makes one call per input item: params, the function's binding and body, then the shaping.
func (s *simulator) call(w *workflows.Workflow, n *workflows.Node, d *workflows.CallDirective, items []json.RawMessage) ([]json.RawMessage, error) {
	target := d.Target(w.ID)
	fw, fn := s.function(target)
	if fn == nil {
		return nil, fmt.Errorf("no converted workflow defines function %s", target)
	}
	continueOnFail := n.Raw.Get("onError").String() == "continueRegularOutput" || n.Raw.Get("continueOnFail").Bool()
	var out []json.RawMessage
	for _, it := range items {
		returned, callErr := s.invoke(d, fw, fn, it)
		var shaped []workflows.ShapedItem
		var err error
		if callErr != nil {
			if !continueOnFail {
				return nil, callErr
			}
			shaped, err = d.ShapeError([]json.RawMessage{it}, callErr.Error())
		} else {
			shaped, err = d.Shape([]json.RawMessage{it}, returned)
		}
		if err != nil {
			return nil, err
		}
		for _, sh := range shaped {
			out = append(out, sh.JSON)
		}
	}
	return out, nil
}

func (s *simulator) invoke(d *workflows.CallDirective, fw *workflows.Workflow, fn *workflows.Node, item json.RawMessage) ([]json.RawMessage, error) {
	params, err := d.CallParams(item)
	if err != nil {
		return nil, err
	}
	fd, _ := fn.Directive()
	bound, err := fd.(*workflows.FunctionDirective).BindParams(params)
	if err != nil {
		return nil, err
	}
	return s.run(fw, fn.Name, []json.RawMessage{bound})
}

func (s *simulator) function(ref workflows.FunctionRef) (*workflows.Workflow, *workflows.Node) {
	for _, w := range s.wfs {
		for _, n := range w.Nodes {
			if d, err := n.Directive(); err == nil {
				if fd, ok := d.(*workflows.FunctionDirective); ok && fd.Ref(w.ID) == ref {
					return w, n
				}
			}
		}
	}
	return nil, nil
}
