package main

import (
	"os"
	"strings"
	"testing"

	"github.com/n8n-fn/n8n-fn/runner"
)

// The README's configuration table is what users read; it must not fall behind the binary.
func TestREADMEDocumentsEverySidecarEnvVar(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatalf("read README.md: %v", err)
	}
	for _, v := range runner.EnvVars() {
		if !strings.Contains(string(readme), "| `"+v.Name+"` |") {
			t.Errorf("README.md's configuration table has no row for %s (n8n-fn run --help lists it)", v.Name)
		}
	}
}
