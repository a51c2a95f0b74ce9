package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxIdempotencyKey bounds the key a caller chooses, so a runaway expression cannot make huge Redis keys.
const maxIdempotencyKey = 512

// IdempotentResult returns the reply stored for (fn, key) by StoreIdempotentResult, if one is there.
// A stored value that no longer decodes counts as absent: the call simply runs again.
func (r *Registry) IdempotentResult(ctx context.Context, fn FunctionKey, key string) (Reply, bool, error) {
	const op = "read idempotent result"
	if err := r.checkIdem(fn, key); err != nil {
		return Reply{}, false, wrap(op, fn, err)
	}
	raw, err := r.rdb.Get(ctx, r.k.idem(fn, key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Reply{}, false, nil
	}
	if err != nil {
		return Reply{}, false, wrap(op, fn, err)
	}
	var rep Reply
	if json.Unmarshal(raw, &rep) != nil || !rep.OK {
		return Reply{}, false, nil
	}
	return rep, true, nil
}

// StoreIdempotentResult keeps a successful reply for ttl so repeated calls with the same key get it
// without running the function again. Failed replies are not stored: a failed call may be retried.
func (r *Registry) StoreIdempotentResult(ctx context.Context, fn FunctionKey, key string, rep Reply, ttl time.Duration) error {
	const op = "store idempotent result"
	if err := r.checkIdem(fn, key); err != nil {
		return wrap(op, fn, err)
	}
	if !rep.OK {
		return nil
	}
	if ttl <= 0 {
		return errorf(op, fn, ErrInvalid, "ttl must be positive, got %s", ttl)
	}
	b, err := encodeReply(rep)
	if err != nil {
		return errorf(op, fn, ErrInvalid, "encode reply %s: %v", rep.CallID, err)
	}
	return wrap(op, fn, r.rdb.Set(ctx, r.k.idem(fn, key), b, ttl).Err())
}

func (r *Registry) checkIdem(fn FunctionKey, key string) error {
	if err := fn.Validate(); err != nil {
		return err
	}
	if key == "" || len(key) > maxIdempotencyKey {
		return fmt.Errorf("%w: idempotency key must be 1..%d bytes, got %d", ErrInvalid, maxIdempotencyKey, len(key))
	}
	return nil
}
