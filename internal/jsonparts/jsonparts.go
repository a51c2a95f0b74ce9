// Package jsonparts builds one JSON text as parts to be written one after the other, so that big
// values (a 30 MB item) are written where they already are instead of being copied into a buffer
// of the whole text: glue and small values go into one buffer, each big value is a part of its
// own. The sidecar sends a node's output to n8n this way (n8nproto.Parts) and pushes a function's
// big reply to Redis this way (registry).
package jsonparts

import "strconv"

// Builder collects the parts. Its buffer is sized by NewBuilder, so it does not move while parts
// are cut from it (if the size was too small it grows, and the parts cut before keep their bytes).
type Builder struct {
	parts [][]byte
	buf   []byte
	start int // where the part not yet cut from buf begins
	big   int
}

// NewBuilder starts a text whose glue and small values take about size bytes; values of big bytes
// or more become parts of their own.
func NewBuilder(size, big int) *Builder {
	return &Builder{buf: make([]byte, 0, size), big: big}
}

// SmallLen is what a value of n bytes takes in the buffer of a Builder with this big.
func SmallLen(n, big int) int {
	if n >= big {
		return 0
	}
	return max(n, len("null"))
}

// Glue appends literal text.
func (b *Builder) Glue(s string) { b.buf = append(b.buf, s...) }

// Int appends a decimal integer.
func (b *Builder) Int(n int64) { b.buf = strconv.AppendInt(b.buf, n, 10) }

// Value appends v (null when empty): copied when small, else as a part of its own (v itself,
// which must not change until the parts are written).
func (b *Builder) Value(v []byte) {
	switch {
	case len(v) == 0:
		b.buf = append(b.buf, "null"...)
	case len(v) < b.big:
		b.buf = append(b.buf, v...)
	default:
		b.cut()
		b.parts = append(b.parts, v)
	}
}

// cut makes what buf holds since the last cut a part (its capacity cut too: nothing appends into it).
func (b *Builder) cut() {
	if len(b.buf) > b.start {
		b.parts = append(b.parts, b.buf[b.start:len(b.buf):len(b.buf)])
		b.start = len(b.buf)
	}
}

// Parts ends the text and returns its parts in order.
func (b *Builder) Parts() [][]byte {
	b.cut()
	return b.parts
}
