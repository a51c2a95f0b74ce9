package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"
	"github.com/tidwall/gjson"

	"github.com/n8n-fn/n8n-fn/internal/jsonlimit"
	"github.com/n8n-fn/n8n-fn/internal/jsonparts"
	"github.com/n8n-fn/n8n-fn/n8napi"
	"github.com/n8n-fn/n8n-fn/n8nproto"
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/runner/metrics"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// Tunables of the function runtime that have no environment variable (yet).
const (
	// taskTimeoutMargin is kept free before n8n's task timeout so a call's own timeout error (which
	// says what to do) wins over n8n's bare task cancel.
	taskTimeoutMargin = 3 * time.Second
	// defaultClaimIdle: an in-flight entry idle this long is taken over by another sidecar's
	// recoverer; the dispatcher keeps its own in-flight entries fresh well within it.
	defaultClaimIdle = 60 * time.Second
	// defaultDispatchSlots bounds the in-flight webhook calls per function per sidecar when the
	// function sets no maxConcurrency.
	defaultDispatchSlots = 32
)

// Config is what the runtime needs from the sidecar's configuration (runner.Config builds it from
// the environment; the names in the comments are its variables).
type Config struct {
	ID             string           // N8N_FN_ID: this sidecar's consumer name, heartbeat and log identity
	Secret         string           // N8N_FN_SECRET: signs call references and contexts; "" turns the runtime off
	RedisURL       string           // N8N_FN_REDIS_URL (also redis+cluster:// and redis+sentinel://)
	Prefix         string           // N8N_FN_PREFIX of every Redis key
	N8NAPIURL      string           // N8N_FN_N8N_API_URL, for discovery and dispatch error details
	N8NAPIKey      string           // N8N_FN_N8N_API_KEY; "" = no discovery, no dispatch from this sidecar
	WebhookURL     string           // N8N_FN_WEBHOOK_URL, the base of the functions' webhook paths
	DiscoveryTag   string           // N8N_FN_DISCOVERY_TAG: list only the published workflows with this tag ("" = all)
	TaskTimeout    time.Duration    // N8N_RUNNERS_TASK_TIMEOUT: a call node must finish within it
	MaxConcurrency int              // N8N_RUNNERS_MAX_CONCURRENCY: sizes the Redis connection pool
	Limits         workflows.Limits // N8N_FN_MAX_*: sizes and nesting of what workflows send
	TraceTTL       time.Duration    // N8N_FN_TRACE_TTL: how long call trace records live; 0 = none
	// RedisBudgetBytes (N8N_FN_REDIS_BUDGET_BYTES) caps the bytes of unanswered calls in Redis;
	// 0 = the registry's default.
	RedisBudgetBytes int64
	// ExecutionSlots (N8N_FN_EXECUTION_SLOTS): how many executions this sidecar's n8n process runs
	// at once. Announced with the heartbeat; call nodes here take a waiter lease against the sum
	// of every live sidecar's (waiter.go). 0: nothing announced, and this sidecar's call nodes
	// take no lease (a queue-mode main's waiting executions hold no worker slot).
	ExecutionSlots int
}

// EnvRedisBudget names the variable of Config.RedisBudgetBytes, for the error of a full budget.
const EnvRedisBudget = "N8N_FN_REDIS_BUDGET_BYTES"

// Deps are what the runtime gets from the process around it.
type Deps struct {
	Log *logrus.Entry
	// N8NConnected says whether this sidecar is connected to its n8n process (nil: always, as in
	// tests of the runtime alone). The heartbeat reports a lost connection, so dispatchers can
	// tell that a function execution on this sidecar's worker will never finish.
	N8NConnected func() bool
	// Metrics receives the runtime's counters (calls, dispatches, re-runs, reclaims, dead letters,
	// Redis errors) and reads its queues at scrape time; nil: no metrics.
	Metrics *metrics.Metrics
}

// Op answers one directive task. It returns the runner:taskdone data ({"result":[...]}). An error
// fails the node (or becomes an error item with continueOnFail); return an *OpError to control the
// message n8n shows. The sidecar's own ops (echo) have the same shape.
type Op func(ctx context.Context, t *n8nproto.UpstreamTask, h *workflows.Header, s n8nproto.CodeSettings) (n8nproto.Parts, error)

// OpError is an error an op wants shown in n8n with a description (the grey text under the
// message in the node's error view).
type OpError struct {
	Message     string
	Description string
	Err         error // optional cause, for errors.Is
}

func (e *OpError) Error() string { return e.Message }
func (e *OpError) Unwrap() error { return e.Err }

