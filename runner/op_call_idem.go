package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/n8n-fn/n8n-fn/registry"
)

// idempotencyTTL is how long a successful result answers repeated calls with the same key.
const idempotencyTTL = 24 * time.Hour

// TEMPORARY (helper "functions"): the registry has no idempotency operations yet (requested in
// /work/notes/requests-registry.md: IdempotentResult / StoreIdempotentResult). Until they land,
// these two helpers talk to Redis through the runtime's own client (f.rdb), with a key under the function's
// hash tag so they work on Cluster. Replace both bodies with the registry calls.
func idemKey(prefix string, fn registry.FunctionKey, key string) string {
	return prefix + "{" + fn.String() + "}:idem:" + key
}

// idempotentResult returns the stored items of a successful earlier call with this key.
func (f *functions) idempotentResult(ctx context.Context, fn registry.FunctionKey, key string) ([]json.RawMessage, bool, error) {
	raw, err := f.rdb.Get(ctx, idemKey(f.reg.Config().Prefix, fn, key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read the result stored for idempotency key %q: %w", key, err)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, false, nil // unreadable: call again
	}
	return items, true, nil
}

// storeIdempotentResult keeps a successful call's items for idempotencyTTL.
func (f *functions) storeIdempotentResult(ctx context.Context, fn registry.FunctionKey, key string, items []json.RawMessage) error {
	if items == nil {
		items = []json.RawMessage{}
	}
	b, err := json.Marshal(items)
	if err != nil {
		return err
	}
	return f.rdb.Set(ctx, idemKey(f.reg.Config().Prefix, fn, key), b, idempotencyTTL).Err()
}
