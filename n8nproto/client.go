package n8nproto

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"
)

// ErrUnauthorized means n8n refused the auth token (403 on POST /runners/auth). It is fatal: Run returns it at
// once instead of retrying, because a wrong token never becomes right.
var ErrUnauthorized = errors.New("n8n refused the runner auth token (HTTP 403 on /runners/auth): set N8N_RUNNERS_AUTH_TOKEN to the value n8n uses")

// ErrTaskCancelled is returned by UpstreamTask methods after n8n cancelled the task or the connection was lost.
var ErrTaskCancelled = errors.New("n8nproto: task cancelled")

// ErrTaskEnded is returned when a task is used after Done or Fail.
var ErrTaskEnded = errors.New("n8nproto: task already ended")

// Reasons sent in runner:taskrejected (the official runner's wording).
const (
	RejectShuttingDown = "Runner is shutting down"
	RejectAtCapacity   = "No open task slots - runner already at capacity"
	RejectOfferExpired = "Offer expired - not accepted within validity window"
)

// RunnerConfig configures the runner role toward n8n's task broker.
type RunnerConfig struct {
	BrokerURI      string   // http://127.0.0.1:5679 (n8n's N8N_RUNNERS_TASK_BROKER_URI); only scheme+host are used
	AuthToken      string   // N8N_RUNNERS_AUTH_TOKEN; exchanged for a one-time grant on every (re)connect
	RunnerID       string   // ?id= on the websocket; default: random
	Name           string   // runner:info name; default "n8n-fn"
	TaskTypes      []string // default ["javascript"]
	MaxConcurrency int      // offers kept open = MaxConcurrency - running (never 0 while idle); default 10
	MaxPayload     int64    // websocket read limit; default 1 GiB (n8n's N8N_RUNNERS_MAX_PAYLOAD)
	MaxFrameDepth  int      // nesting limit of one frame (DecodeLimited); default DefaultMaxFrameDepth
	Logger         *logrus.Entry

	// Zero values mean the official runner's timings.
	OfferValidFor   time.Duration // base offer validity, 5 s; each offer adds a random 0–500 ms
	OfferInterval   time.Duration // offer top-up period, 250 ms
	ReconnectMin    time.Duration // first reconnect delay, 250 ms (doubles, with jitter)
	ReconnectMax    time.Duration // reconnect delay cap, 2 s: see setDefaults
	SettingsTimeout time.Duration // an accepted task without tasksettings after this is dropped, 60 s
	ReadTimeout     time.Duration // connection considered dead without any frame or ping for this long, 2 min (n8n pings every 30 s; raise it with N8N_RUNNERS_HEARTBEAT_INTERVAL above 60 s)
	HTTPClient      *http.Client  // for POST /runners/auth; default: 10 s timeout

	// OnBrokerGone, when set, is called (from Run's goroutine: it must not block) when a connect
	// attempt finds nothing listening at the broker's address (connection refused), once per spell
	// without a connection. With the broker in the n8n process next to the runner, as a sidecar
	// runs, that means the n8n process is gone (killed, crashed, or exited after its graceful
	// shutdown), and with it every execution it ran; a network blip or a broker that dropped the
	// connection while its process lives on does not refuse connections on the same host.
	OnBrokerGone func(at time.Time)
}

func (c *RunnerConfig) setDefaults() {
	if c.RunnerID == "" {
		c.RunnerID = randomHex(8)
	}
	if c.Name == "" {
		c.Name = "n8n-fn"
	}
	if len(c.TaskTypes) == 0 {
		c.TaskTypes = []string{"javascript"}
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = 10
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 1 << 30
	}
	if c.MaxFrameDepth == 0 {
		c.MaxFrameDepth = DefaultMaxFrameDepth
	}
	if c.Logger == nil {
		c.Logger = logrus.NewEntry(logrus.StandardLogger())
	}
	if c.OfferValidFor == 0 {
		c.OfferValidFor = 5 * time.Second
	}
	if c.OfferInterval == 0 {
		c.OfferInterval = 250 * time.Millisecond
	}
	// A low cap: the broker we reconnect to is the n8n process next to us, which a supervisor restarts
	// within seconds, and until we are back that n8n runs no Code node at all. With a 30 s cap a
	// restarted worker stayed without a runner for up to 15 s. n8n's task-runner-launcher polls the
	// broker's /healthz every 5 s without back-off; a reconnect costs n8n one POST /runners/auth and
	// one websocket upgrade, so an attempt every 1-2 s per runner is nothing to it.
	if c.ReconnectMin == 0 {
		c.ReconnectMin = 250 * time.Millisecond
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = 2 * time.Second
	}
	if c.SettingsTimeout == 0 {
		c.SettingsTimeout = 60 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 2 * time.Minute
	}
	if c.HTTPClient == nil {
		// No proxy from the environment: the official runner connects directly too, and a proxy meant
		// for outbound traffic must not sit between n8n and its runner.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: tr}
	}
}

