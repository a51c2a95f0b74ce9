package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A call is bound to the n8n execution that runs it, not to the items of that execution:
//
//	dispatcher: NextDispatch           -> dispatch number n, signed into the call reference
//	function:   ClaimCall(n, execution) -> only the first execution presenting dispatch n wins;
//	            BindExecution           -> the execution's own list of claimed calls
//	return:     ExecutionCalls          -> the calls of its own execution
//	            CompleteClaimed         -> only an execution that claimed the call may answer it,
//	                                       and only the first answer counts
//
// So a call reference posted again while its call runs claims nothing (dispatch n is taken), a
// reference of an earlier dispatch claims nothing (n is stale), and a return node in an execution
// that claimed nothing answers nothing, whatever its items carry. The dispatcher's own re-run
// after a dead worker takes a new dispatch number; the first execution keeps its claim, so if it
// was alive after all its answer still counts (the first answer wins, the caller de-duplicates).

var (
	// ErrStaleDispatch: the call reference names a dispatch that is not the call's latest.
	ErrStaleDispatch = errors.New("the call was dispatched again since this reference was made")
	// ErrClaimed: another execution already claimed this dispatch of the call.
	ErrClaimed = errors.New("the call is already being run by another execution")
	// ErrNotClaimant: the execution never claimed the call it tries to answer.
	ErrNotClaimant = errors.New("this execution did not claim the call")
	// ErrAnswered: the call was already answered (a duplicate execution's result is dropped).
	ErrAnswered = errors.New("the call was already answered")
)

// ExecCall is one call claimed by an n8n execution: what its return node and its nested calls need.
type ExecCall struct {
	Function FunctionKey `json:"function"`
	CallID   string      `json:"callId"`
	EntryID  string      `json:"entryId"`
	ReplyKey string      `json:"replyKey"`
	Deadline time.Time   `json:"deadline"`
	Depth    int         `json:"depth"`
	Stack    []string    `json:"stack,omitempty"` // "callId:scope/name", outermost first
	Dispatch int64       `json:"dispatch"`
	// Node is the function node that claimed it: several calls served by one execution are
	// told apart by tracing items back to this node's output (item i serves calls[i]).
	Node string `json:"node,omitempty"`
}

// Delivery is the ExecCall as the stream delivered it (for Complete and Ack).
func (c ExecCall) Delivery() Delivery {
	return Delivery{Function: c.Function, EntryID: c.EntryID,
		Call: Call{ID: c.CallID, Function: c.Function, ReplyKey: c.ReplyKey, Deadline: c.Deadline, Depth: c.Depth, Stack: c.Stack}}
}

// Hash fields of a claim record: d = latest dispatch number, n<k> = execution that claimed
// dispatch k, x<exec> = dispatch claimed by that execution, s<exec> = its sidecar, t<exec> = when
// it claimed (unix ms, the claiming sidecar's clock, so it compares with that sidecar's
// ReportN8NGone), a = answered.
var nextDispatchScript = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[1], 'd', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
`)

var claimScript = redis.NewScript(`
local d = redis.call('HGET', KEYS[1], 'd')
if not d then return {'nodispatch', ''} end
if d ~= ARGV[1] then return {'stale', d} end
if redis.call('HGET', KEYS[1], 'a') then return {'answered', ''} end
local c = redis.call('HGET', KEYS[1], 'n' .. ARGV[1])
if c and c ~= ARGV[2] then return {'claimed', c} end
redis.call('HSET', KEYS[1], 'n' .. ARGV[1], ARGV[2], 'x' .. ARGV[2], ARGV[1], 's' .. ARGV[2], ARGV[3], 't' .. ARGV[2], ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'ok', ''}
`)

// fenceScript retires dispatch ARGV[1] while no execution has claimed it (and the call is not
// answered): the latest number moves on, so a late execution of that dispatch claims nothing.
var fenceScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'd') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'n' .. ARGV[1]) or redis.call('HGET', KEYS[1], 'a') then return 0 end
redis.call('HINCRBY', KEYS[1], 'd', 1)
return 1
`)

// The same execution may answer again (a retry after a Redis blip lost the first answer's reply):
// the caller de-duplicates by call id.
var answerScript = redis.NewScript(`
if not redis.call('HGET', KEYS[1], 'x' .. ARGV[1]) then return 'notclaimant' end
local a = redis.call('HGET', KEYS[1], 'a')
if a and a ~= ARGV[1] then return 'answered' end
redis.call('HSET', KEYS[1], 'a', ARGV[1])
return 'ok'
`)

