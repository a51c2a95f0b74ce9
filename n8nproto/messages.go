package n8nproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/internal/jsonlimit"
)

// Message is one JSON frame of the task-runner protocol.
type Message interface{ MessageType() string }

// TaskMessage is every message that belongs to one task.
type TaskMessage interface {
	Message
	TaskKey() string
}

// Message types, both directions. Wire names are identical from n8n 1.70 to 2.41.
const (
	TypeInfoRequest      = "broker:inforequest"
	TypeRunnerRegistered = "broker:runnerregistered"
	TypeTaskOfferAccept  = "broker:taskofferaccept"
	TypeTaskSettings     = "broker:tasksettings"
	TypeTaskCancel       = "broker:taskcancel"
	TypeTaskDataResponse = "broker:taskdataresponse"
	TypeNodeTypes        = "broker:nodetypes"
	TypeRPCResponse      = "broker:rpcresponse"
	TypeDrain            = "broker:drain"

	TypeRunnerInfo       = "runner:info"
	TypeTaskOffer        = "runner:taskoffer"
	TypeTaskAccepted     = "runner:taskaccepted"
	TypeTaskRejected     = "runner:taskrejected"
	TypeTaskDeferred     = "runner:taskdeferred"
	TypeTaskDataRequest  = "runner:taskdatarequest"
	TypeNodeTypesRequest = "runner:nodetypesrequest"
	TypeRPC              = "runner:rpc"
	TypeTaskDone         = "runner:taskdone"
	TypeTaskError        = "runner:taskerror"
)

// RPC response statuses.
const (
	RPCStatusSuccess = "success"
	RPCStatusError   = "error"
)

// ---- broker -> runner ----

// InfoRequest is the broker's first frame after the upgrade.
type InfoRequest struct{}

// RunnerRegistered confirms runner:info; the runner starts offering.
type RunnerRegistered struct{}

// Drain tells the runner to stop offering (broker shutting down).
type Drain struct{}

// TaskOfferAccept matches one of the runner's offers to a new task.
type TaskOfferAccept struct {
	TaskID  string `json:"taskId"`
	OfferID string `json:"offerId"`
}

// TaskSettings carries the requester's opaque settings (Code node: code, nodeMode, ...).
type TaskSettings struct {
	TaskID   string          `json:"taskId"`
	Settings json.RawMessage `json:"settings,omitempty"`
}

// TaskCancel aborts a task.
type TaskCancel struct {
	TaskID string `json:"taskId"`
	Reason string `json:"reason"`
}

// TaskDataResponse answers a TaskDataRequest. Data can hold n8n's environment: never log it.
type TaskDataResponse struct {
	TaskID    string          `json:"taskId"`
	RequestID string          `json:"requestId"`
	Data      json.RawMessage `json:"data,omitempty"`
}

// NodeTypes answers a NodeTypesRequest with node-type descriptions.
type NodeTypes struct {
	TaskID    string          `json:"taskId"`
	RequestID string          `json:"requestId"`
	NodeTypes json.RawMessage `json:"nodeTypes,omitempty"`
}

