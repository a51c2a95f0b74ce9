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
type discovery struct {
	log      *logrus.Entry
	api      *n8napi.Client
	reg      *registry.Registry
	owner    string   // this sidecar's id, written into the registrations
	catalog  *catalog // replaced as a whole by each round
	changed  func()   // called when a round changed the catalog (the heartbeat announces it at once)
	interval time.Duration

	kick   chan struct{}
	cancel context.CancelFunc // set by start

	mu           sync.Mutex
	running      chan struct{} // non-nil while a round runs; closed when it ends
	runningSince time.Time     // when the running round started
	lastErr      error
	rounds       int
}

type discoveryParams struct {
	log      *logrus.Entry
	api      *n8napi.Client
	reg      *registry.Registry
	owner    string
	catalog  *catalog
	changed  func()
	interval time.Duration
}

func newDiscovery(p discoveryParams) *discovery {
	return &discovery{log: p.log, api: p.api, reg: p.reg, owner: p.owner, catalog: p.catalog, changed: p.changed,
		interval: p.interval, kick: make(chan struct{}, 1)}
}

// start runs a round at once and then every interval until shutdown; its goroutine is counted in wg.
func (d *discovery) start(ctx context.Context, wg *sync.WaitGroup) {
	ctx, d.cancel = context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d.interval) // registrations live 5 min: missed rounds unregister nothing
		defer t.Stop()
		for {
			if err := d.refreshNow(ctx); err != nil && ctx.Err() == nil {
				d.log.WithError(err).Warn("function discovery failed; keeping the functions found before")
			}
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

// refreshNow runs a discovery round that starts after it was called, or joins one that did (so a
// burst of calls to an unknown function causes one round, not one each). A round already running
// when it is called may have listed the workflows before a function was published: it is waited
// for, not trusted.
func (d *discovery) refreshNow(ctx context.Context) error {
	asked := time.Now()
	for {
		d.mu.Lock()
		ch, since := d.running, d.runningSince
		if ch == nil {
			ch = make(chan struct{})
			d.running, d.runningSince = ch, time.Now()
			d.mu.Unlock()
			err := d.round(ctx)
			d.mu.Lock()
			d.running, d.lastErr = nil, err
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
		if !since.Before(asked) {
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.lastErr
		}
	}
}

// succeeded says whether the last discovery round listed n8n's published workflows.
func (d *discovery) succeeded() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rounds > 0 && d.lastErr == nil
}

func (d *discovery) round(ctx context.Context) error {
	wfs, err := d.api.ListWorkflows(ctx, true)
	if err != nil {
		return fmt.Errorf("discovery: list published workflows: %w", err)
	}
	raws := make([][]byte, len(wfs))
	for i, w := range wfs {
		raws[i] = w.Raw
	}
	defs, problems := workflows.Discover(raws)
	for _, p := range problems {
		d.log.WithField("problem", p.String()).Debug("discovery problem")
	}
	next := make(map[registry.FunctionKey]*served, len(defs))
	for _, def := range defs {
		key := keyOf(def.Ref)
		params, err := json.Marshal(def.Function.Params)
		if err != nil {
			return fmt.Errorf("discovery: encode params of %s: %w", key, err)
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
		if err := d.reg.RegisterFunction(ctx, rec); err != nil {
			return fmt.Errorf("discovery: %w", err)
		}
		next[key] = &served{Key: key, Def: def, Record: rec}
	}
	if d.catalog.replace(next) {
		d.log.WithField("functions", len(next)).Info("serving functions")
		// Make the new functions callable at once instead of at the next heartbeat.
		d.changed()
	}
	return nil
}
