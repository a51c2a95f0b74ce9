package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tidwall/gjson"
	"strconv"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// ReplyKey is the reply list of one caller. Use one caller name per waiting task (for example
// "<sidecar>:<task>"): WaitReplies drops replies it is not waiting for, so two concurrent waiters
// on one key would take each other's replies.
func (r *Registry) ReplyKey(caller string) string { return r.k.reply(caller) }

// PublishReply pushes a reply to a caller's list and refreshes the list's expiry in one round trip
// (MULTI RPUSH PEXPIRE EXEC on the one key). A Redis outage is retried until ctx's deadline (30 s
// without one): a push repeated after a lost EXEC reply is a duplicate the waiter drops.
func (r *Registry) PublishReply(ctx context.Context, replyKey string, rep Reply) error {
	const op = "publish reply"
	if replyKey == "" || rep.CallID == "" {
		return wrapName(op, "", fmt.Errorf("%w: reply needs a reply key and a call id (got %q, %q)", ErrInvalid, replyKey, rep.CallID))
	}
	b, err := encodeReply(rep)
	if err != nil {
		return wrapName(op, "", fmt.Errorf("%w: encode reply %s: %v", ErrInvalid, rep.CallID, err))
	}
	// Repeated on a new master after a failover (durable), the push is a duplicate at worst.
	err = retryOutage(ctx, outageDeadline(ctx), func() error {
		return r.durable(ctx, func(ctx context.Context, c redis.Cmdable, _ bool) error {
			return txOutage(c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.RPush(ctx, replyKey, b)
				p.PExpire(ctx, replyKey, r.cfg.ReplyTTL)
				return nil
			}))
		})
	})
	return wrapName(op, "", err)
}

// Complete publishes the reply of a delivery and acknowledges its entry. On a standalone or
// Sentinel server both happen in one MULTI/EXEC (one round trip, atomic). On Cluster the reply list
// and the stream live on different nodes, so the reply is published first and the entry acknowledged
// after: a crash in between re-runs the call and the caller ignores the duplicate reply.
// A Redis outage is retried until ctx's deadline (30 s without one), so a blip does not lose the
// result of a function that ran: repeating the transaction pushes a duplicate reply at worst.
func (r *Registry) Complete(ctx context.Context, d Delivery, rep Reply) error {
	const op = "complete call"
	until := outageDeadline(ctx)
	if d.Call.ReplyKey == "" {
		return retryOutage(ctx, until, func() error { return r.Ack(ctx, d.Function, d.EntryID) })
	}
	if rep.CallID == "" {
		rep.CallID = d.Call.ID
	}
	if r.cluster {
		if err := r.PublishReply(ctx, d.Call.ReplyKey, rep); err != nil {
			return wrap(op, d.Function, err)
		}
		return wrap(op, d.Function, retryOutage(ctx, until, func() error { return r.Ack(ctx, d.Function, d.EntryID) }))
	}
	b, err := encodeReply(rep)
	if err != nil {
		return errorf(op, d.Function, ErrInvalid, "encode reply %s: %v", rep.CallID, err)
	}
	err = retryOutage(ctx, until, func() error {
		return r.durable(ctx, func(ctx context.Context, c redis.Cmdable, _ bool) error {
			return txOutage(c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.RPush(ctx, d.Call.ReplyKey, b)
				p.PExpire(ctx, d.Call.ReplyKey, r.cfg.ReplyTTL)
				// The answered call's params leave Redis now and its bytes go back to the budget
				// (idempotent: a redo after a failover releases nothing twice); Eval, not EvalSha:
				// inside MULTI a NOSCRIPT could not be answered by loading the script.
				removeEntriesScript.Eval(ctx, p, r.budgetKeys(r.k.calls(d.Function)), GroupName, d.EntryID)
				return nil
			}))
		})
	})
	return wrap(op, d.Function, err)
}

// txOutage returns the outage behind a transaction Redis discarded. A Redis that is loading its data
// after a restart accepts MULTI but refuses each queued command with LOADING, and EXEC then fails
// with EXECABORT: nothing was applied, and the cause (kept on the commands) is an outage worth
// waiting out, not a bad command. Seen in the chaos suite's redis-restart: "complete call:
// EXECABORT Transaction discarded because of previous errors" failed the return node.
func txOutage(cmds []redis.Cmder, err error) error {
	if err == nil || !redisErrPrefix(err, "EXECABORT") {
		return err
	}
	for _, c := range cmds {
		if e := c.Err(); e != nil && isOutage(e) {
			return fmt.Errorf("transaction discarded: %w", e)
		}
	}
	return err
}

