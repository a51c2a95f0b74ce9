package functions

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/n8n-fn/n8n-fn/registry"
)

// idempotencyTTL is how long a successful result answers repeated calls with the same key.
const idempotencyTTL = 24 * time.Hour

// idempotentResult returns the returned items of a successful earlier call with this key.
func (f *Runtime) idempotentResult(ctx context.Context, fn registry.FunctionKey, key string) ([]json.RawMessage, bool, error) {
	rep, ok, err := f.reg.IdempotentResult(ctx, fn, key)
	if err != nil || !ok {
		return nil, false, err
	}
	var items []json.RawMessage
	if err := json.Unmarshal(rep.Items, &items); err != nil {
		return nil, false, nil // unreadable: call again
	}
	return items, true, nil
}

// storeIdempotentResult keeps a successful call's items for idempotencyTTL.
func (f *Runtime) storeIdempotentResult(ctx context.Context, fn registry.FunctionKey, key string, items []json.RawMessage) error {
	if items == nil {
		items = []json.RawMessage{}
	}
	b, err := json.Marshal(items)
	if err != nil {
		return fmt.Errorf("encode the result for idempotency key %q: %w", key, err)
	}
	return f.reg.StoreIdempotentResult(ctx, fn, key, registry.Reply{CallID: "idem:" + key, OK: true, Items: b}, idempotencyTTL)
}
