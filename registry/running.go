package registry

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReportN8N publishes, with every heartbeat, how long sidecarID has been without a connection to
// its n8n process (0 = connected).
func (r *Registry) ReportN8N(ctx context.Context, sidecarID string, lostFor time.Duration) error {
	const op = "report n8n"
	if sidecarID == "" {
		return wrapName(op, "", ErrInvalid)
	}
	key := r.k.n8nLost(sidecarID)
	if lostFor <= 0 {
		return wrapName(op, "sidecar "+sidecarID, r.rdb.Del(ctx, key).Err())
	}
	return wrapName(op, "sidecar "+sidecarID, r.rdb.Set(ctx, key, lostFor.Milliseconds(), r.cfg.HeartbeatTTL).Err())
}

// N8NState is what the registry knows of a sidecar's n8n process.
type N8NState struct {
	Alive   bool          // the sidecar's heartbeat has not expired
	LostFor time.Duration // how long it had been without its n8n connection at its last heartbeat (0 = connected)
	GoneAt  time.Time     // when it last found its n8n process gone (ReportN8NGone; zero: not lately)
}

// N8NLost says whether sidecarID is alive (its heartbeat has not expired) and how long it had
// been without its n8n process at its last heartbeat (0 = connected).
func (r *Registry) N8NLost(ctx context.Context, sidecarID string) (lostFor time.Duration, alive bool, err error) {
	st, err := r.N8NState(ctx, sidecarID)
	return st.LostFor, st.Alive, err
}

// N8NState reads sidecarID's liveness, its lost n8n connection and its last gone n8n process.
func (r *Registry) N8NState(ctx context.Context, sidecarID string) (N8NState, error) {
	const op = "n8n lost"
	var ex *redis.IntCmd
	var lost, gone *redis.StringCmd
	// Keys of one sidecar, in different slots on Cluster: a plain pipeline, split per node.
	if _, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		ex = p.Exists(ctx, r.k.sidecar(sidecarID))
		lost = p.Get(ctx, r.k.n8nLost(sidecarID))
		gone = p.Get(ctx, r.k.n8nGone(sidecarID))
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return N8NState{}, wrapName(op, "sidecar "+sidecarID, err)
	}
	st := N8NState{Alive: ex.Val() > 0}
	if v, err := lost.Result(); err == nil {
		ms, _ := strconv.ParseInt(v, 10, 64)
		st.LostFor = time.Duration(ms) * time.Millisecond
	}
	st.GoneAt = msTime(gone)
	return st, nil
}

// n8nGoneTTL bounds the records of gone n8n processes: longer than a call waits (a record that
// expired costs only the early re-run of a call, never a wrong one).
const n8nGoneTTL = 24 * time.Hour

// raiseScript sets KEYS[1] to ARGV[1] (a number) unless it holds a larger one, with TTL ARGV[2] ms.
var raiseScript = redis.NewScript(`
local v = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[1]) > v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
`)

// ReportN8NGone records that sidecarID found its n8n process gone at `at`, on its own clock: a
// connection to the task broker in that process was refused, so every execution that process ran
// is dead. A dispatcher compares it with the claim time of the calls that sidecar claimed
// (ClaimState.At, the same clock): a claim before it runs no more. An earlier time than the one
// recorded changes nothing. It also raises the latest such time of any sidecar (LatestN8NGone).
func (r *Registry) ReportN8NGone(ctx context.Context, sidecarID string, at time.Time) error {
	const op = "report n8n gone"
	if sidecarID == "" || at.IsZero() {
		return wrapName(op, "", ErrInvalid)
	}
	// Two keys in different slots on Cluster: one script each, the sidecar's first (the one that
	// re-runs claimed calls).
	for _, k := range []string{r.k.n8nGone(sidecarID), r.k.n8nGoneLatest()} {
		if err := raiseScript.Run(ctx, r.rdb, []string{k}, at.UnixMilli(), n8nGoneTTL.Milliseconds()).Err(); err != nil {
			return wrapName(op, "sidecar "+sidecarID, err)
		}
	}
	return nil
}

// LatestN8NGone is the latest time any sidecar found its n8n process gone (zero: none lately),
// on that sidecar's clock.
func (r *Registry) LatestN8NGone(ctx context.Context) (time.Time, error) {
	cmd := r.rdb.Get(ctx, r.k.n8nGoneLatest())
	if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
		return time.Time{}, wrapName("latest n8n gone", "", err)
	}
	return msTime(cmd), nil
}

// msTime reads a unix-ms value; zero when absent or not a number.
func msTime(c *redis.StringCmd) time.Time {
	v, err := c.Result()
	if err != nil {
		return time.Time{}
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
