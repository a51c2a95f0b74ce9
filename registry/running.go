package registry

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// runningTTL bounds how long the running map of an idle function lingers; entries are removed
// when their call is acknowledged, so this only cleans up after dead letters.
const runningTTL = time.Hour

// MarkRunning records that the sidecar sidecarID (the one attached to the worker n8n gave the
// function's execution to) runs the call of entry entryID. The dispatcher waiting for that
// execution watches this sidecar: when it lost its n8n process, the worker is gone and the call
// can run again elsewhere at once instead of after n8n fails the stalled job (about 100 s).
func (r *Registry) MarkRunning(ctx context.Context, fn FunctionKey, entryID, sidecarID string) error {
	const op = "mark running"
	if err := fn.Validate(); err != nil {
		return wrap(op, fn, err)
	}
	if !validID(entryID) || sidecarID == "" {
		return errorf(op, fn, ErrInvalid, "entry id %q / sidecar id %q", entryID, sidecarID)
	}
	key := r.k.running(fn)
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, entryID, sidecarID)
		p.PExpire(ctx, key, runningTTL)
		return nil
	})
	return wrap(op, fn, err)
}

// RunningOn returns the sidecar whose worker runs the call of entryID, "" when none said so yet.
func (r *Registry) RunningOn(ctx context.Context, fn FunctionKey, entryID string) (string, error) {
	const op = "running on"
	if err := fn.Validate(); err != nil {
		return "", wrap(op, fn, err)
	}
	id, err := r.rdb.HGet(ctx, r.k.running(fn), entryID).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return id, wrap(op, fn, err)
}

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