func (c *RunnerConfig) validate() error {
	if c.AuthToken == "" {
		return errors.New("runner config: AuthToken is empty: set N8N_RUNNERS_AUTH_TOKEN to the token n8n uses")
	}
	u, err := url.Parse(c.BrokerURI)
	if err != nil || u.Host == "" {
		return fmt.Errorf("runner config: BrokerURI %q is not a URL like http://127.0.0.1:5679 (N8N_RUNNERS_TASK_BROKER_URI)", c.BrokerURI)
	}
	switch u.Scheme {
	case "http", "https", "ws", "wss":
	default:
		return fmt.Errorf("runner config: BrokerURI %q: scheme must be http or https", c.BrokerURI)
	}
	if c.MaxConcurrency < 0 {
		return fmt.Errorf("runner config: MaxConcurrency %d must be positive (N8N_RUNNERS_MAX_CONCURRENCY)", c.MaxConcurrency)
	}
	if c.MaxPayload < 0 {
		return fmt.Errorf("runner config: MaxPayload %d must be positive (N8N_RUNNERS_MAX_PAYLOAD)", c.MaxPayload)
	}
	if c.MaxFrameDepth < 0 {
		return fmt.Errorf("runner config: MaxFrameDepth %d must be positive (N8N_FN_MAX_FRAME_DEPTH)", c.MaxFrameDepth)
	}
	if c.ReconnectMax < c.ReconnectMin {
		return errors.New("runner config: ReconnectMax is below ReconnectMin")
	}
	return nil
}

// TaskHandler runs accepted tasks.
type TaskHandler interface {
	// HandleTask runs in its own goroutine after the task was accepted and its settings arrived. It must end
	// the task exactly once with t.Done or t.Fail (or return when t.Cancelled() fires).
	HandleTask(ctx context.Context, t *UpstreamTask)
}

// Runner is the runner role toward one n8n task broker.
type Runner struct {
	cfg     RunnerConfig
	h       TaskHandler
	log     *logrus.Entry
	authURL string
	wsURL   string

	started   atomic.Bool
	drained   atomic.Bool
	connected atomic.Bool

	mu      sync.Mutex
	sess    *session
	running int
	changed chan struct{} // closed and replaced whenever running changes
}

// NewRunner validates cfg and returns a Runner; nothing connects before Run.
func NewRunner(cfg RunnerConfig, h TaskHandler) (*Runner, error) {
	if h == nil {
		return nil, errors.New("new runner: nil TaskHandler")
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.BrokerURI)
	httpScheme, wsScheme := "http", "ws"
	if u.Scheme == "https" || u.Scheme == "wss" {
		httpScheme, wsScheme = "https", "wss"
	}
	// Like the official clients, only scheme and host are used: n8n serves these two fixed paths.
	return &Runner{
		cfg:     cfg,
		h:       h,
		log:     cfg.Logger.WithFields(logrus.Fields{"component": "n8n-runner", "runner_id": cfg.RunnerID}),
		authURL: httpScheme + "://" + u.Host + "/runners/auth",
		wsURL:   wsScheme + "://" + u.Host + "/runners/_ws?id=" + url.QueryEscape(cfg.RunnerID),
		changed: make(chan struct{}),
	}, nil
}

