package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel errors; test with errors.Is on any error this package returns.
var (
	// ErrUnavailable: Redis could not be reached or is not serving (connection refused/reset,
	// timeout, LOADING, CLUSTERDOWN, ...). The client reconnects by itself; retry later.
	ErrUnavailable = errors.New("redis unavailable")
	// ErrInvalid: bad input from our caller (empty function name, bad config, ...).
	ErrInvalid = errors.New("invalid argument")
	// ErrNoStream: the function's call stream does not exist, so no sidecar ever served it.
	ErrNoStream = errors.New("function has no call stream")
	// ErrBacklogFull: the function's stream holds MaxLen unfinished calls; nothing was queued.
	ErrBacklogFull = errors.New("function backlog full")
	// ErrBudgetFull: queueing the call would take the bytes unanswered calls hold in Redis past
	// Config.BudgetBytes; nothing was queued. errors.As gives the *BudgetError with the figures.
	ErrBudgetFull = errors.New("redis call budget full")
	// ErrNotFound: the entry (call or dead letter) does not exist (already trimmed, purged or a wrong id).
	ErrNotFound = errors.New("not found")
	// ErrTimeout: the deadline passed before every awaited reply arrived.
	ErrTimeout = errors.New("deadline passed")
	// ErrNotOwner: a kept-alive entry is no longer owned by the consumer (acked or reclaimed by another).
	ErrNotOwner = errors.New("entry not owned by consumer")
)

// Error is the error type of every operation: which operation, on which function, and why.
type Error struct {
	Op       string // e.g. "add call"
	Function string // "global/add", or "" when the operation is not about one function
	Err      error
	// IDs lists the stream entries concerned where that helps (KeepAlive: entries not owned any more).
	IDs []string

	unavailable bool
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("registry: ")
	b.WriteString(e.Op)
	if e.Function != "" {
		b.WriteString(" ")
		b.WriteString(e.Function)
	}
	b.WriteString(": ")
	if e.unavailable {
		b.WriteString("redis unavailable: ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnavailable) true for outages without hiding the driver's error.
func (e *Error) Is(target error) bool { return target == ErrUnavailable && e.unavailable }

// wrap names the operation and function; nil stays nil.
func wrap(op string, fn FunctionKey, err error) error {
	if err == nil {
		return nil
	}
	name := ""
	if fn != (FunctionKey{}) {
		name = fn.String()
	}
	return wrapName(op, name, err)
}

func wrapName(op, name string, err error) error {
	if err == nil {
		return nil
	}
	var re *Error
	if errors.As(err, &re) && re.Op == op {
		return err
	}
	return &Error{Op: op, Function: name, Err: err, unavailable: isOutage(err)}
}

func errorf(op string, fn FunctionKey, sentinel error, format string, args ...any) error {
	return wrap(op, fn, fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...))
}

// isOutage tells a Redis outage from a command error.
func isOutage(err error) bool {
	// The caller's own context ending is not an outage.
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, redis.ErrPoolTimeout) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	// Redis error replies start with their code; look at every error of the chain, since ours wrap them.
	for e := err; e != nil; e = errors.Unwrap(e) {
		m := e.Error()
		for _, p := range []string{"LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY"} {
			if strings.HasPrefix(m, p) {
				return true
			}
		}
	}
	msg := err.Error()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "broken pipe") ||
		strings.Contains(msg, "connection reset")
}

// redisErrPrefix reports whether err is a Redis error reply starting with prefix (e.g. "NOGROUP").
// Errors raised by our scripts may come back with "ERR " in front (Redis adds it when the
// script's error has no code of its own), so that form matches too.
func redisErrPrefix(err error, prefix string) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	var re redis.Error
	if errors.As(err, &re) {
		msg = re.Error()
	}
	return strings.HasPrefix(msg, prefix) || strings.HasPrefix(msg, "ERR "+prefix)
}

