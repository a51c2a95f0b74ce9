package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// TestMigrateOutFileAndIDMap: the README's form (flags after the file), and a second run that
// rewrites the cross-workflow scopes of already converted workflows for new ids.
func TestMigrateOutFileAndIDMap(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "caller.json")
	b, err := os.ReadFile("../../workflows/testdata/origin-caller.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "caller.migrated.json")
	code, stdout, stderr := runCLI(t, "migrate", in, "-o", out, "--origin", "0.1.5")
	if code != 1 || !strings.Contains(stdout, in+" -> "+out) || !strings.Contains(stdout, "origin       0.1.2-0.1.11: origin 0.1.5 (given)") {
		t.Fatalf("migrate -o: %d\n%s\n%s", code, stdout, stderr)
	}
	wf, err := workflows.ParseWorkflow(mustRead(t, out))
	if err != nil {
		t.Fatal(err)
	}
	c, err := wf.Node("Call Function").Directive()
	if err != nil || c.(*workflows.CallDirective).Scope != "OrigFnWf0000001" {
		t.Fatalf("call %+v %v", c, err)
	}
	// 0.1.5 merged the result when Store Response was off
	if d, _ := wf.Node("Call double").Directive(); d.(*workflows.CallDirective).EffectiveResultMode() != workflows.ResultMerge {
		t.Errorf("call double %+v", d)
	}
	idMap := filepath.Join(dir, "ids.json")
	if err := os.WriteFile(idMap, []byte(`{"OrigFnWf0000001":"NewFnWf00000001"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	remapped := filepath.Join(dir, "caller.remapped.json")
	code, stdout, stderr = runCLI(t, "migrate", "--id-map", idMap, out, "-o", remapped)
	// exit 1: the dynamic call of the fixture is still the origin's node
	if code != 1 || !strings.Contains(stdout, `"Call Function": call scope: workflow OrigFnWf0000001 -> NewFnWf00000001 (id map)`) {
		t.Fatalf("remap: %d\n%s\n%s", code, stdout, stderr)
	}
	wf, err = workflows.ParseWorkflow(mustRead(t, remapped))
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := wf.Node("Call Function").Directive(); c.(*workflows.CallDirective).Scope != "NewFnWf00000001" || c.(*workflows.CallDirective).ParamsField != workflows.MigrateParamsField {
		t.Errorf("remapped call %+v", c)
	}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"migrate", in, "-o", in}, "refusing to overwrite the input"},
		{[]string{"migrate", in, "-o", out, "--out", dir}, "exclude each other"},
		{[]string{"migrate", "--origin", "0.3.0", in}, "expected 0.1.0 .. 0.1.12 or 0.2.0 .. 0.2.1"},
		{[]string{"migrate", "--origin", "0.1.13", in}, "is not a released n8n-nodes-function version"},
		{[]string{"migrate", "--id-map", in, in}, "id map: "},
		{[]string{"migrate", "--api"}, "--api needs --backup DIR"},
		{[]string{"migrate", "--api", "--backup", dir, in}, "no files"},
		{[]string{"migrate", "--dry-run", in}, "only go with --api"},
	} {
		if code, _, stderr := runCLI(t, tc.args...); code == 0 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: %d %s", tc.args, code, stderr)
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMigrateAPIInPlace: --api backs every workflow up before it changes anything, then updates
// the converted ones under their own ids (so calls between them stay right), publishing the ones
// that were published; --dry-run and an existing backup change nothing.
func TestMigrateAPIInPlace(t *testing.T) {
	fn := mustRead(t, "../../workflows/testdata/origin-function.json")
	caller := mustRead(t, "../../workflows/testdata/origin-caller.json")
	plain := []byte(`{"id":"PlainWf000000001","name":"plain","active":false,"nodes":[],"connections":{}}`)
	var mu sync.Mutex
	var calls []string
	puts := map[string][]byte{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/workflows", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-N8N-API-KEY") != "k" {
			w.WriteHeader(401)
			return
		}
		// both origin workflows are published (active), the plain one is not; n8n lists whole workflows
		active := strings.Replace(string(caller), `"name": "Origin: caller",`, `"name": "Origin: caller", "active": true,`, 1)
		// the caller is listed first: the function workflow must still be updated first
		fmt.Fprintf(w, `{"data":[%s,%s,%s],"nextCursor":null}`, active, fn, plain)
	})
	mux.HandleFunc("PUT /api/v1/workflows/{id}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, "PUT "+r.PathValue("id"))
		puts[r.PathValue("id")] = b
		io.WriteString(w, `{}`)
	})
	mux.HandleFunc("POST /api/v1/workflows/{id}/publish", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, "PUBLISH "+r.PathValue("id"))
		io.WriteString(w, `{}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	t.Setenv("N8N_FN_N8N_API_URL", srv.URL)
	t.Setenv("N8N_FN_N8N_API_KEY", "k")

	dry := filepath.Join(t.TempDir(), "dry")
	code, stdout, stderr := runCLI(t, "migrate", "--api", "--backup", dry, "--dry-run", "--origin", "0.1.5")
	if code != 1 || !strings.Contains(stdout, "backed up 3 workflow(s)") || !strings.Contains(stdout, "would update workflow OrigCallerWf001") || len(calls) != 0 {
		t.Fatalf("dry run: %d %v\n%s\n%s", code, calls, stdout, stderr)
	}
	backup := filepath.Join(t.TempDir(), "backup")
	code, stdout, stderr = runCLI(t, "migrate", "--api", "--backup", backup, "--publish", "--origin", "0.1.5")
	if code != 1 || !strings.Contains(stdout, "updated workflow OrigFnWf0000001") {
		t.Fatalf("migrate --api: %d\n%s\n%s", code, stdout, stderr)
	}
	if got := strings.Join(calls, ","); got != "PUT OrigFnWf0000001,PUBLISH OrigFnWf0000001,PUT OrigCallerWf001,PUBLISH OrigCallerWf001" {
		t.Errorf("requests %s", got)
	}
	for _, id := range []string{"OrigFnWf0000001", "OrigCallerWf001", "PlainWf000000001"} {
		b, err := os.ReadFile(filepath.Join(backup, id+".json"))
		if err != nil || !json.Valid(b) || !strings.Contains(string(b), id) {
			t.Errorf("backup of %s: %v", id, err)
		}
	}
	// the update is the converted workflow, writable fields only, calling the function's own id
	var body map[string]json.RawMessage
	if err := json.Unmarshal(puts["OrigCallerWf001"], &body); err != nil || body["id"] != nil || body["active"] != nil {
		t.Fatalf("update body %s", puts["OrigCallerWf001"])
	}
	wf, err := workflows.ParseWorkflow(puts["OrigCallerWf001"])
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := wf.Node("Call Function").Directive(); d == nil || d.(*workflows.CallDirective).Scope != "OrigFnWf0000001" {
		t.Errorf("call %+v", d)
	}
	// a second run into the same backup directory refuses before changing anything
	calls = nil
	if code, _, stderr := runCLI(t, "migrate", "--api", "--backup", backup); code == 0 || !strings.Contains(stderr, "nothing was changed") || len(calls) != 0 {
		t.Errorf("second run: %d %v %s", code, calls, stderr)
	}
}