// Run connects, registers, offers and accepts until ctx ends; after a lost connection it reconnects with a
// fresh grant and exponential backoff with jitter. It returns nil when ctx ends and ErrUnauthorized (wrapped)
// at once when n8n refuses the auth token.
func (r *Runner) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("runner: Run called twice")
	}
	attempt := 0
	goneTold := false // OnBrokerGone was called in this spell without a connection
	for {
		if ctx.Err() != nil {
			return nil
		}
		registered, err := r.connectOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrUnauthorized) {
			r.log.WithError(err).Error("n8n refused the auth token; not retrying")
			return err
		}
		if registered {
			attempt, goneTold = 0, false
		}
		if !goneTold && Refused(err) {
			goneTold = true
			r.log.Warn("nothing listens at the n8n task broker's address (connection refused): its n8n process is gone")
			if r.cfg.OnBrokerGone != nil {
				r.cfg.OnBrokerGone(time.Now())
			}
		}
		delay := backoff(r.cfg.ReconnectMin, r.cfg.ReconnectMax, attempt)
		attempt++
		r.log.WithError(err).WithField("retry_in", delay.Round(time.Millisecond).String()).Warn("disconnected from n8n task broker")
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Refused reports whether err is a refused TCP connection: nothing listens at the address.
func Refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// backoff is exponential with "equal jitter": a delay in [d/2, d], d = min·2^attempt capped at max.
func backoff(min, max time.Duration, attempt int) time.Duration {
	d := min
	for i := 0; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	return half + time.Duration(mrand.Int64N(int64(half)+1))
}

// Drain stops offering for good (SIGTERM or shutdown); running tasks go on.
func (r *Runner) Drain() {
	r.drained.Store(true)
	r.mu.Lock()
	s := r.sess
	r.mu.Unlock()
	if s != nil {
		s.clearOffers()
	}
}

// Connected reports whether the runner is registered with n8n right now.
func (r *Runner) Connected() bool { return r.connected.Load() }

// Running is the number of accepted tasks that have not ended yet.
func (r *Runner) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

// Wait blocks until no task is running or ctx ends.
func (r *Runner) Wait(ctx context.Context) error {
	for {
		r.mu.Lock()
		n, ch := r.running, r.changed
		r.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d running tasks: %w", n, ctx.Err())
		case <-ch:
		}
	}
}