// Outage retries. A Redis restart, a kill -9 followed by a supervisor's restart, a failover or a
// network blip lasts seconds; the calls waiting on it have minutes. Operations that are safe to
// repeat (a reply pushed twice is dropped by the waiter, an XACK or HDEL repeated is a no-op, a
// BLPOP that failed popped nothing) retry outages until their deadline instead of failing the call.
const (
	// outageRetryFor bounds the retries of an operation whose context has no deadline: long enough
	// for a restart with an AOF to load or a 10 s outage, short enough that a Redis that stays away
	// is reported.
	outageRetryFor   = 30 * time.Second
	outageBackoffMin = 50 * time.Millisecond
	outageBackoffMax = time.Second
)

// outageDeadline is when the retries of an operation under ctx stop: ctx's deadline, else outageRetryFor
// from now.
func outageDeadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(outageRetryFor)
}

// outageWaiter paces the retries of one operation: a delay doubling from 50 ms to 1 s, never past the
// deadline. The delay is small against a restart (Redis answers within ~100 ms of starting) and keeps
// hundreds of waiting callers from hammering a Redis that is loading its data.
type outageWaiter struct {
	until time.Time
	delay time.Duration
	since time.Time // when the current outage began (zero: none)
	last  error
}

func newOutageWaiter(until time.Time) *outageWaiter {
	return &outageWaiter{until: until, delay: outageBackoffMin}
}

// retry reports whether err is an outage worth waiting out; it then sleeps the next delay and returns
// true. It returns false at once for nil, for errors other than outages, and when ctx ended or the
// deadline passed (before or during the sleep); after that, last and since say what was waited out.
func (w *outageWaiter) retry(ctx context.Context, err error) bool {
	if err == nil || !isOutage(err) || ctx.Err() != nil {
		return false
	}
	if w.since.IsZero() {
		w.since = time.Now()
	}
	w.last = err
	left := time.Until(w.until)
	if left <= 0 {
		return false
	}
	d := min(w.delay, left)
	w.delay = min(2*w.delay, outageBackoffMax)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	return time.Now().Before(w.until)
}

// recovered marks the end of an outage (the next one starts its back-off from the minimum again).
func (w *outageWaiter) recovered() {
	w.since, w.delay = time.Time{}, outageBackoffMin
}

// gaveUp wraps the last outage error with how long it lasted, for an operation that stopped retrying.
// When the context ended during the outage, its last attempt fails with the context's error (the
// driver gives up on it): the outage is what the caller needs to hear about then.
func (w *outageWaiter) gaveUp(ctx context.Context, err error) error {
	if w.since.IsZero() {
		return err
	}
	last := err
	if !isOutage(err) {
		if ctx.Err() == nil {
			return err // Redis answered, with an error of another kind
		}
		last = w.last
	}
	return fmt.Errorf("gave up after %s of retries: %w", time.Since(w.since).Round(time.Millisecond), last)
}

// retryOutage runs do until it succeeds, fails with something other than an outage, ctx ends or
// until passes; the error is do's last one.
func retryOutage(ctx context.Context, until time.Time, do func() error) error {
	w := newOutageWaiter(until)
	for {
		err := do()
		if !w.retry(ctx, err) {
			return w.gaveUp(ctx, err)
		}
	}
}

// RetryOutage runs do until it succeeds, fails with something other than a Redis outage (see
// ErrUnavailable), ctx ends or until passes (zero: ctx's deadline, else 30 s from now), waiting
// 50 ms doubling to 1 s between attempts. For operations that are safe to repeat (reads such as
// LookupFunction, HasLiveConsumer or LoadCall, and Ack): not for AddCall, which a repeat after a
// lost reply would queue twice. The error is do's last one, with how long the outage lasted.
func RetryOutage(ctx context.Context, until time.Time, do func() error) error {
	if until.IsZero() {
		until = outageDeadline(ctx)
	}
	return retryOutage(ctx, until, do)
}
