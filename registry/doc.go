// Package registry is the project's only door to Redis: every command and every key name of
// n8n-fn lives here (key names in keys.go). It carries function calls between sidecars on Redis
// Streams, delivers results on per-caller reply lists, keeps function registrations and sidecar
// heartbeats, recovers calls from dead consumers, dead-letters calls that keep failing, trims
// streams without losing unfinished calls, and summarises it all for `n8n-fn status`.
//
// # Keys (prefix P, default "n8nfn:")
//
//	P{scope/name}:calls    stream of calls; consumer group "dispatch" (GroupName)
//	P{scope/name}:dead     dead-letter stream (fields c, entry, reason, deliveries, at)
//	P{scope/name}:fn       registration record, JSON, TTL RegistrationTTL
//	P{scope/name}:live     sorted set sidecar id -> heartbeat expiry (server ms)
//	P{scope/name}:claim:<call>  hash: latest dispatch number, the execution that claimed each
//	                       dispatch, its sidecar and claim time, answered flag; TTL the call's
//	                       deadline + 10 min
//	P{scope/name}:slots    sorted set call id -> lease expiry: the function's global concurrency
//	P{scope/name}:idem:<key>[:run]  stored result of an idempotency key / the call running it
//	P{x:<execution>}:calls the calls an n8n execution claimed (JSON), TTL as the claims
//	P{r:caller}:replies    a caller's reply list, TTL ReplyTTL
//	P sidecar:<id>         sidecar heartbeat record, TTL HeartbeatTTL
//	P n8nlost:<id>         ms the sidecar has been without its n8n process, TTL HeartbeatTTL
//	P n8ngone:<id>         when the sidecar last found its n8n process gone (connection refused;
//	                       unix ms, its own clock), TTL 24 h
//	P n8ngone              the latest of those of any sidecar, TTL 24 h
//	P index                sorted set of known functions ("scope/name")
//	P{exec}:waiters        sorted set waiting call node -> lease expiry (AcquireWaiter)
//	P{exec}:slots          hash sidecar id -> "execution slots expiry-ms" (ReportExecutionSlots)
//
// A function's keys share the hash tag {scope/name}, so every script and multi-key command touches
// one slot and runs on Redis Cluster; TestNoCrossSlotCommands checks every command the package
// sends. Nothing uses KEYS; ListSidecars SCANs (every master on Cluster).
//
// # One call
//
//	caller:     LookupFunction + HasLiveConsumer -> AcquireWaiter (refused: every execution slot
//	            would wait) -> AddCall -> WaitReplies(replyKey, ids, deadline) -> ReleaseWaiter
//	dispatcher: EnsureGroup (or RegisterFunction) -> ReadCalls -> trigger the function
//	            -> KeepAlive(in-flight ids) every claimIdle/3 while it runs
//	dispatcher: AcquireSlot (globalConcurrency) -> NextDispatch -> post the signed reference
//	function:   LoadCall(fn, entryID) (still pending) -> ClaimCall(dispatch, execution)
//	            -> BindExecution(execution, calls)
//	return:     ExecutionCalls(execution) -> CompleteClaimed(call, execution, reply)
//	            (= only a claimant, only the first answer; then PublishReply, then Ack)
//	dispatcher: while it waits, ClaimState + N8NState: the claiming sidecar's n8n process went
//	            away after the claim (ReportN8NGone), or it has been without n8n for long, or
//	            stopped heartbeating -> trigger again; unclaimed after a process went away
//	            (LatestN8NGone) -> FenceDispatch (only while still unclaimed) -> trigger again
//	caller:     gave up (timeout, task cancelled) -> CancelCalls (never run what nobody waits for)
//	recoverer:  Reclaim(fn, me, claimIdle, n) every few seconds -> dispatch again; Trim(fn) now and then
//	janitor:    Unregistered -> RemoveUnregistered (functions no longer published)
//
// Delivery is at-least-once; the caller de-duplicates by call id, so it sees exactly one result.
// Reclaim dead-letters an entry once it was delivered more than MaxDeliveries times, and tells the
// caller (Reply.ErrorKind "dead_letter"). Entries are acknowledged only after the reply is
// published, and nothing of ours removes an unacknowledged entry: AddCall refuses with
// ErrBacklogFull rather than cap the stream, and Trim cuts below the oldest pending id and never
// past the group's last delivered id.
//
// # Errors
//
// Every error is a *Error naming the operation and the function. errors.Is works with
// ErrUnavailable (Redis down/unreachable: the client reconnects by itself, retry later), ErrInvalid,
// ErrNoStream, ErrBacklogFull, ErrNotFound, ErrTimeout and ErrNotOwner.
//
// # Server versions
//
// The version is read once (INFO server) on first use. Redis >= 6.2 uses XAUTOCLAIM and XTRIM MINID;
// older servers use XPENDING + XCLAIM and XDEL of finished entries; < 6.0 waits in whole seconds;
// XINFO lag is reported from 7.0. Both paths are tested on the same server by forcing the version.
//
// # Clients and Cluster
//
// New takes any redis.UniversalClient; NewClient builds one from redis://, redis+cluster:// or
// redis+sentinel:// URLs. Blocked callers (WaitReplies) and dispatchers (ReadCalls) each hold a
// connection, so the pool must be larger than their sum. On Cluster, ReadCalls groups streams by
// slot and reads the groups concurrently, returning when all have answered; dispatchers that read
// many functions should run one ReadCalls loop per SlotGroups group for the lowest latency.
// WaitReplies blocks at most 1s per BLPOP (half the client's ReadTimeout when that is shorter) so
// it notices a cancelled context and never trips the read timeout.
package registry
