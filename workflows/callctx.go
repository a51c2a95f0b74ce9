package workflows

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// Signature errors. They are distinct so an operator can tell a forged or edited payload from a
// sidecar with another N8N_FN_SECRET, and both from a call that simply ran out of time.
var (
	ErrUnsigned     = errors.New("n8n-fn: payload is not signed")
	ErrMalformedSig = errors.New("n8n-fn: signature is malformed")
	ErrWrongSecret  = errors.New("n8n-fn: signed with a different secret (check that every sidecar has the same N8N_FN_SECRET)")
	ErrTampered     = errors.New("n8n-fn: signature does not match: the payload was changed after signing or forged")
	ErrExpired      = errors.New("n8n-fn: call expired")
	ErrBadContext   = errors.New("n8n-fn: malformed _functionCall")
	ErrRecursion    = errors.New("n8n-fn: call depth limit reached")
	ErrWeakSecret   = errors.New("n8n-fn: secret too short")
)

// MinSecretLength is the shortest N8N_FN_SECRET accepted (bytes).
const MinSecretLength = 16

// DefaultMaxDepth is the recursion limit for nested calls (factorial(5) needs 6).
const DefaultMaxDepth = 32

const sigVersion = "v1"

// FunctionRef is a function's registry identity: Scope is "global" or the defining workflow's id.
type FunctionRef struct {
	Scope string
	Name  string
}

// String is "scope/name", the form used in keys, call contexts and references.
func (r FunctionRef) String() string { return r.Scope + "/" + r.Name }

// Display is the form for people: the name for a global function, else name plus workflow id.
func (r FunctionRef) Display() string {
	if r.Scope == ScopeGlobal {
		return r.Name
	}
	return fmt.Sprintf("%s (workflow %s)", r.Name, r.Scope)
}

// ParseFunctionRef reads "scope/name".
func ParseFunctionRef(s string) (FunctionRef, error) {
	scope, name, ok := strings.Cut(s, "/")
	if !ok || scope == "" || name == "" {
		return FunctionRef{}, fmt.Errorf("function reference %s: expected \"scope/name\"", quoted(s))
	}
	if scope != ScopeGlobal && !workflowIDRe.MatchString(scope) {
		return FunctionRef{}, fmt.Errorf("function reference %s: scope %s is neither global nor a workflow id", quoted(s), quoted(scope))
	}
	if err := checkName(name); err != nil {
		return FunctionRef{}, fmt.Errorf("function reference %s: name %w", quoted(s), err)
	}
	return FunctionRef{Scope: scope, Name: name}, nil
}

// Signer signs and verifies call contexts and call references with HMAC-SHA256. Every signature
// carries a short key id (derived from the secret, not revealing it) so a secret mismatch between
// sidecars is reported as such instead of as tampering.
type Signer struct {
	key   []byte
	keyID string
}

// NewSigner makes a Signer from the shared secret (N8N_FN_SECRET).
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("%w: N8N_FN_SECRET has %d bytes, at least %d are needed (e.g. openssl rand -hex 32)", ErrWeakSecret, len(secret), MinSecretLength)
	}
	k := append([]byte(nil), secret...)
	m := hmac.New(sha256.New, k)
	m.Write([]byte("n8n-fn key id"))
	return &Signer{key: k, keyID: base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:6])}, nil
}

// KeyID identifies the secret in signatures (safe to log).
func (s *Signer) KeyID() string { return s.keyID }

func (s *Signer) sign(canonical []byte) string {
	m := hmac.New(sha256.New, s.key)
	m.Write(canonical)
	return sigVersion + "." + s.keyID + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Signer) verify(canonical []byte, sig, what string) error {
	if sig == "" {
		return fmt.Errorf("%s: %w", what, ErrUnsigned)
	}
	parts := strings.Split(sig, ".")
	if len(parts) != 3 || parts[0] != sigVersion {
		return fmt.Errorf("%s: %w (expected %s.<key id>.<mac>)", what, ErrMalformedSig, sigVersion)
	}
	mac, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(mac) != sha256.Size {
		return fmt.Errorf("%s: %w (bad mac encoding)", what, ErrMalformedSig)
	}
	if !hmac.Equal([]byte(parts[1]), []byte(s.keyID)) {
		return fmt.Errorf("%s: %w: key id %s, this sidecar has %s", what, ErrWrongSecret, excerpt(parts[1]), s.keyID)
	}
	m := hmac.New(sha256.New, s.key)
	m.Write(canonical)
	if !hmac.Equal(mac, m.Sum(nil)) {
		return fmt.Errorf("%s: %w", what, ErrTampered)
	}
	return nil
}

