package registry

import (
	"context"
	"errors"
)

// TrimResult says what one Trim did.
type TrimResult struct {
	Removed         int64 // stream entries removed
	Length          int64 // stream length afterwards
	ConsumersPruned int64 // idle consumers without pending entries that were deleted
}

// Trim removes finished entries of fn older than MaxAge, and beyond TrimLen (at most TrimBatch per
// run), but never an entry that is pending or not yet delivered: the cut is kept below the oldest
// pending id and after the group's last delivered id (XTRIM MINID on >= 6.2; XDEL by id before).
// It also deletes consumers that own nothing and were idle longer than ConsumerMaxIdle.
func (r *Registry) Trim(ctx context.Context, fn FunctionKey) error {
	_, err := r.TrimStats(ctx, fn)
	return err
}

// TrimStats is Trim that also reports what was removed.
func (r *Registry) TrimStats(ctx context.Context, fn FunctionKey) (TrimResult, error) {
	const op = "trim"
	var res TrimResult
	if err := fn.Validate(); err != nil {
		return res, wrap(op, fn, err)
	}
	f, err := r.feat(ctx)
	if err != nil {
		return res, wrap(op, fn, err)
	}
	out, err := trimScript.Run(ctx, r.rdb, []string{r.k.calls(fn)},
		r.cfg.TrimLen, r.cfg.MaxAge.Milliseconds(), r.cfg.TrimBatch, legacyFlag(f)).Int64Slice()
	if err != nil {
		return res, wrap(op, fn, err)
	}
	if len(out) == 2 {
		res.Removed, res.Length = out[0], out[1]
	}
	n, err := pruneConsumersScript.Run(ctx, r.rdb, []string{r.k.calls(fn)}, GroupName, r.cfg.ConsumerMaxIdle.Milliseconds()).Int64()
	if err != nil && !redisErrPrefix(err, "NOGROUP") && !redisErrPrefix(err, "ERR no such key") {
		return res, wrap(op, fn, err)
	}
	res.ConsumersPruned = n
	return res, nil
}

// TrimAll trims every indexed function; it goes on after a failing function and returns all errors.
func (r *Registry) TrimAll(ctx context.Context) error {
	fns, err := r.indexed(ctx)
	if err != nil {
		return wrapName("trim all", "", err)
	}
	var errs []error
	for _, fn := range fns {
		if err := r.Trim(ctx, fn); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
