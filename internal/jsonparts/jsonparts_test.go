package jsonparts

import (
	"bytes"
	"strings"
	"testing"
)

// The parts make the text written, big values are the caller's own bytes and small ones copies.
func TestBuilderCutsAroundBigValues(t *testing.T) {
	big := []byte(strings.Repeat("b", 10))
	small := []byte(`"s"`)
	b := NewBuilder(64, 10)
	b.Glue("[")
	b.Value(small)
	b.Glue(",")
	b.Value(big)
	b.Glue(",")
	b.Value(nil)
	b.Glue(",")
	b.Int(-42)
	b.Glue(",")
	b.Value(big)
	b.Value(big)
	b.Glue("]")
	parts := b.Parts()
	want := `["s",` + string(big) + `,null,-42,` + string(big) + string(big) + `]`
	if got := string(bytes.Join(parts, nil)); got != want {
		t.Fatalf("parts make %s, want %s", got, want)
	}
	if len(parts) != 6 || &parts[1][0] != &big[0] || &parts[3][0] != &big[0] || &parts[4][0] != &big[0] {
		t.Fatalf("big values are not parts of their own: %q", parts)
	}
	if &parts[0][0] == &small[0] {
		t.Fatal("a small value is not copied")
	}
	if SmallLen(10, 10) != 0 || SmallLen(0, 10) != 4 || SmallLen(9, 10) != 9 {
		t.Fatal("SmallLen")
	}
	// A buffer sized too small still gives the right text.
	b = NewBuilder(1, 100)
	for range 100 {
		b.Glue("ab")
		b.Value(big)
	}
	if got := string(bytes.Join(b.Parts(), nil)); got != strings.Repeat("ab"+string(big), 100) {
		t.Fatal("a builder whose buffer grew lost text")
	}
}