// WaitReplies waits until a reply for every id in callIDs arrived or deadline passed, and returns the
// replies by call id. Replies for other ids (late results of calls the caller gave up on) and
// duplicates (a call run twice after a reclaim) are dropped. When the deadline passes first it
// returns the replies that did arrive and an error matching ErrTimeout.
//
// A Redis outage (connection refused or reset, LOADING, a timeout, ...) costs time only: the wait
// goes on, retrying with a short back-off, until Redis is back or the deadline passes; the error
// then matches ErrTimeout and ErrUnavailable and says how long Redis was away. Replies that Redis
// itself lost (restarted without persistence: run it with appendonly yes) never arrive; the wait
// ends at the deadline.
func (r *Registry) WaitReplies(ctx context.Context, replyKey string, callIDs []string, deadline time.Time) (map[string]Reply, error) {
	const op = "wait replies"
	got := make(map[string]Reply, len(callIDs))
	if replyKey == "" {
		return got, wrapName(op, "", fmt.Errorf("%w: empty reply key", ErrInvalid))
	}
	want := make(map[string]bool, len(callIDs))
	for _, id := range callIDs {
		want[id] = true
	}
	w := newOutageWaiter(deadline)
	// failed ends the wait after err: the context's end, a deadline passed during an outage, or an
	// error that is not an outage.
	failed := func(err error) error {
		switch {
		case ctx.Err() != nil:
			return wrapName(op, "", ctx.Err())
		case isOutage(err):
			return wrapName(op, "", fmt.Errorf("%w: %d of %d replies arrived before the deadline; redis unavailable for the last %s: %w",
				ErrTimeout, len(got), len(want), time.Since(w.since).Round(time.Millisecond), err))
		}
		return wrapName(op, "", err)
	}
	var f *features
	for len(got) < len(want) {
		if err := ctx.Err(); err != nil {
			return got, wrapName(op, "", err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return got, wrapName(op, "", fmt.Errorf("%w: %d of %d replies arrived before the deadline", ErrTimeout, len(got), len(want)))
		}
		if f == nil {
			var err error
			if f, err = r.feat(ctx); err != nil {
				if w.retry(ctx, err) {
					continue
				}
				return got, failed(err)
			}
		}
		raw, err := r.popReply(ctx, f, replyKey, min(left, r.replyChunk))
		if err != nil && !errors.Is(err, redis.Nil) {
			if w.retry(ctx, err) {
				continue
			}
			return got, failed(err)
		}
		w.recovered()
		if err != nil { // redis.Nil: nothing arrived in this chunk
			continue
		}
		var rep Reply
		if decodeReply(raw, &rep) != nil {
			continue // not ours: nothing can be done with it, and it must not stop the wait
		}
		if !want[rep.CallID] {
			continue
		}
		if _, dup := got[rep.CallID]; dup {
			continue
		}
		rep.Received = time.Now()
		got[rep.CallID] = rep
	}
	return got, nil
}

// popReply blocks up to d for one element of the reply list; redis.Nil when none came.
func (r *Registry) popReply(ctx context.Context, f *features, key string, d time.Duration) (string, error) {
	if !f.floatBlock {
		// Redis < 6.0 only takes whole seconds.
		res, err := r.rdb.BLPop(ctx, time.Second, key).Result()
		if err != nil {
			return "", err
		}
		return res[1], nil
	}
	secs := strconv.FormatFloat(max(d.Seconds(), 0.001), 'f', 3, 64)
	res, err := r.rdb.Do(ctx, "blpop", key, secs).StringSlice()
	if err != nil {
		return "", err
	}
	if len(res) != 2 {
		return "", fmt.Errorf("unexpected BLPOP reply %q", res)
	}
	return res[1], nil
}

// encodeReply is json.Marshal(rep) with the items written as they are into a buffer of the final
// size: json.Marshal would copy a 30 MB result twice more (its growing buffer, then the result).
// ItemList is written as the array it makes. The items were checked where they were built (the
// return op), and are checked again here.
func encodeReply(rep Reply) ([]byte, error) {
	b, _, err := encodeReplyItems(rep)
	return b, err
}

// EncodeReply encodes rep as Complete would (into Reply.Encoded) and returns the items of its
// ItemList as slices of the encoded reply, in order.
func EncodeReply(rep Reply) (json.RawMessage, []json.RawMessage, error) {
	b, items, err := encodeReplyItems(rep)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: encode reply %s: %v", ErrInvalid, rep.CallID, err)
	}
	return b, items, nil
}