// canon builds the canonical byte string that is signed: a domain tag, then every field
// length-prefixed, so no two different payloads encode alike.
type canon []byte

func (c canon) str(s string) canon {
	c = strconv.AppendInt(c, int64(len(s)), 10)
	c = append(c, ':')
	return append(c, s...)
}

func (c canon) num(n int64) canon { return c.str(strconv.FormatInt(n, 10)) }

// CallFrame is one parent call on a call context's stack.
type CallFrame struct {
	CallID   string `json:"callId"`
	Function string `json:"function"` // FunctionRef.String()
}

// CallContext is the _functionCall object the function node puts on its item; it travels with the
// items through the function body to the return node. Everything in it is signed.
type CallContext struct {
	CallID   string `json:"callId"`
	ReplyKey string `json:"replyKey"` // where return pushes the result
	Function string `json:"function"` // FunctionRef.String() of the called function
	EntryID  string `json:"entryId"`  // stream entry to acknowledge
	Deadline int64  `json:"deadline"` // unix ms; a result after it is discarded by the caller
	Depth    int    `json:"depth"`    // 1 for a call from a workflow that is not itself a function
	// Stack holds the parent calls, outermost first; len(Stack) == Depth-1.
	Stack []CallFrame `json:"stack"`
	Sig   string      `json:"sig"`
}

func (c *CallContext) canonical() []byte {
	b := canon("n8n-fn/callctx/v1|").str(c.CallID).str(c.ReplyKey).str(c.Function).str(c.EntryID).
		num(c.Deadline).num(int64(c.Depth)).num(int64(len(c.Stack)))
	for _, f := range c.Stack {
		b = b.str(f.CallID).str(f.Function)
	}
	return b
}

// Sign sets c.Sig.
func (c *CallContext) Sign(s *Signer) { c.Sig = s.sign(c.canonical()) }

// Verify checks the signature and, unless now is zero, the deadline.
func (c *CallContext) Verify(s *Signer, now time.Time) error {
	if err := s.verify(c.canonical(), c.Sig, "_functionCall of call "+excerpt(c.CallID)); err != nil {
		return err
	}
	if c.Depth != len(c.Stack)+1 {
		return fmt.Errorf("%w: depth %d does not match a stack of %d parent calls", ErrBadContext, c.Depth, len(c.Stack))
	}
	if !now.IsZero() && now.UnixMilli() > c.Deadline {
		return fmt.Errorf("%w: call %s to %s passed its deadline %s ago", ErrExpired, c.CallID, c.Function,
			now.Sub(time.UnixMilli(c.Deadline)).Round(time.Millisecond))
	}
	return nil
}

// Ref parses c.Function.
func (c *CallContext) Ref() (FunctionRef, error) { return ParseFunctionRef(c.Function) }

// Frame is this call as a parent frame of a nested call.
func (c *CallContext) Frame() CallFrame { return CallFrame{CallID: c.CallID, Function: c.Function} }

// ChildChain is the depth and stack of a call made from inside the call c (nil: from a workflow
// that is not a function).
func ChildChain(parent *CallContext) (depth int, stack []CallFrame) {
	if parent == nil {
		return 1, []CallFrame{}
	}
	stack = make([]CallFrame, 0, len(parent.Stack)+1)
	stack = append(stack, parent.Stack...)
	stack = append(stack, parent.Frame())
	return parent.Depth + 1, stack
}

// CheckDepth refuses a call to target made inside parent when it would exceed maxDepth
// (<= 0: DefaultMaxDepth). The error names the chain, e.g. "fact -> fact -> fact".
func CheckDepth(parent *CallContext, target FunctionRef, maxDepth int) error {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	depth, stack := ChildChain(parent)
	if depth <= maxDepth {
		return nil
	}
	chain := make([]string, 0, len(stack)+1)
	for _, f := range stack {
		if r, err := ParseFunctionRef(f.Function); err == nil {
			chain = append(chain, r.Display())
		} else {
			chain = append(chain, f.Function)
		}
	}
	chain = append(chain, target.Display())
	if len(chain) > 12 {
		chain = append(append(chain[:5:5], fmt.Sprintf("... (%d more)", len(chain)-10)), chain[len(chain)-5:]...)
	}
	return fmt.Errorf("%w: calling %s would be nested call %d, the limit is %d; chain: %s (check the recursion's base case)",
		ErrRecursion, target.Display(), depth, maxDepth, strings.Join(chain, " -> "))
}

