package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/internal/goldentest"
	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/registry"
)

type cliCmd func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// cliRun is one command line and what it printed: stdout, stderr and the error, with the parts
// that differ from run to run (stream ids, times, node uuids, random webhook path suffixes, the key prefix, temporary paths) replaced.
func cliRun(t *testing.T, b *strings.Builder, name string, cmd cliCmd, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err := cmd(ctx, args, &out, &errOut)
	fmt.Fprintf(b, "=== %s %q\n--- stdout\n%s--- stderr\n%s--- error: %v\n", name, args, out.String(), errOut.String(), err)
}

var (
	streamIDRe = regexp.MustCompile(`\b\d{10,}-\d+\b`)
	uuidRe     = regexp.MustCompile(`\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`)
	wfPathRe   = regexp.MustCompile(`(n8n-fn/workflow/[A-Za-z0-9_.-]+)-[0-9a-f]{8}\b`)
	timeRe     = regexp.MustCompile(`\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
)

// TestCLIGolden pins the snippet, deadletters and chaos commands byte for byte (flag parsing,
// usage texts, every refusal, the output of each action) against testdata/cli.golden, written
// before their functions were split. deadletters runs against a real redis-server; chaos only
// as far as it goes without a stack.
func TestCLIGolden(t *testing.T) {
	var b strings.Builder
	for _, args := range [][]string{
		nil, {"help"}, {"-h"}, {"--help"}, {"nope"}, {"nope", "x"},
		{"function"}, {"function", "add"}, {"function", "--help"}, {"function", "add", "--bogus"},
		{"function", "add", "--param", "a:number:required", "--param", "b:number=0", "--with-return"},
		{"function", "--scope", "workflow", "add", "--timeout", "5000", "--max-concurrency", "2", "--global-concurrency", "3", "--description", "adds"},
		{"function", "add", "--param", "a:int"}, {"function", "add", "--param", "a:number", "--param", "a:string"},
		{"function", "add", "extra"}, {"function", "add", "--workflow", "My WF"}, {"function", "bad name!"},
		{"function", "--timeout", "x", "add"}, {"function", "add", "--scope", "nowhere"},
		{"call"}, {"call", "add"}, {"call", "add", "--scope", "wf_1", "--mode", "allItems", "--timeout", "2000", "--retries", "2", "--backoff", "300",
			"--result-field", "r", "--idempotency-key", "order.id", "--wait-for-live", "100"},
		{"call", "add", "--mode", "sometimes"}, {"call", "--workflow", "W", "add"}, {"call", "add", "b"},
		{"return"}, {"return", "--fail", "--message", "nope"}, {"return", "--message", "m"}, {"return", "x"}, {"return", "--workflow", "R"},
	} {
		cliRun(t, &b, "snippet", snippetCmd, args...)
	}

	srv := redistest.Start(t)
	t.Setenv("N8N_FN_REDIS_URL", srv.URL())
	t.Setenv("N8N_FN_PREFIX", srv.Prefix())
	t.Setenv("N8N_FN_REDIS_BUDGET_BYTES", "")
	reg, err := registry.New(srv.Client(), registry.Config{Prefix: srv.Prefix()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fn := registry.FunctionKey{Scope: registry.ScopeGlobal, Name: "add"}
	if err := reg.EnsureGroup(ctx, fn); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := reg.AddCall(ctx, registry.Call{ID: fmt.Sprintf("call-%d", i), Function: fn, ReplyKey: reg.ReplyKey("caller"),
			Params: json.RawMessage(`{}`), Deadline: time.Now().Add(time.Minute).UTC(), Caller: "caller"}); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := reg.ReadCalls(ctx, "w", []registry.FunctionKey{fn}, 3, 0)
	if err != nil || len(ds) != 3 {
		t.Fatalf("read %d calls: %v", len(ds), err)
	}
	for _, d := range ds {
		if err := reg.DeadLetter(ctx, d, "too many deliveries"); err != nil {
			t.Fatal(err)
		}
	}
	dls, err := reg.ListDeadLetters(ctx, fn, 10)
	if err != nil || len(dls) != 3 {
		t.Fatalf("%d dead letters: %v", len(dls), err)
	}
	for _, args := range [][]string{
		nil, {"--help"}, {"list"}, {"--bogus"}, {"list", "noslash"}, {"list", "global/add", "x"}, {"replay", "global/add"},
		{"replay", "global/add", "a", "b"}, {"purge", "global/add"}, {"purge", "--all", "global/add", "x"}, {"frob", "global/add"},
		{"list", "global/add"}, {"list", "--json", "global/add"}, {"--count", "1", "list", "global/add", "--json"},
		{"list", "global/none"}, {"list", "--json", "global/none"},
		{"replay", "global/add", dls[0].ID}, {"replay", "global/add", "0-1"},
		{"purge", "global/add", dls[1].ID, "0-1"}, {"purge", "global/add", "--all"}, {"list", "global/add"},
	} {
		cliRun(t, &b, "deadletters", deadLettersCmd, args...)
	}
	t.Setenv("N8N_FN_REDIS_BUDGET_BYTES", "x")
	cliRun(t, &b, "deadletters", deadLettersCmd, "list", "global/add")

	dir := t.TempDir()
	writeEnv := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noStackDir := writeEnv("a.env", "N8N_BASE_URL=http://127.0.0.1:1\nN8N_API_KEY=k\nN8N_STACK_RUNNER_KIND=sidecar\n")
	official := writeEnv("b.env", "N8N_BASE_URL=http://127.0.0.1:1\nN8N_API_KEY=k\nN8N_STACK_DIR="+dir+"\nN8N_STACK_RUNNER_KIND=official\n")
	sidecar := writeEnv("c.env", "N8N_BASE_URL=http://127.0.0.1:1\nN8N_API_KEY=k\nN8N_STACK_DIR="+dir+"\nN8N_STACK_RUNNER_KIND=sidecar\n")
	t.Setenv("N8N_FN_CACHE", filepath.Join(dir, "cache"))
	for _, args := range [][]string{
		{"--help"}, {"--bogus"}, {"extra"}, {"--list"}, {"--list", "--short"}, {"--clients", "x"}, {"--period", "1"},
		{}, {"--env", filepath.Join(dir, "absent.env")}, {"--env", noStackDir}, {"--env", official},
		{"--env", sidecar, "--stack-script", filepath.Join(dir, "no-such-script")},
		{"--env", sidecar, "--stack-script", dir},
	} {
		cliRun(t, &b, "chaos", chaosCmd, args...)
	}

	got := strings.ReplaceAll(b.String(), dir, "TMP")
	got = strings.ReplaceAll(got, srv.Prefix(), "<prefix>")
	got = streamIDRe.ReplaceAllString(got, "<stream-id>")
	got = timeRe.ReplaceAllString(got, "<time>")
	got = uuidRe.ReplaceAllString(got, "<uuid>")
	got = wfPathRe.ReplaceAllString(got, "$1-<rand>")
	goldentest.Check(t, "testdata/cli.golden", got)
}