// RPCResponse answers an RPC; Status is "success" or "error".
type RPCResponse struct {
	TaskID string          `json:"taskId"`
	CallID string          `json:"callId"`
	Status string          `json:"status"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// ---- runner -> broker ----

// RunnerInfo registers the runner.
type RunnerInfo struct {
	Name  string   `json:"name"`
	Types []string `json:"types"`
}

// TaskOffer offers one slot for ValidFor milliseconds (-1 = never expires).
type TaskOffer struct {
	OfferID  string `json:"offerId"`
	TaskType string `json:"taskType"`
	ValidFor int64  `json:"validFor"`
}

// TaskAccepted answers TaskOfferAccept: the runner owns the task.
type TaskAccepted struct {
	TaskID string `json:"taskId"`
}

// TaskRejected answers TaskOfferAccept: the runner cannot take it.
type TaskRejected struct {
	TaskID string `json:"taskId"`
	Reason string `json:"reason"`
}

// TaskDeferred answers TaskOfferAccept (launcher): keep the request, a real runner will offer.
type TaskDeferred struct {
	TaskID string `json:"taskId"`
}

// TaskDataRequest asks for execution data (requestParams: dataOfNodes, prevNode, input, env).
type TaskDataRequest struct {
	TaskID        string          `json:"taskId"`
	RequestID     string          `json:"requestId"`
	RequestParams json.RawMessage `json:"requestParams,omitempty"`
}

// InputOnlyParams are TaskDataRequest params that ask n8n for the node's input items (plus the
// workflow, node and additionalData that every data response carries) and nothing else, shaped
// like the official runner's request for code that only uses $input.
const InputOnlyParams = `{"dataOfNodes":[],"env":false,"input":{"include":true},"prevNode":false}`

// NodeOnlyParams asks for the task's workflow and node, without input items, other nodes' data or
// the environment: the cheapest answer that names the node.
const NodeOnlyParams = `{"dataOfNodes":[],"env":false,"input":{"include":false},"prevNode":false}`

// AllNodesParams asks for the input and every node's run data (an item's lineage back through the
// execution), without the environment.
const AllNodesParams = `{"dataOfNodes":"all","env":false,"input":{"include":true},"prevNode":true}`

// NodeTypesRequest asks for node-type descriptions ([{name, version}]).
type NodeTypesRequest struct {
	TaskID        string          `json:"taskId"`
	RequestID     string          `json:"requestId"`
	RequestParams json.RawMessage `json:"requestParams,omitempty"`
}

// RPC calls a helper in the n8n process (e.g. logNodeOutput, helpers.httpRequest).
type RPC struct {
	TaskID string          `json:"taskId"`
	CallID string          `json:"callId"`
	Name   string          `json:"name"`
	Params json.RawMessage `json:"params,omitempty"`
}

// TaskDone ends a task: {"result":[...], "customData"?, "staticData"?}.
type TaskDone struct {
	TaskID string          `json:"taskId"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// TaskError ends a task with an error: {"message","stack","description","lineNumber",...}.
type TaskError struct {
	TaskID string          `json:"taskId"`
	Error  json.RawMessage `json:"error,omitempty"`
}

// Unknown is a message of a type this package does not know; both roles ignore it (as n8n does).
type Unknown struct {
	Type string
	Raw  json.RawMessage
}

func (InfoRequest) MessageType() string      { return TypeInfoRequest }
func (RunnerRegistered) MessageType() string { return TypeRunnerRegistered }
func (Drain) MessageType() string            { return TypeDrain }
func (TaskOfferAccept) MessageType() string  { return TypeTaskOfferAccept }
func (TaskSettings) MessageType() string     { return TypeTaskSettings }
func (TaskCancel) MessageType() string       { return TypeTaskCancel }
func (TaskDataResponse) MessageType() string { return TypeTaskDataResponse }
func (NodeTypes) MessageType() string        { return TypeNodeTypes }
func (RPCResponse) MessageType() string      { return TypeRPCResponse }
func (RunnerInfo) MessageType() string       { return TypeRunnerInfo }
func (TaskOffer) MessageType() string        { return TypeTaskOffer }
func (TaskAccepted) MessageType() string     { return TypeTaskAccepted }
func (TaskRejected) MessageType() string     { return TypeTaskRejected }
func (TaskDeferred) MessageType() string     { return TypeTaskDeferred }
func (TaskDataRequest) MessageType() string  { return TypeTaskDataRequest }
func (NodeTypesRequest) MessageType() string { return TypeNodeTypesRequest }
func (RPC) MessageType() string              { return TypeRPC }
func (TaskDone) MessageType() string         { return TypeTaskDone }
func (TaskError) MessageType() string        { return TypeTaskError }
func (u Unknown) MessageType() string        { return u.Type }

func (m TaskOfferAccept) TaskKey() string  { return m.TaskID }
func (m TaskSettings) TaskKey() string     { return m.TaskID }
func (m TaskCancel) TaskKey() string       { return m.TaskID }
func (m TaskDataResponse) TaskKey() string { return m.TaskID }
func (m NodeTypes) TaskKey() string        { return m.TaskID }
func (m RPCResponse) TaskKey() string      { return m.TaskID }
func (m TaskAccepted) TaskKey() string     { return m.TaskID }
func (m TaskRejected) TaskKey() string     { return m.TaskID }
func (m TaskDeferred) TaskKey() string     { return m.TaskID }
func (m TaskDataRequest) TaskKey() string  { return m.TaskID }
func (m NodeTypesRequest) TaskKey() string { return m.TaskID }
func (m RPC) TaskKey() string              { return m.TaskID }
func (m TaskDone) TaskKey() string         { return m.TaskID }
func (m TaskError) TaskKey() string        { return m.TaskID }

// taskIDCopier is every task message of this package (and a pointer to one: the methods take
// values, so the copy never writes through the caller's pointer).
type taskIDCopier interface {
	TaskMessage
	copyWithTaskID(id string) TaskMessage
}

func (m TaskOfferAccept) copyWithTaskID(id string) TaskMessage  { m.TaskID = id; return m }
func (m TaskSettings) copyWithTaskID(id string) TaskMessage     { m.TaskID = id; return m }
func (m TaskCancel) copyWithTaskID(id string) TaskMessage       { m.TaskID = id; return m }
func (m TaskDataResponse) copyWithTaskID(id string) TaskMessage { m.TaskID = id; return m }
func (m NodeTypes) copyWithTaskID(id string) TaskMessage        { m.TaskID = id; return m }
func (m RPCResponse) copyWithTaskID(id string) TaskMessage      { m.TaskID = id; return m }
func (m TaskAccepted) copyWithTaskID(id string) TaskMessage     { m.TaskID = id; return m }
func (m TaskRejected) copyWithTaskID(id string) TaskMessage     { m.TaskID = id; return m }
func (m TaskDeferred) copyWithTaskID(id string) TaskMessage     { m.TaskID = id; return m }
func (m TaskDataRequest) copyWithTaskID(id string) TaskMessage  { m.TaskID = id; return m }
func (m NodeTypesRequest) copyWithTaskID(id string) TaskMessage { m.TaskID = id; return m }
func (m RPC) copyWithTaskID(id string) TaskMessage              { m.TaskID = id; return m }
func (m TaskDone) copyWithTaskID(id string) TaskMessage         { m.TaskID = id; return m }
func (m TaskError) copyWithTaskID(id string) TaskMessage        { m.TaskID = id; return m }

// ErrMalformedMessage is returned by Decode for frames that are not a JSON object with a string "type".
var ErrMalformedMessage = errors.New("n8nproto: malformed message")

// ErrFrameTooDeep is wrapped (with ErrMalformedMessage) when a frame nests deeper than the limit.
var ErrFrameTooDeep = errors.New("n8nproto: frame nested too deep")

// DefaultMaxFrameDepth bounds the nesting of arrays and objects in one frame. It is encoding/json's
// own limit: the sidecar could not re-encode anything deeper, and gjson's validator (which recurses
// once per level) stays far from Go's stack limit below it.
const DefaultMaxFrameDepth = 10_000

// FrameError is what Decode returns for a frame it refuses. Type and TaskID are read without
// parsing the rest, as far as they could be ("" when not), so the side that reads the frame can
// fail the task it belonged to instead of leaving it waiting for ever.
type FrameError struct {
	Type   string
	TaskID string
	Key    string // requestId or callId of an answer frame, "" when none
	Err    error
}

func (e *FrameError) Error() string {
	if e.Type == "" {
		return fmt.Sprintf("%v: %v", ErrMalformedMessage, e.Err)
	}
	typ := e.Type
	if len(typ) > 64 { // the type is outside input: a log line carries no more of it than this
		typ = fmt.Sprintf("%q…(%d bytes)", strings.ToValidUTF8(typ[:64], ""), len(typ))
	}
	return fmt.Sprintf("%v: %s: %v", ErrMalformedMessage, typ, e.Err)
}

func (e *FrameError) Unwrap() []error { return []error{ErrMalformedMessage, e.Err} }

// Decode parses one frame by its "type" with DefaultMaxFrameDepth. Known types come back as values
// (TaskDone, not *TaskDone); unknown types come back as Unknown with the raw frame. Every refused
// frame gives a *FrameError wrapping ErrMalformedMessage.
func Decode(data []byte) (Message, error) { return DecodeLimited(data, DefaultMaxFrameDepth) }

// DecodeLimited is Decode with a nesting limit (<= 0: DefaultMaxFrameDepth). The depth is checked
// in one iterative pass before any parser runs.
func DecodeLimited(data []byte, maxDepth int) (Message, error) {
	return decodeLimited(data, maxDepth, false)
}

// decodeOwned is DecodeLimited for a frame whose buffer the caller owns and never writes to again
// (a websocket message as readMessage returns it): the payload of a big message is a sub-slice of
// data instead of a copy, so a 200 MB data response costs its size once, not twice.
func decodeOwned(data []byte, maxDepth int) (Message, error) {
	return decodeLimited(data, maxDepth, true)
}

func decodeLimited(data []byte, maxDepth int, alias bool) (Message, error) {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxFrameDepth
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, &FrameError{Err: errors.New("not a JSON object")}
	}
	// Each level takes a byte: a frame no longer than the limit cannot pass it, and most frames are small.
	if err := checkDepth(data, maxDepth); err != nil {
		fe := &FrameError{Err: fmt.Errorf("%w: %v (raise N8N_FN_MAX_FRAME_DEPTH on the sidecar)", ErrFrameTooDeep, err)}
		// gjson finds top-level fields without recursing into the values it skips.
		ids := gjson.GetManyBytes(data, "type", "taskId", "requestId", "callId")
		fe.Type, fe.TaskID = ids[0].Str, ids[1].Str
		fe.Key = ids[2].Str
		if fe.Key == "" {
			fe.Key = ids[3].Str
		}
		return nil, fe
	}
	m, err := decode(data, alias)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func checkDepth(data []byte, maxDepth int) error {
	if len(data) <= maxDepth {
		return nil
	}
	return jsonlimit.Check(data, maxDepth)
}

func decode(data []byte, alias bool) (Message, error) {
	t := gjson.GetBytes(data, "type")
	if t.Type != gjson.String {
		return nil, &FrameError{Err: errors.New(`no string field "type"`)}
	}
	if m, ok, err := decodeFast(t.Str, data, alias); ok {
		if err != nil {
			return nil, &FrameError{Type: t.Str, Err: err}
		}
		return m, nil
	}
	var (
		m   Message
		err error
	)
	switch t.Str {
	case TypeInfoRequest:
		m, err = decodeEmpty(data, InfoRequest{})
	case TypeRunnerRegistered:
		m, err = decodeEmpty(data, RunnerRegistered{})
	case TypeDrain:
		m, err = decodeEmpty(data, Drain{})
	case TypeTaskOfferAccept:
		m, err = decodeAs[TaskOfferAccept](data)
	case TypeTaskCancel:
		m, err = decodeAs[TaskCancel](data)
	case TypeRunnerInfo:
		m, err = decodeAs[RunnerInfo](data)
	case TypeTaskOffer:
		m, err = decodeAs[TaskOffer](data)
	case TypeTaskAccepted:
		m, err = decodeAs[TaskAccepted](data)
	case TypeTaskRejected:
		m, err = decodeAs[TaskRejected](data)
	case TypeTaskDeferred:
		m, err = decodeAs[TaskDeferred](data)
	default:
		if !json.Valid(data) {
			return nil, &FrameError{Type: t.Str, Err: errors.New("invalid JSON")}
		}
		return Unknown{Type: t.Str, Raw: append(json.RawMessage(nil), data...)}, nil
	}
	if err != nil {
		return nil, &FrameError{Type: t.Str, Err: err}
	}
	return m, nil
}

// decodeFast handles the messages that carry opaque payloads (data responses can be up to 1 GiB):
// one validation pass plus gjson field extraction is several times faster than encoding/json
// scanning every byte into a RawMessage.
func decodeFast(typ string, data []byte, alias bool) (Message, bool, error) {
	f, ok := fastFrameOf(typ)
	if !ok {
		return nil, false, nil
	}
	if !gjson.ValidBytes(data) {
		return nil, true, errors.New("invalid JSON")
	}
	// Read through an unsafe string view (GetManyBytes would copy the whole frame). The keys stay
	// in f (on the stack): GetMany does not keep them.
	keys := f.keys[:f.n]
	res := gjson.GetMany(unsafe.String(unsafe.SliceData(data), len(data)), keys...)
	var ids [3]string
	last := len(keys) - 1
	for i, r := range res[:last] {
		id, err := fastString(keys[i], r)
		if err != nil {
			return nil, true, err
		}
		ids[i] = id
	}
	return f.build(ids, fastPayload(data, res[last], alias)), true, nil
}

// fastFrame is how decodeFast reads one frame type: its string fields (ids) in order, then its
// payload field, and the message they make. keys is an array, not a slice, so that looking a
// type up allocates nothing.
type fastFrame struct {
	keys  [4]string
	n     int // keys in use; the last one is the payload
	build func(ids [3]string, payload json.RawMessage) Message
}

// fastFrameOf is the fastFrame of typ, false for the types encoding/json decodes.
func fastFrameOf(typ string) (fastFrame, bool) {
	switch typ {
	case TypeTaskDataResponse:
		return fastFrame{[4]string{"taskId", "requestId", "data"}, 3, func(s [3]string, p json.RawMessage) Message {
			return TaskDataResponse{TaskID: s[0], RequestID: s[1], Data: p}
		}}, true
	case TypeNodeTypes:
		return fastFrame{[4]string{"taskId", "requestId", "nodeTypes"}, 3, func(s [3]string, p json.RawMessage) Message {
			return NodeTypes{TaskID: s[0], RequestID: s[1], NodeTypes: p}
		}}, true
	case TypeTaskDataRequest:
		return fastFrame{[4]string{"taskId", "requestId", "requestParams"}, 3, func(s [3]string, p json.RawMessage) Message {
			return TaskDataRequest{TaskID: s[0], RequestID: s[1], RequestParams: p}
		}}, true
	case TypeNodeTypesRequest:
		return fastFrame{[4]string{"taskId", "requestId", "requestParams"}, 3, func(s [3]string, p json.RawMessage) Message {
			return NodeTypesRequest{TaskID: s[0], RequestID: s[1], RequestParams: p}
		}}, true
	case TypeRPCResponse:
		return fastFrame{[4]string{"taskId", "callId", "status", "data"}, 4, func(s [3]string, p json.RawMessage) Message {
			return RPCResponse{TaskID: s[0], CallID: s[1], Status: s[2], Data: p}
		}}, true
	case TypeRPC:
		return fastFrame{[4]string{"taskId", "callId", "name", "params"}, 4, func(s [3]string, p json.RawMessage) Message {
			return RPC{TaskID: s[0], CallID: s[1], Name: s[2], Params: p}
		}}, true
	case TypeTaskSettings:
		return fastFrame{[4]string{"taskId", "settings"}, 2, func(s [3]string, p json.RawMessage) Message {
			return TaskSettings{TaskID: s[0], Settings: p}
		}}, true
	case TypeTaskDone:
		return fastFrame{[4]string{"taskId", "data"}, 2, func(s [3]string, p json.RawMessage) Message {
			return TaskDone{TaskID: s[0], Data: p}
		}}, true
	case TypeTaskError:
		return fastFrame{[4]string{"taskId", "error"}, 2, func(s [3]string, p json.RawMessage) Message {
			return TaskError{TaskID: s[0], Error: p}
		}}, true
	}
	return fastFrame{}, false
}

// fastString is an id field of a fast frame: "" when missing or null (as encoding/json would
// leave it), cloned so it does not pin the frame.
func fastString(key string, r gjson.Result) (string, error) {
	if !r.Exists() || r.Type == gjson.Null {
		return "", nil
	}
	if r.Type != gjson.String {
		return "", fmt.Errorf("field %q is not a string", key)
	}
	return strings.Clone(r.Str), nil
}

// fastPayload is the payload field of a fast frame, nil when missing. It is cloned, unless alias
// (decodeOwned): then it is a sub-slice of data (capacity cut at its end, so an append copies).
func fastPayload(data []byte, r gjson.Result, alias bool) json.RawMessage {
	if !r.Exists() {
		return nil
	}
	if alias {
		return json.RawMessage(SubBytes(data, r))
	}
	return append(json.RawMessage(nil), r.Raw...)
}

func decodeAs[T Message](data []byte) (Message, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return v, nil
}

func decodeEmpty(data []byte, m Message) (Message, error) {
	if !json.Valid(data) {
		return nil, errors.New("invalid JSON")
	}
	return m, nil
}

// SubBytes returns the bytes of r, a result gjson found in data through an unsafe string view of
// it, as a sub-slice of data (capacity cut at its end: appending to it copies) instead of a copy;
// a copy when r does not lie inside data.
func SubBytes(data []byte, r gjson.Result) []byte {
	if i, n := r.Index, len(r.Raw); i > 0 && i+n <= len(data) && unsafe.StringData(r.Raw) == unsafe.SliceData(data[i:]) {
		return data[i : i+n : i+n]
	}
	return []byte(r.Raw)
}

// Encode serialises m as one frame with its "type" first. Pointers to message structs are accepted too.
func Encode(m Message) ([]byte, error) {
	if m == nil {
		return nil, errors.New("n8nproto: encode nil message")
	}
	if u, ok := m.(Unknown); ok {
		if !json.Valid(u.Raw) {
			return nil, fmt.Errorf("n8nproto: encode unknown %q: raw is not valid JSON", u.Type)
		}
		return append([]byte(nil), u.Raw...), nil
	}
	if u, ok := m.(*Unknown); ok {
		return Encode(*u)
	}
	if fast, ok, err := encodeFast(m); ok {
		return fast, err
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("n8nproto: encode %s: %w", m.MessageType(), err)
	}
	typ := m.MessageType()
	out := make([]byte, 0, len(body)+len(typ)+12)
	out = append(out, `{"type":`...)
	out = appendJSONString(out, typ)
	if len(body) > 2 { // body is "{...}" with fields
		out = append(out, ',')
		out = append(out, body[1:]...)
	} else {
		out = append(out, '}')
	}
	return out, nil
}

// encodeFast writes the messages that carry big opaque payloads without re-compacting the payload
// (json.Marshal would copy and re-scan a data response of up to 1 GiB twice). The payload is still
// validated, so a broken payload never reaches the wire.
func encodeFast(m Message) ([]byte, bool, error) {
	switch v := m.(type) { // Encode takes pointers too: encodeFastParts reads values
	case *TaskDataResponse:
		m = *v
	case *TaskSettings:
		m = *v
	case *TaskDone:
		m = *v
	}
	head, raw, ok, err := encodeFastParts(m)
	if !ok || err != nil {
		return nil, ok, err
	}
	out := make([]byte, 0, len(head)+len(raw)+1)
	out = append(out, head...)
	out = append(out, raw...)
	return append(out, '}'), true, nil
}

// encodeFastParts is encodeFast in three parts, head + payload + "}", so a big payload can be
// written to the socket as it is, without a frame-sized copy (wsConn.send).
func encodeFastParts(m Message) (head, payload []byte, ok bool, err error) {
	var (
		typ string
		ids [][2]string
		key string
		raw json.RawMessage
	)
	switch v := m.(type) {
	case TaskDataResponse:
		typ, ids, key, raw = TypeTaskDataResponse, [][2]string{{"taskId", v.TaskID}, {"requestId", v.RequestID}}, "data", v.Data
	case TaskSettings:
		typ, ids, key, raw = TypeTaskSettings, [][2]string{{"taskId", v.TaskID}}, "settings", v.Settings
	case TaskDone:
		typ, ids, key, raw = TypeTaskDone, [][2]string{{"taskId", v.TaskID}}, "data", v.Data
	default:
		return nil, nil, false, nil
	}
	head, err = fastHead(typ, ids, key, raw, "n8nproto: encode "+typ)
	return head, raw, true, err
}

// fastHead is the frame up to its payload: {"type":T,"id":"...",...,"key": (without the key when
// raw is empty). It checks raw's depth and validity.
func fastHead(typ string, ids [][2]string, key string, raw json.RawMessage, errPfx string) ([]byte, error) {
	out := make([]byte, 0, 96)
	out = append(out, `{"type":`...)
	out = appendJSONString(out, typ)
	for _, kv := range ids {
		out = append(out, ',')
		out = appendJSONString(out, kv[0])
		out = append(out, ':')
		out = appendJSONString(out, kv[1])
	}
	if len(raw) > 0 {
		// The payload may come from anywhere (a function's result out of Redis): bound its depth
		// before gjson's recursive validator runs.
		if err := checkDepth(raw, DefaultMaxFrameDepth); err != nil {
			return nil, fmt.Errorf("%s: field %q: %w: %v", errPfx, key, ErrFrameTooDeep, err)
		}
		if !gjson.ValidBytes(raw) {
			return nil, fmt.Errorf("%s: field %q is not valid JSON", errPfx, key)
		}
		out = append(out, ',')
		out = appendJSONString(out, key)
		out = append(out, ':')
	}
	return out, nil
}

func appendJSONString(dst []byte, s string) []byte {
	simple := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			simple = false
			break
		}
	}
	if simple {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	b, _ := json.Marshal(s) // cannot fail for a string
	return append(dst, b...)
}

// withTaskID returns a copy of m whose TaskID is id (Send rewrites ids so a relay can forward as is).
// A pointer to a task message is copied as its value (the copy is a TaskDone, not a *TaskDone).
func withTaskID(m TaskMessage, id string) (TaskMessage, error) {
	if m == nil {
		return nil, errors.New("n8nproto: nil task message")
	}
	c, ok := m.(taskIDCopier)
	if !ok {
		return nil, fmt.Errorf("n8nproto: %T is not a task message of this package", m)
	}
	return c.copyWithTaskID(id), nil
}
