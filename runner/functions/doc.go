// Package functions is the n8n-fn function runtime: the ops of the three function directives and
// the background duties that carry a call from its caller to the function's workflow and back over
// Redis Streams (through package registry, which holds every Redis access).
//
// The sidecar (package runner) joins it at a few points and nowhere else:
//
//	rt, err := functions.New(functions.Config{...}, functions.Deps{Log: log, N8NConnected: runner.Connected, Metrics: met})
//	rt.Ops()            // map[op name]Op: "function", "call", "return"
//	rt.Start(ctx)       // the duties below, each goroutine counted in the runtime's WaitGroup
//	rt.Ready(ctx)       // nil, or why functions cannot be served (Redis down): part of /readyz
//	rt.Shutdown(ctx)    // stop reading calls, wait for in-flight dispatches and the duties, close Redis
//
// Op is the shape of every native op (the sidecar's echo op too) and OpError the error an op
// shows in n8n with a description. Without Config.Secret the runtime is off: Start does nothing
// and every op fails with a message saying what to set.
//
// Files:
//
//	runtime.go      Config, Deps, Op, OpError, Runtime (New/Ops/Start/Shutdown/Ready), task data
//	op_call.go      call: queue one call per item (or one for all), wait for the replies, retries
//	op_call_idem.go call: results kept for an idempotency key
//	op_function.go  function: verify the webhook's signed call reference, load the call, bind params
//	op_return.go    return: answer the call(s) and acknowledge their stream entries
//	dispatcher.go   reads the served functions' streams and triggers each call's webhook
//	recoverer.go    takes over calls idle on a dead dispatcher; trims finished entries
//	heartbeat.go    tells the registry this sidecar is alive, what it serves, whether its n8n is there
//	discovery.go    finds the published function workflows through n8n's API (the catalog)
//	janitor.go      removes the queues of functions nobody publishes any more
//	observe.go      what the metrics read (queues at scrape time) and how a call's outcome is named
//
// docs/lifecycle.md draws one call across three sidecars.
package functions
