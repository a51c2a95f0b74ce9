package workflows

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/n8n-fn/n8n-fn/internal/goldentest"
)

// lintGoldenSet is a set of workflows between which every finding of LintWorkflow and
// LintWorkflows occurs at least once.
func lintGoldenSet() [][]byte {
	code := func(name, js string, extra string) string {
		return fmt.Sprintf(`{"name":%q,"type":"n8n-nodes-base.code","typeVersion":2%s,"parameters":{"jsCode":%q}}`, name, extra, js)
	}
	hdr := func(j string) string { return "/* @n8n-fn " + j + " */\nreturn [];" }
	w1 := `{"id":"W1","name":"One","nodes":[` + strings.Join([]string{
		`{"name":"origin fn","type":"n8n-nodes-function.function","parameters":{}}`,
		code("misplaced", "const x = 1;\n/* @n8n-fn {\"op\":\"return\"} */", ""),
		code("misplaced tight", "x;/*@n8n-fn {}*/", ""),
		code("plain", "return [];", ""),
		code("python", hdr(`{"op":"call","function":"G"}`), `,"parameters":{"language":"python"}`),
		`{"name":"python real","type":"n8n-nodes-base.code","typeVersion":2,"parameters":{"language":"pythonNative","jsCode":` + fmt.Sprintf("%q", hdr(`{"op":"call","function":"G"}`)) + `}}`,
		`{"name":"each","type":"n8n-nodes-base.code","typeVersion":2,"parameters":{"mode":"runOnceForEachItem","jsCode":` + fmt.Sprintf("%q", hdr(`{"op":"call","function":"G"}`)) + `}}`,
		code("several problems", hdr(`{"op":"function","name":"","params":[{"name":"a","type":"int"}]}`), ""),
		code("broken", "/* @n8n-fn {nope */", ""),
		code("off", hdr(`{"op":"call","function":"G"}`), `,"disabled":true`),
		code("local a", hdr(`{"op":"function","name":"f","scope":"workflow"}`), ""),
		code("local b", hdr(`{"op":"function","name":"f","scope":"workflow"}`), ""),
		code("global g", hdr(`{"op":"function","name":"G"}`), ""),
		code("lonely return", hdr(`{"op":"return"}`), ""),
		code("call local missing", hdr(`{"op":"call","function":"nope","scope":"workflow"}`), ""),
		code("call local ok", hdr(`{"op":"call","function":"f","scope":"workflow"}`), ""),
		code("call global missing", hdr(`{"op":"call","function":"Missing"}`), ""),
		code("call other wf", hdr(`{"op":"call","function":"x","scope":"W9"}`), ""),
		code("call known wf", hdr(`{"op":"call","function":"x","scope":"W2"}`), ""),
	}, ",") + `],"connections":{}}`
	w2 := `{"id":"W2","name":"Two","nodes":[` + code("global g again", hdr(`{"op":"function","name":"G"}`), "") + `,` +
		code("global g thrice", hdr(`{"op":"function","name":"G"}`), "") + `,` +
		code("global h", hdr(`{"op":"function","name":"H"}`), "") + `],"connections":{}}`
	w3 := `{"name":"No id","nodes":[` + code("global g four", hdr(`{"op":"function","name":"G"}`), "") + `,` +
		code("off g", hdr(`{"op":"function","name":"G"}`), `,"disabled":true`) + `],"connections":{}}`
	return [][]byte{[]byte(w1), []byte(w2), []byte(w3), []byte(`{"nodes":5}`)}
}

// TestLintGolden pins the findings, word for word and in order, of LintSet over lintGoldenSet and
// over every bundled test workflow (one set per directory), against testdata/lint.golden (written
// before LintWorkflows and LintWorkflow were split).
func TestLintGolden(t *testing.T) {
	var got strings.Builder
	write := func(title string, fs []Finding) {
		fmt.Fprintf(&got, "== %s: %d findings\n", title, len(fs))
		for _, f := range fs {
			got.WriteString(f.String() + "\n")
		}
	}
	write("lintGoldenSet", LintSet(lintGoldenSet()))
	for _, dir := range []string{"../test-workflows", "../test-workflows/migration", "testdata"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		sort.Strings(files)
		var set [][]byte
		for _, f := range files {
			if strings.HasSuffix(f, ".cases.json") { // replay cases, not workflows
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			set = append(set, b)
			write(f, Lint(b))
		}
		write(dir+" as a set", LintSet(set))
	}
	goldentest.Check(t, "testdata/lint.golden", got.String())
}
