package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnsureGroup creates the function's call stream and consumer group if they do not exist
// (MKSTREAM; BUSYGROUP means it already exists). The group starts at id 0 so calls queued before it
// existed are delivered. It never resets an existing group, so restarts lose nothing.
func (r *Registry) EnsureGroup(ctx context.Context, fn FunctionKey) error {
	const op = "ensure group"
	if err := fn.Validate(); err != nil {
		return wrap(op, fn, err)
	}
	return wrap(op, fn, r.ensureGroup(ctx, r.rdb, fn))
}

func (r *Registry) ensureGroup(ctx context.Context, c redis.Cmdable, fn FunctionKey) error {
	err := c.XGroupCreateMkStream(ctx, r.k.calls(fn), GroupName, "0").Err()
	if err != nil && !redisErrPrefix(err, "BUSYGROUP") {
		return err
	}
	return c.ZAddNX(ctx, r.k.index(), redis.Z{Score: float64(time.Now().UnixMilli()), Member: fn.String()}).Err()
}

// AddCall queues a call on its function's stream and returns the entry id. It fails with
// ErrNoStream when no sidecar ever served the function, ErrBacklogFull when MaxLen unfinished
// calls are queued, and ErrBudgetFull (a *BudgetError) when the call's payload would take the
// bytes of unanswered calls past BudgetBytes; it never drops a queued call to make room.
func (r *Registry) AddCall(ctx context.Context, call Call) (string, error) {
	const op = "add call"
	fn := call.Function
	if err := fn.Validate(); err != nil {
		return "", wrap(op, fn, err)
	}
	if call.ID == "" || call.ReplyKey == "" {
		return "", errorf(op, fn, ErrInvalid, "call needs an ID and a ReplyKey (got id %q, reply key %q)", call.ID, call.ReplyKey)
	}
	f, err := r.feat(ctx)
	if err != nil {
		return "", wrap(op, fn, err)
	}
	payload, err := json.Marshal(call)
	if err != nil {
		return "", errorf(op, fn, ErrInvalid, "encode call %s: %v", call.ID, err)
	}
	need := int64(len(payload))
	if r.cluster {
		if err := r.reserve(ctx, need); err != nil {
			return "", wrap(op, fn, err)
		}
	}
	stream := r.k.calls(fn)
	var id string
	err = r.durable(ctx, func(ctx context.Context, c redis.Cmdable, redo bool) error {
		if redo {
			// The first entry may have reached the new master before the old one lost its replica.
			if there, err := holdsCall(ctx, c, stream, id, call.ID); err != nil || there {
				return err
			}
		}
		got, err := addCallScript.Run(ctx, c, r.budgetKeys(stream),
			payload, r.cfg.MaxLen, r.cfg.TrimBatch, legacyFlag(f), r.cfg.BudgetBytes).Text()
		if err == nil {
			id = got
		}
		return err
	})
	if err != nil && r.cluster {
		// Not queued: give the reservation back (an outage here leaves it to ReconcileBudget).
		_ = r.release(context.WithoutCancel(ctx), need)
	}
	switch {
	case redisErrPrefix(err, "NOSTREAM"):
		return "", errorf(op, fn, ErrNoStream, "no sidecar has served %s yet: is the function's workflow active and a sidecar running?", fn)
	case redisErrPrefix(err, "BACKLOG"):
		return "", errorf(op, fn, ErrBacklogFull, "%s calls are waiting (MaxLen %d): the function does not keep up, nothing was queued",
			lastField(err.Error()), r.cfg.MaxLen)
	case redisErrPrefix(err, "BUDGET"):
		used, _ := strconv.ParseInt(lastField(err.Error()), 10, 64)
		return "", wrap(op, fn, &BudgetError{Used: used, Limit: r.cfg.BudgetBytes, Need: need})
	case err != nil:
		return "", wrap(op, fn, err)
	}
	return id, nil
}

// holdsCall reports whether entry id of stream holds the call callID.
func holdsCall(ctx context.Context, c redis.Cmdable, stream, id, callID string) (bool, error) {
	msgs, err := c.XRange(ctx, stream, id, id).Result()
	if err != nil || len(msgs) == 0 {
		return false, err
	}
	d, err := decodeDelivery(FunctionKey{}, msgs[0])
	return err == nil && d.Call.ID == callID, nil
}

