package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DeadLetter moves a delivery's entry to the function's dead-letter stream with reason, acknowledging
// and deleting it in the same script (its bytes leave the budget), and then tells the caller through its reply key (ErrorKind "dead_letter").
// An entry that is no longer pending (it finished meanwhile) is left alone and nobody is told.
func (r *Registry) DeadLetter(ctx context.Context, d Delivery, reason string) error {
	const op = "dead-letter"
	fn := d.Function
	if err := fn.Validate(); err != nil {
		return wrap(op, fn, err)
	}
	if !validID(d.EntryID) {
		return errorf(op, fn, ErrInvalid, "entry id %q is not a stream id", d.EntryID)
	}
	res, err := deadLetterScript.Run(ctx, r.rdb, r.budgetKeys(r.k.calls(fn), r.k.dead(fn)),
		GroupName, d.EntryID, reason, r.cfg.DeadLetterMaxLen).Slice()
	if err != nil {
		return wrap(op, fn, err)
	}
	if len(res) < 5 || res[0] != int64(1) {
		return nil
	}
	if n, _ := res[4].(int64); r.cluster && n > 0 {
		if err := r.release(ctx, n); err != nil {
			return wrap(op, fn, err)
		}
	}
	call := d.Call
	if call.ReplyKey == "" {
		if payload, _ := res[2].(string); payload != "" {
			_ = json.Unmarshal([]byte(payload), &call) // undecodable: nobody to tell
		}
	}
	if call.ReplyKey == "" || call.ID == "" {
		return nil
	}
	deadID, _ := res[3].(string)
	rep := Reply{CallID: call.ID, ErrorKind: ErrorKindDeadLetter,
		Error: fmt.Sprintf("call %s to function %s was given up: %s (dead letter %s; an operator can replay it with 'n8n-fn deadletters replay %s %s')",
			call.ID, fn, reason, deadID, fn, deadID)}
	return wrap(op, fn, r.PublishReply(ctx, call.ReplyKey, rep))
}

// ListDeadLetters returns up to count dead letters of fn, oldest first (count <= 0: 100).
func (r *Registry) ListDeadLetters(ctx context.Context, fn FunctionKey, count int64) ([]DeadLetter, error) {
	const op = "list dead letters"
	if err := fn.Validate(); err != nil {
		return nil, wrap(op, fn, err)
	}
	if count <= 0 {
		count = 100
	}
	msgs, err := r.rdb.XRangeN(ctx, r.k.dead(fn), "-", "+", count).Result()
	if err != nil {
		return nil, wrap(op, fn, err)
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, decodeDeadLetter(fn, m))
	}
	return out, nil
}

func decodeDeadLetter(fn FunctionKey, m redis.XMessage) DeadLetter {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	dl := DeadLetter{ID: m.ID, Function: fn, EntryID: str("entry"), Reason: str("reason")}
	dl.Deliveries, _ = strconv.ParseInt(str("deliveries"), 10, 64)
	if ms, err := strconv.ParseInt(str("at"), 10, 64); err == nil {
		dl.At = time.UnixMilli(ms).UTC()
	}
	if raw := str("c"); raw != "" && json.Unmarshal([]byte(raw), &dl.Call) != nil {
		dl.Raw = raw
	}
	return dl
}

// ReplayDeadLetter queues a dead letter again as a new call (attempt + 1, deadline ReplayDeadline
// from now, same reply key) and removes it from the dead-letter stream, atomically. It returns the
// new entry id. The original caller has usually given up; its late reply expires with ReplyTTL.
func (r *Registry) ReplayDeadLetter(ctx context.Context, fn FunctionKey, deadID string) (string, error) {
	const op = "replay dead letter"
	if err := fn.Validate(); err != nil {
		return "", wrap(op, fn, err)
	}
	if !validID(deadID) {
		return "", errorf(op, fn, ErrInvalid, "dead letter id %q is not a stream id (see 'n8n-fn deadletters list %s')", deadID, fn)
	}
	msgs, err := r.rdb.XRange(ctx, r.k.dead(fn), deadID, deadID).Result()
	if err != nil {
		return "", wrap(op, fn, err)
	}
	if len(msgs) == 0 {
		return "", errorf(op, fn, ErrNotFound, "dead letter %s does not exist (already replayed or purged?)", deadID)
	}
	dl := decodeDeadLetter(fn, msgs[0])
	if dl.Raw != "" || dl.Call.ID == "" {
		return "", errorf(op, fn, ErrInvalid, "dead letter %s holds no valid call (%s); purge it instead", deadID, dl.Reason)
	}
	call := dl.Call
	call.Function = fn
	call.Attempt++
	call.Deadline = time.Now().Add(r.cfg.ReplayDeadline).UTC()
	payload, err := json.Marshal(call)
	if err != nil {
		return "", wrap(op, fn, err)
	}
	id, err := replayScript.Run(ctx, r.rdb, r.budgetKeys(r.k.dead(fn), r.k.calls(fn)), deadID, payload).Text()
	if err == nil && r.cluster {
		if err := r.rdb.IncrBy(ctx, r.k.budget(), int64(len(payload))).Err(); err != nil {
			return id, wrap(op, fn, err) // queued; the count is repaired by ReconcileBudget
		}
	}
	switch {
	case redisErrPrefix(err, "NOTFOUND"):
		return "", errorf(op, fn, ErrNotFound, "dead letter %s was replayed or purged meanwhile", deadID)
	case redisErrPrefix(err, "NOSTREAM"):
		return "", errorf(op, fn, ErrNoStream, "function %s has no call stream (removed?); nothing was replayed", fn)
	}
	return id, wrap(op, fn, err)
}

// PurgeDeadLetters deletes the given dead letters of fn, or all of them when ids is empty, and
// returns how many were deleted.
func (r *Registry) PurgeDeadLetters(ctx context.Context, fn FunctionKey, ids ...string) (int64, error) {
	const op = "purge dead letters"
	if err := fn.Validate(); err != nil {
		return 0, wrap(op, fn, err)
	}
	key := r.k.dead(fn)
	if len(ids) > 0 {
		for _, id := range ids {
			if !validID(id) {
				return 0, errorf(op, fn, ErrInvalid, "dead letter id %q is not a stream id", id)
			}
		}
		n, err := r.rdb.XDel(ctx, key, ids...).Result()
		return n, wrap(op, fn, err)
	}
	n, err := r.rdb.XLen(ctx, key).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, wrap(op, fn, err)
	}
	return n, wrap(op, fn, r.rdb.Del(ctx, key).Err())
}