// NextDispatch starts a new dispatch of a call and returns its number (1 for the first), which the
// dispatcher signs into the call reference it posts. ttl bounds the record (the call's deadline
// plus a margin).
func (r *Registry) NextDispatch(ctx context.Context, fn FunctionKey, callID string, ttl time.Duration) (int64, error) {
	const op = "next dispatch"
	if err := checkCall(fn, callID, ttl); err != nil {
		return 0, wrap(op, fn, err)
	}
	// Repeated on a new master after a failover (durable), the number grows once more: the
	// latest one is the one handed out.
	var n int64
	err := r.durable(ctx, func(ctx context.Context, c redis.Cmdable, _ bool) (err error) {
		n, err = nextDispatchScript.Run(ctx, c, []string{r.k.claim(fn, callID)}, ttl.Milliseconds()).Int64()
		return err
	})
	return n, wrap(op, fn, err)
}

// ClaimCall claims dispatch number dispatch of a call for the n8n execution execID, which runs on
// the worker of sidecarID, and records when (this process's clock: ClaimCall is called by the
// sidecar of that worker, the one that reports its n8n process gone). Claiming again from the same execution succeeds (a retried node);
// any other execution gets ErrClaimed, a reference of an earlier dispatch ErrStaleDispatch, an
// answered call ErrAnswered, and a call no dispatcher dispatched ErrNotFound.
func (r *Registry) ClaimCall(ctx context.Context, fn FunctionKey, callID string, dispatch int64, execID, sidecarID string, ttl time.Duration) error {
	const op = "claim call"
	if err := checkCall(fn, callID, ttl); err != nil {
		return wrap(op, fn, err)
	}
	if execID == "" || dispatch < 1 {
		return errorf(op, fn, ErrInvalid, "claim needs an execution id and a dispatch number (got %q, %d)", execID, dispatch)
	}
	// Repeated on a new master after a failover (durable): the same execution may claim again.
	// "nodispatch" and "stale" may come from an old master that lacks the dispatcher's latest
	// number (the dispatcher's sidecar already writes to the new one): checked as fresh reads.
	var res []string
	err := r.confirmed(ctx, false, func(ctx context.Context, c redis.Cmdable, _ bool) (err error) {
		res, err = claimScript.Run(ctx, c, []string{r.k.claim(fn, callID)},
			strconv.FormatInt(dispatch, 10), execID, sidecarID, ttl.Milliseconds(), time.Now().UnixMilli()).StringSlice()
		return err
	}, func() bool { return len(res) > 0 && (res[0] == "nodispatch" || res[0] == "stale") })
	if err != nil {
		return wrap(op, fn, err)
	}
	if len(res) != 2 {
		return errorf(op, fn, ErrInvalid, "unexpected script answer %q", res)
	}
	switch res[0] {
	case "ok":
		return nil
	case "nodispatch":
		return errorf(op, fn, ErrNotFound, "call %s was never dispatched (or its record expired)", callID)
	case "stale":
		return errorf(op, fn, ErrStaleDispatch, "call %s: the reference is for dispatch %d, the latest is %s", callID, dispatch, res[1])
	case "answered":
		return errorf(op, fn, ErrAnswered, "call %s", callID)
	default:
		return errorf(op, fn, ErrClaimed, "call %s: dispatch %d is run by execution %s", callID, dispatch, res[1])
	}
}

// BindExecution records the calls an execution claimed, in the order of the function node's
// output items (item i serves calls[i]), for ttl.
func (r *Registry) BindExecution(ctx context.Context, execID string, calls []ExecCall, ttl time.Duration) error {
	const op = "bind execution"
	if execID == "" || len(calls) == 0 || ttl <= 0 {
		return wrapName(op, "", fmt.Errorf("%w: bind needs an execution id, calls and a positive ttl", ErrInvalid))
	}
	b, err := json.Marshal(calls)
	if err != nil {
		return wrapName(op, "", fmt.Errorf("%w: encode the calls of execution %s: %v", ErrInvalid, execID, err))
	}
	return wrapName(op, "", r.durable(ctx, func(ctx context.Context, c redis.Cmdable, _ bool) error {
		return c.Set(ctx, r.k.execution(execID), b, ttl).Err()
	}))
}

// ExecutionCalls returns the calls the execution claimed; nil when it claimed none (it was not
// started by a dispatcher, or its record expired).
func (r *Registry) ExecutionCalls(ctx context.Context, execID string) ([]ExecCall, error) {
	const op = "execution calls"
	if execID == "" {
		return nil, nil
	}
	// fresh: the execution's function node may have bound it on a new master already.
	var raw []byte
	err := r.fresh(ctx, func(ctx context.Context, c redis.Cmdable) (err error) {
		raw, err = c.Get(ctx, r.k.execution(execID)).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		return err
	}, func() bool { return raw == nil })
	if err == nil && raw == nil {
		return nil, nil
	}
	if err != nil {
		return nil, wrapName(op, "", err)
	}
	var calls []ExecCall
	if err := json.Unmarshal(raw, &calls); err != nil {
		return nil, wrapName(op, "", fmt.Errorf("%w: the calls of execution %s do not decode: %v", ErrInvalid, execID, err))
	}
	return calls, nil
}

