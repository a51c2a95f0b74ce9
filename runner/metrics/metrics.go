// Package metrics defines every Prometheus metric of one n8n-fn sidecar, on a registry of its own
// (no default registry, no global collectors: two sidecars in one test process do not share a
// counter). The sidecar builds one Metrics, serves Handler on /metrics of its health listener and
// hands the same value to the function runtime and the relay, which call the few hook methods
// below. Every hook is a no-op on a nil *Metrics, so parts built without metrics (tests) need no
// stand-in.
//
// Names and labels follow n8n's own /metrics (prom-client): the prefix n8n_fn_, snake case, unit
// suffixes (_seconds, _total), and only bounded labels: function (scope/name of a published
// function), outcome, op, kind, task_type. Call ids, execution ids and data never become labels.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
)

// Prefix starts every metric name of n8n-fn (n8n's own are n8n_...).
const Prefix = "n8n_fn_"

// Outcomes of a call as the caller saw it (n8n_fn_calls_finished_total's outcome label), besides
// the error kinds a reply carries (registry.ErrorKind: params, failed, timeout, no_return, ...).
const (
	OutcomeOK        = "ok"
	OutcomeTimeout   = "timeout"   // no result before the call's deadline
	OutcomeCancelled = "cancelled" // the caller's task was cancelled while it waited
	OutcomeRedis     = "redis"     // the wait for the result failed (Redis unavailable)
	OutcomeError     = "error"     // any other failure
)

// latencyBuckets cover a function call from a few milliseconds (a bare webhook round trip is
// ~10 ms) to the 5-minute task timeout.
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// batchBuckets are calls per batched execution: powers of two up to a batch's largest max (256).
var batchBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}

// Metrics holds one sidecar's collectors. Build it with New.
type Metrics struct {
	reg *prometheus.Registry

	callsStarted  *prometheus.CounterVec
	callsFinished *prometheus.CounterVec
	callDuration  *prometheus.HistogramVec
	queueWait     *prometheus.HistogramVec
	dispatches    *prometheus.CounterVec
	reruns        *prometheus.CounterVec
	reclaimed     *prometheus.CounterVec
	deadLetters   *prometheus.CounterVec
	nativeTasks   *prometheus.CounterVec
	relayed       *prometheus.CounterVec
	relayDuration *prometheus.HistogramVec
	redisErrors   *prometheus.CounterVec
	batchSize     *prometheus.HistogramVec
}

// New builds the collectors of one sidecar on a fresh registry, with Go's runtime and process
// metrics (go_*, process_*) beside them as n8n has its nodejs_* and process_* ones.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: Prefix + name, Help: help}, labels)
		m.reg.MustRegister(c)
		return c
	}
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: Prefix + name, Help: help, Buckets: latencyBuckets}, labels)
		m.reg.MustRegister(h)
		return h
	}
	m.callsStarted = counter("calls_started_total", "Function calls queued by call nodes on this sidecar (one per attempt).", "function")
	m.callsFinished = counter("calls_finished_total", "Function calls of call nodes on this sidecar that ended, by outcome (ok, an error kind of the reply, timeout, cancelled, redis, error).", "function", "outcome")
	m.callDuration = histogram("call_duration_seconds", "Caller-side latency of a function call: from queueing it to its result arriving.", "function", "outcome")
	m.queueWait = histogram("call_queue_wait_seconds", "How long a call waited in its function's stream before this sidecar's dispatcher first triggered it.", "function")
	m.dispatches = counter("function_dispatches_total", "Function executions triggered by this sidecar's dispatcher (webhook requests with a call reference).", "function")
	m.reruns = counter("function_reruns_total", "Dispatches of a call that had been dispatched before (its worker died, its execution crashed or did not start, or it was reclaimed).", "function")
	m.reclaimed = counter("calls_reclaimed_total", "Idle calls taken over by this sidecar's recoverer from a dispatcher that stopped keeping them alive.", "function")
	m.deadLetters = counter("dead_letters_total", "Calls this sidecar moved to their function's dead-letter stream (delivered too often, or unreadable).", "function")
	m.nativeTasks = counter("native_tasks_total", "Code-node tasks answered natively (n8n-fn directives), by op and outcome (ok, error, cancelled).", "op", "outcome")
	m.relayed = counter("relayed_tasks_total", "Ordinary Code-node tasks relayed to the runner behind the sidecar, by outcome (relayed, no_runner, cancelled, error).", "task_type", "outcome")
	m.relayDuration = histogram("relay_duration_seconds", "How long a relayed task took, from n8n handing it over to its end.", "task_type")
	m.redisErrors = counter("redis_errors_total", "Failed Redis commands of the function runtime, by command (op) and kind (connection: Redis unreachable or slow; reply: Redis answered an error).", "op", "kind")
	m.batchSize = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: Prefix + "batch_calls",
		Help: "Calls sent to one batched execution of a function with batch, by this sidecar's dispatcher (how well its calls batch: a mean near 1 saves nothing).", Buckets: batchBuckets}, []string{"function"})
	m.reg.MustRegister(m.batchSize)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in Prometheus' text format (and OpenMetrics when asked).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// Gatherer is the registry, for tests and for tools that read the metrics in-process.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Connections reports the sidecar's connections at scrape time: n8n_fn_n8n_connected (this
// sidecar is registered with its n8n process's task broker) and n8n_fn_runner_connected per task
// type (a runner behind the sidecar is registered for it). Call once.
func (m *Metrics) Connections(n8n func() bool, runner func(taskType string) bool, taskTypes []string) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: Prefix + "n8n_connected",
		Help: "1 while the sidecar is connected to the task broker of its n8n process, else 0."}, func() float64 { return b2f(n8n()) }))
	for _, t := range taskTypes {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: Prefix + "runner_connected",
			Help:        "1 while a task runner behind the sidecar is registered for the task type, else 0.",
			ConstLabels: prometheus.Labels{"task_type": t}}, func() float64 { return b2f(runner(t)) }))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// CallStarted counts one call queued by a call node.
