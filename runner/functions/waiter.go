package functions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/n8n-fn/n8n-fn/registry"
)

// waiterLease is how long a call node's waiter lease lasts without a refresh (it is refreshed
// every third of it while the node waits): a sidecar that dies with waiting call nodes gives
// their slots back within this.
const waiterLease = 30 * time.Second

// errSlotsExhausted marks the refusal of holdWaiter, for errors.Is.
var errSlotsExhausted = errors.New("execution slot limit")

// holdWaiter takes this call node's waiter lease before anything is queued. An n8n execution
// waiting in a call node keeps its worker's execution slot (a task runner cannot put it into
// n8n's waiting state, as a Wait node does), and the function execution it waits for needs a
// slot of its own: when every slot waits, nothing runs until the calls time out. The lease that
// would take the last slot is refused, so that call fails at once with the limit it hit, and its
// execution ends and gives its slot back. The returned release gives the lease back (it must be
// called). Without announced slots (ExecutionSlots 0 here, or on every sidecar) nothing is
// limited; when Redis does not answer, the call goes ahead unchecked: the lease is a guard
// against a deadlock, not a condition of the call.
func (f *Runtime) holdWaiter(ctx context.Context, label, taskID string) (release func(), err error) {
	if f.cfg.ExecutionSlots <= 0 {
		return func() {}, nil
	}
	holder := f.cfg.ID + "/" + taskID
	var l registry.WaiterLease
	err = registry.RetryOutage(ctx, time.Now().Add(2*time.Second), func() (err error) {
		l, err = f.reg.AcquireWaiter(ctx, holder, waiterLease)
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		f.log.WithError(err).Warn("could not take the call node's waiter lease; the call goes ahead without the execution slot check")
		return func() {}, nil
	}
	if !l.Taken {
		return nil, &OpError{
			Message: fmt.Sprintf("%s: execution slot limit: %d of the %d execution slots of the n8n workers are held by executions waiting in n8n-fn call nodes, "+
				"and this call would hold the last one, which the function executions they wait for need; nothing was queued", label, l.Waiters, l.Slots),
			Description: "An execution that waits in a call node keeps its execution slot, and every function execution (every nesting level of a recursion) needs one of its own: " +
				"with every slot waiting, no function could start and every call would run into its timeout, so this call fails now. " +
				"Raise the workers' concurrency (n8n worker --concurrency, or N8N_CONCURRENCY_PRODUCTION_LIMIT) together with the sidecars' N8N_RUNNERS_MAX_CONCURRENCY " +
				"(N8N_FN_EXECUTION_SLOTS, the slots each sidecar announces, follows it), add workers, or let fewer executions wait at once " +
				"(fewer concurrent callers, a shallower recursion).",
			Err: errSlotsExhausted,
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(waiterLease / 3)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				if err := f.reg.RefreshWaiter(rctx, holder, waiterLease); err != nil && rctx.Err() == nil {
					f.log.WithError(err).Debug("refresh of the call node's waiter lease failed; it is tried again")
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
		lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer lcancel()
		if err := f.reg.ReleaseWaiter(lctx, holder); err != nil {
			f.log.WithError(err).Debug("release of the call node's waiter lease failed; it expires by itself")
		}
	}, nil
}