// Claim is who holds a call's latest dispatch.
type Claim struct {
	Exec     string    // the execution that claimed the latest dispatch ("" when none yet)
	Sidecar  string    // the sidecar whose worker runs it
	Dispatch int64     // the latest dispatch number (0: never dispatched, or the record expired)
	At       time.Time // when it claimed, on that sidecar's clock (zero for claims of older versions)
}

// ClaimState says which execution claimed the call's latest dispatch, on which sidecar and when.
func (r *Registry) ClaimState(ctx context.Context, fn FunctionKey, callID string) (Claim, error) {
	h, err := r.rdb.HGetAll(ctx, r.k.claim(fn, callID)).Result()
	if err != nil {
		return Claim{}, wrap("claim of", fn, err)
	}
	var c Claim
	c.Dispatch, _ = strconv.ParseInt(h["d"], 10, 64)
	c.Exec = h["n"+h["d"]]
	if c.Exec != "" {
		c.Sidecar = h["s"+c.Exec]
		if ms, err := strconv.ParseInt(h["t"+c.Exec], 10, 64); err == nil && ms > 0 {
			c.At = time.UnixMilli(ms)
		}
	}
	return c, nil
}

// ClaimOf says which execution claimed the call's latest dispatch ("" when none yet) and on which
// sidecar it runs.
func (r *Registry) ClaimOf(ctx context.Context, fn FunctionKey, callID string) (execID, sidecarID string, dispatch int64, err error) {
	c, err := r.ClaimState(ctx, fn, callID)
	return c.Exec, c.Sidecar, c.Dispatch, err
}

// FenceDispatch retires dispatch number dispatch of a call if it is still the latest and no
// execution has claimed it (and the call is unanswered), and says whether it did. After it, an
// execution presenting that number gets ErrStaleDispatch and runs nothing, so the dispatcher can
// trigger the call again without it running twice. Atomic: an execution claiming at the same
// moment either wins (nothing is fenced) or is refused.
func (r *Registry) FenceDispatch(ctx context.Context, fn FunctionKey, callID string, dispatch int64) (bool, error) {
	const op = "fence dispatch"
	if err := checkCall(fn, callID, time.Second); err != nil {
		return false, wrap(op, fn, err)
	}
	var n int64
	err := r.durable(ctx, func(ctx context.Context, c redis.Cmdable, _ bool) (err error) {
		n, err = fenceScript.Run(ctx, c, []string{r.k.claim(fn, callID)}, strconv.FormatInt(dispatch, 10)).Int64()
		return err
	})
	return n == 1, wrap(op, fn, err)
}

// CompleteClaimed answers a call on behalf of execution execID: only an execution that claimed
// some dispatch of the call may answer it (ErrNotClaimant otherwise), and only the first answer
// is published (ErrAnswered for other executions' answers; the same execution may answer again,
// so a retry after a Redis blip is safe). Then it is Complete: reply, acknowledge.
func (r *Registry) CompleteClaimed(ctx context.Context, c ExecCall, execID string, rep Reply) error {
	const op = "answer call"
	if err := checkCall(c.Function, c.CallID, time.Second); err != nil {
		return wrap(op, c.Function, err)
	}
	var res string
	err := r.confirmed(ctx, false, func(ctx context.Context, cmd redis.Cmdable, _ bool) (err error) {
		res, err = answerScript.Run(ctx, cmd, []string{r.k.claim(c.Function, c.CallID)}, execID).Text()
		return err
	}, func() bool { return res == "notclaimant" })
	if err != nil {
		return wrap(op, c.Function, err)
	}
	switch res {
	case "ok":
	case "answered":
		return errorf(op, c.Function, ErrAnswered, "call %s", c.CallID)
	default:
		return errorf(op, c.Function, ErrNotClaimant, "execution %s, call %s", execID, c.CallID)
	}
	return r.Complete(ctx, c.Delivery(), rep)
}

func checkCall(fn FunctionKey, callID string, ttl time.Duration) error {
	if err := fn.Validate(); err != nil {
		return err
	}
	if callID == "" || len(callID) > 128 || strings.ContainsAny(callID, "{} \t\r\n") {
		return fmt.Errorf("%w: call id %q", ErrInvalid, callID)
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: ttl must be positive, got %s", ErrInvalid, ttl)
	}
	return nil
}

