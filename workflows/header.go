// Package workflows understands n8n workflow JSON as n8n-fn uses it: the directive header in Code
// nodes, function discovery, lint, migration from the origin node package and replay of test
// workflows.
package workflows

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/internal/jsonlimit"
)

// Marker starts every n8n-fn directive: the Code node's code begins with "/* @n8n-fn {...} */".
const Marker = "@n8n-fn"

// CurrentVersion is the directive format version this build writes and understands.
const CurrentVersion = 1

// Known ops. "echo" is a diagnostic op: it returns its input items plus a marker field and proves
// that a Code node reached the sidecar.
const (
	OpFunction = "function"
	OpCall     = "call"
	OpReturn   = "return"
	OpEcho     = "echo"
)

// ErrDirective is wrapped by every error about a malformed directive header.
var ErrDirective = errors.New("invalid n8n-fn directive")

// Header is the first part of a directive: its op, its version and the whole JSON object, which
// the op's own parser reads strictly.
type Header struct {
	Op      string
	Version int
	Raw     json.RawMessage

	lim Limits // what it was read with; the op parsers apply the same to values inside it
}

// IsDirective reports whether code starts with an n8n-fn header comment (leading whitespace
// allowed). It is cheap: the sidecar calls it for every Code-node task.
func IsDirective(code string) bool {
	rest, ok := strings.CutPrefix(strings.TrimLeft(code, " \t\r\n\ufeff"), "/*")
	if !ok {
		return false
	}
	after, ok := strings.CutPrefix(strings.TrimLeft(rest, " \t\r\n*"), Marker)
	// "@n8n-fn" must stand alone: a comment like "/* @n8n-fn-notes ... */" is ordinary code.
	return ok && (after == "" || strings.ContainsRune(" \t\r\n{*", rune(after[0])))
}

// ParseHeader reads the header comment of a Code node. It returns (nil, nil) when code is not a
// directive, so callers can relay it unchanged; an error wrapping ErrDirective when the header is
// there but broken.
func ParseHeader(code string) (*Header, error) { return Limits{}.ParseHeader(code) }

// ParseHeader is the package's ParseHeader with these limits: a header comment longer than
// MaxHeaderBytes or nesting deeper than MaxJSONDepth is refused before its JSON is parsed.
func (l Limits) ParseHeader(code string) (*Header, error) {
	if !IsDirective(code) {
		return nil, nil
	}
	l = l.withDefaults()
	rest, _ := strings.CutPrefix(strings.TrimLeft(code, " \t\r\n\ufeff"), "/*")
	start := len(code) - len(rest) - 2 // where "/*" is
	rest = strings.TrimLeft(rest, " \t\r\n*")
	rest = strings.TrimLeft(strings.TrimPrefix(rest, Marker), " \t\r\n")
	// Look for "*/" only as far as the limit allows, so a huge code without it costs nothing more.
	window := rest
	if room := l.MaxHeaderBytes - (len(code) - len(rest) - start); len(window) > room {
		window = window[:max(room, 0)]
	}
	end := strings.Index(window, "*/")
	if end < 0 {
		if len(window) < len(rest) {
			return nil, fmt.Errorf("%w: %w", ErrDirective, limitf("the header comment is not closed with */ within its first %d bytes; keep the header short (it holds only the directive's JSON) or raise %s", l.MaxHeaderBytes, EnvMaxHeaderBytes))
		}
		return nil, fmt.Errorf("%w: the header comment is not closed with */", ErrDirective)
	}
	body := strings.TrimSpace(rest[:end])
	if !strings.HasPrefix(body, "{") {
		return nil, fmt.Errorf("%w: expected one JSON object after %s, got `%s`", ErrDirective, Marker, excerpt(body))
	}
	// n8n sends code as UTF-8; other bytes could not survive the trip back through JSON unchanged
	// (a param name would silently become U+FFFD when the function node emits it).
	if !utf8.ValidString(body) {
		return nil, fmt.Errorf("%w: the header is not valid UTF-8 text", ErrDirective)
	}
	if err := jsonlimit.CheckString(body, l.MaxJSONDepth); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDirective, l.depthError("the header's JSON", err))
	}
	dec := json.NewDecoder(strings.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: the JSON after %s does not parse: %v (in `%s`)", ErrDirective, Marker, err, excerpt(body))
	}
	if dec.More() || strings.TrimSpace(body[dec.InputOffset():]) != "" {
		return nil, fmt.Errorf("%w: unexpected text after the JSON object: `%s`", ErrDirective, excerpt(strings.TrimSpace(body[dec.InputOffset():])))
	}
	if v := gjson.GetBytes(raw, "v"); v.Exists() && (v.Type != gjson.Number || strings.ContainsAny(v.Raw, ".eE")) {
		return nil, fmt.Errorf("%w: field \"v\": expected a whole number (the format version, %d), got %s", ErrDirective, CurrentVersion, excerpt(v.Raw))
	}
	var head struct {
		Op      *string `json:"op"`
		Version *int    `json:"v"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("%w: field \"op\" or \"v\" has the wrong type: %v", ErrDirective, err)
	}
	if head.Op == nil || *head.Op == "" {
		return nil, fmt.Errorf("%w: missing field \"op\" (one of function, call, return)", ErrDirective)
	}
	switch *head.Op {
	case OpFunction, OpCall, OpReturn, OpEcho:
	default:
		return nil, fmt.Errorf("%w: unknown op %s (expected function, call or return)", ErrDirective, quoted(*head.Op))
	}
	version := CurrentVersion
	if head.Version != nil {
		version = *head.Version
	}
	if version != CurrentVersion {
		return nil, fmt.Errorf("%w: version \"v\":%d is not supported by this n8n-fn (it reads version %d)", ErrDirective, version, CurrentVersion)
	}
	return &Header{Op: *head.Op, Version: version, Raw: bytes.Clone(raw), lim: l}, nil
}

// NodeError is a header error (from ParseHeader, which does not know the node) as the
// DirectiveErrors that ParseDirective returns: wrapping ErrDirective and naming node. The runtime
// uses it once it knows the node's name; other errors come back unchanged.
func NodeError(node string, err error) error {
	if err == nil || !errors.Is(err, ErrDirective) {
		return err
	}
	var des DirectiveErrors
	if errors.As(err, &des) {
		out := make(DirectiveErrors, len(des))
		for i, e := range des {
			c := *e
			if c.Node == "" {
				c.Node = node
			}
			out[i] = &c
		}
		return out
	}
	msg := strings.TrimPrefix(strings.TrimPrefix(err.Error(), ErrDirective.Error()), ": ")
	return DirectiveErrors{{Node: node, Msg: msg, cause: err}}
}
