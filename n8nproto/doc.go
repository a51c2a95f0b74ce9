// Package n8nproto speaks n8n's task-runner websocket protocol in both roles.
//
// Runner role (client.go), toward n8n's task broker — the sidecar is n8n's external JS runner:
//
//	POST /runners/auth {"token":AUTH}          -> {"data":{"token":GRANT}}   (403: ErrUnauthorized, fatal)
//	GET  /runners/_ws?id=ID  Bearer GRANT      -> 101
//	<- broker:inforequest      -> runner:info {name, types}
//	<- broker:runnerregistered -> runner:taskoffer × (MaxConcurrency - running), validFor 5000–5500 ms,
//	                              topped up every 250 ms and when a slot frees; each is replaced ~10 %
//	                              before the broker drops it, so an idle runner is never without offers
//	<- broker:taskofferaccept  -> runner:taskaccepted (slot free) | runner:taskrejected {reason}   (< 2 s)
//	<- broker:tasksettings     => TaskHandler.HandleTask(ctx, *UpstreamTask) in its own goroutine
//	-> runner:taskdatarequest / runner:rpc / runner:nodetypesrequest
//	<- broker:taskdataresponse / broker:rpcresponse / broker:nodetypes  (to RequestData/RPC or Incoming())
//	-> runner:taskdone | runner:taskerror      (exactly once)
//	<- broker:taskcancel  => Cancelled();   <- broker:drain => stop offering
//	connection lost => reconnect with a fresh grant, exponential backoff with jitter
//
// Broker role (broker.go), for the official runner or launcher behind the sidecar: the same exchange
// mirrored. GET /healthz, POST /runners/auth (one-time grants with a TTL), /runners/_ws. Acquire matches
// the first valid offer of a task type (FIFO; validFor -1 never expires), sends taskofferaccept, waits
// AcceptTimeout for taskaccepted, then sends tasksettings and returns a DownstreamTask whose Incoming()
// carries the runner's data requests, RPCs and its final taskdone/taskerror. taskrejected or a timeout
// moves on to the next offer; runner:taskdeferred (the launcher) consumes the offer and waits for the
// next one — the launcher then closes its socket and spawns the real runner, which offers.
//
// Messages (messages.go) are plain structs; opaque payloads stay json.RawMessage so a relay forwards
// them verbatim. Decode returns values (TaskDone, not *TaskDone); unknown types decode to Unknown and
// are ignored by both roles, like n8n does. Data responses and settings can hold n8n's environment:
// this package never logs them.
package n8nproto
