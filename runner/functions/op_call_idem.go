package functions

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// idempotencyTTL is how long a successful result answers repeated calls with the same key.
const idempotencyTTL = 24 * time.Hour

// idempotencyPoll is how often a call waiting for another call with its key looks for the result.
const idempotencyPoll = 100 * time.Millisecond

// storedResult is what an idempotency key's stored reply holds: the items and their binaries.
type storedResult struct {
	items    []json.RawMessage
	binaries []json.RawMessage
}

// idempotentResult returns the result of a successful earlier call with this key.
func (f *Runtime) idempotentResult(ctx context.Context, fn registry.FunctionKey, key string) (storedResult, bool, error) {
	rep, ok, err := f.reg.IdempotentResult(ctx, fn, key)
	if err != nil || !ok {
		return storedResult{}, false, err
	}
	var items []json.RawMessage
	if err := json.Unmarshal(rep.Items, &items); err != nil || (rep.Binaries != nil && len(rep.Binaries) != len(items)) {
		return storedResult{}, false, nil // unreadable: call again
	}
	return storedResult{items: items, binaries: rep.Binaries}, true, nil
}

// storeIdempotentResult keeps a successful call's items for idempotencyTTL.
func (f *Runtime) storeIdempotentResult(ctx context.Context, fn registry.FunctionKey, key string, r *callReq) error {
	items := r.returned
	if items == nil {
		items = []json.RawMessage{}
	}
	b, err := json.Marshal(items)
	if err != nil {
		return fmt.Errorf("encode the result for idempotency key %q: %w", key, err)
	}
	rep := registry.Reply{CallID: "idem:" + key, OK: true, Items: b, Binaries: r.binaries}
	return f.reg.StoreIdempotentResult(ctx, fn, key, rep, idempotencyTTL)
}

// reuseIdempotent answers the calls whose key already has a stored result.
func (f *Runtime) reuseIdempotent(ctx context.Context, fn registry.FunctionKey, reqs []*callReq) error {
	for _, r := range reqs {
		if r.idem == "" || r.done {
			continue
		}
		res, ok, err := f.idempotentResult(ctx, fn, r.idem)
		if err != nil {
			return err
		}
		if ok {
			r.returned, r.binaries, r.done, r.reused = res.items, res.binaries, true, true
		}
	}
	return nil
}

// markIdempotent marks the keys of the calls about to run as running. It returns the calls to run
// now (without a key, or holding its key's mark) and the followers: calls whose key another call
// (in this task or anywhere else) is running at this moment; they wait for that call's result.
func (f *Runtime) markIdempotent(ctx context.Context, p *callPlan, reqs []*callReq) (mine, followers []*callReq, err error) {
	ttl := p.timeout*time.Duration(p.retries+1) + 30*time.Second
	for _, r := range reqs {
		if r.done {
			continue
		}
		if r.idem == "" {
			mine = append(mine, r)
			continue
		}
		r.token = workflows.NewCallID()
		owner, err := f.reg.StartIdempotent(ctx, p.key, r.idem, r.token, ttl)
		if err != nil {
			return nil, nil, fmt.Errorf("mark idempotency key %q as running: %w", r.idem, err)
		}
		if owner == r.token {
			mine = append(mine, r)
		} else {
			r.token = ""
			followers = append(followers, r)
		}
	}
	return mine, followers, nil
}

// finishIdempotent stores the successful results of calls with a key and clears their marks
// (a failed call clears its mark too, so a waiting call may run the function itself).
func (f *Runtime) finishIdempotent(ctx context.Context, fn registry.FunctionKey, reqs []*callReq) {
	for _, r := range reqs {
		if r.idem == "" || r.token == "" {
			continue
		}
		// The task's context may be what ended; the result must still be stored for the followers.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if r.done && r.err == nil {
			if err := f.storeIdempotentResult(sctx, fn, r.idem, r); err != nil {
				f.log.WithError(err).WithField("function", fn.String()).Warn("could not store the result for its idempotency key")
			}
		}
		if err := f.reg.FinishIdempotent(sctx, fn, r.idem, r.token); err != nil {
			f.log.WithError(err).WithField("function", fn.String()).Warn("could not clear the running mark of an idempotency key (it expires by itself)")
		}
		cancel()
		r.token = ""
	}
}

// awaitIdempotent waits for the results of calls whose key another call runs. A follower whose
// leader finished without a stored result (it failed) takes the mark and is returned to run.
func (f *Runtime) awaitIdempotent(ctx context.Context, p *callPlan, followers []*callReq) ([]*callReq, error) {
	deadline := time.Now().Add(p.timeout * time.Duration(p.retries+1))
	if deadline.After(p.taskDeadline) {
		deadline = p.taskDeadline
	}
	var run []*callReq
	for len(followers) > 0 {
		var still []*callReq
		for _, r := range followers {
			res, ok, err := f.idempotentResult(ctx, p.key, r.idem)
			if err != nil {
				return nil, err
			}
			if ok {
				r.returned, r.binaries, r.done, r.reused = res.items, res.binaries, true, true
				continue
			}
			leader, err := f.reg.IdempotentRunner(ctx, p.key, r.idem)
			if err != nil {
				return nil, err
			}
			if leader == "" {
				token := workflows.NewCallID()
				owner, err := f.reg.StartIdempotent(ctx, p.key, r.idem, token, p.timeout*time.Duration(p.retries+1)+30*time.Second)
				if err != nil {
					return nil, err
				}
				if owner == token {
					r.token = token
					run = append(run, r)
					continue
				}
			}
			still = append(still, r)
		}
		followers = still
		if len(followers) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, r := range followers {
				r.err = fmt.Errorf("timed out waiting for the call already running with idempotency key %q (it has %s per attempt)", r.idem, p.timeout)
			}
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: the task was cancelled while waiting for the call running with the same idempotency key: %w", p.label, ctx.Err())
		case <-time.After(idempotencyPoll):
		}
	}
	return run, nil
}
