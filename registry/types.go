package registry

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// ScopeGlobal is the scope of functions callable from every workflow.
const ScopeGlobal = "global"

// FunctionKey names a function: its scope ("global" or the defining workflow's id) and its name.
type FunctionKey struct {
	Scope string `json:"scope"`
	Name  string `json:"name"`
}

// String is "scope/name", e.g. "global/add".
func (k FunctionKey) String() string { return k.Scope + "/" + k.Name }

// ParseFunctionKey parses "scope/name" (the scope has no "/"; the name may).
func ParseFunctionKey(s string) (FunctionKey, error) {
	scope, name, ok := strings.Cut(s, "/")
	k := FunctionKey{Scope: scope, Name: name}
	if !ok {
		return k, fmt.Errorf("%w: function %q: want SCOPE/NAME, e.g. global/add or <workflowId>/add", ErrInvalid, s)
	}
	return k, k.Validate()
}

// Validate checks the key can be used in Redis key names.
func (k FunctionKey) Validate() error {
	switch {
	case k.Scope == "":
		return fmt.Errorf("%w: function %q has an empty scope (use %q or a workflow id)", ErrInvalid, k.String(), ScopeGlobal)
	case strings.ContainsAny(k.Scope, "/{} \t\r\n"):
		return fmt.Errorf("%w: function scope %q must not contain '/', braces or spaces", ErrInvalid, k.Scope)
	case k.Name == "":
		return fmt.Errorf("%w: function in scope %q has an empty name", ErrInvalid, k.Scope)
	case len(k.Name) > 512:
		return fmt.Errorf("%w: function name %.40q... is longer than 512 bytes", ErrInvalid, k.Name)
	case strings.IndexFunc(k.Name, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: function name %q contains control characters", ErrInvalid, k.Name)
	}
	return nil
}

// Call is one queued call, stored as JSON in its stream entry.
type Call struct {
	ID             string          `json:"id"`       // caller-chosen unique id; replies carry it back
	Function       FunctionKey     `json:"function"` // target
	ReplyKey       string          `json:"replyKey"` // where the result goes (Registry.ReplyKey of the caller)
	Params         json.RawMessage `json:"params,omitempty"`
	Deadline       time.Time       `json:"deadline"` // after it the result is useless; zero = none
	Depth          int             `json:"depth,omitempty"`
	Stack          []string        `json:"stack,omitempty"` // call chain, outermost first
	Caller         string          `json:"caller,omitempty"`
	IdempotencyKey string          `json:"idempotencyKey,omitempty"`
	Attempt        int             `json:"attempt,omitempty"`
	// Binary is the caller item's n8n binary object (by value in n8n's default mode, by reference
	// in database/S3 modes); the function node puts it on the item it emits.
	Binary json.RawMessage `json:"binary,omitempty"`
}

// Delivery is one call handed to a consumer.
type Delivery struct {
	Function   FunctionKey
	EntryID    string // stream entry id; Ack/KeepAlive/LoadCall use it
	Call       Call
	Deliveries int64 // how many times the entry has been delivered, this one included
}

// Reply is the outcome of one call, pushed to the caller's reply list.
type Reply struct {
	CallID string          `json:"callId"`
	OK     bool            `json:"ok"`
	Items  json.RawMessage `json:"items,omitempty"`
	// ItemList is Items one value at a time, for a reply being published (never set on one read):
	// they are written into the stored reply as the array Items would hold, so the function's
	// sidecar copies a big result once instead of joining it into an array first. Set Items or
	// ItemList, not both (Items wins).
	ItemList []json.RawMessage `json:"-"`
	// Encoded is the whole reply as EncodeReply encoded it, pushed as it is (the other fields but
	// CallID are not looked at then): the function's sidecar encodes a big result early, points its
	// own output at the items in the encoded reply and lets n8n's data response go before it
	// pushes the reply. Never set on a reply read.
	Encoded json.RawMessage `json:"-"`
	// Binaries holds each returned item's n8n binary object, parallel to Items (null where an
	// item has none); absent when no item has binary data.
	Binaries  []json.RawMessage `json:"binaries,omitempty"`
	Error     string            `json:"error,omitempty"`
	ErrorKind ErrorKind         `json:"errorKind,omitempty"`
	// Received is when WaitReplies took the reply off the list (not stored): the caller's latency.
	Received time.Time `json:"-"`
}

// ErrorKind says why a call failed (Reply.ErrorKind); "" for a result. The values are part of the
// stored reply JSON: keep them as they are.
type ErrorKind string

// The error kinds of a Reply.
const (
	// ErrorKindParams: the params did not fit the function's declaration (a retry cannot fix it).
	ErrorKindParams ErrorKind = "params"
	// ErrorKindFailed: the function's execution failed, or its return node is a fail return.
	ErrorKindFailed ErrorKind = "failed"
	// ErrorKindTimeout: the function did not answer before the call's deadline.
	ErrorKindTimeout ErrorKind = "timeout"
	// ErrorKindNoReturn: the function's execution ended without reaching a return node.
	ErrorKindNoReturn ErrorKind = "no_return"
	// ErrorKindNotFound: the function's webhook is not registered in n8n (HTTP 404).
	ErrorKindNotFound ErrorKind = "not_found"
	// ErrorKindExpired: the call's deadline passed before it could be dispatched.
	ErrorKindExpired ErrorKind = "expired"
	// ErrorKindDispatch: the dispatcher could not build the webhook request.
	ErrorKindDispatch ErrorKind = "dispatch"
	// ErrorKindDeadLetter: the call was delivered too often and moved to the dead-letter stream.
	ErrorKindDeadLetter ErrorKind = "dead_letter"
	// ErrorKindRemoved: the call's function was removed (no longer published) before it finished.
	ErrorKindRemoved ErrorKind = "function_removed"
)

// FunctionRecord is a function's registration, refreshed by its owner before RegistrationTTL ends.
type FunctionRecord struct {
	Key            FunctionKey     `json:"key"`
	WorkflowID     string          `json:"workflowId"`
	WebhookPath    string          `json:"webhookPath,omitempty"`
	WebhookMethod  string          `json:"webhookMethod,omitempty"`
	Params         json.RawMessage `json:"params,omitempty"`
	TimeoutMs      int64           `json:"timeoutMs,omitempty"`
	MaxConcurrency int             `json:"maxConcurrency,omitempty"`
	// GlobalConcurrency bounds the calls running at once across every sidecar (0 = no bound).
	GlobalConcurrency int `json:"globalConcurrency,omitempty"`
	// Conflicts: other published definitions of this name (ambiguous: calls fail, naming them all).
	Conflicts []string  `json:"conflicts,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
	Owner     string    `json:"owner,omitempty"` // sidecar id that wrote it
}

// DeadLetter is one entry of a function's dead-letter stream.
type DeadLetter struct {
	ID         string // id in the dead-letter stream (ReplayDeadLetter/PurgeDeadLetters take it)
	EntryID    string // id the call had in the calls stream
	Function   FunctionKey
	Reason     string
	Deliveries int64
	At         time.Time
	Call       Call
	Raw        string // the stored call JSON when it could not be decoded
}

// FunctionStatus summarises one function for operators.
type FunctionStatus struct {
	Function           FunctionKey      `json:"function"`
	Registered         bool             `json:"registered"`
	Record             *FunctionRecord  `json:"record,omitempty"`
	StreamExists       bool             `json:"streamExists"`
	Length             int64            `json:"length"`
	Pending            int64            `json:"pending"`
	Lag                int64            `json:"lag"` // undelivered entries; -1 when the server does not say (< 7.0)
	OldestPendingID    string           `json:"oldestPendingId,omitempty"`
	OldestPendingAge   time.Duration    `json:"oldestPendingAgeNs"`
	Consumers          []ConsumerStatus `json:"consumers"`
	LiveSidecars       []string         `json:"liveSidecars"`
	DeadLetters        int64            `json:"deadLetters"`
	LastDeliveredEntry string           `json:"lastDeliveredId,omitempty"`
}

// ConsumerStatus is one consumer of a function's group.
type ConsumerStatus struct {
	Name    string        `json:"name"`
	Pending int64         `json:"pending"`
	Idle    time.Duration `json:"idleNs"`
}

// SidecarInfo is a live sidecar's heartbeat record.
type SidecarInfo struct {
	ID     string        `json:"id"`
	Serves []FunctionKey `json:"serves"`
	At     time.Time     `json:"at"`
}
