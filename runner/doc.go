// Package runner is the n8n-fn sidecar at run time: the task runner toward n8n, the broker for the
// official runner(s) behind it, the relay between the two, the sidecar's own op (echo), health and
// configuration. The function runtime (the function/call/return ops and the duties behind them) is
// package runner/functions; this package builds it and joins it at four points:
//
//	functions.New(cfg.functionsConfig(), functions.Deps{Log, N8NConnected})  in New
//	(*functions.Runtime).Ops()            the directive ops, next to echo, keyed by op name
//	Start(ctx) / Shutdown(ctx)            in Run (Shutdown after the tasks drained)
//	Ready(ctx)                            part of /readyz
//
// functions.Op and functions.OpError are the shape of every native op and of the error it shows in
// n8n; they live with the runtime so that the dependency goes one way:
// runner -> runner/functions -> {n8nproto, registry, workflows, n8napi}.
//
// One task:
//
//	n8n broker --taskofferaccept/tasksettings--> Sidecar.HandleTask (sidecar.go)
//	  code starts with /* @n8n-fn {...} */ ?  yes -> runNative (native.go): parse header, run op
//	                                                 (echo.go, the runtime's ops), taskdone | taskerror
//	                                          no  -> relay (relay.go): Broker.Acquire a runner behind,
//	                                                 pump every message both ways until done/error/cancel
//
// Lifecycle (Sidecar.Run):
//
//	start:   broker server (N8N_FN_BROKER_LISTEN), health server (N8N_FN_HEALTH_LISTEN),
//	         function runtime, spawner (spawn.go: official runner with a fresh grant, restarted
//	         with backoff), runner toward n8n (reconnects with a fresh grant)
//	SIGTERM: stop offering to n8n -> in-flight tasks finish (N8N_FN_SHUTDOWN_GRACE) -> tasks still
//	         running fail toward n8n -> function runtime stops (its duties end, its Redis client
//	         closes) -> broker:drain to the runners behind (the spawned runner exits 0) -> disconnect
//	         from n8n
//
// Logs never carry task settings, data responses or item data (both can hold n8n's environment).
package runner