// ContextFromItem reads _functionCall from an item's json: (nil, nil) when the item has none, an
// error wrapping ErrBadContext when it is there but not a call context. It does not verify.
func ContextFromItem(itemJSON []byte) (*CallContext, error) {
	return Limits{}.ContextFromItem(itemJSON)
}

// ContextFromItem is the package's ContextFromItem with these limits: a _functionCall over
// MaxContextBytes is refused before it is decoded. The item itself is only scanned (gjson finds
// the field without recursion), so its size is the caller's business (CheckParams).
func (l Limits) ContextFromItem(itemJSON []byte) (*CallContext, error) {
	l = l.withDefaults()
	v := gjson.GetBytes(itemJSON, ContextField)
	if !v.Exists() || v.Type == gjson.Null {
		return nil, nil
	}
	if !v.IsObject() {
		return nil, fmt.Errorf("%w: expected an object, got %s", ErrBadContext, excerpt(v.Raw))
	}
	if len(v.Raw) > l.MaxContextBytes {
		return nil, fmt.Errorf("%w: %w", ErrBadContext, limitf("it is %d bytes, a call context has at most %d (it holds ids and the chain of parent calls); the item's %s field was not set by n8n-fn", len(v.Raw), l.MaxContextBytes, ContextField))
	}
	var c CallContext
	dec := json.NewDecoder(strings.NewReader(v.Raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadContext, err)
	}
	if c.CallID == "" || c.Function == "" {
		return nil, fmt.Errorf("%w: callId and function are required", ErrBadContext)
	}
	return &c, nil
}

// WithoutContext returns an item's json object without its _functionCall field (unchanged
// otherwise, in order). Input that is not an object is returned as is.
func WithoutContext(itemJSON []byte) []byte {
	// GetBytes reads without copying itemJSON (it copies only what it finds, a small context).
	if !gjson.GetBytes(itemJSON, ContextField).Exists() {
		return itemJSON
	}
	obj := gjson.ParseBytes(itemJSON)
	if !obj.IsObject() {
		return itemJSON
	}
	out := make([]byte, 0, len(itemJSON))
	out = append(out, '{')
	first := true
	obj.ForEach(func(k, v gjson.Result) bool {
		if k.String() == ContextField {
			return true
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, k.Raw...)
		out = append(out, ':')
		out = append(out, v.Raw...)
		return true
	})
	return append(out, '}')
}

// WithContext returns an item's json object with _functionCall set to c (replacing any other).
func WithContext(itemJSON []byte, c *CallContext) ([]byte, error) {
	ctx, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode _functionCall: %w", err)
	}
	base := WithoutContext(itemJSON)
	obj := gjson.ParseBytes(base)
	if !gjson.ValidBytes(base) || !obj.IsObject() {
		return nil, fmt.Errorf("%w: item json is not an object", ErrBadContext)
	}
	out := make([]byte, 0, len(base)+len(ctx)+20)
	trimmed := strings.TrimSpace(string(base))
	inner := strings.TrimSpace(trimmed[1 : len(trimmed)-1])
	out = append(out, '{')
	if inner != "" {
		out = append(out, inner...)
		out = append(out, ',')
	}
	out = append(out, `"`+ContextField+`":`...)
	out = append(out, ctx...)
	return append(out, '}'), nil
}

// CallRef is the signed reference the dispatcher posts to a function's webhook: nothing but
// enough to find the stream entry. The function node verifies it and loads the call from Redis.
type CallRef struct {
	Function string `json:"function"` // FunctionRef.String()
	EntryID  string `json:"entryId"`
	CallID   string `json:"callId"`
	// Dispatch is the number of the dispatch that posted this reference (1 for the first, one
	// more for every re-run): the function node claims exactly this dispatch for its execution,
	// so the same reference posted again, or one of an earlier dispatch, runs nothing.
	Dispatch int64  `json:"dispatch"`
	Exp      int64  `json:"exp"` // unix ms after which the reference is refused
	Sig      string `json:"sig"`
}

func (r *CallRef) canonical() []byte {
	return canon("n8n-fn/callref/v2|").str(r.Function).str(r.EntryID).str(r.CallID).num(r.Dispatch).num(r.Exp)
}

