package registry

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Execution slots held by waiting callers. An n8n execution that waits in a call node keeps its
// worker's execution slot (n8n's task runners cannot put an execution into the waiting state the
// way a Wait node does), and the function execution it waits for needs a slot of its own. When
// every slot is held by a waiting caller, nothing can run until the calls time out. Each sidecar
// that serves a worker announces how many executions that worker can run at once; a call node
// takes a waiter lease before it queues anything, and is refused the lease that would leave no
// slot for the functions.

var reportSlotsScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. (now + tonumber(ARGV[3])))
-- Only ever lengthened: a short announcement must not expire the others with the key.
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) * 2 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2) end
return 0
`)

// acquireWaiterScript: KEYS[1] waiters (zset, score = lease expiry), KEYS[2] slots per sidecar
// (hash "slots expiry"); ARGV holder, lease ms. Returns {taken 0/1, waiters after, total slots}.
var acquireWaiterScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = 0
local h = redis.call('HGETALL', KEYS[2])
for i = 1, #h, 2 do
  local slots, exp = string.match(h[i + 1], '^(%d+) (%d+)$')
  if exp and tonumber(exp) > now then
    total = total + tonumber(slots)
  else
    redis.call('HDEL', KEYS[2], h[i])
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
local mine = redis.call('ZSCORE', KEYS[1], ARGV[1])
if mine or total == 0 or n + 1 < total then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) * 2 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2) end
  if not mine then n = n + 1 end
  return {1, n, total}
end
return {0, n, total}
`)

// WaiterLease is the answer of AcquireWaiter: whether the lease was taken, how many waiters hold
// one now (with this one when taken), and the execution slots of the live sidecars that announce
// theirs (0: none does, and every lease is granted).
type WaiterLease struct {
	Taken   bool
	Waiters int
	Slots   int
}

// ReportExecutionSlots announces, for HeartbeatTTL (the heartbeat sends it with every beat), that
// sidecarID's n8n process runs at most slots executions at once. slots <= 0 removes the
// announcement (Leave does too).
func (r *Registry) ReportExecutionSlots(ctx context.Context, sidecarID string, slots int) error {
	const op = "report execution slots"
	if sidecarID == "" {
		return wrapName(op, "", fmt.Errorf("%w: empty sidecar id", ErrInvalid))
	}
	if slots <= 0 {
		return wrapName(op, sidecarID, r.rdb.HDel(ctx, r.k.execSlots(), sidecarID).Err())
	}
	err := reportSlotsScript.Run(ctx, r.rdb, []string{r.k.execSlots()}, sidecarID, slots, r.cfg.HeartbeatTTL.Milliseconds()).Err()
	return wrapName(op, sidecarID, err)
}

// AcquireWaiter takes a waiter lease for holder (one waiting call node) for lease, unless the
// waiters would then hold every announced execution slot: one is always left for the function
// executions they wait for. Taking a lease the holder already has renews it.
func (r *Registry) AcquireWaiter(ctx context.Context, holder string, lease time.Duration) (WaiterLease, error) {
	const op = "acquire waiter lease"
	if holder == "" || lease <= 0 {
		return WaiterLease{}, wrapName(op, holder, fmt.Errorf("%w: holder %q, lease %s", ErrInvalid, holder, lease))
	}
	v, err := acquireWaiterScript.Run(ctx, r.rdb, []string{r.k.waiters(), r.k.execSlots()}, holder, lease.Milliseconds()).Int64Slice()
	if err != nil {
		return WaiterLease{}, wrapName(op, holder, err)
	}
	if len(v) != 3 {
		return WaiterLease{}, wrapName(op, holder, fmt.Errorf("script answered %v, want 3 numbers", v))
	}
	return WaiterLease{Taken: v[0] == 1, Waiters: int(v[1]), Slots: int(v[2])}, nil
}

// RefreshWaiter renews holder's lease while it still has one.
func (r *Registry) RefreshWaiter(ctx context.Context, holder string, lease time.Duration) error {
	err := refreshSlotsScript.Run(ctx, r.rdb, []string{r.k.waiters()}, lease.Milliseconds(), holder).Err()
	return wrapName("refresh waiter lease", holder, err)
}

// ReleaseWaiter gives holder's lease back.
func (r *Registry) ReleaseWaiter(ctx context.Context, holder string) error {
	return wrapName("release waiter lease", holder, r.rdb.ZRem(ctx, r.k.waiters(), holder).Err())
}

// Waiters counts the live waiter leases (for status and tests).
func (r *Registry) Waiters(ctx context.Context) (int64, error) {
	n, err := r.rdb.ZCount(ctx, r.k.waiters(), "("+strconv.FormatInt(time.Now().UnixMilli(), 10), "+inf").Result()
	return n, wrapName("waiters", "", err)
}
