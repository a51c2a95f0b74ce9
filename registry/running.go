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

// N8NLost says whether sidecarID is alive (its heartbeat has not expired) and how long it had
// been without its n8n process at its last heartbeat (0 = connected).
func (r *Registry) N8NLost(ctx context.Context, sidecarID string) (lostFor time.Duration, alive bool, err error) {
	const op = "n8n lost"
	var ex *redis.IntCmd
	var lost *redis.StringCmd
	// Two keys of one sidecar, in different slots on Cluster: a plain pipeline, split per node.
	if _, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		ex = p.Exists(ctx, r.k.sidecar(sidecarID))
		lost = p.Get(ctx, r.k.n8nLost(sidecarID))
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return 0, false, wrapName(op, "sidecar "+sidecarID, err)
	}
	alive = ex.Val() > 0
	if v, err := lost.Result(); err == nil {
		ms, _ := strconv.ParseInt(v, 10, 64)
		lostFor = time.Duration(ms) * time.Millisecond
	}
	return lostFor, alive, nil
}
