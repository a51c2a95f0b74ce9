package registry

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// Status summarises every indexed function: stream length, pending, lag, oldest pending age,
// consumers and their idle time, live sidecars, dead letters, and the registration record.
func (r *Registry) Status(ctx context.Context) ([]FunctionStatus, error) {
	fns, recs, err := r.indexedRecords(ctx, "status")
	if err != nil {
		return nil, err
	}
	out := make([]FunctionStatus, 0, len(fns))
	for _, fn := range fns {
		st, err := r.FunctionStatus(ctx, fn)
		if err != nil {
			return out, err
		}
		if rec, ok := recs[fn]; ok {
			st.Registered, st.Record = true, &rec
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Function.String() < out[j].Function.String() })
	return out, nil
}

// FunctionStatus summarises one function (without its registration record; Status adds it).
func (r *Registry) FunctionStatus(ctx context.Context, fn FunctionKey) (FunctionStatus, error) {
	const op = "status"
	st := FunctionStatus{Function: fn, Lag: -1, Consumers: []ConsumerStatus{}, LiveSidecars: []string{}}
	if err := fn.Validate(); err != nil {
		return st, wrap(op, fn, err)
	}
	stream := r.k.calls(fn)
	var (
		xlen, dlen *redis.IntCmd
		groups     *redis.XInfoGroupsCmd
		consumers  *redis.XInfoConsumersCmd
		pending    *redis.XPendingCmd
	)
	// One round trip: all these keys share the function's hash tag (one node on Cluster).
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		xlen = p.XLen(ctx, stream)
		dlen = p.XLen(ctx, r.k.dead(fn))
		groups = p.XInfoGroups(ctx, stream)
		consumers = p.XInfoConsumers(ctx, stream, GroupName)
		pending = p.XPending(ctx, stream, GroupName)
		return nil
	})
	if err != nil && isOutage(err) {
		return st, wrap(op, fn, err)
	}
	st.Length, st.DeadLetters = xlen.Val(), dlen.Val()
	if gs, err := groups.Result(); err == nil {
		st.StreamExists = true
		for _, g := range gs {
			if g.Name == GroupName {
				st.Pending = g.Pending
				st.LastDeliveredEntry = g.LastDeliveredID
				if f, ferr := r.feat(ctx); ferr == nil && f.lag {
					st.Lag = g.Lag
				}
			}
		}
	} else if !missingKeyOrGroup(err) {
		return st, wrap(op, fn, err)
	}
	if cs, err := consumers.Result(); err == nil {
		for _, c := range cs {
			st.Consumers = append(st.Consumers, ConsumerStatus{Name: c.Name, Pending: c.Pending, Idle: c.Idle})
		}
	} else if !missingKeyOrGroup(err) {
		return st, wrap(op, fn, err)
	}
	if p, err := pending.Result(); err == nil && p.Count > 0 {
		st.OldestPendingID = p.Lower
		st.OldestPendingAge = max(time.Since(idTime(p.Lower)), 0)
	} else if err != nil && !missingKeyOrGroup(err) {
		return st, wrap(op, fn, err)
	}
	live, err := r.LiveSidecars(ctx, fn)
	if err != nil {
		return st, wrap(op, fn, err)
	}
	if live != nil {
		st.LiveSidecars = live
	}
	return st, nil
}

func missingKeyOrGroup(err error) bool {
	return errors.Is(err, redis.Nil) || redisErrPrefix(err, "ERR no such key") || redisErrPrefix(err, "NOGROUP")
}
