package replay

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/n8n-fn/n8n-fn/workflows"
	"github.com/tidwall/gjson"
)

// The bundled suites must load, and every directive in them must parse: a typo there would only
// show up on the live stack otherwise.
func TestBundledSuitesLoadAndParse(t *testing.T) {
	suites, err := Load(filepath.Join("..", "..", "test-workflows"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"basic-function-test.json", "function-caller-test.json", "concurrent-calls-test.json",
		"recursive-function-test.json", "function-chain-test.json"}
	have := map[string]bool{}
	for _, s := range suites {
		have[s.File] = true
		gjson.GetBytes(s.Workflow, "nodes").ForEach(func(_, n gjson.Result) bool {
			if n.Get("type").String() != "n8n-nodes-base.code" {
				return true
			}
			if _, err := workflows.ParseDirective(n.Get("name").String(), n.Get("parameters.jsCode").String()); err != nil {
				t.Errorf("%s: %v", s.File, err)
			}
			return true
		})
		for _, h := range s.Webhooks {
			if !strings.HasPrefix(h, "n8n-fn-test/") {
				t.Errorf("%s: webhook path %q is not under n8n-fn-test/", s.File, h)
			}
		}
	}
	for _, w := range want {
		if !have[w] {
			t.Errorf("suite %s is missing", w)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		want, got string
		ok        bool
	}{
		{`[{"sum":5}]`, `[{"a":2,"b":3,"sum":5}]`, true},
		{`[{"sum":5}]`, `[{"sum":5.0}]`, true},
		{`[{"sum":5}]`, `[{"sum":"5"}]`, false},
		{`[{"sum":5}]`, `[{"sum":5},{"sum":6}]`, false},
		{`{"v":{"a":[1,2]}}`, `{"v":{"a":[1,2],"b":0}}`, true},
		{`{"v":{"a":[1,2]}}`, `{"v":{"a":[2,1]}}`, false},
		{`{"x":null}`, `{"x":null}`, true},
		{`{"x":null}`, `{}`, false},
		{`{"f":false}`, `{"f":false}`, true},
		{`{"f":false}`, `{"f":0}`, false},
	} {
		d := Match([]byte(tc.want), []byte(tc.got))
		if (d == "") != tc.ok {
			t.Errorf("Match(%s, %s) = %q, want ok=%v", tc.want, tc.got, d, tc.ok)
		}
	}
}

func TestLoadRejectsBadCases(t *testing.T) {
	dir := t.TempDir()
	wf := `{"name":"x","nodes":[{"name":"W","type":"n8n-nodes-base.webhook","parameters":{"path":"p"}}],"connections":{}}`
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.json", wf)
	if _, err := Load(dir); !errors.Is(err, ErrSuite) || !strings.Contains(err.Error(), "no cases file") {
		t.Fatalf("no cases file: %v", err)
	}
	write("a.cases.json", `{"cases":[{"name":"c","webhook":"other","expect":{}}]}`)
	if _, err := Load(dir); !errors.Is(err, ErrSuite) || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("unknown webhook: %v", err)
	}
	write("a.cases.json", `{"cases":[{"name":"c","webhook":"p"}]}`)
	if _, err := Load(dir); !errors.Is(err, ErrSuite) || !strings.Contains(err.Error(), "expect or expectError") {
		t.Fatalf("no expectation: %v", err)
	}
	write("a.cases.json", `{"cases":[{"name":"c","webhook":"p","expect":{},"typo":1}]}`)
	if _, err := Load(dir); !errors.Is(err, ErrSuite) || !strings.Contains(err.Error(), "typo") {
		t.Fatalf("unknown field: %v", err)
	}
	write("a.cases.json", `{"cases":[{"name":"c","webhook":"/p/","expect":[]}]}`)
	s, err := Load(dir)
	if err != nil || s[0].Cases[0].Webhook != "p" || s[0].Cases[0].Concurrency != 1 || s[0].Cases[0].Method != "POST" {
		t.Fatalf("defaults: %+v %v", s, err)
	}
}

func TestExecutionErrorMessage(t *testing.T) {
	got := ExecutionErrorMessage([]byte(`{"data":{"resultData":{"error":{"message":"boom","description":"d","node":{"name":"Call"}}}}}`))
	if got != "node Call: boom (d)" {
		t.Fatal(got)
	}
	got = ExecutionErrorMessage([]byte(`{"data":{"resultData":{"runData":{"N":[{"error":{"message":"inner"}}]}}}}`))
	if got != "inner" {
		t.Fatal(got)
	}
}

func TestMaxOverlap(t *testing.T) {
	for _, tc := range []struct {
		body string
		want int
	}{
		{`[{"startedAt":0,"endedAt":10},{"startedAt":5,"endedAt":15},{"startedAt":20,"endedAt":30}]`, 2},
		{`[{"startedAt":0,"endedAt":10},{"startedAt":11,"endedAt":15}]`, 1},
		{`[{"startedAt":0,"endedAt":10},{"startedAt":1,"endedAt":9},{"startedAt":2,"endedAt":8}]`, 3},
		{`[{"x":1}]`, 0},
	} {
		if got := maxOverlap([]byte(tc.body)); got != tc.want {
			t.Errorf("maxOverlap(%s) = %d, want %d", tc.body, got, tc.want)
		}
	}
}
