package registry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The trace of a call chain: small records kept for a while (the sidecars' N8N_FN_TRACE_TTL) so
// that `n8n-fn trace` and the status page can draw which execution called what, where and how it
// went. They hold ids, names, sizes, times and outcomes, never params or results.

// TraceCall is the trace record of one call.
type TraceCall struct {
	ID          string `json:"callId"`
	Function    string `json:"function"`
	ParamsBytes int    `json:"paramsBytes"`
	Attempt     int    `json:"attempt,omitempty"`
	// The caller: the execution and node that queued the call, its workflow and sidecar, and the
	// call that execution itself serves (empty at the top of a chain).
	CallerExecution string    `json:"callerExecution,omitempty"`
	CallerWorkflow  string    `json:"callerWorkflow,omitempty"`
	CallerNode      string    `json:"callerNode,omitempty"`
	CallerSidecar   string    `json:"callerSidecar,omitempty"`
	Parent          string    `json:"parentCall,omitempty"`
	Queued          time.Time `json:"queued"`
	Deadline        time.Time `json:"deadline,omitzero"`
	// Dispatch: how often a dispatcher triggered the function (more than 1: re-run), the first
	// and the latest time, and by which sidecar.
	Dispatches     int       `json:"dispatches"`
	Dispatched     time.Time `json:"dispatched,omitzero"`
	LastDispatched time.Time `json:"lastDispatched,omitzero"`
	Dispatcher     string    `json:"dispatcher,omitempty"`
	// The function execution that claimed the call (the latest claim when it was re-run).
	Execution    string    `json:"execution,omitempty"`
	WorkflowID   string    `json:"workflowId,omitempty"`
	WorkflowName string    `json:"workflowName,omitempty"`
	Worker       string    `json:"worker,omitempty"` // the sidecar whose n8n process ran the execution
	Claimed      time.Time `json:"claimed,omitzero"`
	// The end as the caller saw it: ok, an error kind, timeout, cancelled (metrics' outcomes).
	Outcome  string    `json:"outcome,omitempty"`
	Finished time.Time `json:"finished,omitzero"`
}

// TraceExecution is the trace record of one n8n execution that made or served calls.
type TraceExecution struct {
	ID           string   `json:"execution"`
	WorkflowID   string   `json:"workflowId,omitempty"`
	WorkflowName string   `json:"workflowName,omitempty"`
	Worker       string   `json:"worker,omitempty"`
	Served       string   `json:"servedCall,omitempty"` // the call this function execution served
	Calls        []string `json:"calls,omitempty"`      // the calls it made, in order
	URL          string   `json:"url,omitempty"`        // in n8n's UI (SetLinks); not stored
}

// traceRecentMax caps the list of recent calls.
const traceRecentMax = 200

// TraceQueued records a call its caller just queued, and the caller's execution. One round trip.
func (r *Registry) TraceQueued(ctx context.Context, c TraceCall, callerWorkflowName string, ttl time.Duration) error {
	const op = "trace"
	if c.ID == "" || ttl <= 0 {
		return wrapName(op, "", fmt.Errorf("%w: a trace needs a call id and a positive TTL (got %q, %s)", ErrInvalid, c.ID, ttl))
	}
	ck := r.k.traceCall(c.ID)
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		fields := map[string]any{"fn": c.Function, "pb": c.ParamsBytes, "at": c.Attempt, "q": c.Queued.UnixMilli(),
			"cx": c.CallerExecution, "cw": c.CallerWorkflow, "cn": c.CallerNode, "cs": c.CallerSidecar, "pa": c.Parent}
		if !c.Deadline.IsZero() {
			fields["dl"] = c.Deadline.UnixMilli()
		}
		p.HSet(ctx, ck, fields)
		p.PExpire(ctx, ck, ttl)
		if c.CallerExecution != "" {
			xk, lk := r.k.traceExec(c.CallerExecution), r.k.traceExecCalls(c.CallerExecution)
			p.HSet(ctx, xk, "wf", c.CallerWorkflow, "wn", callerWorkflowName, "w", c.CallerSidecar)
			p.PExpire(ctx, xk, ttl)
			p.RPush(ctx, lk, c.ID)
			p.PExpire(ctx, lk, ttl)
		}
		p.LPush(ctx, r.k.traceRecent(), c.ID)
		p.LTrim(ctx, r.k.traceRecent(), 0, traceRecentMax-1)
		p.PExpire(ctx, r.k.traceRecent(), ttl)
		return nil
	})
	return wrapName(op, "", err)
}

