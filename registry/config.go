package registry

import (
	"fmt"
	"strings"
	"time"
)

// Config tunes the registry. Zero fields take the defaults below (setDefaults).
type Config struct {
	// Prefix starts every key (default "n8nfn:"); must not contain braces (they form hash tags).
	Prefix string
	// ReplyTTL is how long an unread reply list lives after its last push (default 10m).
	ReplyTTL time.Duration
	// RegistrationTTL is how long a function record lives unless its owner refreshes it (default 5m).
	RegistrationTTL time.Duration
	// HeartbeatTTL is how long a sidecar counts as live after its last heartbeat (default 30s).
	HeartbeatTTL time.Duration
	// MaxLen caps a function stream. At the cap AddCall first removes finished entries and, when
	// unfinished calls alone fill it, refuses with ErrBacklogFull instead of dropping any (default 100000).
	MaxLen int64
	// BudgetBytes caps the bytes the payloads of all queued, unanswered calls of this prefix may hold
	// in Redis together; AddCall refuses a call that would pass it with ErrBudgetFull (default 256 MiB).
	BudgetBytes int64
	// TrimLen is the length Trim cuts a stream to, removing finished entries only (default 10000,
	// at most MaxLen).
	TrimLen int64
	// MaxAge is how long finished entries are kept for inspection before Trim removes them (default 1h).
	MaxAge time.Duration
	// MaxDeliveries is how often an entry may be delivered before Reclaim dead-letters it (default 5).
	MaxDeliveries int
	// DeadLetterMaxLen caps each dead-letter stream, oldest dropped first (default 10000).
	DeadLetterMaxLen int64
	// ConsumerMaxIdle: Trim deletes consumers with nothing pending that were idle this long (default 24h).
	ConsumerMaxIdle time.Duration
	// ReplayDeadline is the deadline given to a replayed dead letter, from the time of replay (default 5m).
	ReplayDeadline time.Duration
	// TrimBatch bounds the entries one Trim removes by length in one step (default 10000).
	TrimBatch int64
	// WaitReplicas: after queueing a call, publishing a reply or recording a dispatch or claim, wait
	// (Redis WAIT) until this many replicas have it, at most WaitTimeout (default 200ms), and when
	// fewer did, write it again on the new master if a failover replaces the old one within
	// FailoverWindow (default 5s), so a Sentinel failover does not lose what the old master
	// acknowledged but had not replicated (see durable). 0 (default): do not wait.
	WaitReplicas   int
	WaitTimeout    time.Duration
	FailoverWindow time.Duration
	// OnDeadLetter, when set, is told of every call Reclaim moved to its dead-letter stream (the
	// sidecar counts them in its metrics). It must not block.
	OnDeadLetter func(fn FunctionKey, callID string)
}

// Defaults.
const (
	DefaultPrefix           = "n8nfn:"
	DefaultReplyTTL         = 10 * time.Minute
	DefaultRegistrationTTL  = 5 * time.Minute
	DefaultHeartbeatTTL     = 30 * time.Second
	DefaultMaxLen           = 100000
	DefaultTrimLen          = 10000
	DefaultMaxAge           = time.Hour
	DefaultMaxDeliveries    = 5
	DefaultDeadLetterMaxLen = 10000
	DefaultConsumerMaxIdle  = 24 * time.Hour
	DefaultReplayDeadline   = 5 * time.Minute
	DefaultTrimBatch        = 10000
	DefaultBudgetBytes      = 256 << 20
)

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	setDur(&c.ReplyTTL, DefaultReplyTTL)
	setDur(&c.WaitTimeout, 200*time.Millisecond)
	setDur(&c.FailoverWindow, defaultFailoverWindow)
	setDur(&c.RegistrationTTL, DefaultRegistrationTTL)
	setDur(&c.HeartbeatTTL, DefaultHeartbeatTTL)
	setDur(&c.MaxAge, DefaultMaxAge)
	setDur(&c.ConsumerMaxIdle, DefaultConsumerMaxIdle)
	setDur(&c.ReplayDeadline, DefaultReplayDeadline)
	if c.MaxLen == 0 {
		c.MaxLen = DefaultMaxLen
	}
	if c.BudgetBytes == 0 {
		c.BudgetBytes = DefaultBudgetBytes
	}
	if c.TrimLen == 0 {
		c.TrimLen = min(DefaultTrimLen, c.MaxLen)
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = DefaultMaxDeliveries
	}
	if c.DeadLetterMaxLen == 0 {
		c.DeadLetterMaxLen = DefaultDeadLetterMaxLen
	}
	if c.TrimBatch == 0 {
		c.TrimBatch = DefaultTrimBatch
	}
}

func setDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// Validate reports the first bad field, saying what to do.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: registry config: "+format, append([]any{ErrInvalid}, args...)...)
	}
	switch {
	case strings.ContainsAny(c.Prefix, "{}"):
		return bad("prefix %q must not contain '{' or '}' (they are used for hash tags)", c.Prefix)
	case c.ReplyTTL < time.Millisecond, c.RegistrationTTL < time.Millisecond, c.HeartbeatTTL < time.Millisecond:
		return bad("ReplyTTL, RegistrationTTL and HeartbeatTTL must be at least 1ms (got %s, %s, %s)",
			c.ReplyTTL, c.RegistrationTTL, c.HeartbeatTTL)
	case c.MaxLen < 1:
		return bad("MaxLen must be at least 1 (got %d)", c.MaxLen)
	case c.BudgetBytes < 1:
		return bad("BudgetBytes must be at least 1 (got %d)", c.BudgetBytes)
	case c.TrimLen < 1 || c.TrimLen > c.MaxLen:
		return bad("TrimLen must be between 1 and MaxLen %d (got %d)", c.MaxLen, c.TrimLen)
	case c.MaxAge < 0:
		return bad("MaxAge must not be negative (got %s)", c.MaxAge)
	case c.MaxDeliveries < 1:
		return bad("MaxDeliveries must be at least 1 (got %d)", c.MaxDeliveries)
	case c.DeadLetterMaxLen < 1:
		return bad("DeadLetterMaxLen must be at least 1 (got %d)", c.DeadLetterMaxLen)
	case c.TrimBatch < 1:
		return bad("TrimBatch must be at least 1 (got %d)", c.TrimBatch)
	case c.ConsumerMaxIdle < 0, c.ReplayDeadline < 0:
		return bad("ConsumerMaxIdle and ReplayDeadline must not be negative")
	}
	return nil
}
