package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reclaim takes over up to count entries of fn idle longer than minIdle (their consumer died or
// hung) for consumer, and returns them for dispatching again. Entries delivered more than
// MaxDeliveries times are dead-lettered instead (their callers are told) and not returned.
// Uses XAUTOCLAIM on Redis >= 6.2, XPENDING + XCLAIM before.
func (r *Registry) Reclaim(ctx context.Context, fn FunctionKey, consumer string, minIdle time.Duration, count int64) ([]Delivery, error) {
	const op = "reclaim"
	if err := fn.Validate(); err != nil {
		return nil, wrap(op, fn, err)
	}
	if consumer == "" || minIdle <= 0 {
		return nil, errorf(op, fn, ErrInvalid, "needs a consumer and a positive min idle time (got %q, %s)", consumer, minIdle)
	}
	if count <= 0 {
		count = 100
	}
	f, err := r.feat(ctx)
	if err != nil {
		return nil, wrap(op, fn, err)
	}
	var msgs []redis.XMessage
	if f.autoClaim {
		msgs, err = r.autoClaim(ctx, fn, consumer, minIdle, count)
	} else {
		msgs, err = r.pendingClaim(ctx, fn, consumer, minIdle, count)
	}
	if err != nil {
		return nil, wrap(op, fn, err)
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	counts, err := r.deliveryCounts(ctx, fn, msgs)
	if err != nil {
		return nil, wrap(op, fn, err)
	}
	var out []Delivery
	for _, m := range msgs {
		d, derr := decodeDelivery(fn, m)
		d.Deliveries = counts[m.ID]
		reason := ""
		switch {
		case derr != nil:
			reason = derr.Error()
		case d.Deliveries > int64(r.cfg.MaxDeliveries):
			reason = fmt.Sprintf("delivered %d times without a result (limit %d): the function keeps failing or its workers keep dying",
				d.Deliveries, r.cfg.MaxDeliveries)
		}
		if reason != "" {
			if err := r.DeadLetter(ctx, d, reason); err != nil {
				return out, wrap(op, fn, err)
			}
			if r.cfg.OnDeadLetter != nil {
				r.cfg.OnDeadLetter(fn, d.Call.ID)
			}
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// autoClaim loops XAUTOCLAIM from the start of the PEL until count entries or the end.
func (r *Registry) autoClaim(ctx context.Context, fn FunctionKey, consumer string, minIdle time.Duration, count int64) ([]redis.XMessage, error) {
	var out []redis.XMessage
	start := "0-0"
	// XAUTOCLAIM scans at most COUNT*10 PEL entries per call; a few rounds cover big PELs.
	for round := 0; round < 10 && int64(len(out)) < count; round++ {
		msgs, next, err := r.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: r.k.calls(fn), Group: GroupName, Consumer: consumer,
			MinIdle: minIdle, Start: start, Count: count - int64(len(out)),
		}).Result()
		if err != nil {
			return out, err
		}
		out = append(out, msgs...)
		if next == "0-0" || next == "" {
			break
		}
		start = next
	}
	return out, nil
}

// pendingClaim is the Redis < 6.2 path: list idle entries with XPENDING, then XCLAIM them (XCLAIM
// re-checks the idle time, so two reclaimers never both get one entry).
func (r *Registry) pendingClaim(ctx context.Context, fn FunctionKey, consumer string, minIdle time.Duration, count int64) ([]redis.XMessage, error) {
	stream := r.k.calls(fn)
	// No IDLE filter before 6.2: read a wider window and filter here.
	pend, err := r.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: GroupName, Start: "-", End: "+", Count: count * 10}).Result()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, p := range pend {
		if p.Idle >= minIdle && int64(len(ids)) < count {
			ids = append(ids, p.ID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return r.rdb.XClaim(ctx, &redis.XClaimArgs{Stream: stream, Group: GroupName, Consumer: consumer, MinIdle: minIdle, Messages: ids}).Result()
}

// deliveryCounts reads the delivery counter of each claimed entry (XAUTOCLAIM does not return it).
func (r *Registry) deliveryCounts(ctx context.Context, fn FunctionKey, msgs []redis.XMessage) (map[string]int64, error) {
	stream := r.k.calls(fn)
	cmds := make([]*redis.XPendingExtCmd, len(msgs))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range msgs {
			cmds[i] = p.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: GroupName, Start: m.ID, End: m.ID, Count: 1})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(msgs))
	for i, c := range cmds {
		if res := c.Val(); len(res) == 1 {
			out[msgs[i].ID] = res[0].RetryCount
		}
	}
	return out, nil
}

// KeepAlive resets the idle time of entries consumer is still working on, so Reclaim on other
// sidecars leaves them alone; it does not count as a delivery and never takes an entry owned by
// another consumer. Call it every minIdle/3 or so for long calls. When some entries are no longer
// owned by consumer (finished, dead-lettered or reclaimed by another sidecar after a stall), it
// returns an error matching ErrNotOwner whose *Error.IDs lists them; the others were refreshed.
func (r *Registry) KeepAlive(ctx context.Context, fn FunctionKey, consumer string, entryIDs []string) error {
	const op = "keep alive"
	if err := fn.Validate(); err != nil {
		return wrap(op, fn, err)
	}
	if len(entryIDs) == 0 {
		return nil
	}
	args := make([]any, 0, 2+len(entryIDs))
	args = append(args, GroupName, consumer)
	for _, id := range entryIDs {
		args = append(args, id)
	}
	lost, err := keepAliveScript.Run(ctx, r.rdb, []string{r.k.calls(fn)}, args...).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return wrap(op, fn, err)
	}
	if len(lost) > 0 {
		return &Error{Op: op, Function: fn.String(), IDs: lost,
			Err: fmt.Errorf("%w: %d of %d entries (%v) are not pending on %s any more", ErrNotOwner, len(lost), len(entryIDs), lost, consumer)}
	}
	return nil
}