// Runtime is the function runtime: the function/call/return ops and the background duties
// (dispatcher, recoverer, heartbeat, discovery, janitor), each in its own file.
type Runtime struct {
	cfg    Config
	log    *logrus.Entry
	rdb    redis.UniversalClient
	reg    *registry.Registry
	signer *workflows.Signer
	api    *n8napi.Client   // nil when no API key is configured: no discovery, no dispatch error details
	met    *metrics.Metrics // nil: no metrics (every hook is a no-op)

	catalog *catalog
	disc    *discovery
	disp    *dispatcher
	rec     *recoverer
	hb      *heartbeat
	jan     *janitor

	tun tunables

	// lineage groups a return node's items by the calls of an execution that serves several
	// (batching); nil until that exists, and then such an execution's return fails clearly.
	lineage func(ctx context.Context, data *taskData, calls []registry.ExecCall) ([][]int, error)

	cancel context.CancelFunc // ends the dispatcher's goroutines (the other duties stop by their shutdown)
	wg     sync.WaitGroup     // the duties' goroutines
}

// tunables are the intervals of the duties; tests shorten them.
type tunables struct {
	claimIdle         time.Duration
	keepAliveInterval time.Duration
	recoverInterval   time.Duration
	trimInterval      time.Duration
	discoveryInterval time.Duration
	heartbeatInterval time.Duration
	readBlock         time.Duration
	janitorInterval   time.Duration
	janitorGrace      time.Duration
	// A dispatcher waiting for a function execution checks every workerWatchInterval whether the
	// sidecar running it found its n8n process gone after the claim, or lost it for
	// workerLostAfter (the worker died), and whether an unclaimed call may have died with a worker
	// unclaimedGrace ago (dispatcher.go watchWorker).
	workerWatchInterval time.Duration
	workerLostAfter     time.Duration
	unclaimedGrace      time.Duration
	// On Sentinel, how often the heartbeat checks whether a failover switched the master.
	masterWatchInterval time.Duration
	// A waiting call node looks for calls Redis lost every lostCheck (op_call.go waitReplies).
	lostCheck time.Duration
	// How often a sidecar takes or renews the read lead of functions with batch.parallel.
	batchLeadInterval time.Duration
}

func defaultTunables() tunables {
	return tunables{
		claimIdle:         defaultClaimIdle,
		keepAliveInterval: defaultClaimIdle / 4,
		recoverInterval:   10 * time.Second,
		trimInterval:      time.Minute,
		discoveryInterval: 10 * time.Second,
		heartbeatInterval: 10 * time.Second, // a third of the registry's HeartbeatTTL
		readBlock:         2 * time.Second,
		// Registrations already live 5 min after the last discovery; the grace adds a margin for
		// a discovery round that failed once or a sidecar that restarts.
		janitorInterval: time.Minute,
		janitorGrace:    5 * time.Minute,
		// The watch costs two Redis reads per waiting dispatch and tick; every 2 s a dead
		// execution is noticed within 2 s of its sidecar's report (issue 12: a call whose
		// execution died is answered within 15 s plus the body's time).
		workerWatchInterval: 2 * time.Second,
		// Long enough for a sidecar to reconnect after a blip (it retries within seconds), short
		// against n8n's own ~100 s before it fails a dead worker's job.
		workerLostAfter: 20 * time.Second,
		// An execution claims its call within milliseconds of starting; a call still unclaimed
		// this long after a worker's n8n process went away may have died with it.
		unclaimedGrace:      3 * time.Second,
		masterWatchInterval: time.Second, // callers wait 2 s (waitForLive) for a live sidecar
		lostCheck:           5 * time.Second,
		batchLeadInterval:   time.Second,
	}
}

// New builds the runtime (it connects to nothing yet: go-redis dials lazily). Without
// N8N_FN_SECRET the sidecar still relays and echoes, but every function op fails with a message
// saying what to set.
func New(cfg Config, deps Deps) (*Runtime, error) { return build(cfg, deps, defaultTunables()) }

