package functions

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/n8n-fn/n8n-fn/n8napi"
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// served is one function this sidecar dispatches.
type served struct {
	Key    registry.FunctionKey
	Def    workflows.FunctionDef
	Record registry.FunctionRecord
}

// catalog is the set of functions this sidecar serves, replaced as a whole by each discovery.
type catalog struct {
	mu      sync.RWMutex
	fns     map[registry.FunctionKey]*served
	changed chan struct{} // closed and replaced on every change
}

func newCatalog() *catalog {
	return &catalog{fns: map[registry.FunctionKey]*served{}, changed: make(chan struct{})}
}

func (c *catalog) get(k registry.FunctionKey) *served {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.fns[k]
}

func (c *catalog) keys() []registry.FunctionKey {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]registry.FunctionKey, 0, len(c.fns))
	for k := range c.fns {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// watch returns a channel closed at the next change.
func (c *catalog) watch() <-chan struct{} {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.changed
}

// replace sets the served functions and reports whether the set of keys or a definition changed.
func (c *catalog) replace(fns map[registry.FunctionKey]*served) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	same := len(fns) == len(c.fns)
	for k, s := range fns {
		old, ok := c.fns[k]
		if !ok || old.Record.WebhookPath != s.Record.WebhookPath || old.Record.WebhookMethod != s.Record.WebhookMethod ||
			old.Record.MaxConcurrency != s.Record.MaxConcurrency || old.Record.WorkflowID != s.Record.WorkflowID ||
			old.Record.GlobalConcurrency != s.Record.GlobalConcurrency || len(old.Record.Conflicts) != len(s.Record.Conflicts) {
			same = false
		}
	}
	c.fns = fns
	if !same {
		close(c.changed)
		c.changed = make(chan struct{})
	}
	return !same
}

// discovery reads the published workflows through n8n's public API, finds their function nodes
// (workflows.Discover), registers them in the registry and updates the catalog the dispatcher
// serves. It runs every discoveryInterval and on demand (a call naming an unknown function).
//
// n8n's public API has no cheaper way to learn what changed: a listing returns whole workflows
// (draft and published nodes), has no field selection and no "updated since" filter, so every
// listing costs n8n main the same, however few workflows define functions. With shared set, one
// sidecar per interval lists (the holder of a Redis lease) and stores the workflows that define
// functions as a snapshot; the other sidecars read the snapshot (and only its hash while it is
// unchanged), so main's load does not grow with the number of sidecars. An on-demand round (a
// call to a function not known yet) always lists: the snapshot may predate the publish.
type discovery struct {
	log      *logrus.Entry
	api      *n8napi.Client
	reg      *registry.Registry
	owner    string   // this sidecar's id, written into the registrations
	catalog  *catalog // replaced as a whole by each round
	changed  func()   // called when a round changed the catalog (the heartbeat announces it at once)
	interval time.Duration
	shared   bool
	tag      string // list only the workflows with this n8n tag ("" = all published)

	kick   chan struct{}
	cancel context.CancelFunc // set by start

	mu           sync.Mutex
	running      chan struct{} // non-nil while a round runs; closed when it ends
	lastListed   time.Time     // when the last round that listed n8n's workflows started
	lastErr      error
	rounds       int
	snapSum      string // content hash of the snapshot the catalog was last built from or written as
	listings     int    // rounds that listed n8n's workflows (for tests and logs)
	fromSnapshot int    // rounds served from another sidecar's snapshot
}

type discoveryParams struct {
	log      *logrus.Entry
	api      *n8napi.Client
	reg      *registry.Registry
	owner    string
	catalog  *catalog
	changed  func()
	interval time.Duration
	shared   bool
	tag      string
}

func newDiscovery(p discoveryParams) *discovery {
	return &discovery{log: p.log, api: p.api, reg: p.reg, owner: p.owner, catalog: p.catalog, changed: p.changed,
		interval: p.interval, shared: p.shared, tag: p.tag, kick: make(chan struct{}, 1)}
}

