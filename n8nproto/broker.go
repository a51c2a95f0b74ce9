package n8nproto

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"
)

// ErrDraining is returned by Acquire once Drain has started.
var ErrDraining = errors.New("n8nproto: broker is draining, no new tasks")

// ErrRunnerDisconnected is the cause in DownstreamTask.Err when the runner's connection was lost mid-task.
var ErrRunnerDisconnected = errors.New("n8nproto: runner disconnected")

// Cancel reasons the broker sends itself (n8n's wording where n8n has one).
const (
	CancelAcceptTimeout   = "Acknowledgement window elapsed"
	CancelRequestCanceled = "Task request cancelled"
)

// BrokerConfig configures the broker role for runners behind the sidecar.
type BrokerConfig struct {
	AuthToken         string        // token for POST /runners/auth; empty = a random one (then only MintGrant works)
	GrantTTL          time.Duration // lifetime of a grant token, 30 s
	HeartbeatInterval time.Duration // websocket ping period; a runner that misses one pong is dropped, 30 s
	AcceptTimeout     time.Duration // how long a runner may take to answer taskofferaccept, 2 s
	MaxPayload        int64         // websocket read limit, 1 GiB
	MaxFrameDepth     int           // nesting limit of one frame (DecodeLimited), DefaultMaxFrameDepth
	// BodyTimeout bounds reading one request (its body above all: a POST /runners/auth whose body
	// never arrives is closed after it), 5 s. The websocket's own deadlines take over after the upgrade.
	BodyTimeout time.Duration
	// AuthFailLimit failed auths (or upgrades) of one client within AuthFailWindow make its next
	// requests get 429 until the window has passed: 5 per 1 s, n8n's numbers.
	AuthFailLimit  int
	AuthFailWindow time.Duration
	Logger         *logrus.Entry
}

func (c *BrokerConfig) setDefaults() {
	if c.AuthToken == "" {
		c.AuthToken = randomHex(32)
	}
	if c.GrantTTL == 0 {
		c.GrantTTL = 30 * time.Second
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 30 * time.Second
	}
	if c.AcceptTimeout == 0 {
		c.AcceptTimeout = 2 * time.Second
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 1 << 30
	}
	if c.MaxFrameDepth == 0 {
		c.MaxFrameDepth = DefaultMaxFrameDepth
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = 5 * time.Second
	}
	if c.AuthFailLimit == 0 {
		c.AuthFailLimit = defaultAuthFailLimit
	}
	if c.AuthFailWindow == 0 {
		c.AuthFailWindow = defaultAuthFailWindow
	}
	if c.Logger == nil {
		c.Logger = logrus.NewEntry(logrus.StandardLogger())
	}
}

// Broker is n8n's task-broker role, for the official runner (spawned by us) or the launcher.
type Broker struct {
	cfg      BrokerConfig
	log      *logrus.Entry
	mux      *http.ServeMux
	upgrader websocket.Upgrader
	drainCh  chan struct{}
	authFail *failLimiter // failed POST /runners/auth per client
	wsFail   *failLimiter // failed upgrades per client (n8n limits upgrades apart from auths)

	mu            sync.Mutex
	grants        map[string]time.Time // grant token -> expiry
	conns         map[*runnerConn]struct{}
	runners       map[string]*runnerConn // registered, by runner id
	offers        []*brokerOffer         // FIFO
	offerSig      chan struct{}          // closed and replaced when an offer may have become available
	deferredUntil map[string]time.Time   // task type -> a launcher deferred, its runner is on the way
	inflight      int
	inflightSig   chan struct{}
	draining      bool
}

type brokerOffer struct {
	rc         *runnerConn
	id         string
	taskType   string
	forever    bool // validFor -1
	validUntil time.Time
}

func (o *brokerOffer) valid(now time.Time) bool { return o.forever || now.Before(o.validUntil) }

