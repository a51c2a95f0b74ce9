package jsonlimit

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// depthOf is the reference: the nesting depth of valid JSON, read token by token.
func depthOf(t testing.TB, data []byte) int {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	depth, most := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return most
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '[' || d == '{' {
				depth++
				most = max(most, depth)
			} else {
				depth--
			}
		}
	}
}

func TestCheck(t *testing.T) {
	cases := []struct {
		in    string
		depth int // the smallest limit that passes
	}{
		{`1`, 0},
		{`"[[[["`, 0},
		{`[]`, 1},
		{`{"a":[1,{"b":[]}]}`, 4},
		{`["\"[[[", "\\", ["\\\"{"]]`, 2},
		{`{"k\\":"v\"}{{{"}`, 1},
		{`"unterminated [[[[`, 0},
		{`]]]][`, 1}, // stray closers do not make room for more openers
	}
	for _, c := range cases {
		if err := Check([]byte(c.in), c.depth); err != nil {
			t.Errorf("Check(%s, %d) = %v, want nil", c.in, c.depth, err)
		}
		if c.depth == 0 {
			continue
		}
		err := Check([]byte(c.in), c.depth-1)
		var de *DepthError
		if !errors.As(err, &de) || !errors.Is(err, ErrTooDeep) || de.Max != c.depth-1 {
			t.Errorf("Check(%s, %d) = %v, want a DepthError with Max %d", c.in, c.depth-1, err, c.depth-1)
		}
	}
}

func TestCheckMillionsOfBrackets(t *testing.T) {
	deep := strings.Repeat("[", 8<<20)
	err := CheckString(deep, 128)
	var de *DepthError
	if !errors.As(err, &de) || de.Offset != 128 {
		t.Fatalf("CheckString(8 Mi of '[') = %v, want a DepthError at byte 128", err)
	}
	if !strings.Contains(err.Error(), "more than 128 levels") {
		t.Errorf("error %q does not say the limit", err)
	}
}

func BenchmarkCheck(b *testing.B) {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := 0; sb.Len() < 16<<20; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"id":12345,"name":"some \"quoted\" name","tags":["a","b"],"n":{"x":1.5}}`)
	}
	sb.WriteByte(']')
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := Check(data, 128); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{`[]`, `{"a":[1,{"b":[]}]}`, `["\"[[[", "\\", ["\\\"{"]]`, `"\\\\\"["`, `[[[[[[[[`, `{"a":"b\u0022[["}`} {
		f.Add([]byte(s), 3)
	}
	f.Fuzz(func(t *testing.T, data []byte, limit int) {
		limit = (limit%64 + 64) % 64 // 0..63; a negative limit means the same as 0
		err := Check(data, limit)
		if err != nil && !errors.Is(err, ErrTooDeep) {
			t.Fatalf("error %v does not wrap ErrTooDeep", err)
		}
		if !json.Valid(data) {
			return
		}
		if want := depthOf(t, data) <= limit; want != (err == nil) {
			t.Fatalf("Check(%q, %d) = %v, but the depth is %d", data, limit, err, depthOf(t, data))
		}
	})
}
