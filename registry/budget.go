package registry

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// The byte budget caps what the payloads of queued, unanswered calls hold in Redis, in total for
// the namespace (Config.Prefix), not per function: Redis is sized as a whole (and n8n's own queue
// lives in the same one), so an operator thinks in "n8n-fn may hold at most this much", whatever
// the number of functions; a per-function cap would have to be multiplied by a number that
// changes whenever a workflow is published.
//
// One counter key (keys.budget) holds the bytes. On standalone and Sentinel Redis every change is
// made in the same script as the stream change it accounts for, so the two cannot disagree: the
// check and the XADD in addCallScript, the XDEL and the release in removeEntriesScript,
// deadLetterScript and replayScript. On Cluster the counter lives in another slot than the streams,
// so a call is first reserved (reserveScript: check and add, atomic) and then queued, and released
// after its entry is deleted; a sidecar dying between the two steps leaves the counter off by that
// call. Calls queued by an older version and functions removed with their queue are not counted
// either. None of that lasts: ReconcileBudget (every janitor sweep, once a minute on each sidecar)
// sets the counter to the bytes the streams hold.

// budgetCountBatch is how many entries one streamBytesScript run reads (the payloads are summed in
// Redis; only the sum comes back).
const budgetCountBatch = 64

// BudgetError is the error of a call refused because the budget is full (errors.Is ErrBudgetFull).
type BudgetError struct {
	Used  int64 // bytes unanswered calls hold now
	Limit int64 // Config.BudgetBytes
	Need  int64 // bytes of the refused call
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("the byte budget of unanswered calls in Redis is full: they hold %s (%d bytes) of %s (%d bytes) and this call needs %s more; nothing was queued",
		HumanBytes(e.Used), e.Used, HumanBytes(e.Limit), e.Limit, HumanBytes(e.Need))
}

func (e *BudgetError) Unwrap() error { return ErrBudgetFull }

// HumanBytes writes n in KiB, MiB or GiB with one decimal ("12.5 MiB"), bytes below 1 KiB.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

// budgetKeys returns keys with the budget counter appended when it can share a script with them
// (not on Cluster: another slot).
func (r *Registry) budgetKeys(keys ...string) []string {
	if r.cluster {
		return keys
	}
	return append(keys, r.k.budget())
}

// reserveScript: KEYS[1]=budget; ARGV: bytes, limit. Adds bytes unless that passes limit
// (error "BUDGET <used>"). Cluster only: elsewhere addCallScript checks in the same step.
var reserveScript = redis.NewScript(`
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return redis.error_reply('BUDGET ' .. used) end
return redis.call('INCRBY', KEYS[1], ARGV[1])
`)

// releaseScript: KEYS[1]=budget; ARGV: bytes. Never below 0 (a release of a call counted before a
// reconcile, or queued by a version without the budget).
var releaseScript = redis.NewScript(`
local v = redis.call('DECRBY', KEYS[1], ARGV[1])
if v < 0 then redis.call('SET', KEYS[1], 0); v = 0 end
return v
`)

// removeEntriesScript: KEYS[1]=calls, KEYS[2]=budget (absent on Cluster); ARGV: group, ids...
// Acknowledges and deletes the entries and releases their payload bytes (entries already gone count
// nothing, so a repeated removal releases nothing twice). Returns the bytes released.
var removeEntriesScript = redis.NewScript(`
local bytes = 0
for i = 2, #ARGV do
  local e = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  if #e > 0 then
    local f = e[1][2]
    for j = 1, #f, 2 do if f[j] == 'c' then bytes = bytes + #f[j + 1] end end
    redis.call('XDEL', KEYS[1], ARGV[i])
  end
end
if KEYS[2] and bytes > 0 then
  local v = redis.call('DECRBY', KEYS[2], bytes)
  if v < 0 then redis.call('SET', KEYS[2], 0) end
end
return bytes
`)