// start runs a round at once and then every interval until shutdown; its goroutine is counted in wg.
func (d *discovery) start(ctx context.Context, wg *sync.WaitGroup) {
	ctx, d.cancel = context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d.interval) // registrations live 5 min: missed rounds unregister nothing
		defer t.Stop()
		first := true
		for {
			// The first round lists: a starting sidecar must not serve an old snapshot.
			if err := d.run(ctx, first); err != nil && ctx.Err() == nil {
				d.log.WithError(err).Warn("function discovery failed; keeping the functions found before")
			}
			first = false
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-d.kick:
			}
		}
	}()
}

// soon asks for a round at once (after a failover: the new master may lack recent registrations).
func (d *discovery) soon() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func (d *discovery) shutdown() {
	if d.cancel != nil {
		d.cancel()
	}
}

// refreshNow runs a discovery round that lists n8n's workflows and starts after it was called, or
// joins one that did (so a burst of calls to an unknown function causes one round, not one each).
// A round already running when it is called may have listed the workflows before a function was
// published, or read the snapshot: it is waited for, not trusted.
func (d *discovery) refreshNow(ctx context.Context) error { return d.run(ctx, true) }

// run runs a round or joins one; mustList refuses the snapshot of another sidecar.
func (d *discovery) run(ctx context.Context, mustList bool) error {
	asked := time.Now()
	for {
		d.mu.Lock()
		ch := d.running
		if ch == nil {
			ch = make(chan struct{})
			d.running = ch
			d.mu.Unlock()
			listedAt, err := d.round(ctx, mustList || !d.shared)
			d.mu.Lock()
			d.running, d.lastErr = nil, err
			if !listedAt.IsZero() {
				d.lastListed = listedAt
			}
			d.rounds++
			d.mu.Unlock()
			close(ch)
			return err
		}
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		d.mu.Lock()
		fresh := !d.lastListed.Before(asked)
		err := d.lastErr
		d.mu.Unlock()
		if fresh || !mustList {
			return err
		}
	}
}

// succeeded says whether the last discovery round listed n8n's published workflows.
func (d *discovery) succeeded() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rounds > 0 && d.lastErr == nil
}

// round lists n8n's published workflows (mustList, or this sidecar took the lease, or the
// snapshot is missing or stale) or builds the catalog from the snapshot. listedAt is when the
// listing started (zero when the snapshot served).
func (d *discovery) round(ctx context.Context, mustList bool) (listedAt time.Time, err error) {
	if !mustList {
		took, lerr := d.reg.TakeDiscoveryLease(ctx, d.owner, d.interval*9/10)
		if lerr == nil && !took {
			used, serr := d.useSnapshot(ctx)
			if serr == nil && used {
				return time.Time{}, nil
			}
			if serr != nil {
				d.log.WithError(serr).Debug("discovery snapshot unusable; listing n8n's workflows")
			}
		}
	}
	listedAt = time.Now()
	return listedAt, d.list(ctx, listedAt)
}

