package workflows

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/n8n-fn/n8n-fn/internal/jsonlimit"
)

// Default limits on what a workflow can send to a sidecar (docs/directives.md, "Limits").
const (
	DefaultMaxParamsBytes  = 16 << 20 // one call's params (the caller item's json)
	DefaultMaxJSONDepth    = 128      // arrays/objects inside params, defaults and JSON-text params
	DefaultMaxHeaderBytes  = 64 << 10 // the directive header comment, from "/*" to "*/"
	DefaultMaxContextBytes = 64 << 10 // a _functionCall object (32 nested calls take about 6 KiB)
	MaxCallRefBytes        = 4 << 10  // the signed call reference a dispatcher posts (about 300 bytes)
	DefaultMaxResultBytes  = 16 << 20 // the items one function call returns, as stored for the caller
	DefaultMaxCallItems    = 10_000   // input items of one call node task (each makes a call in eachItem mode)
)

// Environment variables the sidecar reads the limits from (LimitsFromEnv).
const (
	EnvMaxParamsBytes = "N8N_FN_MAX_PARAMS_BYTES"
	EnvMaxJSONDepth   = "N8N_FN_MAX_JSON_DEPTH"
	EnvMaxHeaderBytes = "N8N_FN_MAX_HEADER_BYTES"
	EnvMaxResultBytes = "N8N_FN_MAX_RESULT_BYTES"
	EnvMaxCallItems   = "N8N_FN_MAX_CALL_ITEMS"
)

// ErrLimit is wrapped by every error about a payload over one of the Limits.
var ErrLimit = errors.New("n8n-fn: limit exceeded")

// limitError is a refusal for a limit; its text says which limit and how to raise it, without
// ErrLimit's words in the middle of a sentence.
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }
func (e *limitError) Unwrap() error { return ErrLimit }

func limitf(format string, args ...any) error { return &limitError{fmt.Sprintf(format, args...)} }

// Limits bound sizes and nesting of everything a workflow sends, checked before anything
// recursive or allocating reads it. The zero value means the defaults; every field must be the
// same on all sidecars (a call accepted by one must bind on another).
type Limits struct {
	MaxParamsBytes  int // N8N_FN_MAX_PARAMS_BYTES
	MaxJSONDepth    int // N8N_FN_MAX_JSON_DEPTH
	MaxHeaderBytes  int // N8N_FN_MAX_HEADER_BYTES
	MaxContextBytes int // no variable: follows from the call depth limit
	MaxResultBytes  int // N8N_FN_MAX_RESULT_BYTES
	MaxCallItems    int // N8N_FN_MAX_CALL_ITEMS
}

// DefaultLimits are the limits of a sidecar without the variables set.
func DefaultLimits() Limits { return Limits{}.withDefaults() }

func (l Limits) withDefaults() Limits {
	if l.MaxParamsBytes <= 0 {
		l.MaxParamsBytes = DefaultMaxParamsBytes
	}
	if l.MaxJSONDepth <= 0 {
		l.MaxJSONDepth = DefaultMaxJSONDepth
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxContextBytes <= 0 {
		l.MaxContextBytes = DefaultMaxContextBytes
	}
	if l.MaxResultBytes <= 0 {
		l.MaxResultBytes = DefaultMaxResultBytes
	}
	if l.MaxCallItems <= 0 {
		l.MaxCallItems = DefaultMaxCallItems
	}
	return l
}

// Upper bounds of the variables: beyond them a limit no longer protects the sidecar (the depth
// bound keeps gjson's recursive validator far from Go's stack limit; 1 GiB is n8n's own largest
// runner payload).
const (
	maxJSONDepthSetting = 10_000
	maxBytesSetting     = 1 << 30
)

// LimitsFromEnv reads the limits through getenv (os.Getenv in production); unset variables keep
// their defaults. A value that is not a whole number in range is an error naming the variable.
func LimitsFromEnv(getenv func(string) string) (Limits, error) {
	var l Limits
	var errs []error
	read := func(name string, dst *int, lo, hi int) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			errs = append(errs, fmt.Errorf("%s=%s: expected a whole number from %d to %d", name, excerpt(v), lo, hi))
			return
		}
		*dst = n
	}
	read(EnvMaxParamsBytes, &l.MaxParamsBytes, 1024, maxBytesSetting)
	read(EnvMaxJSONDepth, &l.MaxJSONDepth, 16, maxJSONDepthSetting)
	read(EnvMaxHeaderBytes, &l.MaxHeaderBytes, 1024, 16<<20)
	read(EnvMaxResultBytes, &l.MaxResultBytes, 1024, maxBytesSetting)
	read(EnvMaxCallItems, &l.MaxCallItems, 1, 10_000_000)
	if err := errors.Join(errs...); err != nil {
		return Limits{}, err
	}
	return l.withDefaults(), nil
}