// NewBroker returns a broker; mount Handler() on an HTTP server.
func NewBroker(cfg BrokerConfig) (*Broker, error) {
	cfg.setDefaults()
	if cfg.GrantTTL < 0 || cfg.HeartbeatInterval < 0 || cfg.AcceptTimeout < 0 || cfg.MaxPayload < 0 || cfg.MaxFrameDepth < 0 ||
		cfg.BodyTimeout < 0 || cfg.AuthFailLimit < 0 || cfg.AuthFailWindow < 0 {
		return nil, errors.New("broker config: durations, limits and MaxPayload must be positive")
	}
	b := &Broker{
		cfg:           cfg,
		log:           cfg.Logger.WithField("component", "broker"),
		drainCh:       make(chan struct{}),
		grants:        map[string]time.Time{},
		conns:         map[*runnerConn]struct{}{},
		runners:       map[string]*runnerConn{},
		offerSig:      make(chan struct{}),
		deferredUntil: map[string]time.Time{},
		inflightSig:   make(chan struct{}),
		authFail:      newFailLimiter(cfg.AuthFailLimit, cfg.AuthFailWindow),
		wsFail:        newFailLimiter(cfg.AuthFailLimit, cfg.AuthFailWindow),
		// The official clients send no Origin; a grant is required anyway.
		upgrader: websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", b.serveHealth)
	mux.HandleFunc("/runners/auth", b.serveAuth)
	mux.HandleFunc("/runners/_ws", b.serveWS)
	b.mux = mux
	return b, nil
}

// Handler serves GET /healthz, POST /runners/auth and GET /runners/_ws (fixed paths: the official clients
// hard-code them). Every request must arrive within BodyTimeout: a body that never comes closes
// its connection instead of holding it for ever (the server's ReadHeaderTimeout covers only the
// headers).
func (b *Broker) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(b.cfg.BodyTimeout))
		b.mux.ServeHTTP(w, r)
	})
}

