package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Heartbeat marks sidecarID live for HeartbeatTTL, as a consumer of every function in serves.
// Call it every HeartbeatTTL/3 or so. Liveness uses the Redis server's clock, not the sidecar's.
func (r *Registry) Heartbeat(ctx context.Context, sidecarID string, serves []FunctionKey) error {
	const op = "heartbeat"
	if sidecarID == "" {
		return wrapName(op, "", fmt.Errorf("%w: empty sidecar id", ErrInvalid))
	}
	for _, fn := range serves {
		if err := fn.Validate(); err != nil {
			return wrap(op, fn, err)
		}
	}
	b, err := json.Marshal(SidecarInfo{ID: sidecarID, Serves: serves, At: time.Now().UTC()})
	if err != nil {
		return wrapName(op, sidecarID, err)
	}
	ttl := r.cfg.HeartbeatTTL.Milliseconds()
	// One pipeline; go-redis splits it per node on Cluster. EVAL (not EVALSHA) so a flushed or
	// restarted server needs no script reload inside a pipeline.
	// durable: a heartbeat lost in a failover would make callers see no live sidecar until the next.
	err = r.durable(ctx, func(ctx context.Context, c redis.Cmdable, _ bool) error {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, r.k.sidecar(sidecarID), b, r.cfg.HeartbeatTTL)
			for _, fn := range serves {
				heartbeatScript.Eval(ctx, p, []string{r.k.live(fn)}, sidecarID, ttl)
			}
			return nil
		})
		return err
	})
	return wrapName(op, "sidecar "+sidecarID, err)
}

// Leave removes sidecarID at once (clean shutdown) instead of waiting for its heartbeat to expire.
func (r *Registry) Leave(ctx context.Context, sidecarID string, serves []FunctionKey) error {
	const op = "leave"
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.k.sidecar(sidecarID))
		p.HDel(ctx, r.k.execSlots(), sidecarID)
		for _, fn := range serves {
			p.ZRem(ctx, r.k.live(fn), sidecarID)
		}
		return nil
	})
	return wrapName(op, "sidecar "+sidecarID, err)
}

// HasLiveConsumer answers "does a live sidecar serve fn" with one command.
func (r *Registry) HasLiveConsumer(ctx context.Context, fn FunctionKey) (bool, error) {
	ids, err := r.LiveSidecars(ctx, fn)
	if err != nil {
		return false, wrap("has live consumer", fn, err)
	}
	return len(ids) > 0, nil
}

// LiveSidecars lists the sidecars whose heartbeat for fn has not expired.
func (r *Registry) LiveSidecars(ctx context.Context, fn FunctionKey) ([]string, error) {
	const op = "live sidecars"
	if err := fn.Validate(); err != nil {
		return nil, wrap(op, fn, err)
	}
	ids, err := liveScript.Run(ctx, r.rdb, []string{r.k.live(fn)}).StringSlice()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	// A hash's field order changes as it is rewritten: sorted, two reads of one set agree
	// (status, the status page and the CLI show it as it is, not in Redis's order of the moment).
	slices.Sort(ids)
	return ids, wrap(op, fn, err)
}

// ListSidecars returns the heartbeat records of live sidecars. It SCANs (never KEYS), on every
// master when the client is a Cluster client.
func (r *Registry) ListSidecars(ctx context.Context) ([]SidecarInfo, error) {
	const op = "list sidecars"
	keys, err := r.scan(ctx, r.k.sidecarPattern())
	if err != nil {
		return nil, wrapName(op, "", err)
	}
	var out []SidecarInfo
	for _, k := range keys {
		raw, err := r.rdb.Get(ctx, k).Result()
		if errors.Is(err, redis.Nil) {
			continue // expired between SCAN and GET
		}
		if err != nil {
			return nil, wrapName(op, "", err)
		}
		var s SidecarInfo
		if json.Unmarshal([]byte(raw), &s) == nil {
			out = append(out, s)
		}
	}
	return out, nil
}

// scan returns every key matching pattern.
func (r *Registry) scan(ctx context.Context, pattern string) ([]string, error) {
	scanOne := func(ctx context.Context, c redis.Cmdable) ([]string, error) {
		var out []string
		iter := c.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			out = append(out, iter.Val())
		}
		return out, iter.Err()
	}
	cc, ok := r.rdb.(*redis.ClusterClient)
	if !ok {
		return scanOne(ctx, r.rdb)
	}
	var (
		out []string
		mu  sync.Mutex
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		keys, err := scanOne(ctx, node)
		mu.Lock()
		out = append(out, keys...)
		mu.Unlock()
		return err
	})
	return out, err
}
