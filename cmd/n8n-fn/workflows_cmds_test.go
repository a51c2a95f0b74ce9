package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/n8n-fn/n8n-fn/workflows"
)

// runCLI runs the command line as main does and returns exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runMain(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestSnippetThenLint(t *testing.T) {
	dir := t.TempDir()
	code, out, stderr := runCLI(t, "snippet", "function", "add", "--param", "a:number:required", "--param", "b:number=0", "--with-return", "--workflow", "Add")
	if code != 0 {
		t.Fatalf("snippet: %d %s", code, stderr)
	}
	f := filepath.Join(dir, "add.json")
	if err := os.WriteFile(f, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, "lint", f)
	if code != 0 || !strings.Contains(out, "1 workflow(s) checked: 0 error(s), 0 warning(s)") {
		t.Fatalf("lint of a snippet: %d\n%s", code, out)
	}
	// paste-ready form: nodes + connections only
	code, out, _ = runCLI(t, "snippet", "call", "add", "--scope", "workflow", "--result-field", "sum")
	var frag struct {
		Nodes       []map[string]any `json:"nodes"`
		Connections map[string]any   `json:"connections"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &frag) != nil || len(frag.Nodes) != 1 || frag.Connections == nil {
		t.Fatalf("call snippet: %d %s", code, out)
	}
	code, out, _ = runCLI(t, "snippet", "return", "--fail", "--message", "nope")
	if code != 0 || !strings.Contains(out, `\"fail\":true,\"message\":\"nope\"`) {
		t.Fatalf("return snippet: %d %s", code, out)
	}
}

func TestSnippetUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"snippet"},
		{"snippet", "bogus"},
		{"snippet", "function"},
		{"snippet", "function", "bad name"},
		{"snippet", "function", "f", "--param", "a:int"},
		{"snippet", "function", "f", "--scope", "everywhere"},
		{"snippet", "call", "f", "--mode", "each"},
		{"snippet", "return", "extra"},
		{"snippet", "return", "--message", "m"},
	} {
		code, _, stderr := runCLI(t, args...)
		if code != 2 || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

func TestLintExitCodesAndJSON(t *testing.T) {
	code, out, _ := runCLI(t, "lint", "--json", "../../workflows/testdata/bad-functions.json", "../../workflows/testdata/function-add.json")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var rep struct {
		Workflows int                 `json:"workflows"`
		Errors    int                 `json:"errors"`
		Findings  []workflows.Finding `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Workflows != 2 || rep.Errors == 0 || len(rep.Findings) < rep.Errors {
		t.Fatalf("%v %+v", err, rep)
	}
	if code, _, _ := runCLI(t, "lint"); code != 2 {
		t.Errorf("no args: exit %d", code)
	}
	if code, _, stderr := runCLI(t, "lint", "no-such-file.json"); code != 1 || !strings.Contains(stderr, "no-such-file.json") {
		t.Errorf("missing file: %d %s", code, stderr)
	}
	t.Setenv("N8N_FN_N8N_API_KEY", "")
	if code, _, stderr := runCLI(t, "lint", "--api"); code != 2 || !strings.Contains(stderr, "N8N_FN_N8N_API_KEY") {
		t.Errorf("--api without key: %d %s", code, stderr)
	}
}

func TestMigrateCommand(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for _, name := range []string{"origin-function.json", "origin-caller.json"} {
		b, err := os.ReadFile(filepath.Join("../../workflows/testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out := filepath.Join(dir, "out")
	code, stdout, stderr := runCLI(t, append([]string{"migrate", "--out", out}, paths...)...)
	// the fixtures hold a Test Trigger and a dynamic call on purpose: exit 1, files written anyway
	if code != 1 || !strings.Contains(stderr, "2 node(s): some nodes could not be converted") || !strings.Contains(stdout, `NOT CONVERTED "Call dynamic"`) {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	migrated, _ := filepath.Glob(filepath.Join(out, "*.json"))
	if len(migrated) != 2 {
		t.Fatalf("written %v", migrated)
	}
	if code, lintOut, _ := runCLI(t, append([]string{"lint"}, migrated...)...); code != 0 {
		t.Errorf("migrated workflows do not lint clean:\n%s", lintOut)
	}
	// inputs untouched
	orig, _ := os.ReadFile("../../workflows/testdata/origin-caller.json")
	now, _ := os.ReadFile(paths[1])
	if !bytes.Equal(orig, now) {
		t.Error("input changed")
	}
	if code, _, stderr := runCLI(t, "migrate", "--out", dir, paths[0]); code != 1 || !strings.Contains(stderr, "refusing to overwrite") {
		t.Errorf("overwrite: %d %s", code, stderr)
	}
	code, stdout, _ = runCLI(t, "migrate", "--stdout", "--global", paths[1])
	if code != 0 || !strings.Contains(stdout, `"name": "Origin: caller"`) {
		t.Errorf("--stdout --global: %d %s", code, stdout)
	}
}