// CheckParams checks one call's params (the caller item's json without _functionCall) against
// the size and depth limits. The call op runs it on every item before anything is queued; the
// error says which limit and how to raise it.
func (l Limits) CheckParams(params []byte) error {
	l = l.withDefaults()
	if len(params) > l.MaxParamsBytes {
		return limitf("the params are %d bytes, at most %d can be sent in one call (%s); send a reference (an id, a URL, a binary-data key) instead of the data itself", len(params), l.MaxParamsBytes, EnvMaxParamsBytes)
	}
	if err := jsonlimit.Check(params, l.MaxJSONDepth); err != nil {
		return l.depthError("the params object", err)
	}
	return nil
}

// CheckResult checks the items a function returns (size: their json, as the return op stores them
// for the caller) before they are stored: the return op runs it, and the function's execution
// fails with this error instead of a caller's sidecar swelling with a result nobody bounded.
func (l Limits) CheckResult(size int) error {
	l = l.withDefaults()
	if size > l.MaxResultBytes {
		return limitf("the result is %d bytes, at most %d can be returned from one call (%s); return a reference (an id, a URL, a binary-data key) instead of the data itself", size, l.MaxResultBytes, EnvMaxResultBytes)
	}
	return nil
}

// CheckItems checks how many input items one call node task sends (in eachItem mode each is a
// call of its own); the call op runs it before anything is queued.
func (l Limits) CheckItems(n int) error {
	l = l.withDefaults()
	if n > l.MaxCallItems {
		return limitf("the node got %d items, at most %d can be sent in one call node task (%s); split the items (Loop Over Items node) or use \"mode\":\"allItems\"", n, l.MaxCallItems, EnvMaxCallItems)
	}
	return nil
}

func (l Limits) depthError(what string, err error) error {
	var de *jsonlimit.DepthError
	if errors.As(err, &de) {
		return limitf("%s has arrays/objects nested more than %d levels deep (level %d opens at byte %d); flatten the data or raise %s on every sidecar", what, de.Max, de.Max+1, de.Offset, EnvMaxJSONDepth)
	}
	return limitf("%s: %v", what, err)
}

// excerptRunes is how much of an outside value an error message may quote.
const excerptRunes = 40

// excerpt is s when it is short, else its first 40 characters marked as cut with the full size:
// an error message never carries more of a value than that (values can be megabytes of user data).
func excerpt(s string) string {
	head, cut := excerptHead(s)
	if !cut {
		return s
	}
	return fmt.Sprintf("%s…(%d bytes)", head, len(s))
}

// quoted is excerpt in Go quotes, for names and values quoted inside a message.
func quoted(s string) string {
	head, cut := excerptHead(s)
	if !cut {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s…(%d bytes)", strconv.Quote(head), len(s))
}

func excerptHead(s string) (string, bool) {
	n := 0
	for i := range s {
		if n == excerptRunes {
			return strings.ToValidUTF8(s[:i], ""), true
		}
		n++
	}
	return s, false
}