// build is New with the duties' intervals (tests shorten them).
func build(cfg Config, deps Deps, tun tunables) (*Runtime, error) {
	log := deps.Log
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	if cfg.Limits == (workflows.Limits{}) {
		cfg.Limits = workflows.DefaultLimits()
	}
	f := &Runtime{cfg: cfg, log: log, catalog: newCatalog(), tun: tun, met: deps.Metrics}
	f.lineage = f.traceLineage
	if cfg.Secret == "" {
		log.Warn("N8N_FN_SECRET is not set: function, call and return nodes will fail until it is")
		return f, nil
	}
	signer, err := workflows.NewSigner([]byte(cfg.Secret))
	if err != nil {
		return nil, fmt.Errorf("N8N_FN_SECRET: %w", err)
	}
	f.signer = signer
	// One blocking read per served function plus the callers' reply waits share this pool.
	// registry.NewClient also takes redis+cluster:// and redis+sentinel:// URLs.
	f.rdb, err = registry.NewClient(cfg.RedisURL, 64+4*cfg.MaxConcurrency)
	if err != nil {
		return nil, fmt.Errorf("N8N_FN_REDIS_URL: %w", err)
	}
	if f.met != nil {
		f.rdb.AddHook(f.met.RedisHook())
	}
	rcfg := registry.Config{Prefix: cfg.Prefix, BudgetBytes: cfg.RedisBudgetBytes,
		OnDeadLetter: func(fn registry.FunctionKey, _ string) { f.met.DeadLettered(fn.String()) }}
	if strings.Contains(strings.SplitN(cfg.RedisURL, "://", 2)[0], "+sentinel") {
		rcfg.WaitReplicas = 1 // a failover must not lose a call the old master had not replicated
	}
	reg, err := registry.New(f.rdb, rcfg)
	if err != nil {
		_ = f.rdb.Close()
		return nil, fmt.Errorf("function registry: %w", err)
	}
	f.reg = reg
	if cfg.N8NAPIKey != "" {
		f.api = n8napi.New(cfg.N8NAPIURL, cfg.N8NAPIKey)
		f.api.WebhookURL = cfg.WebhookURL
	} else {
		log.Warn("N8N_FN_N8N_API_KEY is not set: this sidecar discovers no functions and does not dispatch calls (it can still call functions that other sidecars serve)")
	}
	f.buildDuties(deps)
	f.met.WatchQueues(f.queueStats)
	return f, nil
}

// buildDuties wires each background duty from what it uses; they share only the catalog (which
// discovery fills and the others read) and the registry.
func (f *Runtime) buildDuties(deps Deps) {
	f.hb = newHeartbeat(heartbeatParams{
		log: f.log, reg: f.reg, id: f.cfg.ID, served: f.catalog.keys, n8nConnected: deps.N8NConnected,
		interval: f.tun.heartbeatInterval, slots: f.cfg.ExecutionSlots, watchInterval: f.tun.masterWatchInterval,
		switched: func() { f.disc.soon() }, // f.disc is built just below
	})
	f.disc = newDiscovery(discoveryParams{
		log: f.log, api: f.api, reg: f.reg, owner: f.cfg.ID, catalog: f.catalog,
		changed:  f.hb.beatNow, // make new functions callable at once instead of at the next heartbeat
		interval: f.tun.discoveryInterval,
		shared:   true, // one sidecar per interval lists n8n's workflows, the others read its snapshot
		tag:      f.cfg.DiscoveryTag,
	})
	f.disp = newDispatcher(dispatchDeps{cfg: f.cfg, log: f.log, reg: f.reg, catalog: f.catalog, signer: f.signer, api: f.api, disc: f.disc, tun: &f.tun, met: f.met})
	f.rec = newRecoverer(recovererParams{
		log: f.log, reg: f.reg, served: f.catalog.keys, consumer: f.disp.consumer, handoff: f.disp.handoff,
		claimIdle: f.tun.claimIdle, recoverInterval: f.tun.recoverInterval, trimInterval: f.tun.trimInterval, met: f.met,
	})
	f.jan = newJanitor(janitorParams{
		log: f.log, reg: f.reg, servedHere: func(k registry.FunctionKey) bool { return f.catalog.get(k) != nil },
		discovered: f.disc.succeeded, interval: f.tun.janitorInterval, grace: f.tun.janitorGrace,
	})
}

// N8NGone tells the runtime that this sidecar found its n8n process gone at `at`: a connection to
// the task broker in it was refused (n8nproto.RunnerConfig.OnBrokerGone), so every execution that
// process ran is dead. The heartbeat publishes it at once; dispatchers waiting for a function
// execution whose call this sidecar claimed before `at` run the call again instead of waiting for
// n8n's stalled-job handling. It never blocks.
func (f *Runtime) N8NGone(at time.Time) {
	if f.hb != nil {
		f.hb.n8nGone(at)
	}
}

// Ops returns the ops the runtime serves, keyed by directive op name.
func (f *Runtime) Ops() map[string]Op {
	return map[string]Op{
		workflows.OpFunction: f.functionOp,
		workflows.OpCall:     f.callOp,
		workflows.OpReturn:   f.returnOp,
	}
}

