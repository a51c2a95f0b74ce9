package registry

// Every Redis key name of the project is built here and nowhere else.
//
// The keys of one function share the hash tag {scope/name}, so the calls stream, the dead-letter
// stream, the registration record and the live-sidecar set of a function all live in one slot and
// can be used together in one script on Redis Cluster. A reply list is tagged by its caller, since
// one caller waits for calls to many functions. Index keys are single keys used on their own.

// GroupName is the consumer group every sidecar joins on every function stream.
const GroupName = "dispatch"

type keys struct{ prefix string }

func (k keys) tag(fn FunctionKey) string { return k.prefix + "{" + fn.String() + "}" }

// calls is the function's call stream (XADD by callers, XREADGROUP by dispatchers).
func (k keys) calls(fn FunctionKey) string { return k.tag(fn) + ":calls" }

// dead is the function's dead-letter stream.
func (k keys) dead(fn FunctionKey) string { return k.tag(fn) + ":dead" }

// record is the function's registration record (JSON string with a TTL).
func (k keys) record(fn FunctionKey) string { return k.tag(fn) + ":fn" }

// live is a sorted set of sidecar ids serving the function, scored by heartbeat expiry (server ms).
func (k keys) live(fn FunctionKey) string { return k.tag(fn) + ":live" }

// idem holds the stored result of a successful call made with an idempotency key.
func (k keys) idem(fn FunctionKey, key string) string { return k.tag(fn) + ":idem:" + key }

// reply is the reply list of one caller.
func (k keys) reply(caller string) string { return k.prefix + "{r:" + caller + "}:replies" }

// sidecar is one sidecar's heartbeat record (JSON string with a TTL).
func (k keys) sidecar(id string) string { return k.prefix + "sidecar:" + id }

// n8nLost says how long a sidecar has been without its n8n process (ms, TTL = heartbeat TTL).
// Outside "sidecar:" so that sidecarPattern matches heartbeat records only.
func (k keys) n8nLost(id string) string { return k.prefix + "n8nlost:" + id }

// sidecarPattern matches every sidecar heartbeat key, for SCAN.
func (k keys) sidecarPattern() string { return k.prefix + "sidecar:*" }

// budget counts the bytes the payloads of queued, unanswered calls hold in Redis, for the whole
// namespace (prefix): AddCall refuses a call that would take it past Config.BudgetBytes. Not tagged:
// on Cluster it lives in a slot of its own and is kept next to the streams (see budget.go).
func (k keys) budget() string { return k.prefix + "budget:bytes" }

// index is a sorted set of every function ever registered or served and not removed
// (member "scope/name", score = last registration, unix ms). Status and ListFunctions walk it,
// so nothing has to SCAN a cluster for function keys.
func (k keys) index() string { return k.prefix + "index" }

// functionKeys lists every key that belongs to one function (used by RemoveFunction and the slot test).
func (k keys) functionKeys(fn FunctionKey) []string {
	return []string{k.calls(fn), k.dead(fn), k.record(fn), k.live(fn), k.slots(fn), k.batchLead(fn)}
}

// claim is a call's dispatch record (hash): "d" = how many times it was dispatched (the number the
// signed call reference carries), "x" = the n8n execution that claimed the current dispatch,
// "s" = the sidecar that runs that execution. Tagged by the function: checked with the stream.
func (k keys) claim(fn FunctionKey, callID string) string { return k.tag(fn) + ":claim:" + callID }

// execution lists the calls an n8n execution claimed (JSON array, TTL of the latest deadline):
// the return node and nested calls find their call through their own execution id.
func (k keys) execution(execID string) string { return k.prefix + "{x:" + execID + "}:calls" }

// slots is the function's global concurrency semaphore: a sorted set of call ids scored by the
// lease's expiry (server ms). Lease holders refresh it; a dead holder's lease runs out.
func (k keys) slots(fn FunctionKey) string { return k.tag(fn) + ":slots" }

// batchLead is held (value: a sidecar id, PX) by the one sidecar that reads the calls of a
// batching function with "parallel" at the moment, so that its calls meet in one dispatcher.
func (k keys) batchLead(fn FunctionKey) string { return k.tag(fn) + ":batchlead" }

// idemRun marks an idempotency key whose first call is running (value: that call's id), so a
// second call with the key waits for that result instead of running the function again.
func (k keys) idemRun(fn FunctionKey, key string) string { return k.idem(fn, key) + ":run" }

// discoveryLease is held (SET NX PX) by the one sidecar that lists n8n's workflows this discovery
// interval; the others read discoverySnapshot instead of asking n8n too.
func (k keys) discoveryLease() string { return k.prefix + "discovery:lease" }

// discoverySnapshot is a hash written by the lease holder: "sum" (content hash of "data"),
// "data" (JSON array of the published workflows that define functions), "at" (unix ms of the
// listing) and "by" (the sidecar that listed).
func (k keys) discoverySnapshot() string { return k.prefix + "discovery:snapshot" }

// traceCall is one call's trace record (hash with a TTL): who queued it, when it was dispatched
// and claimed, by which execution and worker, how it ended; never its params or result. Tagged by
// the call: written and read on its own.
func (k keys) traceCall(callID string) string { return k.prefix + "{t:" + callID + "}:trace" }

// traceExec is one n8n execution's trace record (hash with a TTL): its workflow, worker and the
// call it served, if it is a function execution.
func (k keys) traceExec(execID string) string { return k.prefix + "{tx:" + execID + "}:trace" }

// traceExecCalls lists the calls an execution made, in order (list with a TTL; same tag as
// traceExec).
func (k keys) traceExecCalls(execID string) string {
	return k.prefix + "{tx:" + execID + "}:trace:calls"
}

// traceRecent lists the latest calls' ids, newest first, capped (the status page's recent calls).
func (k keys) traceRecent() string { return k.prefix + "trace:recent" }

// waiters are the leases of call nodes waiting for their calls (sorted set of holder ids scored
// by lease expiry, server ms), and execSlots the execution slots each live sidecar's n8n process
// has (hash sidecar id -> "slots expiry-ms"). Both share one hash tag: one script reads both.
func (k keys) waiters() string   { return k.prefix + "{exec}:waiters" }
func (k keys) execSlots() string { return k.prefix + "{exec}:slots" }