// encodeReplyItems is encodeReply, with the items of an ItemList as slices of the result.
func encodeReplyItems(rep Reply) ([]byte, []json.RawMessage, error) {
	if rep.Encoded != nil {
		return rep.Encoded, nil, nil
	}
	items, list := rep.Items, rep.ItemList
	rep.Items, rep.ItemList = nil, nil
	head, err := json.Marshal(rep)
	if err != nil || (len(items) == 0 && list == nil) {
		return head, nil, err
	}
	var size int
	if len(items) > 0 {
		if !gjson.ValidBytes(items) {
			return nil, nil, fmt.Errorf("reply %s: items are not valid JSON", rep.CallID)
		}
		size = len(items)
	} else {
		for i, v := range list {
			if len(v) == 0 || !gjson.ValidBytes(v) {
				return nil, nil, fmt.Errorf("reply %s: item %d is not valid JSON", rep.CallID, i)
			}
		}
		size = Reply{ItemList: list}.ItemsSize()
	}
	b := make([]byte, 0, len(head)+size+10)
	b = append(b, head[:len(head)-1]...) // without its closing brace
	b = append(b, `,"items":`...)
	if len(items) > 0 {
		b = append(b, items...)
		return append(b, '}'), nil, nil
	}
	b = append(b, '[')
	at := make([]int, len(list))
	for i, v := range list {
		if i > 0 {
			b = append(b, ',')
		}
		at[i] = len(b)
		b = append(b, v...)
	}
	b = append(b, "]}"...)
	// b has its final size now (it never moved): the items are slices of it, capacity cut.
	out := make([]json.RawMessage, len(list))
	for i, v := range list {
		end := at[i] + len(v)
		out[i] = b[at[i]:end:end]
	}
	return b, out, nil
}

// ItemsSize is how many bytes the items of rep take in the stored reply (Items, or ItemList as an
// array): what a result limit counts.
func (rep Reply) ItemsSize() int {
	if len(rep.Items) > 0 || rep.ItemList == nil {
		return len(rep.Items)
	}
	n := 2 + max(len(rep.ItemList)-1, 0)
	for _, v := range rep.ItemList {
		n += len(v)
	}
	return n
}

// decodeReply is json.Unmarshal into rep without copying a reply's items (json.Unmarshal of the
// []byte of raw copied them twice): encoding/json decodes every field but "items" (it skips those
// without copying them) from a read-only view of raw, and the items are raw's own bytes.
func decodeReply(raw string, rep *Reply) error {
	var head struct {
		CallID    string            `json:"callId"`
		OK        bool              `json:"ok"`
		Binaries  []json.RawMessage `json:"binaries"`
		Error     string            `json:"error"`
		ErrorKind ErrorKind         `json:"errorKind"`
	}
	if len(raw) == 0 {
		return errors.New("empty reply")
	}
	// Unmarshal only reads its input, so the view of the string's bytes is never written.
	if err := json.Unmarshal(unsafe.Slice(unsafe.StringData(raw), len(raw)), &head); err != nil {
		return err
	}
	*rep = Reply{CallID: head.CallID, OK: head.OK, Binaries: head.Binaries, Error: head.Error, ErrorKind: head.ErrorKind}
	if items := gjson.Get(raw, "items"); items.Exists() {
		// The items are the reply's own bytes, not a copy (a 30 MB result was held twice by the
		// caller's sidecar): raw is never used again, and nothing writes into a reply's items
		// (capacity cut at their end, so an append copies).
		n := len(items.Raw)
		rep.Items = json.RawMessage(unsafe.Slice(unsafe.StringData(items.Raw), n)[:n:n])
	}
	return nil
}
