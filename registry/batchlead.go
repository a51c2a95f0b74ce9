package registry

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Batch leadership: a batching function with "parallel" is read by one sidecar at a time, so its
// concurrent calls meet in one dispatcher and go out together instead of being spread over every
// sidecar's reader one call each. The lease only steers reading: calls stay in the stream (and a
// dead leader's delivered calls are reclaimed as usual), so two leaders for a moment cost only
// smaller batches, never a call.

// holdLeadScript renews the lease when holder has it, takes it when nobody has; 1 = held.
var holdLeadScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

// dropLeadScript deletes the lease only when holder has it.
var dropLeadScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// HoldBatchLead makes holder the reader of fn's calls for ttl (renewing its own lease), unless
// another sidecar holds it; it reports whether holder leads now.
func (r *Registry) HoldBatchLead(ctx context.Context, fn FunctionKey, holder string, ttl time.Duration) (bool, error) {
	const op = "hold batch lead"
	if err := fn.Validate(); err != nil {
		return false, wrap(op, fn, err)
	}
	if holder == "" || ttl <= 0 {
		return false, wrap(op, fn, fmt.Errorf("%w: need a holder and a positive ttl", ErrInvalid))
	}
	n, err := holdLeadScript.Run(ctx, r.rdb, []string{r.k.batchLead(fn)}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, wrap(op, fn, err)
	}
	return n == 1, nil
}

// DropBatchLead gives fn's lease up when holder has it (a sidecar that stops, or stops serving
// fn), so another takes over at its next renewal instead of after the lease ran out.
func (r *Registry) DropBatchLead(ctx context.Context, fn FunctionKey, holder string) error {
	const op = "drop batch lead"
	if err := fn.Validate(); err != nil {
		return wrap(op, fn, err)
	}
	return wrap(op, fn, dropLeadScript.Run(ctx, r.rdb, []string{r.k.batchLead(fn)}, holder).Err())
}
