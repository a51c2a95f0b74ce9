// Package jsonlimit bounds the nesting depth of JSON text before anything recursive reads it.
//
// gjson.Valid and Go's recursive decoders descend one stack frame per nesting level: a payload of
// millions of '[' ends in "fatal error: stack overflow", which no recover() catches and which kills
// the whole sidecar. Depth is one iterative pass with no allocation, cheap enough to run on every
// payload first; the real parser runs only when it passed.
package jsonlimit

import (
	"bytes"
	"errors"
	"fmt"
	"unsafe"
)

// ErrTooDeep is wrapped by every *DepthError.
var ErrTooDeep = errors.New("JSON nested too deep")

// DepthError says where the nesting first went past the limit.
type DepthError struct {
	Max    int // the limit
	Offset int // byte offset of the '[' or '{' that opened level Max+1
}

func (e *DepthError) Error() string {
	return fmt.Sprintf("%v: more than %d levels of arrays/objects (level %d opens at byte %d)", ErrTooDeep, e.Max, e.Max+1, e.Offset)
}

func (e *DepthError) Unwrap() error { return ErrTooDeep }

// structural marks the bytes the scan must look at; everything else is skipped in a tight loop.
var structural = [256]bool{'"': true, '[': true, '{': true, ']': true, '}': true}

// Check returns a *DepthError when arrays and objects in data nest deeper than max levels (max <= 0
// refuses any array or object). It does not validate: text that is not JSON is left to the parser
// that runs next, which is safe once the depth is bounded, because a parser never descends deeper
// than the brackets this scan counts (strings and their escapes are skipped the same way).
func Check(data []byte, max int) error {
	depth := 0
	for i := 0; i < len(data); i++ {
		c := data[i]
		if !structural[c] {
			continue
		}
		switch c {
		case '"':
			end := stringEnd(data, i+1)
			if end < 0 {
				return nil // unterminated string: no bracket after it counts, the parser reports it
			}
			i = end
		case '[', '{':
			depth++
			if depth > max {
				return &DepthError{Max: max, Offset: i}
			}
		default: // ']', '}'
			if depth > 0 {
				depth--
			}
		}
	}
	return nil
}

// CheckString is Check for a string, without copying it.
func CheckString(s string, max int) error {
	return Check(unsafe.Slice(unsafe.StringData(s), len(s)), max)
}

// stringEnd returns the index of the quote that closes the string whose content starts at i, or -1.
// A quote is escaped when an odd number of backslashes precedes it; each backslash is looked at
// once, so the scan stays linear.
func stringEnd(data []byte, i int) int {
	for {
		j := bytes.IndexByte(data[i:], '"')
		if j < 0 {
			return -1
		}
		q := i + j
		k := q - 1
		for k >= i && data[k] == '\\' {
			k--
		}
		if (q-1-k)%2 == 0 {
			return q
		}
		i = q + 1
	}
}