func lastField(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

func legacyFlag(f *features) string {
	if f.minID {
		return "0"
	}
	return "1"
}

// ReadCalls reads up to count new calls per stream for consumer from the given functions, blocking
// up to block (block <= 0: do not block). On standalone/Sentinel it is one XREADGROUP over all the
// streams. On Cluster, streams in different slots cannot share a command, so each slot group is read
// concurrently and ReadCalls returns when every group's read has returned (see SlotGroups).
// A missing group (e.g. Redis restarted without data) is recreated and the read retried once.
// Entries that cannot be decoded are dead-lettered, never returned.
func (r *Registry) ReadCalls(ctx context.Context, consumer string, fns []FunctionKey, count int64, block time.Duration) ([]Delivery, error) {
	const op = "read calls"
	if consumer == "" {
		return nil, wrapName(op, "", fmt.Errorf("%w: empty consumer name", ErrInvalid))
	}
	if len(fns) == 0 {
		return nil, wrapName(op, "", fmt.Errorf("%w: no functions to read", ErrInvalid))
	}
	for _, fn := range fns {
		if err := fn.Validate(); err != nil {
			return nil, wrap(op, fn, err)
		}
	}
	if count <= 0 {
		count = 1
	}
	groups := r.SlotGroups(fns)
	if len(groups) == 1 {
		return r.readGroup(ctx, consumer, groups[0], count, block)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		out  []Delivery
		errs []error
	)
	for _, g := range groups {
		wg.Add(1)
		go func(g []FunctionKey) {
			defer wg.Done()
			d, err := r.readGroup(ctx, consumer, g, count, block)
			mu.Lock()
			defer mu.Unlock()
			out = append(out, d...)
			if err != nil {
				errs = append(errs, err)
			}
		}(g)
	}
	wg.Wait()
	// Deliveries already read are returned with the error: they are pending on this consumer now.
	return out, errors.Join(errs...)
}

func (r *Registry) readGroup(ctx context.Context, consumer string, fns []FunctionKey, count int64, block time.Duration) ([]Delivery, error) {
	const op = "read calls"
	byKey := make(map[string]FunctionKey, len(fns))
	streams := make([]string, 0, 2*len(fns))
	for _, fn := range fns {
		k := r.k.calls(fn)
		byKey[k] = fn
		streams = append(streams, k)
	}
	for range fns {
		streams = append(streams, ">")
	}
	if block <= 0 {
		block = -1 // go-redis: negative omits BLOCK; BLOCK 0 would wait forever
	}
	args := &redis.XReadGroupArgs{Group: GroupName, Consumer: consumer, Streams: streams, Count: count, Block: block}
	res, err := r.rdb.XReadGroup(ctx, args).Result()
	if redisErrPrefix(err, "NOGROUP") {
		for _, fn := range fns {
			if e := r.EnsureGroup(ctx, fn); e != nil {
				return nil, e
			}
		}
		res, err = r.rdb.XReadGroup(ctx, args).Result()
	}
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, wrapName(op, fnNames(fns), err)
	}
	var out []Delivery
	for _, s := range res {
		fn := byKey[s.Stream]
		for _, m := range s.Messages {
			d, derr := decodeDelivery(fn, m)
			if derr != nil {
				if e := r.DeadLetter(ctx, d, derr.Error()); e != nil {
					return out, e
				}
				continue
			}
			d.Deliveries = 1
			out = append(out, d)
		}
	}
	return out, nil
}

func fnNames(fns []FunctionKey) string {
	names := make([]string, len(fns))
	for i, fn := range fns {
		names[i] = fn.String()
	}
	return strings.Join(names, ",")
}

// decodeDelivery turns a stream entry into a Delivery; on error the Delivery still names the entry
// so it can be dead-lettered.
func decodeDelivery(fn FunctionKey, m redis.XMessage) (Delivery, error) {
	d := Delivery{Function: fn, EntryID: m.ID}
	raw, ok := m.Values["c"].(string)
	if !ok {
		return d, fmt.Errorf("malformed call entry %s: no call data (entry deleted or not written by n8n-fn)", m.ID)
	}
	if err := json.Unmarshal([]byte(raw), &d.Call); err != nil {
		return d, fmt.Errorf("malformed call entry %s: %v", m.ID, err)
	}
	// The stream is the truth about which function is called.
	d.Call.Function = fn
	return d, nil
}

