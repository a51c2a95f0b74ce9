package functions

import (
	"context"
	"errors"
	"time"

	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/runner/metrics"
)

// publishedWithin: a registration refreshed by some sidecar's discovery this recently is of a
// published function (discovery re-registers every function it sees each round, every 10 s). An
// unpublished function's record lives on for minutes; it must not raise "no live sidecar".
const publishedWithin = time.Minute

// queueStats is the metrics' scrape-time view of the queues: stream length, pending, oldest
// pending age and dead letters of every function this sidecar serves, and the live sidecars of
// every published function (an alert fires when one has none).
func (f *Runtime) queueStats(ctx context.Context) ([]metrics.QueueStat, error) {
	served := map[registry.FunctionKey]bool{}
	for _, k := range f.catalog.keys() {
		served[k] = true
	}
	recs, err := f.reg.ListFunctions(ctx)
	if err != nil {
		return nil, err
	}
	var out []metrics.QueueStat
	seen := map[registry.FunctionKey]bool{}
	for _, rec := range recs {
		seen[rec.Key] = true
	}
	for k := range served {
		if !seen[k] {
			recs = append(recs, registry.FunctionRecord{Key: k}) // served, its record not (yet) written
		}
	}
	for _, rec := range recs {
		k := rec.Key
		if !served[k] && time.Since(rec.UpdatedAt) > publishedWithin {
			continue // no discovery has seen it published for a while: unpublished or deleted
		}
		st := metrics.QueueStat{Function: k.String(), Served: served[k]}
		if st.Served {
			fs, err := f.reg.FunctionStatus(ctx, k)
			if err != nil {
				return out, err
			}
			st.Length, st.Pending, st.OldestPendingAge, st.DeadLetters = fs.Length, fs.Pending, fs.OldestPendingAge, fs.DeadLetters
			st.LiveSidecars = len(fs.LiveSidecars)
		} else {
			live, err := f.reg.LiveSidecars(ctx, k)
			if err != nil {
				return out, err
			}
			st.LiveSidecars = len(live)
		}
		out = append(out, st)
	}
	return out, nil
}

// observeCalls counts the end of one attempt's calls (n8n_fn_calls_finished_total and the
// caller-side latency): each call's outcome is its reply's, or why no reply came (waitErr).
func (f *Runtime) observeCalls(ctx context.Context, key registry.FunctionKey, ids []string, replies map[string]registry.Reply, waitErr error, queued time.Time) {
	if f.met == nil {
		return
	}
	fn := key.String()
	for _, id := range ids {
		rep, ok := replies[id]
		outcome, at := callOutcome(ctx, rep, ok, waitErr), time.Now()
		if ok && !rep.Received.IsZero() {
			at = rep.Received
		}
		f.met.CallFinished(fn, outcome, at.Sub(queued))
	}
}

func callOutcome(ctx context.Context, rep registry.Reply, replied bool, waitErr error) string {
	switch {
	case replied && rep.OK:
		return metrics.OutcomeOK
	case replied && rep.ErrorKind != "":
		return string(rep.ErrorKind) // a fixed set (registry.ErrorKind...)
	case replied:
		return metrics.OutcomeError
	case ctx.Err() != nil:
		return metrics.OutcomeCancelled
	case waitErr == nil || errors.Is(waitErr, registry.ErrTimeout):
		return metrics.OutcomeTimeout
	}
	return metrics.OutcomeRedis
}

// errFunctionsOff answers the status page's reads on a sidecar without N8N_FN_SECRET.
var errFunctionsOff = errors.New("the function runtime is off on this sidecar (N8N_FN_SECRET is not set)")

// Status is every registered function's queue and the live sidecars, as `n8n-fn status` shows
// them (the status page).
func (f *Runtime) Status(ctx context.Context) ([]registry.FunctionStatus, []registry.SidecarInfo, error) {
	if f.reg == nil {
		return nil, nil, errFunctionsOff
	}
	st, err := f.reg.Status(ctx)
	if err != nil {
		return st, nil, err
	}
	sc, err := f.reg.ListSidecars(ctx)
	return st, sc, err
}

// RecentCalls returns the trace records of up to n of the latest calls, newest first.
func (f *Runtime) RecentCalls(ctx context.Context, n int64) ([]registry.TraceCall, error) {
	if f.reg == nil {
		return nil, errFunctionsOff
	}
	ids, err := f.reg.RecentCalls(ctx, n)
	if err != nil {
		return nil, err
	}
	out := make([]registry.TraceCall, 0, len(ids))
	for _, id := range ids {
		c, ok, err := f.reg.TracedCall(ctx, id)
		if err != nil {
			return out, err
		}
		if ok {
			out = append(out, c)
		}
	}
	return out, nil
}

// Trace is the call tree of a call or execution id (registry.Trace), with links into n8n's UI at
// N8N_FN_N8N_API_URL.
func (f *Runtime) Trace(ctx context.Context, id string) (*registry.TraceNode, error) {
	if f.reg == nil {
		return nil, errFunctionsOff
	}
	n, err := f.reg.Trace(ctx, id)
	n.SetLinks(f.cfg.N8NAPIURL)
	return n, err
}