// Sign sets r.Sig.
func (r *CallRef) Sign(s *Signer) { r.Sig = s.sign(r.canonical()) }

// Verify checks the signature and, unless now is zero, the expiry.
func (r *CallRef) Verify(s *Signer, now time.Time) error {
	if err := s.verify(r.canonical(), r.Sig, "call reference "+excerpt(r.CallID)); err != nil {
		return err
	}
	if !now.IsZero() && now.UnixMilli() > r.Exp {
		return fmt.Errorf("%w: reference to call %s of %s expired %s ago", ErrExpired, r.CallID, r.Function,
			now.Sub(time.UnixMilli(r.Exp)).Round(time.Millisecond))
	}
	return nil
}

// ParseCallRef reads a webhook body holding a call reference, strictly. n8n's Webhook node puts
// the posted JSON under "body" of its item: pass either the posted JSON or that item's json.
func ParseCallRef(body []byte) (*CallRef, error) {
	v := gjson.ParseBytes(body)
	if v.Get("body").Exists() && v.Get("headers").Exists() {
		v = v.Get("body")
	}
	if !v.IsObject() {
		return nil, fmt.Errorf("%w: call reference: expected a JSON object", ErrMalformedSig)
	}
	// Anyone who can reach the function's webhook can post here: a reference is a few hundred
	// bytes, anything much bigger is not one and is not decoded.
	if len(v.Raw) > MaxCallRefBytes {
		return nil, fmt.Errorf("%w: call reference: the body is %d bytes, a call reference has at most %d", ErrMalformedSig, len(v.Raw), MaxCallRefBytes)
	}
	var r CallRef
	dec := json.NewDecoder(strings.NewReader(v.Raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: call reference: %v", ErrMalformedSig, err)
	}
	if r.Function == "" || r.EntryID == "" || r.CallID == "" || r.Dispatch < 1 {
		return nil, fmt.Errorf("%w: call reference: function, entryId, callId and dispatch (>= 1) are required", ErrMalformedSig)
	}
	return &r, nil
}

// BatchField is the field of a webhook body that holds a batch of call references: a function
// with "batch" is sent {"batch":[ref, ref, ...]}, one reference per call.
const BatchField = "batch"

// ParseCallRefs reads a webhook body holding one call reference or a batch of them
// ({"batch":[...]}, at most MaxBatch), strictly: every reference as ParseCallRef reads one.
// batched says whether the body was a batch (a function that did not ask for batches refuses one).
func ParseCallRefs(body []byte) (refs []*CallRef, batched bool, err error) {
	v := gjson.ParseBytes(body)
	if v.Get("body").Exists() && v.Get("headers").Exists() {
		v = v.Get("body")
	}
	b := v.Get(BatchField)
	if !v.IsObject() || !b.Exists() {
		r, err := ParseCallRef([]byte(v.Raw))
		if err != nil {
			return nil, false, err
		}
		return []*CallRef{r}, false, nil
	}
	if len(v.Raw) > MaxBatch*MaxCallRefBytes {
		return nil, true, fmt.Errorf("%w: call batch: the body is %d bytes, a batch has at most %d", ErrMalformedSig, len(v.Raw), MaxBatch*MaxCallRefBytes)
	}
	var n int
	v.ForEach(func(k, _ gjson.Result) bool { n++; return true })
	if n != 1 || !b.IsArray() {
		return nil, true, fmt.Errorf("%w: call batch: expected {\"batch\":[reference, ...]} and nothing else", ErrMalformedSig)
	}
	items := b.Array()
	if len(items) == 0 || len(items) > MaxBatch {
		return nil, true, fmt.Errorf("%w: call batch: %d references, want 1..%d", ErrMalformedSig, len(items), MaxBatch)
	}
	seen := make(map[string]bool, len(items))
	for i, it := range items {
		r, err := ParseCallRef([]byte(it.Raw))
		if err != nil {
			return nil, true, fmt.Errorf("call batch: reference %d: %w", i, err)
		}
		if seen[r.CallID] {
			return nil, true, fmt.Errorf("%w: call batch: call %s appears twice", ErrMalformedSig, r.CallID)
		}
		seen[r.CallID] = true
		refs = append(refs, r)
	}
	return refs, true, nil
}

// NewCallID returns a random call id (32 hex characters).
func NewCallID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}