// Global concurrency: a function may declare how many of its calls run at once across every
// sidecar. A dispatcher takes a lease before it triggers the function's execution and gives it
// back after; leases expire, so a dead dispatcher's slot comes back by itself.

var acquireSlotScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  return 1
end
return 0
`)

var refreshSlotsScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i]) end
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return 0
`)

// AcquireSlot takes one of the function's limit global slots for holder (a call id) for lease;
// false when all are taken. Taking a slot the holder already has renews it.
func (r *Registry) AcquireSlot(ctx context.Context, fn FunctionKey, holder string, limit int, lease time.Duration) (bool, error) {
	const op = "acquire slot"
	if err := checkCall(fn, holder, lease); err != nil {
		return false, wrap(op, fn, err)
	}
	if limit < 1 {
		return false, errorf(op, fn, ErrInvalid, "limit must be at least 1, got %d", limit)
	}
	n, err := acquireSlotScript.Run(ctx, r.rdb, []string{r.k.slots(fn)}, holder, limit, lease.Milliseconds()).Int()
	return n == 1, wrap(op, fn, err)
}

// RefreshSlots renews the leases of holders that still have a slot.
func (r *Registry) RefreshSlots(ctx context.Context, fn FunctionKey, holders []string, lease time.Duration) error {
	const op = "refresh slots"
	if len(holders) == 0 {
		return nil
	}
	args := make([]any, 0, len(holders)+1)
	args = append(args, lease.Milliseconds())
	for _, h := range holders {
		args = append(args, h)
	}
	return wrap(op, fn, refreshSlotsScript.Run(ctx, r.rdb, []string{r.k.slots(fn)}, args...).Err())
}

// ReleaseSlot gives holder's slot back.
func (r *Registry) ReleaseSlot(ctx context.Context, fn FunctionKey, holder string) error {
	return wrap("release slot", fn, r.rdb.ZRem(ctx, r.k.slots(fn), holder).Err())
}

// SlotsInUse counts the function's live global slots (for status and tests).
func (r *Registry) SlotsInUse(ctx context.Context, fn FunctionKey) (int64, error) {
	n, err := r.rdb.ZCount(ctx, r.k.slots(fn), "("+strconv.FormatInt(time.Now().UnixMilli(), 10), "+inf").Result()
	return n, wrap("slots in use", fn, err)
}

// Idempotency in flight: the first call with a key marks it running; a second call with the same
// key while the first runs waits for the first one's stored result instead of running again.

var finishIdemScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// StartIdempotent marks (fn, key) as run by callID for at most ttl and returns callID; when another
// call already runs it, it returns that call's id and marks nothing.
func (r *Registry) StartIdempotent(ctx context.Context, fn FunctionKey, key, callID string, ttl time.Duration) (string, error) {
	const op = "start idempotent call"
	if err := r.checkIdem(fn, key); err != nil {
		return "", wrap(op, fn, err)
	}
	if callID == "" || ttl <= 0 {
		return "", errorf(op, fn, ErrInvalid, "need a call id and a positive ttl")
	}
	k := r.k.idemRun(fn, key)
	for range 3 {
		ok, err := r.rdb.SetNX(ctx, k, callID, ttl).Result()
		if err != nil {
			return "", wrap(op, fn, err)
		}
		if ok {
			return callID, nil
		}
		owner, err := r.rdb.Get(ctx, k).Result()
		if errors.Is(err, redis.Nil) {
			continue // the first call just finished: try again
		}
		return owner, wrap(op, fn, err)
	}
	return "", errorf(op, fn, ErrUnavailable, "idempotency key %q changed hands three times in a row", key)
}

// FinishIdempotent clears the running mark of (fn, key) if callID still holds it (after its result
// was stored, or after it failed so that a waiting call may run the function itself).
func (r *Registry) FinishIdempotent(ctx context.Context, fn FunctionKey, key, callID string) error {
	const op = "finish idempotent call"
	if err := r.checkIdem(fn, key); err != nil {
		return wrap(op, fn, err)
	}
	return wrap(op, fn, finishIdemScript.Run(ctx, r.rdb, []string{r.k.idemRun(fn, key)}, callID).Err())
}

// IdempotentRunner returns the id of the call running (fn, key), "" when none.
func (r *Registry) IdempotentRunner(ctx context.Context, fn FunctionKey, key string) (string, error) {
	const op = "idempotent runner"
	if err := r.checkIdem(fn, key); err != nil {
		return "", wrap(op, fn, err)
	}
	id, err := r.rdb.Get(ctx, r.k.idemRun(fn, key)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return id, wrap(op, fn, err)
}