func (m *Metrics) CallStarted(function string) {
	if m == nil {
		return
	}
	m.callsStarted.WithLabelValues(function).Inc()
}

// CallFinished counts one call's end as its caller saw it, with its caller-side latency.
func (m *Metrics) CallFinished(function, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	m.callsFinished.WithLabelValues(function, outcome).Inc()
	m.callDuration.WithLabelValues(function, outcome).Observe(took.Seconds())
}

// Batched counts one trigger of a batched execution of function serving calls calls (one
// dispatch, as an execution); each call's queue wait is recorded as for a single dispatch.
func (m *Metrics) Batched(function string, calls int, queued []time.Duration) {
	if m == nil {
		return
	}
	m.dispatches.WithLabelValues(function).Inc()
	m.reclaimed.WithLabelValues(function)
	m.deadLetters.WithLabelValues(function)
	m.reruns.WithLabelValues(function)
	m.BatchSize(function, calls)
	for _, q := range queued {
		m.queueWait.WithLabelValues(function).Observe(max(q, 0).Seconds())
	}
}

// BatchSize records that a dispatch of a batching function served calls calls (1: a call that
// found no others to share its execution with).
func (m *Metrics) BatchSize(function string, calls int) {
	if m == nil {
		return
	}
	m.batchSize.WithLabelValues(function).Observe(float64(calls))
}

// Dispatched counts one trigger of a function execution; dispatch is the call's dispatch number
// (1 = its first run anywhere), queued how long the call had been in its stream then.
func (m *Metrics) Dispatched(function string, dispatch int64, queued time.Duration) {
	if m == nil {
		return
	}
	m.dispatches.WithLabelValues(function).Inc()
	// The function's other dispatcher counters start at 0 with its first dispatch, so that
	// rate(), ratios and alerts on them see the series before the first re-run happens.
	m.reclaimed.WithLabelValues(function)
	m.deadLetters.WithLabelValues(function)
	if dispatch > 1 {
		m.reruns.WithLabelValues(function).Inc()
		return
	}
	m.reruns.WithLabelValues(function)
	m.queueWait.WithLabelValues(function).Observe(max(queued, 0).Seconds())
}

// Reclaimed counts one idle call taken over by the recoverer.
func (m *Metrics) Reclaimed(function string) {
	if m == nil {
		return
	}
	m.reclaimed.WithLabelValues(function).Inc()
}

// DeadLettered counts one call moved to its dead-letter stream.
func (m *Metrics) DeadLettered(function string) {
	if m == nil {
		return
	}
	m.deadLetters.WithLabelValues(function).Inc()
}

// NativeTask counts one directive task answered by the sidecar.
func (m *Metrics) NativeTask(op, outcome string) {
	if m == nil {
		return
	}
	m.nativeTasks.WithLabelValues(op, outcome).Inc()
}

// Relayed counts one relayed task's end and its duration.
func (m *Metrics) Relayed(taskType, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	m.relayed.WithLabelValues(taskType, outcome).Inc()
	m.relayDuration.WithLabelValues(taskType).Observe(took.Seconds())
}

// RedisHook counts the runtime's failed Redis commands (n8n_fn_redis_errors_total); add it to
// the runtime's client with AddHook. redis.Nil (no such key, nothing popped) and a cancelled
// context are how things normally end and are not counted.
func (m *Metrics) RedisHook() redis.Hook { return redisHook{m} }

type redisHook struct{ m *Metrics }

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.m.redisError(cmd.Name(), err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err != nil {
			for _, c := range cmds {
				if c.Err() != nil {
					h.m.redisError(c.Name(), c.Err())
					break // one failed round trip, one count
				}
			}
		}
		return err
	}
}

func (m *Metrics) redisError(op string, err error) {
	if m == nil || err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return
	}
	op = strings.ToLower(op)
	if op == "client" || op == "hello" {
		// go-redis's connection handshake (CLIENT SETINFO, HELLO): an older Redis refuses some of
		// it and go-redis carries on without; not a failure of ours.
		return
	}
	kind := "connection"
	var re redis.Error
	if errors.As(err, &re) && !strings.HasPrefix(re.Error(), "LOADING") {
		kind = "reply"
		if expectedReply(re.Error()) {
			return
		}
	}
	m.redisErrors.WithLabelValues(op, kind).Inc()
}

// expectedReply: answers the registry asks for and handles as a normal result, not failures: the
// group exists already (XGROUP CREATE on every start), no group or stream yet (XINFO on a function
// nobody called).
func expectedReply(msg string) bool {
	for _, p := range []string{"BUSYGROUP", "NOGROUP", "ERR no such key"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
