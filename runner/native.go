package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/n8nproto"
	"github.com/n8n-fn/n8n-fn/runner/functions"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// errUnknownOp is returned for a well-formed header whose op no part of this sidecar serves.
var errUnknownOp = errors.New("unknown n8n-fn op")

// runNative answers a directive task: parse its header, run its op, end the task exactly once.
func (s *Sidecar) runNative(ctx context.Context, t *n8nproto.UpstreamTask, cs n8nproto.CodeSettings) {
	log := s.log.WithFields(map[string]any{"task": t.ID, "path": "native"})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-t.Cancelled():
			cancel()
		case <-ctx.Done():
		}
	}()

	opName, data, err := s.nativeResult(ctx, t, cs)
	log = log.WithField("op", opName)
	outcome, opLabel := "ok", opName
	if err != nil {
		outcome = "error"
	}
	if _, known := s.ops[opName]; !known {
		opLabel = "unknown" // the op comes from the user's header: only known ones become labels
	}
	defer func() { s.met.NativeTask(opLabel, outcome) }()
	select {
	case <-t.Cancelled():
		outcome = "cancelled"
		// n8n no longer tracks the task: answering would be dropped anyway.
		log.WithField("reason", t.CancelReason()).Info("native task cancelled by n8n")
		return
	default:
	}
	if err != nil {
		// The message can quote item data (a bad parameter value): full text only at debug level.
		log.WithField("continue_on_fail", cs.ContinueOnFail).Info("native task failed; the error went to n8n")
		log.WithError(err).Debug("native task error")
		if cs.ContinueOnFail {
			if err := t.Done(ctx, continueOnFailResult(err)); err != nil {
				log.WithError(err).Warn("could not send the error item to n8n")
			}
			return
		}
		if err := t.Fail(ctx, taskErrorJSON(err, s.cfg.ID)); err != nil {
			log.WithError(err).Warn("could not send the task error to n8n")
		}
		return
	}
	if err := t.DoneParts(ctx, data); err != nil {
		log.WithError(err).Warn("could not send the task result to n8n")
	}
}

func (s *Sidecar) nativeResult(ctx context.Context, t *n8nproto.UpstreamTask, cs n8nproto.CodeSettings) (string, n8nproto.Parts, error) {
	h, err := s.cfg.Limits.ParseHeader(cs.Code)
	if err != nil {
		err = workflows.NodeError(s.nodeName(ctx, t), err)
		return "(bad header)", nil, &functions.OpError{
			Message: "n8n-fn: " + strings.TrimPrefix(err.Error(), "n8n-fn: "),
			Description: "The Code node starts with an n8n-fn header comment that the sidecar cannot read. " +
				`Fix the comment at the top of the code; it must look like /* @n8n-fn {"op":"call","function":"add"} */. ` +
				"`n8n-fn snippet` prints paste-ready nodes.",
			Err: err,
		}
	}
	op, ok := s.ops[h.Op]
	if !ok {
		return h.Op, nil, &functions.OpError{
			Message: fmt.Sprintf("n8n-fn: %v %q: this sidecar (%s) serves %s", errUnknownOp, h.Op, s.cfg.ID, strings.Join(s.opNames(), ", ")),
			Description: "The header names an op this n8n-fn version does not serve. " +
				"Check the spelling of \"op\" in the header comment, or update the n8n-fn sidecar next to this n8n process.",
			Err: errUnknownOp,
		}
	}
	if cs.NodeMode != "" && cs.NodeMode != "runOnceForAllItems" {
		return h.Op, nil, &functions.OpError{
			Message:     fmt.Sprintf("n8n-fn: op %q needs the Code node mode \"Run Once for All Items\", this node runs %q", h.Op, cs.NodeMode),
			Description: "Open the Code node and set Mode to \"Run Once for All Items\"; the op itself decides how to treat each item.",
		}
	}
	data, err := op(ctx, t, h, cs)
	return h.Op, data, err
}

// nodeName asks n8n which node a task belongs to (the settings do not say): only for errors that
// must name the node, so that the common path costs no extra round trip. "" when n8n does not tell.
func (s *Sidecar) nodeName(ctx context.Context, t *n8nproto.UpstreamTask) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	raw, err := t.RequestData(ctx, json.RawMessage(n8nproto.NodeOnlyParams))
	if err != nil {
		return ""
	}
	return gjson.GetBytes(raw, "node.name").String()
}

// taskErrorJSON shapes an error like the official runner's runner:taskerror payload
// (message, description, stack), which n8n shows as the node's error.
func taskErrorJSON(err error, sidecarID string) json.RawMessage {
	msg, desc := err.Error(), ""
	var oe *functions.OpError
	if errors.As(err, &oe) {
		msg, desc = oe.Message, oe.Description
	}
	if !strings.HasPrefix(msg, "n8n-fn") {
		msg = "n8n-fn: " + msg
	}
	out := map[string]any{
		"message": msg,
		"stack":   "Error: " + msg + "\n    at n8n-fn sidecar " + sidecarID,
	}
	if desc != "" {
		out["description"] = desc
	} else {
		out["description"] = nil
	}
	b, _ := json.Marshal(out)
	return b
}

// continueOnFailResult is what the official runner returns for a failed all-items task when the node
// has "On Error: Continue": one item carrying the message.
func continueOnFailResult(err error) json.RawMessage {
	msg := err.Error()
	var oe *functions.OpError
	if errors.As(err, &oe) {
		msg = oe.Message
	}
	b, _ := json.Marshal(map[string]any{"result": []any{map[string]any{"json": map[string]any{"error": msg}}}})
	return b
}
