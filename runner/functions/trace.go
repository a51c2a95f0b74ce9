package functions

import (
	"context"
	"fmt"
	"time"

	"github.com/n8n-fn/n8n-fn/registry"
)

// The trace records of `n8n-fn trace` and the status page (registry.Trace*): written on the way,
// best effort (a failed write is logged at debug level and costs the call nothing), each on its
// own short deadline, kept for Config.TraceTTL. Never params or results: their size only.

// traceWriteTimeout bounds one trace write; a slow Redis must not slow calls down much.
const traceWriteTimeout = time.Second

// callerID says who queues a call: the sidecar, the caller's workflow and execution, its node.
type callerID struct {
	sidecar, workflow, workflowName, execution, node string
}

// String is the call's Caller field (shown by n8n-fn deadletters list).
func (c callerID) String() string {
	return fmt.Sprintf("%s/workflow %s/execution %s/node %s", c.sidecar, c.workflow, c.execution, c.node)
}

func traceCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), traceWriteTimeout)
}

// traceQueued records a call just queued at the time at (one round trip).
func (f *Runtime) traceQueued(ctx context.Context, c registry.Call, caller callerID, parent *registry.ExecCall, at time.Time) {
	if f.cfg.TraceTTL <= 0 {
		return
	}
	tc := registry.TraceCall{ID: c.ID, Function: c.Function.String(), ParamsBytes: len(c.Params) + len(c.Binary), Attempt: c.Attempt,
		CallerExecution: caller.execution, CallerWorkflow: caller.workflow, CallerNode: caller.node, CallerSidecar: caller.sidecar,
		Queued: at, Deadline: c.Deadline}
	if parent != nil {
		tc.Parent = parent.CallID
	}
	tctx, cancel := traceCtx(ctx)
	defer cancel()
	if err := f.reg.TraceQueued(tctx, tc, caller.workflowName, f.cfg.TraceTTL); err != nil {
		f.log.WithError(err).WithField("call", c.ID).Debug("could not record the call's trace")
	}
}

// traceFinished records how the calls of one attempt ended for their caller.
func (f *Runtime) traceFinished(ctx context.Context, ids []string, replies map[string]registry.Reply, waitErr error) {
	if f.cfg.TraceTTL <= 0 || len(ids) == 0 {
		return
	}
	outcomes := make(map[string]string, len(ids))
	for _, id := range ids {
		rep, ok := replies[id]
		outcomes[id] = callOutcome(ctx, rep, ok, waitErr)
	}
	tctx, cancel := traceCtx(ctx)
	defer cancel()
	if err := f.reg.TraceFinished(tctx, outcomes, time.Now(), f.cfg.TraceTTL); err != nil {
		f.log.WithError(err).Debug("could not record the calls' outcome in their trace")
	}
}

// traceClaimed records the function execution that claimed a call.
func (f *Runtime) traceClaimed(ctx context.Context, callID string, data *taskData) {
	if f.cfg.TraceTTL <= 0 {
		return
	}
	tctx, cancel := traceCtx(ctx)
	defer cancel()
	e := registry.TraceExecution{ID: data.ExecutionID, WorkflowID: data.WorkflowID, WorkflowName: data.WorkflowName, Worker: f.cfg.ID}
	if err := f.reg.TraceClaimed(tctx, callID, e, time.Now(), f.cfg.TraceTTL); err != nil {
		f.log.WithError(err).WithField("call", callID).Debug("could not record the call's execution in its trace")
	}
}

// traceDispatched records one trigger of a call's function by this sidecar.
func (d *dispatcher) traceDispatched(ctx context.Context, callID string) {
	if d.f.cfg.TraceTTL <= 0 {
		return
	}
	tctx, cancel := traceCtx(ctx)
	defer cancel()
	if err := d.f.reg.TraceDispatched(tctx, callID, d.f.cfg.ID, time.Now(), d.f.cfg.TraceTTL); err != nil {
		d.f.log.WithError(err).WithField("call", callID).Debug("could not record the dispatch in the call's trace")
	}
}
