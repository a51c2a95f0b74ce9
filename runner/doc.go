// Package runner is the n8n-fn sidecar at run time: the task runner toward n8n, the broker for the
// official runner(s) behind it, the relay between the two, the native ops and the function runtime.
//
// One task:
//
//	n8n broker --taskofferaccept/tasksettings--> Sidecar.HandleTask (sidecar.go)
//	  code starts with /* @n8n-fn {...} */ ?  yes -> runNative (native.go): parse header, run op
//	                                                 (echo.go, functions' ops), taskdone | taskerror
//	                                          no  -> relay (relay.go): Broker.Acquire a runner behind,
//	                                                 pump every message both ways until done/error/cancel
//
// Lifecycle (Sidecar.Run):
//
//	start:   broker server (N8N_FN_BROKER_LISTEN), health server (N8N_FN_HEALTH_LISTEN),
//	         function runtime, spawner (spawn.go: official runner with a fresh grant, restarted
//	         with backoff), runner toward n8n (reconnects with a fresh grant)
//	SIGTERM: stop offering to n8n -> in-flight tasks finish (N8N_FN_SHUTDOWN_GRACE) -> tasks still
//	         running fail toward n8n -> function runtime stops -> broker:drain to the runners behind
//	         (the spawned runner exits 0) -> disconnect from n8n
//
// Logs never carry task settings, data responses or item data (both can hold n8n's environment).
package runner