// TraceDispatched records one trigger of the call's function by dispatcher (sidecar id).
func (r *Registry) TraceDispatched(ctx context.Context, callID, dispatcher string, at time.Time, ttl time.Duration) error {
	ck := r.k.traceCall(callID)
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HIncrBy(ctx, ck, "dn", 1)
		p.HSetNX(ctx, ck, "d1", at.UnixMilli())
		p.HSet(ctx, ck, "dl2", at.UnixMilli(), "ds", dispatcher)
		p.PExpire(ctx, ck, ttl)
		return nil
	})
	return wrapName("trace", "", err)
}

// TraceClaimed records the function execution that claimed the call: the call's record and the
// execution's (its workflow, its worker, the call it serves).
func (r *Registry) TraceClaimed(ctx context.Context, callID string, e TraceExecution, at time.Time, ttl time.Duration) error {
	ck, xk := r.k.traceCall(callID), r.k.traceExec(e.ID)
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, ck, "x", e.ID, "xw", e.WorkflowID, "xn", e.WorkflowName, "xs", e.Worker, "xt", at.UnixMilli())
		p.PExpire(ctx, ck, ttl)
		p.HSet(ctx, xk, "wf", e.WorkflowID, "wn", e.WorkflowName, "w", e.Worker, "sv", callID)
		p.PExpire(ctx, xk, ttl)
		return nil
	})
	return wrapName("trace", "", err)
}

// TraceFinished records how calls ended for their caller (outcome by call id).
func (r *Registry) TraceFinished(ctx context.Context, outcomes map[string]string, at time.Time, ttl time.Duration) error {
	if len(outcomes) == 0 {
		return nil
	}
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for id, o := range outcomes {
			ck := r.k.traceCall(id)
			p.HSet(ctx, ck, "o", o, "f", at.UnixMilli())
			p.PExpire(ctx, ck, ttl)
		}
		return nil
	})
	return wrapName("trace", "", err)
}

// TracedCall returns a call's trace record; ok is false when there is none (unknown, or expired).
func (r *Registry) TracedCall(ctx context.Context, callID string) (c TraceCall, ok bool, err error) {
	h, err := r.rdb.HGetAll(ctx, r.k.traceCall(callID)).Result()
	if err != nil {
		return c, false, wrapName("trace", "", err)
	}
	if len(h) == 0 || h["fn"] == "" {
		return c, false, nil // only a late dispatch or claim wrote to it: not a call we traced
	}
	ms := func(k string) time.Time {
		n, err := strconv.ParseInt(h[k], 10, 64)
		if err != nil || n <= 0 {
			return time.Time{}
		}
		return time.UnixMilli(n)
	}
	num := func(k string) int { n, _ := strconv.Atoi(h[k]); return n }
	return TraceCall{
		ID: callID, Function: h["fn"], ParamsBytes: num("pb"), Attempt: num("at"),
		CallerExecution: h["cx"], CallerWorkflow: h["cw"], CallerNode: h["cn"], CallerSidecar: h["cs"], Parent: h["pa"],
		Queued: ms("q"), Deadline: ms("dl"),
		Dispatches: num("dn"), Dispatched: ms("d1"), LastDispatched: ms("dl2"), Dispatcher: h["ds"],
		Execution: h["x"], WorkflowID: h["xw"], WorkflowName: h["xn"], Worker: h["xs"], Claimed: ms("xt"),
		Outcome: h["o"], Finished: ms("f"),
	}, true, nil
}

// TracedExecution returns an execution's trace record with the calls it made; ok is false when
// there is none.
func (r *Registry) TracedExecution(ctx context.Context, execID string) (e TraceExecution, ok bool, err error) {
	var h *redis.MapStringStringCmd
	var calls *redis.StringSliceCmd
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		h = p.HGetAll(ctx, r.k.traceExec(execID))
		calls = p.LRange(ctx, r.k.traceExecCalls(execID), 0, -1)
		return nil
	})
	if err != nil {
		return e, false, wrapName("trace", "", err)
	}
	m := h.Val()
	if len(m) == 0 && len(calls.Val()) == 0 {
		return e, false, nil
	}
	return TraceExecution{ID: execID, WorkflowID: m["wf"], WorkflowName: m["wn"], Worker: m["w"], Served: m["sv"], Calls: calls.Val()}, true, nil
}

// RecentCalls returns the ids of up to n of the latest traced calls, newest first.
func (r *Registry) RecentCalls(ctx context.Context, n int64) ([]string, error) {
	if n <= 0 || n > traceRecentMax {
		n = traceRecentMax
	}
	ids, err := r.rdb.LRange(ctx, r.k.traceRecent(), 0, n-1).Result()
	return ids, wrapName("trace", "", err)
}