func (r *Runner) addRunning(d int) {
	r.mu.Lock()
	r.running += d
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// fetchGrant exchanges the auth token for a one-time grant token.
func (r *Runner) fetchGrant(ctx context.Context) (string, error) {
	body, _ := json.Marshal(map[string]string{"token": r.cfg.AuthToken})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.authURL, strings.NewReader(string(body)))
	if err != nil {
		return "", fmt.Errorf("fetch grant: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetch grant from %s: %w", r.authURL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized:
		return "", fmt.Errorf("fetch grant from %s: %w", r.authURL, ErrUnauthorized)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("fetch grant from %s: HTTP %d", r.authURL, resp.StatusCode)
	}
	var out struct {
		Data struct {
			Token string `json:"token"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Data.Token == "" {
		return "", fmt.Errorf("fetch grant from %s: unexpected answer (want {\"data\":{\"token\":...}})", r.authURL)
	}
	return out.Data.Token, nil
}

// connectOnce runs one connection from grant to loss; registered says whether it got as far as registration.
func (r *Runner) connectOnce(ctx context.Context) (registered bool, err error) {
	grant, err := r.fetchGrant(ctx)
	if err != nil {
		return false, err
	}
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second} // no proxy, like the official runner
	hdr := http.Header{"Authorization": []string{"Bearer " + grant}}
	ws, resp, err := dialer.DialContext(ctx, r.wsURL, hdr)
	if err != nil {
		if resp != nil {
			return false, fmt.Errorf("connect %s: HTTP %d: %w", r.wsURL, resp.StatusCode, err)
		}
		return false, fmt.Errorf("connect %s: %w", r.wsURL, err)
	}
	ws.SetReadLimit(r.cfg.MaxPayload)
	sctx, cancel := context.WithCancel(ctx)
	s := &session{
		r:      r,
		conn:   newWSConn(ws),
		ctx:    sctx,
		cancel: cancel,
		log:    r.log,
		offers: map[string]offerSlot{},
		tasks:  map[string]*UpstreamTask{},
		kick:   make(chan struct{}, 1),
	}
	r.mu.Lock()
	r.sess = s
	r.mu.Unlock()
	err = s.run()
	r.mu.Lock()
	if r.sess == s {
		r.sess = nil
	}
	r.mu.Unlock()
	return s.wasRegistered.Load(), err
}

type offerSlot struct {
	taskType   string
	renewAt    time.Time // replaced from here on, so the broker never runs out of offers
	validUntil time.Time // still accepted until here (announced validity + 100 ms in-flight slack)
}

// session is one websocket connection to n8n.
type session struct {
	r      *Runner
	conn   *wsConn
	ctx    context.Context
	cancel context.CancelFunc
	log    *logrus.Entry

	wasRegistered atomic.Bool
	kick          chan struct{} // a slot was freed: top offers up now, not at the next tick

	mu             sync.Mutex
	registered     bool
	brokerDraining bool
	offers         map[string]offerSlot
	tasks          map[string]*UpstreamTask // nil after the connection is lost
}

func (s *session) run() error {
	ws := s.conn.ws
	readTimeout := s.r.cfg.ReadTimeout
	_ = ws.SetReadDeadline(time.Now().Add(readTimeout))
	ws.SetPingHandler(func(data string) error {
		_ = ws.SetReadDeadline(time.Now().Add(readTimeout))
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
		var ne net.Error
		if err == nil || errors.Is(err, websocket.ErrCloseSent) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil
		}
		return err
	})
	go func() {
		<-s.ctx.Done()
		s.conn.closeWith(websocket.CloseNormalClosure, "Shutting down")
	}()
	defer s.cancel()

	var readErr error
	for {
		data, err := readMessage(ws)
		returnReadGarbage(len(data))
		if err != nil {
			readErr = err
			break
		}
		_ = ws.SetReadDeadline(time.Now().Add(readTimeout))
		m, err := decodeOwned(data, s.r.cfg.MaxFrameDepth)
		if err != nil {
			s.log.WithError(err).Warn("ignoring malformed frame from n8n")
			s.refused(err)
			continue
		}
		s.handle(m)
	}
	s.lost()
	if s.ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("connection to n8n task broker lost: %w", readErr)
}

func (s *session) handle(m Message) {
	switch v := m.(type) {
	case InfoRequest:
		s.send(RunnerInfo{Name: s.r.cfg.Name, Types: s.r.cfg.TaskTypes})
	case RunnerRegistered:
		s.mu.Lock()
		first := !s.registered
		s.registered = true
		s.mu.Unlock()
		if first {
			s.wasRegistered.Store(true)
			s.r.connected.Store(true)
			s.log.WithField("broker", s.r.wsURL).Info("registered with n8n task broker")
			go s.offerLoop()
		}
	case TaskOfferAccept:
		s.onAccept(v)
	case TaskSettings:
		s.onSettings(v)
	case TaskCancel:
		s.onCancel(v)
	case TaskDataResponse:
		s.route(v.TaskID, v.RequestID, v)
	case NodeTypes:
		s.route(v.TaskID, v.RequestID, v)
	case RPCResponse:
		s.route(v.TaskID, v.CallID, v)
	case Drain:
		s.mu.Lock()
		s.brokerDraining = true
		s.offers = map[string]offerSlot{}
		s.mu.Unlock()
		s.log.Info("n8n task broker is draining: no more offers on this connection")
	default:
		s.log.WithField("type", m.MessageType()).Debug("ignoring message")
	}
}

func (s *session) send(m Message) {
	if err := s.conn.send(s.ctx, m); err != nil && s.ctx.Err() == nil {
		s.log.WithError(err).WithField("type", m.MessageType()).Warn("send to n8n failed")
	}
}

func (s *session) clearOffers() {
	s.mu.Lock()
	s.offers = map[string]offerSlot{}
	s.mu.Unlock()
}

func (s *session) onAccept(m TaskOfferAccept) {
	reason := ""
	var t *UpstreamTask
	running := s.r.Running()
	s.mu.Lock()
	o, ok := s.offers[m.OfferID]
	switch {
	case s.tasks == nil:
		s.mu.Unlock()
		return
	case s.r.drained.Load() || s.brokerDraining:
		reason = RejectShuttingDown
	case running >= s.r.cfg.MaxConcurrency:
		delete(s.offers, m.OfferID)
		reason = RejectAtCapacity
	case !ok || time.Now().After(o.validUntil):
		delete(s.offers, m.OfferID)
		reason = RejectOfferExpired
	case s.tasks[m.TaskID] != nil:
		reason = "Duplicate task id"
	default:
		delete(s.offers, m.OfferID)
		t = newUpstreamTask(s, m.TaskID, o.taskType)
		s.tasks[m.TaskID] = t
		s.r.addRunning(1)
	}
	s.mu.Unlock()
	if t == nil {
		s.log.WithFields(logrus.Fields{"task_id": m.TaskID, "reason": reason}).Debug("rejecting task")
		s.send(TaskRejected{TaskID: m.TaskID, Reason: reason})
		return
	}
	t.settingsTimer = time.AfterFunc(s.r.cfg.SettingsTimeout, func() {
		if t.dropIfWaiting("no task settings from n8n within " + s.r.cfg.SettingsTimeout.String()) {
			s.log.WithField("task_id", t.ID).Warn("accepted task got no settings in time; slot freed")
		}
	})
	s.send(TaskAccepted{TaskID: m.TaskID})
}

func (s *session) task(id string) *UpstreamTask {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tasks[id]
}

func (s *session) detach(id string, t *UpstreamTask) {
	s.mu.Lock()
	if s.tasks != nil && s.tasks[id] == t {
		delete(s.tasks, id)
	}
	s.mu.Unlock()
}

func (s *session) onSettings(m TaskSettings) {
	t := s.task(m.TaskID)
	if t == nil {
		return
	}
	t.mu.Lock()
	if t.state != stateWaitingSettings {
		t.mu.Unlock()
		return
	}
	t.state = stateRunning
	t.Settings = m.Settings
	t.mu.Unlock()
	if t.settingsTimer != nil {
		t.settingsTimer.Stop()
	}
	go s.r.runTask(t)
}

func (s *session) onCancel(m TaskCancel) {
	t := s.task(m.TaskID)
	if t == nil {
		return
	}
	if t.dropIfWaiting(m.Reason) {
		return
	}
	s.detach(t.ID, t)
	t.abort(m.Reason, m)
}

// refused ends the task a refused frame belonged to: an answer it waits for never comes otherwise.
// The waiting RequestData / RPC gets the error; a task nothing waits on (relayed) fails toward n8n
// with it and is cancelled here, so its handler stops.
func (s *session) refused(err error) {
	var fe *FrameError
	if !errors.As(err, &fe) || fe.TaskID == "" {
		return
	}
	t := s.task(fe.TaskID)
	if t == nil {
		return
	}
	if fe.Key != "" && t.deliver(fe.Key, refusedFrame{TaskID: fe.TaskID, err: fe}) {
		return
	}
	msg := "n8n-fn: a message of this task from n8n was refused: " + fe.Error()
	if ferr := t.Fail(s.ctx, errorJSON(msg)); ferr != nil {
		s.log.WithError(ferr).WithField("task_id", t.ID).Warn("could not fail the task of a refused frame")
	}
	t.abort(msg, nil)
}

// refusedFrame stands for an answer frame that Decode refused; roundTrip turns it into its error.
type refusedFrame struct {
	TaskID string
	err    error
}

func (refusedFrame) MessageType() string { return "n8n-fn:refused" }
func (m refusedFrame) TaskKey() string   { return m.TaskID }

func (s *session) route(taskID, key string, m TaskMessage) {
	t := s.task(taskID)
	if t == nil {
		return // late answer for a task that ended: n8n does the same
	}
	t.deliver(key, m)
}

// lost fails nothing toward n8n (n8n fails the tasks of a lost runner itself); it only tells the handlers.
func (s *session) lost() {
	s.r.connected.Store(false)
	s.mu.Lock()
	tasks := s.tasks
	s.tasks = nil
	s.offers = map[string]offerSlot{}
	s.mu.Unlock()
	for _, t := range tasks {
		if !t.dropIfWaiting("connection to n8n lost") {
			t.abort("connection to n8n lost", nil)
		}
	}
}

func (r *Runner) runTask(t *UpstreamTask) {
	defer func() {
		if p := recover(); p != nil {
			r.log.WithFields(logrus.Fields{"task_id": t.ID, "panic": fmt.Sprint(p)}).Error("task handler panicked")
			_ = t.Fail(context.Background(), errorJSON(fmt.Sprintf("n8n-fn: internal error while running the task: %v", p)))
		}
		t.mu.Lock()
		ended := t.ended
		t.mu.Unlock()
		if !ended && t.ctx.Err() == nil {
			_ = t.Fail(context.Background(), errorJSON("n8n-fn: the task handler ended without a result"))
		}
		t.release()
	}()
	r.h.HandleTask(t.ctx, t)
}

const (
	stateWaitingSettings = iota
	stateRunning
)

// UpstreamTask is one task accepted from n8n.
type UpstreamTask struct {
	ID       string
	TaskType string
	Settings json.RawMessage // raw tasksettings.settings; may hold secrets: never log

	s             *session
	ctx           context.Context
	cancel        context.CancelFunc
	mb            *mailbox
	cancelled     chan struct{}
	settingsTimer *time.Timer
	slotOnce      sync.Once
	abortOnce     sync.Once

	mu           sync.Mutex
	state        int
	ended        bool
	cancelReason string
	waiters      map[string]chan TaskMessage
}

func newUpstreamTask(s *session, id, taskType string) *UpstreamTask {
	ctx, cancel := context.WithCancel(s.ctx)
	return &UpstreamTask{
		ID: id, TaskType: taskType, s: s, ctx: ctx, cancel: cancel,
		mb: newMailbox(), cancelled: make(chan struct{}), waiters: map[string]chan TaskMessage{},
	}
}

// release frees the slot once and stops delivering messages.
func (t *UpstreamTask) release() {
	t.slotOnce.Do(func() {
		t.s.detach(t.ID, t)
		t.mb.abandon()
		t.cancel()
		t.s.r.addRunning(-1)
		t.s.r.kickOffers()
	})
}

// dropIfWaiting ends a task that never got its settings; reports whether it did.
func (t *UpstreamTask) dropIfWaiting(reason string) bool {
	t.mu.Lock()
	waiting := t.state == stateWaitingSettings
	if waiting {
		t.state = stateRunning // never start it
		t.ended = true
	}
	t.mu.Unlock()
	if !waiting {
		return false
	}
	if t.settingsTimer != nil {
		t.settingsTimer.Stop()
	}
	t.abort(reason, nil)
	t.release()
	return true
}

// abort closes Cancelled (once), hands msg (the broker's TaskCancel, if any) to Incoming and closes it.
func (t *UpstreamTask) abort(reason string, msg TaskMessage) {
	t.abortOnce.Do(func() {
		t.mu.Lock()
		t.cancelReason = reason
		t.mu.Unlock()
		close(t.cancelled)
		if msg != nil {
			t.mb.push(msg)
		}
		t.mb.close()
		t.cancel()
	})
}

// deliver hands m to the RequestData / RPC waiting for key, else to Incoming (a refusedFrame only
// to a waiter); it reports whether a waiter took it.
func (t *UpstreamTask) deliver(key string, m TaskMessage) bool {
	t.mu.Lock()
	ch := t.waiters[key]
	delete(t.waiters, key)
	t.mu.Unlock()
	if ch != nil {
		ch <- m // buffered 1, one answer per key
		return true
	}
	if _, refused := m.(refusedFrame); !refused {
		t.mb.push(m)
	}
	return false
}

// Send writes m to n8n as a message of this task (TaskID rewritten). TaskDone / TaskError end the task
// exactly like Done / Fail.
func (t *UpstreamTask) Send(ctx context.Context, m TaskMessage) error {
	switch v := m.(type) {
	case TaskDone:
		return t.Done(ctx, v.Data)
	case *TaskDone:
		return t.Done(ctx, v.Data)
	case TaskError:
		return t.Fail(ctx, v.Error)
	case *TaskError:
		return t.Fail(ctx, v.Error)
	}
	m, err := withTaskID(m, t.ID)
	if err != nil {
		return err
	}
	if err := t.usable(); err != nil {
		return fmt.Errorf("send %s for task %s: %w", m.MessageType(), t.ID, err)
	}
	return t.s.conn.send(ctx, m)
}

func (t *UpstreamTask) usable() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return ErrTaskEnded
	}
	select {
	case <-t.cancelled:
		return fmt.Errorf("%w: %s", ErrTaskCancelled, t.cancelReason)
	default:
	}
	return nil
}

// Incoming gets taskdataresponse / nodetypes / rpcresponse / taskcancel for this task that are not claimed
// by RequestData / RPC; closed when the task ends or its connection is lost.
func (t *UpstreamTask) Incoming() <-chan TaskMessage { return t.mb.out }

// Cancelled is closed on broker:taskcancel or when the connection to n8n is lost.
func (t *UpstreamTask) Cancelled() <-chan struct{} { return t.cancelled }

// CancelReason says why Cancelled fired ("" before).
func (t *UpstreamTask) CancelReason() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cancelReason
}

// RequestData sends runner:taskdatarequest with params and returns the response's data.
func (t *UpstreamTask) RequestData(ctx context.Context, params json.RawMessage) (json.RawMessage, error) {
	id := randomID()
	resp, err := t.roundTrip(ctx, id, TaskDataRequest{TaskID: t.ID, RequestID: id, RequestParams: params})
	if err != nil {
		return nil, err
	}
	r, ok := resp.(TaskDataResponse)
	if !ok {
		return nil, fmt.Errorf("data request for task %s: unexpected answer %s", t.ID, resp.MessageType())
	}
	return r.Data, nil
}

// RPCError is a broker:rpcresponse with status "error"; Data is what n8n sent (a string or an error object).
type RPCError struct {
	Name string
	Data json.RawMessage
}

func (e *RPCError) Error() string {
	var s string
	if json.Unmarshal(e.Data, &s) == nil {
		return fmt.Sprintf("rpc %s failed: %s", e.Name, s)
	}
	var obj struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(e.Data, &obj) == nil && obj.Message != "" {
		return fmt.Sprintf("rpc %s failed: %s", e.Name, obj.Message)
	}
	return fmt.Sprintf("rpc %s failed", e.Name)
}

// RPC calls a helper in n8n (params: JSON array; nil = []) and returns its data; status "error" gives *RPCError.
func (t *UpstreamTask) RPC(ctx context.Context, name string, params json.RawMessage) (json.RawMessage, error) {
	if len(params) == 0 {
		params = json.RawMessage("[]")
	}
	id := randomID()
	resp, err := t.roundTrip(ctx, id, RPC{TaskID: t.ID, CallID: id, Name: name, Params: params})
	if err != nil {
		return nil, err
	}
	r, ok := resp.(RPCResponse)
	if !ok {
		return nil, fmt.Errorf("rpc %s for task %s: unexpected answer %s", name, t.ID, resp.MessageType())
	}
	if r.Status != RPCStatusSuccess {
		return r.Data, &RPCError{Name: name, Data: r.Data}
	}
	return r.Data, nil
}

func (t *UpstreamTask) roundTrip(ctx context.Context, key string, req TaskMessage) (TaskMessage, error) {
	if err := t.usable(); err != nil {
		return nil, fmt.Errorf("%s for task %s: %w", req.MessageType(), t.ID, err)
	}
	ch := make(chan TaskMessage, 1)
	t.mu.Lock()
	t.waiters[key] = ch
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.waiters, key)
		t.mu.Unlock()
	}()
	if err := t.s.conn.send(ctx, req); err != nil {
		return nil, err
	}
	select {
	case m := <-ch:
		if r, ok := m.(refusedFrame); ok {
			return nil, fmt.Errorf("%s for task %s: the answer was refused: %w", req.MessageType(), t.ID, r.err)
		}
		return m, nil
	case <-t.cancelled:
		return nil, fmt.Errorf("%s for task %s: %w: %s", req.MessageType(), t.ID, ErrTaskCancelled, t.CancelReason())
	case <-ctx.Done():
		return nil, fmt.Errorf("%s for task %s: %w", req.MessageType(), t.ID, ctx.Err())
	}
}

// Done sends runner:taskdone once; data is {"result":[...], "customData"?, "staticData"?}.
func (t *UpstreamTask) Done(ctx context.Context, data json.RawMessage) error {
	return t.finish(ctx, TaskDone{TaskID: t.ID, Data: data})
}

// Fail sends runner:taskerror once; errData is {"message":..., "description"?, "lineNumber"?, ...}.
func (t *UpstreamTask) Fail(ctx context.Context, errData json.RawMessage) error {
	return t.finish(ctx, TaskError{TaskID: t.ID, Error: errData})
}

func (t *UpstreamTask) finish(ctx context.Context, m TaskMessage) error {
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return fmt.Errorf("%s for task %s: %w", m.MessageType(), t.ID, ErrTaskEnded)
	}
	t.ended = true
	t.mu.Unlock()
	select {
	case <-t.cancelled:
		t.release()
		return fmt.Errorf("%s for task %s: %w: %s", m.MessageType(), t.ID, ErrTaskCancelled, t.CancelReason())
	default:
	}
	err := t.s.conn.send(ctx, m)
	t.release()
	return err
}

// errorJSON builds a minimal taskerror payload.
func errorJSON(msg string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"message": msg})
	return b
}

// randomID is a 22-character URL-safe id (n8n uses 21-character nanoids; ids are opaque).
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
