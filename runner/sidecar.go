package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/n8n-fn/n8n-fn/n8nproto"
	"github.com/n8n-fn/n8n-fn/runner/functions"
	"github.com/n8n-fn/n8n-fn/runner/metrics"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// Sidecar is one n8n-fn process next to one n8n process: the runner toward n8n's broker, a broker
// for the official runner(s) behind it, and the router between native ops and the relay.
type Sidecar struct {
	cfg    Config
	log    *logrus.Entry
	runner *n8nproto.Runner
	broker *n8nproto.Broker
	fns    *functions.Runtime
	ops    map[string]functions.Op
	spawn  *spawner // nil unless RunnerMode is spawn
	met    *metrics.Metrics

	brokerLn net.Listener
	healthLn net.Listener // nil when the health server is off

	draining atomic.Bool
	// taskCtx is the context of every task handler; it ends only when the shutdown grace is over.
	taskCtx    context.Context
	cancelTask context.CancelFunc
}

// New checks cfg, builds the sidecar and binds its two listeners (so their addresses are known
// before Run, which matters with ":0").
func New(cfg Config, log *logrus.Entry) (*Sidecar, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sidecar{cfg: cfg, log: log, met: metrics.New()}
	s.taskCtx, s.cancelTask = context.WithCancel(context.Background())

	broker, err := n8nproto.NewBroker(n8nproto.BrokerConfig{
		AuthToken:     cfg.BrokerAuthToken,
		MaxPayload:    cfg.MaxPayload,
		MaxFrameDepth: cfg.MaxFrameDepth,
		Logger:        log.WithField("role", "broker"),
	})
	if err != nil {
		return nil, fmt.Errorf("create broker: %w", err)
	}
	s.broker = broker
	runner, err := n8nproto.NewRunner(n8nproto.RunnerConfig{
		BrokerURI:      cfg.BrokerURI,
		AuthToken:      cfg.AuthToken,
		RunnerID:       cfg.ID,
		Name:           "n8n-fn " + cfg.ID,
		TaskTypes:      cfg.TaskTypes,
		MaxConcurrency: cfg.MaxConcurrency,
		MaxPayload:     cfg.MaxPayload,
		MaxFrameDepth:  cfg.MaxFrameDepth,
		Logger:         log.WithField("role", "runner"),
		// The n8n process behind BrokerURI is gone: its function executions are dead, and the
		// function runtime (set below, before Run) tells the dispatchers waiting for them.
		OnBrokerGone: func(at time.Time) { s.fns.N8NGone(at) },
	}, s)
	if err != nil {
		return nil, fmt.Errorf("create runner: %w", err)
	}
	s.runner = runner

	s.met.Connections(runner.Connected, broker.HasRunner, cfg.TaskTypes)
	fns, err := functions.New(cfg.functionsConfig(), functions.Deps{Log: log.WithField("part", "functions"), N8NConnected: runner.Connected, Metrics: s.met})
	if err != nil {
		return nil, fmt.Errorf("create function runtime: %w", err)
	}
	s.fns = fns
	s.ops = map[string]functions.Op{}
	for name, op := range fns.Ops() {
		s.ops[name] = op
	}
	s.ops[workflows.OpEcho] = s.echoOp

	if s.brokerLn, err = net.Listen("tcp", cfg.BrokerListen); err != nil {
		return nil, fmt.Errorf("listen for runners on N8N_FN_BROKER_LISTEN=%s: %w", cfg.BrokerListen, err)
	}
	if cfg.HealthListen != healthOff {
		if s.healthLn, err = net.Listen("tcp", cfg.HealthListen); err != nil {
			s.brokerLn.Close()
			return nil, fmt.Errorf("listen for health checks on N8N_FN_HEALTH_LISTEN=%s: %w", cfg.HealthListen, err)
		}
	}
	if cfg.RunnerMode == ModeSpawn {
		s.spawn = newSpawner(cfg, brokerURL(s.brokerLn.Addr()), broker, log.WithField("part", "spawn"))
	}
	return s, nil
}

// BrokerAddr is where runners behind the sidecar connect.
func (s *Sidecar) BrokerAddr() string { return s.brokerLn.Addr().String() }

// HealthAddr is where /healthz, /readyz and /metrics are served ("" when off).
func (s *Sidecar) HealthAddr() string {
	if s.healthLn == nil {
		return ""
	}
	return s.healthLn.Addr().String()
}

// brokerURL is the URI a local runner uses to reach our broker; a wildcard listen address is reached
// over loopback.
func brokerURL(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return "http://" + a.String()
	}
	host := ta.IP.String()
	if ta.IP == nil || ta.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(ta.Port))
}

