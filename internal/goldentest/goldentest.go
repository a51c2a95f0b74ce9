// Package goldentest compares a test's output with a golden file: the file pins behaviour that a
// change (a refactoring above all) must keep byte for byte.
package goldentest

import (
	"os"
	"testing"
)

// WriteEnv names the variable that makes Check write the golden file instead of comparing with
// it: only for a deliberate change of the output, whose diff is then reviewed.
const WriteEnv = "N8N_FN_WRITE_GOLDEN"

// Check fails t when got differs from the golden file at path (or writes it, see WriteEnv).
func Check(t testing.TB, path, got string) {
	t.Helper()
	if os.Getenv(WriteEnv) != "" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (%s=1 rewrites it):\n%s", path, WriteEnv, got)
	}
}