// Start launches the background duties, each goroutine counted in the runtime's WaitGroup; they
// run until Shutdown (or until ctx ends, but only Shutdown waits for them and closes the Redis
// client). Start once.
func (f *Runtime) Start(ctx context.Context) {
	if f.reg == nil {
		return
	}
	wg := &f.wg
	f.hb.start(ctx, wg)
	var dctx context.Context
	dctx, f.cancel = context.WithCancel(ctx)
	f.disp.start(dctx, wg)
	f.rec.start(ctx, wg)
	if f.api != nil {
		f.disc.start(ctx, wg) // without it the catalog stays empty: nothing is dispatched here
		f.jan.start(ctx, wg)  // only a sidecar that sees what is published can tell what is not
	}
}

// Shutdown stops the background duties after the sidecar's tasks have drained: the dispatcher
// stops reading first, in-flight webhook calls end by their own deadline or ctx. It waits for
// the duties (until ctx ends) and then closes the Redis client. Calling it again does no harm.
func (f *Runtime) Shutdown(ctx context.Context) {
	if f.cancel != nil {
		f.disp.shutdown(ctx) // stop reading calls first, let the calls in flight be answered
		f.cancel()
		f.jan.shutdown()
		f.disc.shutdown()
		f.rec.shutdown()
		f.hb.shutdown() // its last act is to leave the registry: callers stop counting on this sidecar
		done := make(chan struct{})
		go func() {
			f.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			f.log.Warn("shutdown: the function runtime's duties did not stop in time")
		}
	}
	if f.rdb != nil {
		_ = f.rdb.Close()
	}
}