// LoadCall reads one call entry (the function side loads the call a signed webhook refers to).
// ErrNotFound when the entry does not exist (trimmed, removed, or a wrong id).
func (r *Registry) LoadCall(ctx context.Context, fn FunctionKey, entryID string) (Call, error) {
	const op = "load call"
	if err := fn.Validate(); err != nil {
		return Call{}, wrap(op, fn, err)
	}
	if !validID(entryID) {
		return Call{}, errorf(op, fn, ErrInvalid, "entry id %q is not a stream id (want MS-SEQ)", entryID)
	}
	// One round trip (one key, so one slot on Cluster): the entry and whether it still waits for
	// an answer. An acknowledged entry stays in the stream until trimmed, and must not run again.
	stream := r.k.calls(fn)
	var rng *redis.XMessageSliceCmd
	var pend *redis.XPendingExtCmd
	// fresh: the dispatcher that delivered the entry may already write to a new master.
	missing := func() bool {
		p, err := pend.Result()
		return len(rng.Val()) == 0 || err != nil || len(p) == 0
	}
	if err := r.fresh(ctx, func(ctx context.Context, c redis.Cmdable) error {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			rng = p.XRange(ctx, stream, entryID, entryID)
			pend = p.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: GroupName, Start: entryID, End: entryID, Count: 1})
			return nil
		})
		if err != nil && !redisErrPrefix(err, "NOGROUP") {
			return err
		}
		return nil
	}, missing); err != nil {
		return Call{}, wrap(op, fn, err)
	}
	msgs, err := rng.Result()
	if err != nil {
		return Call{}, wrap(op, fn, err)
	}
	if len(msgs) == 0 {
		return Call{}, errorf(op, fn, ErrNotFound, "entry %s does not exist (already answered, withdrawn, trimmed or removed)", entryID)
	}
	if p, err := pend.Result(); err != nil || len(p) == 0 {
		return Call{}, errorf(op, fn, ErrNotFound, "entry %s was already answered (acknowledged)", entryID)
	}
	d, err := decodeDelivery(fn, msgs[0])
	if err != nil {
		return Call{}, wrap(op, fn, err)
	}
	return d.Call, nil
}

// Ack acknowledges finished entries and deletes them: an answered call's params leave Redis at
// once instead of when the stream is trimmed, and their bytes go back to the budget. Call it only after the reply was published
// (Complete does both).
func (r *Registry) Ack(ctx context.Context, fn FunctionKey, entryIDs ...string) error {
	const op = "ack"
	if err := fn.Validate(); err != nil {
		return wrap(op, fn, err)
	}
	if len(entryIDs) == 0 {
		return nil
	}
	return wrap(op, fn, r.removeEntries(ctx, fn, entryIDs))
}

// CancelCalls withdraws calls whose caller no longer waits (it timed out, or n8n cancelled its
// task): an entry not dispatched yet is never run, and a function execution that starts for one
// finds it gone (LoadCall: ErrNotFound) and does nothing. A function already past LoadCall is not
// stopped; its answer reaches nobody.
func (r *Registry) CancelCalls(ctx context.Context, fn FunctionKey, entryIDs ...string) error {
	const op = "cancel calls"
	if err := fn.Validate(); err != nil {
		return wrap(op, fn, err)
	}
	for _, id := range entryIDs {
		if !validID(id) {
			return errorf(op, fn, ErrInvalid, "entry id %q is not a stream id (want MS-SEQ)", id)
		}
	}
	if len(entryIDs) == 0 {
		return nil
	}
	return wrap(op, fn, r.removeEntries(ctx, fn, entryIDs))
}

// RemoveFunction deletes everything of a function: call stream and group, dead letters, record and
// live set, and drops it from the index. Callers still waiting for its unfinished calls are told.
// Only for explicit removal by an operator or a deleted workflow; never on restart or redeploy.
func (r *Registry) RemoveFunction(ctx context.Context, fn FunctionKey) error {
	_, err := r.remove(ctx, fn, false)
	return err
}

// RemoveUnregistered is RemoveFunction for a function nobody registers any more. It removes
// nothing and returns false when the function has a record, or when its record or call stream
// changes while it works: a sidecar registered it again, or a caller queued a call.
func (r *Registry) RemoveUnregistered(ctx context.Context, fn FunctionKey) (bool, error) {
	return r.remove(ctx, fn, true)
}

var errStillRegistered = errors.New("still registered")