// NewServer is an http.Server for Handler with every timeout set: headers and bodies within
// BodyTimeout, idle keep-alive connections closed after a minute, headers at most 64 KiB.
func (b *Broker) NewServer() *http.Server {
	return &http.Server{
		Handler:           b.Handler(),
		ReadHeaderTimeout: b.cfg.BodyTimeout,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// tooMany answers a client that failed too often (n8n's status and message).
func tooMany(w http.ResponseWriter, window time.Duration) {
	w.Header().Set("Retry-After", fmt.Sprint(max(1, int(window.Round(time.Second)/time.Second))))
	writeJSON(w, http.StatusTooManyRequests, map[string]any{"code": 429, "message": "Too many requests"})
}

// authFailed counts a failed auth of r's client and logs the moment it gets limited, once.
func (b *Broker) authFailed(lim *failLimiter, r *http.Request, what string) {
	client := clientKey(r.RemoteAddr)
	if lim.fail(client, time.Now()) {
		b.log.WithFields(logrus.Fields{"remote": client, "failures": b.cfg.AuthFailLimit, "window": b.cfg.AuthFailWindow.String()}).
			Warn("runner " + what + " failing repeatedly from this address: its requests get 429 until the window has passed")
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (b *Broker) serveHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (b *Broker) serveAuth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"code": 405, "message": "use POST"})
		return
	}
	if b.authFail.limited(clientKey(r.RemoteAddr), time.Now()) {
		tooMany(w, b.cfg.AuthFailWindow)
		return
	}
	var body struct {
		Token *string `json:"token"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil {
		b.authFailed(b.authFail, r, "auth")
		msg := "body must be JSON {\"token\":\"<auth token>\"}: " + err.Error()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			msg = fmt.Sprintf("the body did not arrive within %s", b.cfg.BodyTimeout)
		}
		writeJSON(w, http.StatusBadRequest, map[string]any{"code": 400, "message": msg})
		return
	}
	if body.Token == nil || *body.Token == "" {
		b.authFailed(b.authFail, r, "auth")
		writeJSON(w, http.StatusBadRequest, map[string]any{"code": 400, "message": "token must be a non-empty string"})
		return
	}
	if subtle.ConstantTimeCompare([]byte(*body.Token), []byte(b.cfg.AuthToken)) != 1 {
		b.log.WithField("remote", r.RemoteAddr).Warn("runner auth with a wrong token")
		b.authFailed(b.authFail, r, "auth")
		writeJSON(w, http.StatusForbidden, map[string]any{"code": 403, "message": "Forbidden"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]string{"token": b.MintGrant()}})
}

// MintGrant returns a one-time grant token valid for GrantTTL (for a runner we spawn ourselves).
func (b *Broker) MintGrant() string {
	g := randomHex(32)
	now := time.Now()
	b.mu.Lock()
	for k, exp := range b.grants {
		if now.After(exp) {
			delete(b.grants, k)
		}
	}
	b.grants[g] = now.Add(b.cfg.GrantTTL)
	b.mu.Unlock()
	return g
}

// takeGrant consumes a grant; false if unknown, used or expired.
func (b *Broker) takeGrant(g string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	exp, ok := b.grants[g]
	delete(b.grants, g)
	return ok && time.Now().Before(exp)
}

func (b *Broker) serveWS(w http.ResponseWriter, r *http.Request) {
	if b.wsFail.limited(clientKey(r.RemoteAddr), time.Now()) {
		http.Error(w, "Too many requests", http.StatusTooManyRequests)
		return
	}
	fail := func(msg string, code int) {
		b.authFailed(b.wsFail, r, "connection")
		http.Error(w, msg, code)
	}
	id := r.URL.Query().Get("id")
	if id == "" {
		fail("missing ?id=<runner id>", http.StatusBadRequest)
		return
	}
	authz := r.Header.Get("Authorization")
	if len(authz) < 8 || !strings.EqualFold(authz[:7], "bearer ") || strings.TrimSpace(authz[7:]) == "" {
		fail("missing Authorization: Bearer <grant token>", http.StatusUnauthorized)
		return
	}
	if !b.takeGrant(strings.TrimSpace(authz[7:])) {
		fail("grant token unknown, used or expired: get a new one from POST /runners/auth", http.StatusForbidden)
		return
	}
	b.mu.Lock()
	draining := b.draining
	b.mu.Unlock()
	if draining {
		http.Error(w, "broker is shutting down", http.StatusServiceUnavailable)
		return
	}
	ws, err := b.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade already answered
	}
	ws.SetReadLimit(b.cfg.MaxPayload)
	rc := &runnerConn{
		b: b, id: id, grant: strings.TrimSpace(authz[7:]), conn: newWSConn(ws), done: make(chan struct{}),
		log:     b.log.WithField("runner_id", id),
		accepts: map[string]chan acceptResult{},
		tasks:   map[string]*DownstreamTask{},
	}
	b.mu.Lock()
	b.conns[rc] = struct{}{}
	b.mu.Unlock()
	rc.serve()
}

type acceptKind int

const (
	acceptAccepted acceptKind = iota
	acceptRejected
	acceptDeferred
	acceptLost
)

type acceptResult struct {
	kind   acceptKind
	reason string
}

// runnerConn is one runner (or launcher) connection. Its maps are guarded by Broker.mu.
type runnerConn struct {
	b     *Broker
	id    string
	grant string // the (used up) grant token it connected with
	conn  *wsConn
	log   *logrus.Entry
	done  chan struct{} // closed when the connection is gone

	name        string
	types       []string
	registered  bool
	gone        bool
	silentSince time.Time                    // noted by flagSilentRunners; zero after any frame
	accepts     map[string]chan acceptResult // task id -> Acquire waiting for the answer
	tasks       map[string]*DownstreamTask
}

func (rc *runnerConn) serve() {
	ws := rc.conn.ws
	rc.startHeartbeat()

	var cause error
	// A connection must register within the grant TTL; after that only heartbeats decide.
	_ = ws.SetReadDeadline(time.Now().Add(rc.b.cfg.GrantTTL))
	if err := rc.conn.send(context.Background(), InfoRequest{}); err != nil {
		cause = err
	}
	for cause == nil {
		data, err := readMessage(ws)
		returnReadGarbage(len(data))
		if err != nil {
			cause = err
			break
		}
		m, err := decodeOwned(data, rc.b.cfg.MaxFrameDepth)
		if err != nil {
			rc.log.WithError(err).Warn("ignoring malformed frame from runner")
			rc.refused(err)
			continue
		}
		rc.handle(m)
	}
	rc.b.disconnect(rc, cause)
}

func (rc *runnerConn) handle(m Message) {
	b := rc.b
	b.mu.Lock()
	registered := rc.registered
	rc.silentSince = time.Time{}
	b.mu.Unlock()
	if !registered {
		info, ok := m.(RunnerInfo)
		if !ok {
			return // n8n drops everything before runner:info
		}
		b.register(rc, info)
		return
	}
	switch v := m.(type) {
	case TaskOffer:
		b.addOffer(rc, v)
	case TaskAccepted:
		rc.answer(v.TaskID, acceptResult{kind: acceptAccepted})
	case TaskRejected:
		rc.answer(v.TaskID, acceptResult{kind: acceptRejected, reason: v.Reason})
	case TaskDeferred:
		// Recorded here, before this read loop can see the launcher's close, so HasRunner never has a gap.
		b.mu.Lock()
		for _, typ := range rc.types {
			b.deferredUntil[typ] = time.Now().Add(b.cfg.GrantTTL)
		}
		b.mu.Unlock()
		rc.answer(v.TaskID, acceptResult{kind: acceptDeferred})
	case TaskDataRequest, NodeTypesRequest, RPC:
		b.mu.Lock()
		t := rc.tasks[v.(TaskMessage).TaskKey()]
		b.mu.Unlock()
		if t != nil {
			t.mb.push(v.(TaskMessage))
		}
	case TaskDone, TaskError:
		id := v.(TaskMessage).TaskKey()
		b.mu.Lock()
		t := rc.tasks[id]
		if t != nil {
			delete(rc.tasks, id)
			b.inflightDoneLocked(1)
		}
		b.mu.Unlock()
		if t != nil {
			t.finish(v.(TaskMessage), nil)
		}
	default:
		// later runner:info, unknown types: ignored like n8n does
	}
}

// refused ends the task a refused frame belonged to (its Err is the *FrameError): whoever relays it
// stops waiting for a taskdone that was sent but cannot be read.
func (rc *runnerConn) refused(err error) {
	var fe *FrameError
	if !errors.As(err, &fe) || fe.TaskID == "" {
		return
	}
	b := rc.b
	b.mu.Lock()
	t := rc.tasks[fe.TaskID]
	if t != nil {
		delete(rc.tasks, fe.TaskID)
		b.inflightDoneLocked(1)
	}
	b.mu.Unlock()
	if t != nil {
		t.finish(nil, fe)
	}
}

func (rc *runnerConn) answer(taskID string, res acceptResult) {
	rc.b.mu.Lock()
	ch := rc.accepts[taskID]
	delete(rc.accepts, taskID)
	rc.b.mu.Unlock()
	if ch != nil {
		ch <- res // buffered 1
	}
}

func (b *Broker) register(rc *runnerConn, info RunnerInfo) {
	b.mu.Lock()
	if rc.gone {
		b.mu.Unlock()
		return
	}
	old := b.runners[rc.id]
	rc.registered = true
	_ = rc.conn.ws.SetReadDeadline(time.Time{})
	rc.name = info.Name
	rc.types = append([]string(nil), info.Types...)
	b.runners[rc.id] = rc
	b.signalOffersLocked()
	b.mu.Unlock()
	if old != nil && old != rc {
		old.log.Warn("runner replaced by a new connection with the same id; give each runner a unique N8N_RUNNERS_ID")
		old.conn.closeWith(websocket.CloseNormalClosure, "Replaced by a new connection with the same id")
	}
	rc.log.WithFields(logrus.Fields{"name": info.Name, "types": info.Types}).Info("runner registered")
	if err := rc.conn.send(context.Background(), RunnerRegistered{}); err != nil {
		rc.conn.closeWith(websocket.CloseInternalServerErr, "send failed")
	}
}

func (b *Broker) addOffer(rc *runnerConn, o TaskOffer) {
	off := &brokerOffer{rc: rc, id: o.OfferID, taskType: o.TaskType}
	switch {
	case o.ValidFor == -1:
		off.forever = true
	case o.ValidFor > 0:
		off.validUntil = time.Now().Add(time.Duration(o.ValidFor) * time.Millisecond)
	default:
		return // validFor 0 or other negatives would expire before matching (as in n8n)
	}
	b.mu.Lock()
	if !rc.gone {
		b.offers = append(b.offers, off)
		b.signalOffersLocked()
	}
	b.mu.Unlock()
}

func (b *Broker) signalOffersLocked() {
	close(b.offerSig)
	b.offerSig = make(chan struct{})
}

func (b *Broker) inflightDoneLocked(n int) {
	b.inflight -= n
	close(b.inflightSig)
	b.inflightSig = make(chan struct{})
}

// takeOfferLocked removes and returns the first valid offer of taskType, purging expired ones.
func (b *Broker) takeOfferLocked(taskType string) *brokerOffer {
	now := time.Now()
	kept := b.offers[:0]
	var found *brokerOffer
	for _, o := range b.offers {
		switch {
		case !o.valid(now) || o.rc.gone:
			// drop
		case found == nil && o.taskType == taskType:
			found = o
		default:
			kept = append(kept, o)
		}
	}
	for i := len(kept); i < len(b.offers); i++ {
		b.offers[i] = nil
	}
	b.offers = kept
	return found
}

func (b *Broker) dropOffersLocked(rc *runnerConn) {
	kept := b.offers[:0]
	for _, o := range b.offers {
		if o.rc != rc {
			kept = append(kept, o)
		}
	}
	for i := len(kept); i < len(b.offers); i++ {
		b.offers[i] = nil
	}
	b.offers = kept
}

// RegisteredWithGrant reports whether the runner that connected with this grant token is registered
// right now. A supervisor knows the grant it gave its process, whatever id the runner registers
// under (1.x runners ignore N8N_RUNNERS_ID).
func (b *Broker) RegisteredWithGrant(grant string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, rc := range b.runners {
		if rc.grant == grant && !rc.gone {
			return true
		}
	}
	return false
}

// HasRunner reports whether a runner registered for taskType, an offer of it is open, or a launcher just
// deferred a task of it (its runner is being started).
func (b *Broker) HasRunner(taskType string) bool {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, rc := range b.runners {
		for _, t := range rc.types {
			if t == taskType {
				return true
			}
		}
	}
	for _, o := range b.offers {
		if o.taskType == taskType && o.valid(now) {
			return true
		}
	}
	return now.Before(b.deferredUntil[taskType])
}

// ErrRequestTimeout is returned by AcquireWithin when no runner took the task in time (n8n's
// broker answers the same case with broker:requestexpired, "Task request timed out").
var ErrRequestTimeout = errors.New("n8nproto: no runner took the task within the request timeout")

// maxRequestRefreshes is how often a deferral or an accept timeout restarts the request timeout, as
// in n8n's broker (MAX_REQUEST_TIMEOUT_REFRESHES): a launcher that defers, or a runner that does not
// answer, does not eat the time a task has to find a runner, but cannot hold it for ever either.
const maxRequestRefreshes = 3

// silentRunnerGrace: a registered runner that sends no offers while requests of its type expire is
// disconnected once it has been silent this long (n8n's MIN_SILENCE_DURATION_MS), so its launcher
// or supervisor can start a working one.
const silentRunnerGrace = 2 * time.Second

// Acquire matches the first valid offer of taskType (FIFO, validFor -1 never expires), sends taskofferaccept
// with taskID, waits AcceptTimeout for taskaccepted; on taskrejected / timeout tries the next offer; on
// taskdeferred (the official launcher) keeps waiting for the next offer from anyone; then sends tasksettings.
// It blocks until a runner took the task, ctx ends or Drain starts (ErrDraining).
func (b *Broker) Acquire(ctx context.Context, taskType, taskID string, settings json.RawMessage) (*DownstreamTask, error) {
	return b.AcquireWithin(ctx, taskType, taskID, settings, 0)
}

// AcquireWithin is Acquire with n8n's task request timeout (N8N_RUNNERS_TASK_REQUEST_TIMEOUT): when no
// runner took the task within wait it returns ErrRequestTimeout. A deferral or an accept timeout
// starts the wait over, at most maxRequestRefreshes times. When it expires, runners of the type that
// are registered but silent (no offer, no task, no accept in progress) for silentRunnerGrace are
// disconnected, as n8n's broker reports them unresponsive. wait <= 0 waits without limit.
func (b *Broker) AcquireWithin(ctx context.Context, taskType, taskID string, settings json.RawMessage, wait time.Duration) (*DownstreamTask, error) {
	if taskID == "" || taskType == "" {
		return nil, errors.New("acquire: empty task id or task type")
	}
	log := b.log.WithFields(logrus.Fields{"task_id": taskID, "task_type": taskType})
	var expired <-chan time.Time
	refresh := func() {}
	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		expired = timer.C
		refreshes := 0
		refresh = func() {
			if refreshes < maxRequestRefreshes {
				refreshes++
				timer.Reset(wait) // Go >= 1.23: no stale tick survives a Reset
			}
		}
	}
	timedOut := func() error {
		b.flagSilentRunners(taskType)
		return fmt.Errorf("acquire %s runner for task %s: %w (%s)", taskType, taskID, ErrRequestTimeout, wait)
	}
	for {
		select {
		case <-expired:
			return nil, timedOut()
		default:
		}
		b.mu.Lock()
		if b.draining {
			b.mu.Unlock()
			return nil, fmt.Errorf("acquire %s runner for task %s: %w", taskType, taskID, ErrDraining)
		}
		off := b.takeOfferLocked(taskType)
		sig := b.offerSig
		var ch chan acceptResult
		if off != nil {
			if off.rc.accepts[taskID] != nil || off.rc.tasks[taskID] != nil {
				b.mu.Unlock()
				return nil, fmt.Errorf("acquire: task id %s is already in use on runner %s", taskID, off.rc.id)
			}
			ch = make(chan acceptResult, 1)
			off.rc.accepts[taskID] = ch
		}
		b.mu.Unlock()
		if off == nil {
			select {
			case <-sig:
				continue
			case <-b.drainCh:
				continue
			case <-expired:
				return nil, timedOut()
			case <-ctx.Done():
				return nil, fmt.Errorf("acquire %s runner for task %s: no runner took it: %w", taskType, taskID, ctx.Err())
			}
		}
		t, outcome, err := b.offerTask(ctx, log, off, ch, taskID, settings)
		switch outcome {
		case offerDone:
			return t, err
		case offerDeferred, offerUnanswered:
			refresh()
		}
	}
}

// offerOutcome is how one accept attempt ended.
type offerOutcome int

const (
	offerDone       offerOutcome = iota // the runner took the task, or ctx ended (err says which)
	offerNext                           // rejected, runner gone: try the next offer
	offerDeferred                       // a launcher deferred: its runner's offer comes next
	offerUnanswered                     // no answer within AcceptTimeout
)

// offerTask runs one accept attempt.
func (b *Broker) offerTask(ctx context.Context, log *logrus.Entry, off *brokerOffer, ch chan acceptResult, taskID string, settings json.RawMessage) (*DownstreamTask, offerOutcome, error) {
	rc := off.rc
	forget := func() {
		b.mu.Lock()
		if rc.accepts[taskID] == ch {
			delete(rc.accepts, taskID)
		}
		b.mu.Unlock()
	}
	if err := rc.conn.send(ctx, TaskOfferAccept{TaskID: taskID, OfferID: off.id}); err != nil {
		forget()
		if ctx.Err() != nil {
			return nil, offerDone, fmt.Errorf("acquire runner for task %s: %w", taskID, ctx.Err())
		}
		return nil, offerNext, nil
	}
	timer := time.NewTimer(b.cfg.AcceptTimeout)
	defer timer.Stop()
	var res acceptResult
	select {
	case res = <-ch:
	case <-timer.C:
		forget()
		select {
		case res = <-ch: // answered just in time
		default:
			b.mu.Lock()
			b.dropOffersLocked(rc)
			b.mu.Unlock()
			log.WithField("runner_id", rc.id).Warn("runner did not answer the task offer in time; trying the next offer")
			_ = rc.conn.send(context.Background(), TaskCancel{TaskID: taskID, Reason: CancelAcceptTimeout})
			return nil, offerUnanswered, nil
		}
	case <-ctx.Done():
		forget()
		select {
		case res = <-ch:
			if res.kind == acceptAccepted {
				_ = rc.conn.send(context.Background(), TaskCancel{TaskID: taskID, Reason: CancelRequestCanceled})
			}
		default:
			_ = rc.conn.send(context.Background(), TaskCancel{TaskID: taskID, Reason: CancelRequestCanceled})
		}
		return nil, offerDone, fmt.Errorf("acquire runner for task %s: %w", taskID, ctx.Err())
	}
	switch res.kind {
	case acceptRejected:
		log.WithFields(logrus.Fields{"runner_id": rc.id, "reason": res.reason}).Debug("runner rejected the task; trying the next offer")
		return nil, offerNext, nil
	case acceptDeferred:
		b.mu.Lock()
		b.deferredUntil[off.taskType] = time.Now().Add(b.cfg.GrantTTL)
		b.mu.Unlock()
		log.WithField("runner_id", rc.id).Info("launcher deferred the task; waiting for its runner's offer")
		return nil, offerDeferred, nil
	case acceptLost:
		return nil, offerNext, nil
	}
	t := &DownstreamTask{ID: taskID, TaskType: off.taskType, RunnerID: rc.id, rc: rc, mb: newMailbox()}
	b.mu.Lock()
	if rc.gone {
		b.mu.Unlock()
		return nil, offerNext, nil
	}
	rc.tasks[taskID] = t
	b.inflight++
	b.mu.Unlock()
	if err := rc.conn.send(ctx, TaskSettings{TaskID: taskID, Settings: settings}); err != nil {
		b.mu.Lock()
		if rc.tasks[taskID] == t {
			delete(rc.tasks, taskID)
			b.inflightDoneLocked(1)
		}
		b.mu.Unlock()
		t.mb.abandon()
		if ctx.Err() != nil {
			return nil, offerDone, fmt.Errorf("acquire runner for task %s: %w", taskID, ctx.Err())
		}
		return nil, offerNext, nil
	}
	log.WithField("runner_id", rc.id).Debug("task handed to runner")
	return t, offerDone, nil
}

// flagSilentRunners runs when a request of taskType expired: a registered runner of that type with
// no open offer, no task and no accept in progress is noted as silent; one still silent at a later
// expiry, silentRunnerGrace after it was noted, is disconnected (n8n: "sent no task offers while task
// requests expired, reporting it as unresponsive"). Any frame from a runner clears its note.
func (b *Broker) flagSilentRunners(taskType string) {
	now := time.Now()
	var drop []*runnerConn
	b.mu.Lock()
	for _, rc := range b.runners {
		if rc.gone || !containsString(rc.types, taskType) {
			continue
		}
		silent := len(rc.tasks) == 0 && len(rc.accepts) == 0
		for _, o := range b.offers {
			if o.rc == rc && o.valid(now) {
				silent = false
				break
			}
		}
		switch {
		case !silent:
			rc.silentSince = time.Time{}
		case rc.silentSince.IsZero():
			rc.silentSince = now
		case now.Sub(rc.silentSince) >= silentRunnerGrace:
			drop = append(drop, rc)
		}
	}
	b.mu.Unlock()
	for _, rc := range drop {
		rc.log.Warn("runner sent no task offers while task requests expired: disconnecting it as unresponsive")
		rc.conn.closeWith(websocket.CloseProtocolError, "Runner unresponsive: no task offers")
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (b *Broker) disconnect(rc *runnerConn, cause error) {
	b.mu.Lock()
	rc.gone = true
	delete(b.conns, rc)
	if b.runners[rc.id] == rc {
		delete(b.runners, rc.id)
	}
	b.dropOffersLocked(rc)
	accepts, tasks := rc.accepts, rc.tasks
	rc.accepts, rc.tasks = map[string]chan acceptResult{}, map[string]*DownstreamTask{}
	if len(tasks) > 0 {
		b.inflightDoneLocked(len(tasks))
	}
	b.mu.Unlock()
	close(rc.done)
	rc.conn.markClosed()
	for _, ch := range accepts {
		ch <- acceptResult{kind: acceptLost}
	}
	err := fmt.Errorf("%w: runner %s: %v", ErrRunnerDisconnected, rc.id, cause)
	for _, t := range tasks {
		t.finish(nil, err)
	}
	rc.log.WithFields(logrus.Fields{"name": rc.name, "tasks_failed": len(tasks)}).Info("runner disconnected")
}

// Drain sends broker:drain to every runner, refuses new tasks, waits for in-flight tasks until ctx ends,
// then closes every connection with 1001.
func (b *Broker) Drain(ctx context.Context) error {
	b.mu.Lock()
	if !b.draining {
		b.draining = true
		close(b.drainCh)
	}
	conns := make([]*runnerConn, 0, len(b.conns))
	for rc := range b.conns {
		conns = append(conns, rc)
	}
	b.mu.Unlock()
	for _, rc := range conns {
		_ = rc.conn.send(ctx, Drain{})
	}
	var err error
	for {
		b.mu.Lock()
		n, sig := b.inflight, b.inflightSig
		b.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-sig:
			continue
		case <-ctx.Done():
			err = fmt.Errorf("drain: %d tasks still running: %w", n, ctx.Err())
		}
		break
	}
	b.mu.Lock()
	conns = conns[:0]
	for rc := range b.conns {
		conns = append(conns, rc)
	}
	b.mu.Unlock()
	for _, rc := range conns {
		rc.conn.closeWith(websocket.CloseGoingAway, "Shutting down")
	}
	return err
}

// DownstreamTask is one task handed to a runner behind the sidecar.
type DownstreamTask struct {
	ID       string
	TaskType string
	RunnerID string

	rc *runnerConn
	mb *mailbox

	mu    sync.Mutex
	ended bool
	err   error
}

// finish ends the task: last (the runner's taskdone/taskerror) is delivered before Incoming closes.
func (t *DownstreamTask) finish(last TaskMessage, err error) {
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return
	}
	t.ended = true
	t.err = err
	t.mu.Unlock()
	if last != nil {
		t.mb.push(last)
	}
	t.mb.close()
}

// Send writes m to the runner as a message of this task (TaskID rewritten).
func (t *DownstreamTask) Send(ctx context.Context, m TaskMessage) error {
	m, err := withTaskID(m, t.ID)
	if err != nil {
		return err
	}
	t.mu.Lock()
	ended := t.ended
	t.mu.Unlock()
	if ended {
		return fmt.Errorf("send %s for task %s: %w", m.MessageType(), t.ID, ErrTaskEnded)
	}
	return t.rc.conn.send(ctx, m)
}

// Incoming gets the runner's taskdatarequest / nodetypesrequest / rpc and finally taskdone / taskerror; it
// is closed after taskdone/taskerror, after Cancel, or when the runner disconnects (then Err says why).
func (t *DownstreamTask) Incoming() <-chan TaskMessage { return t.mb.out }

// Cancel sends broker:taskcancel and ends the task here (the official runner aborts silently).
func (t *DownstreamTask) Cancel(ctx context.Context, reason string) error {
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return nil
	}
	t.ended = true
	t.mu.Unlock()
	b := t.rc.b
	b.mu.Lock()
	if t.rc.tasks[t.ID] == t {
		delete(t.rc.tasks, t.ID)
		b.inflightDoneLocked(1)
	}
	b.mu.Unlock()
	t.mb.abandon()
	if err := t.rc.conn.send(ctx, TaskCancel{TaskID: t.ID, Reason: reason}); err != nil {
		return fmt.Errorf("cancel task %s: %w", t.ID, err)
	}
	return nil
}

// Err is nil unless the task ended because its runner disconnected (wraps ErrRunnerDisconnected) or
// sent a frame of it that was refused (a *FrameError wrapping ErrMalformedMessage).
func (t *DownstreamTask) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// openOffers counts valid offers of taskType (tests and diagnostics).
func (b *Broker) openOffers(taskType string) int {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, o := range b.offers {
		if o.taskType == taskType && o.valid(now) && !o.rc.gone {
			n++
		}
	}
	return n
}
