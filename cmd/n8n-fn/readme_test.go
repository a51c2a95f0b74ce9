package main

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/n8n-fn/n8n-fn/runner"
)

var updateREADME = flag.Bool("update", false, "rewrite README.md's configuration table from the sidecar's env table")

const (
	envBegin = "<!-- env:begin -->\n"
	envEnd   = "<!-- env:end -->"
)

// The README's configuration table is what users read; it is generated from the same table as
// `n8n-fn run --help`, the defaults and the parsing (runner/env.go), and must not fall behind:
// go test ./cmd/n8n-fn -run TestREADMEConfigurationTable -update rewrites it.
func TestREADMEConfigurationTable(t *testing.T) {
	const path = "../../README.md"
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read README.md: %v", err)
	}
	s := string(readme)
	begin, end := strings.Index(s, envBegin), strings.Index(s, envEnd)
	if begin < 0 || end < begin {
		t.Fatalf("README.md has no %q ... %q block around its configuration table", strings.TrimSpace(envBegin), envEnd)
	}
	got, want := s[begin+len(envBegin):end], runner.EnvMarkdown()
	if got == want {
		return
	}
	if *updateREADME {
		if err := os.WriteFile(path, []byte(s[:begin+len(envBegin)]+want+s[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Errorf("README.md's configuration table differs from the sidecar's (runner/env.go) at row %d:\n README: %s\n   want: %s", i+1, g, w)
			break
		}
	}
	t.Log("run: go test ./cmd/n8n-fn -run TestREADMEConfigurationTable -update")
}

// --help lists every variable with its default, from the same table.
func TestRunHelpListsEveryVariable(t *testing.T) {
	var b strings.Builder
	runUsage(&b)
	for _, v := range runner.EnvVars() {
		if !strings.Contains(b.String(), "  "+v.Name+" ") {
			t.Errorf("n8n-fn run --help does not list %s", v.Name)
		}
	}
	if strings.Contains(b.String(), "`") {
		t.Error("n8n-fn run --help shows markdown backquotes")
	}
}