func (r *Registry) remove(ctx context.Context, fn FunctionKey, onlyUnregistered bool) (bool, error) {
	const op = "remove function"
	if err := fn.Validate(); err != nil {
		return false, wrap(op, fn, err)
	}
	var calls []Call
	// WATCH makes the check and the DEL one step against a sidecar that registers the function
	// again meanwhile. All these keys share the function's hash tag: one slot on Cluster.
	err := r.rdb.Watch(ctx, func(tx *redis.Tx) error {
		if onlyUnregistered {
			n, err := tx.Exists(ctx, r.k.record(fn)).Result()
			if err != nil {
				return err
			}
			if n > 0 {
				return errStillRegistered
			}
		}
		var err error
		if calls, err = r.unfinished(ctx, fn, 10000); err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, r.k.functionKeys(fn)...)
			return nil
		})
		return err
	}, r.k.record(fn), r.k.calls(fn))
	switch {
	case onlyUnregistered && (errors.Is(err, errStillRegistered) || errors.Is(err, redis.TxFailedErr)):
		return false, nil
	case err != nil:
		return false, wrap(op, fn, err)
	}
	for _, c := range calls {
		if c.ReplyKey == "" {
			continue
		}
		rep := Reply{CallID: c.ID, ErrorKind: ErrorKindRemoved,
			Error: fmt.Sprintf("function %s was removed before this call finished", fn)}
		if err := r.PublishReply(ctx, c.ReplyKey, rep); err != nil {
			return true, wrap(op, fn, err)
		}
	}
	return true, wrap(op, fn, r.rdb.ZRem(ctx, r.k.index(), fn.String()).Err())
}

func (r *Registry) unfinished(ctx context.Context, fn FunctionKey, limit int64) ([]Call, error) {
	stream := r.k.calls(fn)
	groups, err := r.rdb.XInfoGroups(ctx, stream).Result()
	if err != nil {
		if redisErrPrefix(err, "ERR no such key") {
			return nil, nil
		}
		return nil, err
	}
	var out []Call
	add := func(msgs []redis.XMessage) {
		for _, m := range msgs {
			if d, err := decodeDelivery(fn, m); err == nil {
				out = append(out, d.Call)
			}
		}
	}
	for _, g := range groups {
		if g.Name != GroupName {
			continue
		}
		pend, err := r.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: GroupName, Start: "-", End: "+", Count: limit}).Result()
		if err != nil {
			return nil, err
		}
		for _, p := range pend {
			msgs, err := r.rdb.XRange(ctx, stream, p.ID, p.ID).Result()
			if err != nil {
				return nil, err
			}
			add(msgs)
		}
		msgs, err := r.rdb.XRangeN(ctx, stream, nextID(g.LastDeliveredID), "+", limit).Result()
		if err != nil {
			return nil, err
		}
		add(msgs)
	}
	return out, nil
}

// validID reports whether s looks like a stream id ("123-4" or "123").
func validID(s string) bool {
	ms, seq, _ := strings.Cut(s, "-")
	if _, err := strconv.ParseUint(ms, 10, 64); err != nil {
		return false
	}
	if seq == "" {
		return !strings.Contains(s, "-")
	}
	_, err := strconv.ParseUint(seq, 10, 64)
	return err == nil
}

// nextID is the smallest stream id after id.
func nextID(id string) string {
	ms, seq, _ := strings.Cut(id, "-")
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return id
	}
	return ms + "-" + strconv.FormatUint(n+1, 10)
}

// idTime is the creation time encoded in a stream id.
func idTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

// MissingCalls returns which of the entries no longer exist in fn's stream. An answered call's
// entry goes with its acknowledgement, after its reply was published; an entry that is gone
// without a reply was lost by Redis itself (a kill -9 with appendfsync everysec loses up to a
// second of acknowledged writes), and its caller may queue the call again.
func (r *Registry) MissingCalls(ctx context.Context, fn FunctionKey, entryIDs []string) ([]string, error) {
	const op = "missing calls"
	if err := fn.Validate(); err != nil {
		return nil, wrap(op, fn, err)
	}
	for _, id := range entryIDs {
		if !validID(id) {
			return nil, errorf(op, fn, ErrInvalid, "entry id %q is not a stream id (want MS-SEQ)", id)
		}
	}
	cmds := make([]*redis.XMessageSliceCmd, len(entryIDs))
	if _, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range entryIDs {
			cmds[i] = p.XRangeN(ctx, r.k.calls(fn), id, id, 1)
		}
		return nil
	}); err != nil {
		return nil, wrap(op, fn, err)
	}
	var missing []string
	for i, c := range cmds {
		if len(c.Val()) == 0 {
			missing = append(missing, entryIDs[i])
		}
	}
	return missing, nil
}
