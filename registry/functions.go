package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RegisterFunction writes (or refreshes) a function's record with RegistrationTTL, makes sure its
// stream and group exist, and lists it in the index. Owners call it again well before the TTL ends.
func (r *Registry) RegisterFunction(ctx context.Context, rec FunctionRecord) error {
	const op = "register function"
	fn := rec.Key
	if err := fn.Validate(); err != nil {
		return wrap(op, fn, err)
	}
	if rec.UpdatedAt.IsZero() {
		rec.UpdatedAt = time.Now().UTC()
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return errorf(op, fn, ErrInvalid, "encode record: %v", err)
	}
	// durable: a registration lost in a failover would make calls fail as "not registered".
	return wrap(op, fn, r.durable(ctx, func(ctx context.Context, c redis.Cmdable, _ bool) error {
		if err := c.Set(ctx, r.k.record(fn), b, r.cfg.RegistrationTTL).Err(); err != nil {
			return err
		}
		if err := r.ensureGroup(ctx, c, fn); err != nil {
			return err
		}
		return c.ZAdd(ctx, r.k.index(), redis.Z{Score: float64(rec.UpdatedAt.UnixMilli()), Member: fn.String()}).Err()
	}))
}

// LookupFunction returns the function's live record; ok is false when none is registered (never
// registered, or its owner stopped refreshing it).
func (r *Registry) LookupFunction(ctx context.Context, fn FunctionKey) (FunctionRecord, bool, error) {
	const op = "lookup function"
	if err := fn.Validate(); err != nil {
		return FunctionRecord{}, false, wrap(op, fn, err)
	}
	raw, err := r.rdb.Get(ctx, r.k.record(fn)).Result()
	if errors.Is(err, redis.Nil) {
		return FunctionRecord{}, false, nil
	}
	if err != nil {
		return FunctionRecord{}, false, wrap(op, fn, err)
	}
	var rec FunctionRecord
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		return FunctionRecord{}, false, wrap(op, fn, fmt.Errorf("stored record is not valid JSON: %w", err))
	}
	return rec, true, nil
}

// ListFunctions returns the live records of every indexed function (expired registrations are left out).
func (r *Registry) ListFunctions(ctx context.Context) ([]FunctionRecord, error) {
	fns, recs, err := r.indexedRecords(ctx, "list functions")
	if err != nil {
		return nil, err
	}
	out := make([]FunctionRecord, 0, len(recs))
	for _, fn := range fns {
		if rec, ok := recs[fn]; ok {
			out = append(out, rec)
		}
	}
	return out, nil
}

// indexedRecords lists every indexed function with the live registration records among them.
// Unregistered lists the indexed functions whose registration record has expired: no sidecar has
// discovered them for RegistrationTTL, so their workflow was unpublished or deleted (or every
// sidecar is down). Their streams stay until RemoveFunction.
func (r *Registry) Unregistered(ctx context.Context) ([]FunctionKey, error) {
	fns, recs, err := r.indexedRecords(ctx, "unregistered")
	if err != nil {
		return nil, err
	}
	var out []FunctionKey
	for _, fn := range fns {
		if _, ok := recs[fn]; !ok {
			out = append(out, fn)
		}
	}
	return out, nil
}

func (r *Registry) indexedRecords(ctx context.Context, op string) ([]FunctionKey, map[FunctionKey]FunctionRecord, error) {
	fns, err := r.indexed(ctx)
	if err != nil {
		return nil, nil, wrapName(op, "", err)
	}
	recs, err := r.records(ctx, fns)
	if err != nil {
		return nil, nil, wrapName(op, "", err)
	}
	return fns, recs, nil
}

// indexed lists every function in the index, in index order.
func (r *Registry) indexed(ctx context.Context) ([]FunctionKey, error) {
	members, err := r.rdb.ZRange(ctx, r.k.index(), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	out := make([]FunctionKey, 0, len(members))
	for _, m := range members {
		fn, err := ParseFunctionKey(m)
		if err != nil {
			continue // written by something else; not ours to interpret
		}
		out = append(out, fn)
	}
	return out, nil
}

// records fetches the records of fns in one pipeline (one GET per key: the keys live in different
// slots, so no MGET).
func (r *Registry) records(ctx context.Context, fns []FunctionKey) (map[FunctionKey]FunctionRecord, error) {
	out := make(map[FunctionKey]FunctionRecord, len(fns))
	if len(fns) == 0 {
		return out, nil
	}
	cmds := make([]*redis.StringCmd, len(fns))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, fn := range fns {
			cmds[i] = p.Get(ctx, r.k.record(fn))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	for i, c := range cmds {
		raw, err := c.Result()
		if err != nil {
			continue
		}
		var rec FunctionRecord
		if json.Unmarshal([]byte(raw), &rec) == nil {
			out[fns[i]] = rec
		}
	}
	return out, nil
}