// useSnapshot builds the catalog from the lease holder's snapshot; false when there is none
// recent enough (the holder died or cannot reach n8n: then this sidecar lists itself).
func (d *discovery) useSnapshot(ctx context.Context) (bool, error) {
	d.mu.Lock()
	known := d.snapSum
	d.mu.Unlock()
	snap, ok, err := d.reg.LoadDiscoverySnapshot(ctx, known)
	if err != nil || !ok || time.Since(snap.At) > 3*d.interval {
		return false, err
	}
	d.mu.Lock()
	d.fromSnapshot++
	d.mu.Unlock()
	if snap.Data == nil {
		return true, nil // unchanged: the catalog was built from it already
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(snap.Data, &raws); err != nil {
		return false, fmt.Errorf("discovery: snapshot of %s is not a JSON array: %w", snap.By, err)
	}
	bs := make([][]byte, len(raws))
	for i, r := range raws {
		bs[i] = r
	}
	// The lease holder registered these functions; this sidecar only serves them.
	if _, err := d.apply(ctx, bs, false); err != nil {
		return false, err
	}
	d.mu.Lock()
	d.snapSum = snap.Sum
	d.mu.Unlock()
	return true, nil
}

// list reads every published workflow from n8n, registers the functions found, and (shared)
// stores the workflows that define them as the snapshot for the other sidecars.
func (d *discovery) list(ctx context.Context, at time.Time) error {
	wfs, err := d.api.ListWorkflowsWith(ctx, n8napi.ListOptions{ActiveOnly: true, ExcludePinnedData: true, Tag: d.tag})
	if err != nil {
		return fmt.Errorf("discovery: list published workflows: %w", err)
	}
	d.mu.Lock()
	d.listings++
	d.mu.Unlock()
	raws := make([][]byte, len(wfs))
	for i, w := range wfs {
		raws[i] = w.Raw
	}
	defining, err := d.apply(ctx, raws, true)
	if err != nil || !d.shared {
		return err
	}
	var snap []json.RawMessage
	for i, w := range wfs {
		if defining[w.ID] {
			snap = append(snap, raws[i])
		}
	}
	data, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("discovery: encode snapshot: %w", err)
	}
	sum, err := d.reg.PutDiscoverySnapshot(ctx, data, at, d.owner)
	if err != nil {
		// The catalog is up to date; the others list themselves once the snapshot is stale.
		d.log.WithError(err).Warn("discovery: could not store the snapshot for the other sidecars")
		return nil
	}
	d.mu.Lock()
	d.snapSum = sum
	d.mu.Unlock()
	return nil
}

// apply finds the functions in raws, registers them (register) and replaces the catalog. It
// returns the ids of the workflows that define functions.
func (d *discovery) apply(ctx context.Context, raws [][]byte, register bool) (map[string]bool, error) {
	defs, problems := workflows.Discover(raws)
	for _, p := range problems {
		d.log.WithField("problem", p.String()).Debug("discovery problem")
	}
	defining := map[string]bool{}
	next := make(map[registry.FunctionKey]*served, len(defs))
	for _, def := range defs {
		defining[def.WorkflowID] = true
		key := keyOf(def.Ref)
		params, err := json.Marshal(def.Function.Params)
		if err != nil {
			return nil, fmt.Errorf("discovery: encode params of %s: %w", key, err)
		}
		rec := registry.FunctionRecord{
			Key: key, WorkflowID: def.WorkflowID, WebhookPath: def.WebhookPath, WebhookMethod: def.WebhookMethod,
			Params: params, TimeoutMs: int64(def.Function.TimeoutMs), MaxConcurrency: def.Function.MaxConcurrency,
			GlobalConcurrency: def.Function.GlobalConcurrency,
			UpdatedAt:         time.Now().UTC(), Owner: d.owner,
		}
		if len(def.Conflicts) > 0 {
			rec.Conflicts = append([]string{fmt.Sprintf("%q (%s) node %q", def.WorkflowName, def.WorkflowID, def.Node)}, def.Conflicts...)
			if old := d.catalog.get(key); old == nil || len(old.Record.Conflicts) != len(rec.Conflicts) {
				d.log.WithFields(map[string]any{"function": key.String(), "definitions": rec.Conflicts}).
					Error("function name defined by several published workflows: calls to it fail until one is renamed, made workflow-scoped or unpublished")
			}
		}
		if register {
			if err := d.reg.RegisterFunction(ctx, rec); err != nil {
				return nil, fmt.Errorf("discovery: %w", err)
			}
		}
		next[key] = &served{Key: key, Def: def, Record: rec}
	}
	if d.catalog.replace(next) {
		d.log.WithField("functions", len(next)).Info("serving functions")
		// Make the new functions callable at once instead of at the next heartbeat.
		d.changed()
	}
	return defining, nil
}