// Run serves until ctx ends, then shuts down in order: stop offering to n8n, let in-flight tasks
// finish within N8N_FN_SHUTDOWN_GRACE, stop the function runtime, drain the broker (the spawned runner
// exits 0), stop the spawned runner, disconnect. It returns an error only for a fatal start-up or
// connection problem (e.g. a wrong auth token).
func (s *Sidecar) Run(ctx context.Context) error {
	log := s.log
	var wg sync.WaitGroup // the spawner's goroutines (the function runtime owns its own)
	bgCtx, cancelBG := context.WithCancel(context.Background())
	defer cancelBG()

	brokerSrv := s.broker.NewServer() // header and body timeouts: a body that never comes is closed
	go func() {
		if err := brokerSrv.Serve(s.brokerLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("broker server stopped")
		}
	}()
	var healthSrv *http.Server
	if s.healthLn != nil {
		healthSrv = &http.Server{Handler: s.healthHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := healthSrv.Serve(s.healthLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.WithError(err).Error("health server stopped")
			}
		}()
	}

	s.fns.Start(bgCtx)
	startMemoryReturner(bgCtx, &wg)
	if s.spawn != nil {
		s.spawn.start(bgCtx, &wg)
	}

	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	runErr := make(chan error, 1)
	go func() { runErr <- s.runner.Run(runCtx) }()

	log.WithFields(logrus.Fields{
		"n8n": s.cfg.BrokerURI, "broker": s.BrokerAddr(), "health": s.HealthAddr(),
		"mode": s.cfg.RunnerMode, "types": s.cfg.TaskTypes, "concurrency": s.cfg.MaxConcurrency,
	}).Info("n8n-fn sidecar started")

	var fatal error
	select {
	case <-ctx.Done():
		log.Info("shutting down: no new tasks, waiting for running ones")
	case err := <-runErr:
		fatal = err
		if fatal == nil {
			fatal = errors.New("runner stopped unexpectedly")
		}
		log.WithError(fatal).Error("connection to n8n failed for good")
	}
	s.draining.Store(true)
	s.runner.Drain()

	graceCtx, cancelGrace := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancelGrace()
	if fatal == nil {
		if err := s.runner.Wait(graceCtx); err != nil {
			log.WithField("running", s.runner.Running()).Warn("grace period over: failing the tasks still running")
		}
	}
	// Handlers still running now fail their task toward n8n and cancel it downstream.
	s.cancelTask()
	waitCtx, cancelWait := context.WithTimeout(context.Background(), 3*time.Second)
	_ = s.runner.Wait(waitCtx)
	cancelWait()

	// The function runtime gets its own few seconds: the grace may be used up by slow tasks.
	fnsCtx, cancelFns := context.WithTimeout(context.Background(), 5*time.Second)
	s.fns.Shutdown(fnsCtx)
	cancelFns()

	drainCtx, cancelDrain := context.WithTimeout(context.Background(), 5*time.Second)
	if s.spawn != nil {
		s.spawn.stopRestarting()
		s.spawn.terminate() // before the drain: a 1.x runner would take the broker's close for a crash
	}
	if err := s.broker.Drain(drainCtx); err != nil {
		log.WithError(err).Warn("broker drain did not finish cleanly")
	}
	cancelDrain()
	if s.spawn != nil {
		stopCtx, cancelStop := context.WithTimeout(context.Background(), 5*time.Second)
		s.spawn.shutdown(stopCtx)
		cancelStop()
	}
	cancelRun()
	if fatal == nil {
		if err := <-runErr; err != nil {
			log.WithError(err).Warn("runner ended with an error")
		}
	}
	cancelBG()
	wg.Wait()

	closeCtx, cancelClose := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelClose()
	_ = brokerSrv.Shutdown(closeCtx)
	if healthSrv != nil {
		_ = healthSrv.Shutdown(closeCtx)
	}
	log.Info("n8n-fn sidecar stopped")
	return fatal
}

// HandleTask implements n8nproto.TaskHandler: a directive is answered natively, anything else is
// relayed to a runner behind the sidecar.
func (s *Sidecar) HandleTask(_ context.Context, t *n8nproto.UpstreamTask) {
	// s.taskCtx, not the runner's context: a task may outlive the upstream read loop's context only
	// until the grace period ends, and that is ours to decide.
	ctx := s.taskCtx
	if t.TaskType == "javascript" {
		cs, err := n8nproto.ParseCodeSettings(t.Settings)
		if err == nil && workflows.IsDirective(cs.Code) {
			s.runNative(ctx, t, cs)
			return
		}
	}
	s.relay(ctx, t)
}

func (s *Sidecar) opNames() []string {
	names := make([]string, 0, len(s.ops))
	for n := range s.ops {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