// streamBytesScript: KEYS[1]=calls; ARGV: start id (inclusive), count. Returns {payload bytes of up
// to count entries from start, id of the last one, empty when none}.
var streamBytesScript = redis.NewScript(`
local ents = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
local bytes = 0
for _, e in ipairs(ents) do
  local f = e[2]
  for j = 1, #f, 2 do if f[j] == 'c' then bytes = bytes + #f[j + 1] end end
end
local last = ''
if #ents > 0 then last = ents[#ents][1] end
return {bytes, last}
`)

// rebaseScript: KEYS[1]=budget; ARGV: counted bytes, counter value when counting began. Sets the
// counter to what was counted plus what changed while counting. Returns the new value.
var rebaseScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local v = tonumber(ARGV[1]) + cur - tonumber(ARGV[2])
if v < 0 then v = 0 end
redis.call('SET', KEYS[1], string.format('%.0f', v))
return v
`)

// reserve takes n bytes of the budget on Cluster (elsewhere addCallScript does it).
func (r *Registry) reserve(ctx context.Context, n int64) error {
	err := reserveScript.Run(ctx, r.rdb, []string{r.k.budget()}, n, r.cfg.BudgetBytes).Err()
	if redisErrPrefix(err, "BUDGET") {
		used, _ := strconv.ParseInt(lastField(err.Error()), 10, 64)
		return &BudgetError{Used: used, Limit: r.cfg.BudgetBytes, Need: n}
	}
	return err
}

// release gives n bytes back to the budget (Cluster: the stream scripts cannot touch the counter).
func (r *Registry) release(ctx context.Context, n int64) error {
	if n <= 0 {
		return nil
	}
	return releaseScript.Run(ctx, r.rdb, []string{r.k.budget()}, n).Err()
}

// removeEntries acknowledges and deletes entries of fn and releases their bytes.
func (r *Registry) removeEntries(ctx context.Context, fn FunctionKey, entryIDs []string) error {
	args := make([]any, 0, len(entryIDs)+1)
	args = append(args, GroupName)
	for _, id := range entryIDs {
		args = append(args, id)
	}
	n, err := removeEntriesScript.Run(ctx, r.rdb, r.budgetKeys(r.k.calls(fn)), args...).Int64()
	if err != nil {
		return err
	}
	if r.cluster {
		return r.release(ctx, n)
	}
	return nil
}

// BudgetUsage returns the bytes unanswered calls hold (the counter) and the budget.
func (r *Registry) BudgetUsage(ctx context.Context) (used, limit int64, err error) {
	used, err = r.rdb.Get(ctx, r.k.budget()).Int64()
	if err == redis.Nil {
		err = nil
	}
	return used, r.cfg.BudgetBytes, wrapName("budget usage", "", err)
}

// ReconcileBudget sets the budget counter to the payload bytes the call streams of every indexed
// function hold (counted in Redis, a batch at a time), plus whatever changed while counting, and
// returns the new value. It repairs any drift (see the comment at the top of this file).
func (r *Registry) ReconcileBudget(ctx context.Context) (int64, error) {
	const op = "reconcile budget"
	start, _, err := r.BudgetUsage(ctx)
	if err != nil {
		return 0, err
	}
	fns, err := r.indexed(ctx)
	if err != nil {
		return 0, wrapName(op, "", err)
	}
	var total int64
	for _, fn := range fns {
		n, err := r.streamBytes(ctx, fn)
		if err != nil {
			return 0, wrap(op, fn, err)
		}
		total += n
	}
	v, err := rebaseScript.Run(ctx, r.rdb, []string{r.k.budget()}, total, start).Int64()
	return v, wrapName(op, "", err)
}

// streamBytes sums the payload bytes of fn's call stream.
func (r *Registry) streamBytes(ctx context.Context, fn FunctionKey) (int64, error) {
	var total int64
	from := "-"
	for {
		res, err := streamBytesScript.Run(ctx, r.rdb, []string{r.k.calls(fn)}, from, budgetCountBatch).Slice()
		if err != nil {
			return 0, err
		}
		if len(res) != 2 {
			return 0, fmt.Errorf("stream bytes: unexpected reply %v", res)
		}
		n, _ := res[0].(int64)
		last, _ := res[1].(string)
		total += n
		if last == "" {
			return total, nil
		}
		from = nextID(last)
	}
}