// TraceNode is one execution in a call tree, with the calls it made.
type TraceNode struct {
	TraceExecution
	CallTree []*TraceCallNode `json:"callTree"`
}

// TraceCallNode is one call in a call tree, with the function execution that served it.
type TraceCallNode struct {
	TraceCall
	Served *TraceNode `json:"servedBy,omitempty"`
}

// Bounds of one trace: a chain deeper than the recursion limit or wider than this is cut (and
// says so) instead of reading Redis without end.
const (
	traceMaxDepth = 64
	traceMaxCalls = 2000
)

// ErrTraceCut is returned with a tree that hit traceMaxCalls.
var ErrTraceCut = errors.New("the call tree has more calls than one trace shows")

// Trace builds the whole tree of the call chain id belongs to: id is a call id or an n8n
// execution id. It walks up to the execution at the top of the chain, then down through every
// call and the execution that served it. ErrNotFound when nothing is traced under id (a wrong id,
// or the records expired).
func (r *Registry) Trace(ctx context.Context, id string) (*TraceNode, error) {
	const op = "trace"
	execID := ""
	if c, ok, err := r.TracedCall(ctx, id); err != nil {
		return nil, err
	} else if ok {
		execID = c.CallerExecution
		if execID == "" {
			// Queued by something that is not an execution (a test, a replayed dead letter):
			// the call is the top.
			n := &TraceNode{TraceExecution: TraceExecution{Calls: []string{id}}}
			budget := traceMaxCalls
			return n, r.fill(ctx, n, 0, &budget)
		}
	} else if _, ok, err := r.TracedExecution(ctx, id); err != nil {
		return nil, err
	} else if ok {
		execID = id
	} else {
		return nil, wrapName(op, "", fmt.Errorf("%w: nothing is traced under %q: not a call id or an execution id that made or served calls, or its records expired (N8N_FN_TRACE_TTL)", ErrNotFound, id))
	}
	// Up: the execution serves a call, whose caller is another execution, ...
	for depth := 0; depth < traceMaxDepth; depth++ {
		e, ok, err := r.TracedExecution(ctx, execID)
		if err != nil {
			return nil, err
		}
		if !ok || e.Served == "" {
			break
		}
		c, ok, err := r.TracedCall(ctx, e.Served)
		if err != nil {
			return nil, err
		}
		if !ok || c.CallerExecution == "" || c.CallerExecution == execID {
			break
		}
		execID = c.CallerExecution
	}
	root, _, err := r.TracedExecution(ctx, execID)
	if err != nil {
		return nil, err
	}
	root.ID = execID
	n := &TraceNode{TraceExecution: root}
	budget := traceMaxCalls
	return n, r.fill(ctx, n, 0, &budget)
}

// fill reads the calls of execution node n and, for each, the execution that served it, down.
func (r *Registry) fill(ctx context.Context, n *TraceNode, depth int, budget *int) error {
	n.CallTree = []*TraceCallNode{}
	for _, id := range n.Calls {
		if *budget <= 0 {
			return ErrTraceCut
		}
		*budget--
		c, ok, err := r.TracedCall(ctx, id)
		if err != nil {
			return err
		}
		if !ok {
			c = TraceCall{ID: id} // expired before its caller's record
		}
		cn := &TraceCallNode{TraceCall: c}
		n.CallTree = append(n.CallTree, cn)
		if c.Execution == "" || depth >= traceMaxDepth {
			continue
		}
		e, ok, err := r.TracedExecution(ctx, c.Execution)
		if err != nil {
			return err
		}
		if !ok {
			e = TraceExecution{ID: c.Execution, WorkflowID: c.WorkflowID, WorkflowName: c.WorkflowName, Worker: c.Worker}
		}
		cn.Served = &TraceNode{TraceExecution: e}
		if err := r.fill(ctx, cn.Served, depth+1, budget); err != nil {
			return err
		}
	}
	return nil
}

// SetLinks fills every execution's URL in n8n's UI (base is n8n's address, e.g.
// http://127.0.0.1:5678): base/workflow/WORKFLOW/executions/EXECUTION.
func (n *TraceNode) SetLinks(base string) {
	if n == nil {
		return
	}
	if base != "" && n.ID != "" && n.WorkflowID != "" {
		n.URL = strings.TrimRight(base, "/") + "/workflow/" + n.WorkflowID + "/executions/" + n.ID
	}
	for _, c := range n.CallTree {
		c.Served.SetLinks(base)
	}
}