// Ready reports why the runtime cannot serve functions yet (nil = ready); part of /readyz.
func (f *Runtime) Ready(ctx context.Context) error {
	if f.reg == nil {
		return nil // functions are off (no secret): relaying still works
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := f.reg.Ping(ctx); err != nil {
		return fmt.Errorf("function registry: %w", err)
	}
	return nil
}

// Warnings lists what an operator must fix although the sidecar works: function names that several
// published workflows define (calls to them fail). /readyz shows them without failing.
func (f *Runtime) Warnings() []string {
	var out []string
	for _, k := range f.catalog.keys() {
		if s := f.catalog.get(k); s != nil && len(s.Record.Conflicts) > 0 {
			out = append(out, fmt.Sprintf("function %s is ambiguous (calls fail): defined by %s", display(k), strings.Join(s.Record.Conflicts, ", ")))
		}
	}
	return out
}

// errNoSecret is the failure of every function op on a sidecar without N8N_FN_SECRET.
var errNoSecret = errors.New("N8N_FN_SECRET is not set on this n8n-fn sidecar")

func (f *Runtime) enabled() error {
	if f.reg == nil {
		return &OpError{
			Message:     "n8n-fn: " + errNoSecret.Error() + ": function, call and return nodes need it",
			Description: "Set N8N_FN_SECRET (the same value on every sidecar, at least 16 characters, e.g. `openssl rand -hex 32`) and N8N_FN_REDIS_URL, then restart the sidecar.",
			Err:         errNoSecret,
		}
	}
	return nil
}

// taskData is what the ops need from n8n's data response.
type taskData struct {
	WorkflowID   string
	WorkflowName string
	NodeName     string
	ExecutionID  string
	Items        []item
	// allNodes asks n8n again for this task's data with every node's run data (for the items'
	// lineage); nil in tests that build taskData by hand.
	allNodes func(ctx context.Context) ([]byte, error)
}

// item is one n8n item; JSON is the item's json object.
type item struct {
	JSON   json.RawMessage `json:"json"`
	Binary json.RawMessage `json:"binary,omitempty"`
}

// fetchTaskData pulls the input items and the workflow/node identity with one data request.
func fetchTaskData(ctx context.Context, t *n8nproto.UpstreamTask) (*taskData, error) {
	raw, err := t.RequestData(ctx, json.RawMessage(n8nproto.InputOnlyParams))
	if err != nil {
		return nil, fmt.Errorf("request input data from n8n: %w", err)
	}
	d, err := parseTaskData(raw)
	if err != nil {
		return nil, err
	}
	d.allNodes = func(ctx context.Context) ([]byte, error) {
		return t.RequestData(ctx, json.RawMessage(n8nproto.AllNodesParams))
	}
	return d, nil
}

func parseTaskData(raw []byte) (*taskData, error) {
	if !gjson.ValidBytes(raw) {
		return nil, errors.New("n8n's data response is not valid JSON")
	}
	// An unsafe string view instead of ParseBytes's copy of the whole response, and each item's
	// json and binary a sub-slice of raw (n8nproto.SubBytes) instead of a copy: a call node's input
	// of 200 MB costs the sidecar the response it received, not three of it. raw is the frame's own
	// buffer, which nothing writes to.
	doc := gjson.Parse(unsafe.String(unsafe.SliceData(raw), len(raw)))
	d := &taskData{
		WorkflowID:   strings.Clone(doc.Get("workflow.id").String()),
		WorkflowName: strings.Clone(doc.Get("workflow.name").String()),
		NodeName:     strings.Clone(doc.Get("node.name").String()),
		ExecutionID:  strings.Clone(doc.Get("additionalData.executionId").String()),
	}
	for _, it := range doc.Get("inputData.main.0").Array() {
		j := it.Get("json")
		x := item{JSON: json.RawMessage(`{}`)}
		if j.IsObject() {
			x.JSON = n8nproto.SubBytes(raw, j)
		}
		if b := it.Get("binary"); b.IsObject() {
			x.Binary = n8nproto.SubBytes(raw, b)
		}
		d.Items = append(d.Items, x)
	}
	return d, nil
}

// outItem is one item of a taskdone result.
type outItem struct {
	JSON       json.RawMessage `json:"json"`
	Binary     json.RawMessage `json:"binary,omitempty"`
	PairedItem pairedItem      `json:"pairedItem"`
}

type pairedItem struct {
	Item int `json:"item"`
}

// resultParts is the taskdone data {"result":[{"json":...,"binary":...,"pairedItem":{"item":N}}]}
// as parts for DoneParts: an item's json or binary of bigValue or more is a part of its own (the
// value itself, where it was read: n8n's data response, a reply read from Redis), everything else
// is written into one buffer of its final size. A 30 MB result was copied once more to be sent
// (and json.Marshal would have copied it three times).
func resultParts(items []outItem) (n8nproto.Parts, error) {
	n := len(`{"result":[]}`)
	for _, it := range items {
		n += len(`{"json":,"binary":,"pairedItem":{"item":}},`) + 20 + jsonparts.SmallLen(len(it.JSON), bigValue) + jsonparts.SmallLen(len(it.Binary), bigValue)
	}
	pb := jsonparts.NewBuilder(n, bigValue)
	pb.Glue(`{"result":[`)
	for i, it := range items {
		if i > 0 {
			pb.Glue(",")
		}
		if err := checkValue(it.JSON); err != nil {
			return nil, fmt.Errorf("encode the node's output: item %d json: %w", i, err)
		}
		pb.Glue(`{"json":`)
		pb.Value(it.JSON)
		if len(it.Binary) > 0 {
			if err := checkValue(it.Binary); err != nil {
				return nil, fmt.Errorf("encode the node's output: item %d binary: %w", i, err)
			}
			pb.Glue(`,"binary":`)
			pb.Value(it.Binary)
		}
		pb.Glue(`,"pairedItem":{"item":`)
		pb.Int(int64(it.PairedItem.Item))
		pb.Glue(`}}`)
	}
	pb.Glue(`]}`)
	return pb.Parts(), nil
}

// bigValue is the size from which resultParts sends a value as it is instead of copying it.
const bigValue = 64 << 10

// checkValue refuses a value that would break the result it is written into: not JSON, or nested
// so deep that the frame (three levels around it) would pass n8nproto.DefaultMaxFrameDepth
// (DoneParts does not parse what it sends; the depth is checked first, since gjson's validator
// recurses). Empty is null.
func checkValue(v json.RawMessage) error {
	if len(v) == 0 {
		return nil
	}
	if err := jsonlimit.Check(v, n8nproto.DefaultMaxFrameDepth-3); err != nil {
		return err
	}
	return checkRaw(v)
}

// checkRaw refuses what would break the JSON it is written into (json.Marshal checked it too).
// Values come from n8n's frames (checked when read) or from our own encoding; empty is null.
func checkRaw(v json.RawMessage) error {
	if len(v) > 0 && !gjson.ValidBytes(v) {
		return errors.New("not valid JSON")
	}
	return nil
}

// webhookClient is the HTTP client the dispatcher posts call references with; each request has
// its own deadline (the call's).
func webhookClient() *http.Client {
	return &http.Client{Transport: n8napi.NewTransport()}
}

// every runs fn each interval until ctx ends, in its own goroutine counted by wg: the shape of
// the periodic duties (keep-alive, recovery, trimming, janitor).
func every(ctx context.Context, wg *sync.WaitGroup, interval time.Duration, fn func(context.Context)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn(ctx)
			}
		}
	}()
}
