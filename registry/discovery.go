package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Shared discovery: with many sidecars, each listing every published workflow through n8n's API
// every interval multiplies n8n main's load by the number of sidecars (n8n's public API lists
// whole workflows, nodes and published version included, and offers no cheaper "what changed"
// query). One sidecar per interval takes the lease and lists; it stores the workflows that define
// functions (a small part of an installation) as a snapshot, and the others read the snapshot.

// DiscoverySnapshot is what the lease holder found: the published workflows that define functions.
type DiscoverySnapshot struct {
	Sum  string    // content hash of Data: unchanged content keeps its Sum
	Data []byte    // JSON array of workflow objects as n8n's API returned them
	At   time.Time // when they were listed
	By   string    // the sidecar that listed them
}

// TakeDiscoveryLease makes holder the lister for ttl, unless another sidecar holds the lease.
func (r *Registry) TakeDiscoveryLease(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	const op = "take discovery lease"
	if holder == "" || ttl <= 0 {
		return false, wrapName(op, "", fmt.Errorf("%w: need a holder and a positive ttl", ErrInvalid))
	}
	ok, err := r.rdb.SetNX(ctx, r.k.discoveryLease(), holder, ttl).Result()
	return ok, wrapName(op, holder, err)
}

// PutDiscoverySnapshot stores a listing for the other sidecars; it lives RegistrationTTL (a
// snapshot nobody renews is gone with the registrations it made). Data is only rewritten when
// its content changed; the listing time always is.
func (r *Registry) PutDiscoverySnapshot(ctx context.Context, data []byte, at time.Time, by string) (string, error) {
	const op = "put discovery snapshot"
	h := sha256.Sum256(data)
	sum := hex.EncodeToString(h[:16])
	key := r.k.discoverySnapshot()
	old, err := r.rdb.HGet(ctx, key, "sum").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", wrapName(op, by, err)
	}
	fields := []any{"at", at.UnixMilli(), "by", by}
	if old != sum {
		fields = append(fields, "sum", sum, "data", data)
	}
	_, err = r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, fields...)
		p.PExpire(ctx, key, r.cfg.RegistrationTTL)
		return nil
	})
	return sum, wrapName(op, by, err)
}

// LoadDiscoverySnapshot returns the stored snapshot; ok is false when there is none. When its Sum
// equals known, Data is not transferred (nil): the caller has it already.
func (r *Registry) LoadDiscoverySnapshot(ctx context.Context, known string) (snap DiscoverySnapshot, ok bool, err error) {
	const op = "load discovery snapshot"
	key := r.k.discoverySnapshot()
	vals, err := r.rdb.HMGet(ctx, key, "sum", "at", "by").Result()
	if err != nil {
		return snap, false, wrapName(op, "", err)
	}
	sum, _ := vals[0].(string)
	atS, _ := vals[1].(string)
	snap.By, _ = vals[2].(string)
	if sum == "" || atS == "" {
		return snap, false, nil
	}
	ms, err := strconv.ParseInt(atS, 10, 64)
	if err != nil {
		return snap, false, wrapName(op, "", fmt.Errorf("stored listing time %q is not a number: %w", atS, err))
	}
	snap.Sum, snap.At = sum, time.UnixMilli(ms)
	if sum == known {
		return snap, true, nil
	}
	// Data and sum are read together: a writer between the two reads could pair new data with
	// the old sum, which only costs one more transfer next time.
	res, err := r.rdb.HMGet(ctx, key, "sum", "data").Result()
	if err != nil {
		return snap, false, wrapName(op, "", err)
	}
	s, _ := res[0].(string)
	d, _ := res[1].(string)
	if s == "" {
		return snap, false, nil // expired between the reads
	}
	snap.Sum, snap.Data = s, []byte(d)
	return snap, true, nil
}
