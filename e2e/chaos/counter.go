package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// bodyEvent is what the function body posts to the counter: which client request (key) it runs
// for, under which n8n-fn call id, in which n8n execution on which worker.
type bodyEvent struct {
	Key    string `json:"key"`
	CallID string `json:"callId"`
	Exec   string `json:"exec"`
	Worker string `json:"worker"`
}

// bodyRun is one run of the body for a key: when it started and, if it did, when it completed.
type bodyRun struct {
	bodyEvent
	Started time.Time
	Done    time.Time // zero while running, or when the run died
}

// counter is the loopback HTTP server the function body reports to (POST /start, POST /done), so
// every start and every completion of a body is counted exactly, whatever n8n and n8n-fn say.
type counter struct {
	srv *http.Server
	ln  net.Listener
	url string

	mu   sync.Mutex
	runs map[string][]*bodyRun // by key
	bad  int                   // reports that could not be decoded
}

// maxReportBytes bounds one report; a real one is ~150 bytes.
const maxReportBytes = 4096

// startCounter listens on a free loopback port. The n8n workers run on this machine (the stack of
// scripts/stack.sh), so the body reaches it on 127.0.0.1.
func startCounter() (*counter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("chaos counter: listen on loopback: %w", err)
	}
	c := &counter{ln: ln, url: "http://" + ln.Addr().String(), runs: map[string][]*bodyRun{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) { c.handle(w, r, true) })
	mux.HandleFunc("POST /done", func(w http.ResponseWriter, r *http.Request) { c.handle(w, r, false) })
	c.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = c.srv.Serve(ln) }() // ends with Close
	return c, nil
}

// Close stops the server; the counts stay readable.
func (c *counter) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("chaos counter: shutdown: %w", err)
	}
	return nil
}

func (c *counter) handle(w http.ResponseWriter, r *http.Request, start bool) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxReportBytes+1))
	ev, perr := parseReport(b)
	if err != nil || perr != nil {
		c.mu.Lock()
		c.bad++
		c.mu.Unlock()
		http.Error(w, fmt.Sprintf("bad report: %v", errors.Join(err, perr)), http.StatusBadRequest)
		return
	}
	c.record(ev, start, time.Now())
	w.Header().Set("content-type", "application/json")
	_, _ = w.Write([]byte(`{"ok":true}`))
}

// parseReport decodes one body report; it needs a key and an execution id.
func parseReport(b []byte) (bodyEvent, error) {
	var ev bodyEvent
	if len(b) > maxReportBytes {
		return ev, fmt.Errorf("report larger than %d bytes", maxReportBytes)
	}
	if err := json.Unmarshal(b, &ev); err != nil {
		return ev, fmt.Errorf("report is not a JSON object {key, callId, exec, worker}: %w", err)
	}
	if ev.Key == "" || ev.Exec == "" {
		return ev, fmt.Errorf("report lacks key or exec: %.100q", b)
	}
	return ev, nil
}

// record adds a start, or completes the run of the same execution (a completion without a start,
// e.g. reported after the start was lost, counts as a run of its own).
func (c *counter) record(ev bodyEvent, start bool, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if start {
		c.runs[ev.Key] = append(c.runs[ev.Key], &bodyRun{bodyEvent: ev, Started: at})
		return
	}
	for _, run := range c.runs[ev.Key] {
		if run.Exec == ev.Exec && run.Done.IsZero() {
			run.Done = at
			return
		}
	}
	c.runs[ev.Key] = append(c.runs[ev.Key], &bodyRun{bodyEvent: ev, Done: at})
}

// bodyCount is what the counter knows about one key.
type bodyCount struct {
	Started   int
	Completed int
	// LastDone is the latest completion (zero: none).
	LastDone time.Time
}

func (c *counter) count(key string) bodyCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	var bc bodyCount
	for _, run := range c.runs[key] {
		if !run.Started.IsZero() {
			bc.Started++
		}
		if !run.Done.IsZero() {
			bc.Completed++
			if run.Done.After(bc.LastDone) {
				bc.LastDone = run.Done
			}
		}
	}
	return bc
}

// completions returns the completed runs of key (copies).
func (c *counter) completions(key string) []bodyRun {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []bodyRun
	for _, run := range c.runs[key] {
		if !run.Done.IsZero() {
			out = append(out, *run)
		}
	}
	return out
}

// running returns, per worker, the bodies running now (started, not completed) that started
// within the last maxAge: a run whose worker died never completes and must not count for ever.
func (c *counter) running(now time.Time, maxAge time.Duration) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, runs := range c.runs {
		for _, run := range runs {
			if !run.Started.IsZero() && run.Done.IsZero() && now.Sub(run.Started) < maxAge {
				out[run.Worker]++
			}
		}
	}
	return out
}

// runningKeys returns the keys whose body runs on worker now (started within the last maxAge,
// not completed), sorted: the calls whose function execution dies when that worker is killed.
func (c *counter) runningKeys(worker string, now time.Time, maxAge time.Duration) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for key, runs := range c.runs {
		for _, run := range runs {
			if run.Worker == worker && !run.Started.IsZero() && run.Done.IsZero() && now.Sub(run.Started) < maxAge {
				out = append(out, key)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// busiest is the worker running the most bodies now ("" when none runs any); ties go to the
// first name in order, so a run is reproducible.
func busiest(running map[string]int) string {
	names := make([]string, 0, len(running))
	for n := range running {
		names = append(names, n)
	}
	sort.Strings(names)
	best, most := "", 0
	for _, n := range names {
		if running[n] > most {
			best, most = n, running[n]
		}
	}
	return best
}

func (c *counter) badReports() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bad
}
