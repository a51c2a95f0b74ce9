package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
)

// API is what the replay needs from n8n's public API (cmd/n8n-fn adapts the n8napi client).
type API interface {
	ListWorkflows(ctx context.Context) ([]Workflow, error)
	CreateWorkflow(ctx context.Context, workflowJSON []byte) (id string, err error)
	PublishWorkflow(ctx context.Context, id string) error
	UnpublishWorkflow(ctx context.Context, id string) error
	// DeleteWorkflow deletes an unpublished workflow (n8n refuses to delete a published one).
	DeleteWorkflow(ctx context.Context, id string) error
	// WaitWebhook waits until n8n serves a production webhook (publishing is asynchronous in n8n 2.x).
	WaitWebhook(ctx context.Context, method, path string) error
	// CallWebhook calls a production webhook path; every HTTP status is an answer, not an error.
	CallWebhook(ctx context.Context, method, path string, body []byte) (status int, answer []byte, err error)
	// ListExecutions returns the newest executions of a workflow, newest first.
	ListExecutions(ctx context.Context, workflowID string, limit int) ([]Execution, error)
	// ExecutionData returns one execution with its run data (n8n's JSON).
	ExecutionData(ctx context.Context, id string) ([]byte, error)
}

// Workflow is a workflow as listed by n8n.
type Workflow struct {
	ID   string
	Name string
}

// Execution is one listed execution.
type Execution struct {
	ID        string
	Status    string // n8n's status: success, error, running, ...
	StartedAt time.Time
}

// Imported is a suite's workflow as it now lives in n8n.
type Imported struct {
	Suite *Suite
	ID    string
}

// Options tune a run.
type Options struct {
	Filter   string    // run only cases whose "file/case name" contains this text (case-insensitive)
	Keep     bool      // leave the imported workflows in n8n
	Progress io.Writer // one line per step and per case; nil = quiet
	// WaitReady blocks until the sidecars serve the functions of the imported workflows (nil = no wait).
	WaitReady      func(ctx context.Context, imported []Imported) error
	RequestTimeout time.Duration // per webhook request; default 90 s
}

// Result is the outcome of one case.
type Result struct {
	Suite    string   `json:"suite"`
	Case     string   `json:"case"`
	Status   string   `json:"status"` // pass, fail, skip
	Detail   string   `json:"detail,omitempty"`
	Requests int      `json:"requests"`
	P50Ms    float64  `json:"p50Ms"`
	MaxMs    float64  `json:"maxMs"`
	Workers  []string `json:"workers,omitempty"`
}

// Report is the outcome of a run.
type Report struct {
	Results  []Result `json:"results"`
	Passed   int      `json:"passed"`
	Failed   int      `json:"failed"`
	Skipped  int      `json:"skipped"`
	ImportMs float64  `json:"importMs"`
	ReadyMs  float64  `json:"readyMs"`
	TotalMs  float64  `json:"totalMs"`
}

// ErrFailed is returned by Run when at least one case failed.
var ErrFailed = errors.New("replay: cases failed")

// Run imports and publishes every suite's workflow, waits for readiness, runs the cases (in file
// order, each case's requests as configured) and removes the workflows again unless opt.Keep.
// The report is complete even when cases fail; the error is ErrFailed then, or what stopped the run.
func Run(ctx context.Context, api API, suites []Suite, opt Options) (*Report, error) {
	if opt.RequestTimeout == 0 {
		opt.RequestTimeout = 90 * time.Second
	}
	progress := progressTo(opt.Progress)
	rep := &Report{}
	start := time.Now()
	imported, err := importAll(ctx, api, suites, progress)
	defer removeImported(ctx, api, imported, opt.Keep, progress)
	rep.ImportMs = ms(time.Since(start))
	if err != nil {
		return rep, err
	}
	if opt.WaitReady != nil {
		if rep.ReadyMs, err = waitReady(ctx, opt.WaitReady, imported, progress); err != nil {
			return rep, err
		}
	}
	if err := runCases(ctx, api, suites, workflowByHook(imported), opt, rep, progress); err != nil {
		return rep, err
	}
	rep.TotalMs = ms(time.Since(start))
	if rep.Failed > 0 {
		return rep, fmt.Errorf("%w: %d of %d", ErrFailed, rep.Failed, len(rep.Results))
	}
	return rep, nil
}

// progressTo writes one line per call to w; nothing when w is nil.
func progressTo(w io.Writer) func(format string, args ...any) {
	return func(format string, args ...any) {
		if w != nil {
			fmt.Fprintf(w, format+"\n", args...)
		}
	}
}

// removeImported deletes the imported workflows unless keep. It runs even when ctx was cancelled:
// the workflows would otherwise stay published.
func removeImported(ctx context.Context, api API, imported []Imported, keep bool, progress func(string, ...any)) {
	if keep {
		progress("keeping %d workflows in n8n (--keep)", len(imported))
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for _, im := range imported {
		if err := remove(cctx, api, im.ID); err != nil {
			progress("could not delete workflow %q (%s): %v", im.Suite.Name, im.ID, err)
		}
	}
	progress("removed the %d imported workflows", len(imported))
}

// waitReady waits until the sidecars serve the imported workflows' functions, and says how long
// that took (ms).
func waitReady(ctx context.Context, ready func(context.Context, []Imported) error, imported []Imported, progress func(string, ...any)) (float64, error) {
	t := time.Now()
	progress("waiting until the sidecars serve the functions ...")
	if err := ready(ctx, imported); err != nil {
		return 0, fmt.Errorf("replay: the functions did not become ready: %w", err)
	}
	readyMs := ms(time.Since(t))
	progress("functions ready after %.0f ms", readyMs)
	return readyMs, nil
}

// workflowByHook is the id of the imported workflow serving each webhook path (a failed case
// reads its error from that workflow's executions).
func workflowByHook(imported []Imported) map[string]string {
	byHook := map[string]string{}
	for _, im := range imported {
		for _, h := range im.Suite.Webhooks {
			byHook[h] = im.ID
		}
	}
	return byHook
}

// runCases runs the cases opt.Filter selects, in file order, into rep; an error only when ctx ends.
func runCases(ctx context.Context, api API, suites []Suite, byHook map[string]string, opt Options, rep *Report, progress func(string, ...any)) error {
	for si := range suites {
		s := &suites[si]
		for _, c := range s.Cases {
			label := strings.TrimSuffix(s.File, ".json") + "/" + c.Name
			if opt.Filter != "" && !containsFold(label, opt.Filter) {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r := Result{Suite: s.File, Case: c.Name, Status: "skip", Detail: c.Skip}
			if c.Skip == "" {
				r = runCase(ctx, api, s, c, byHook[c.Webhook], opt.RequestTimeout)
			}
			rep.add(r)
			progress("%s", resultLine(label, r))
		}
	}
	return nil
}

// add counts r by its status and appends it.
func (rep *Report) add(r Result) {
	switch r.Status {
	case "pass":
		rep.Passed++
	case "fail":
		rep.Failed++
	default:
		rep.Skipped++
	}
	rep.Results = append(rep.Results, r)
}

// resultLine is the progress line of one case: status, timings, the workers seen and, indented on
// a line of its own, why it failed or was skipped.
func resultLine(label string, r Result) string {
	line := fmt.Sprintf("%-4s %s (%d req, p50 %.0f ms, max %.0f ms)", strings.ToUpper(r.Status), label, r.Requests, r.P50Ms, r.MaxMs)
	if len(r.Workers) > 0 {
		line += " workers=" + strings.Join(r.Workers, ",")
	}
	if r.Detail != "" {
		line += "\n     " + r.Detail
	}
	return line
}

// importAll replaces every workflow of the same name, creates and publishes each suite's workflow.
// It returns what it created so far even on error, so the caller can remove it.
func importAll(ctx context.Context, api API, suites []Suite, progress func(string, ...any)) ([]Imported, error) {
	existing, err := api.ListWorkflows(ctx)
	if err != nil {
		return nil, fmt.Errorf("replay: list workflows: %w", err)
	}
	names := map[string]bool{}
	for _, s := range suites {
		names[s.Name] = true
	}
	for _, wf := range existing {
		if names[wf.Name] {
			if err := remove(ctx, api, wf.ID); err != nil {
				return nil, fmt.Errorf("replay: replace workflow %q: delete the old one (%s): %w", wf.Name, wf.ID, err)
			}
			progress("replaced: deleted the old workflow %q (%s)", wf.Name, wf.ID)
		}
	}
	var out []Imported
	for i := range suites {
		s := &suites[i]
		id, err := api.CreateWorkflow(ctx, s.Workflow)
		if err != nil {
			return out, fmt.Errorf("replay: import %s: %w", s.File, err)
		}
		out = append(out, Imported{Suite: s, ID: id})
		if err := api.PublishWorkflow(ctx, id); err != nil {
			return out, fmt.Errorf("replay: publish %s (workflow %s): %w", s.File, id, err)
		}
		progress("imported and published %-34s as %s", s.File, id)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, im := range out {
		for _, h := range im.Suite.Webhooks {
			if err := api.WaitWebhook(wctx, webhookMethod(im.Suite.Workflow, h), h); err != nil {
				return out, fmt.Errorf("replay: %s: %w", im.Suite.File, err)
			}
		}
	}
	return out, nil
}

// remove unpublishes (n8n refuses to delete a published workflow) and deletes a workflow.
func remove(ctx context.Context, api API, id string) error {
	uerr := api.UnpublishWorkflow(ctx, id)
	var err error
	// n8n answers 409 "still being unpublished" for a moment after an unpublish.
	for attempt := 0; attempt < 40; attempt++ {
		if err = api.DeleteWorkflow(ctx, id); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
	if uerr != nil {
		return fmt.Errorf("%w (unpublish first failed too: %v)", err, uerr)
	}
	return err
}

type answer struct {
	status int
	body   []byte
	dur    time.Duration
	err    error
	at     time.Time
}

func runCase(ctx context.Context, api API, s *Suite, c Case, workflowID string, timeout time.Duration) Result {
	r := Result{Suite: s.File, Case: c.Name, Status: "pass"}
	var durs []time.Duration
	seen := map[string]bool{}
	var problems []string
	for round := 0; round < c.Repeat; round++ {
		answers := make([]answer, c.Concurrency)
		var wg sync.WaitGroup
		for i := range answers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				a := answer{at: time.Now()}
				a.status, a.body, a.err = api.CallWebhook(rctx, c.Method, c.Webhook, c.Body)
				a.dur = time.Since(a.at)
				answers[i] = a
			}()
		}
		wg.Wait()
		for i, a := range answers {
			r.Requests++
			durs = append(durs, a.dur)
			if p := check(ctx, api, c, workflowID, a); p != "" {
				problems = append(problems, fmt.Sprintf("round %d request %d: %s", round+1, i+1, p))
			}
			if a.err == nil && a.status < 300 {
				workers(a.body, c.WorkerField, seen)
				if c.ExpectParallel > 0 {
					if n := maxOverlap(a.body); n < c.ExpectParallel {
						problems = append(problems, fmt.Sprintf("round %d request %d: at most %d calls ran at the same time, want %d (fields startedAt/endedAt)", round+1, i+1, n, c.ExpectParallel))
					}
				}
			}
		}
	}
	sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
	if len(durs) > 0 {
		r.P50Ms = ms(durs[len(durs)/2])
		r.MaxMs = ms(durs[len(durs)-1])
	}
	for w := range seen {
		r.Workers = append(r.Workers, w)
	}
	sort.Strings(r.Workers)
	if c.ExpectWorkers > 0 && len(r.Workers) < c.ExpectWorkers {
		problems = append(problems, fmt.Sprintf("want answers from at least %d workers (field %q), got %d: %v", c.ExpectWorkers, c.WorkerField, len(r.Workers), r.Workers))
	}
	if len(problems) > 0 {
		r.Status = "fail"
		if len(problems) > 3 {
			problems = append(problems[:3], fmt.Sprintf("(%d more)", len(problems)-3))
		}
		r.Detail = strings.Join(problems, "; ")
	}
	return r
}

// check returns "" when one answer is what the case wants.
func check(ctx context.Context, api API, c Case, workflowID string, a answer) string {
	if a.err != nil {
		return "request failed: " + a.err.Error()
	}
	var p string
	if c.MaxMs > 0 && a.dur > time.Duration(c.MaxMs)*time.Millisecond {
		p = fmt.Sprintf("took %.0f ms, want at most %d ms; ", ms(a.dur), c.MaxMs)
	}
	if c.ExpectError == "" {
		if a.status >= 300 {
			msg := failureMessage(ctx, api, workflowID, a)
			return p + fmt.Sprintf("HTTP %d: %s", a.status, msg)
		}
		if d := Match(c.Expect, a.body); d != "" {
			return p + "output differs: " + d
		}
		return strings.TrimSuffix(p, "; ")
	}
	var msgs []string
	if a.status >= 300 {
		msgs = append(msgs, failureMessage(ctx, api, workflowID, a))
	} else {
		msgs = itemErrors(a.body)
	}
	for _, m := range msgs {
		if containsFold(m, c.ExpectError) {
			return strings.TrimSuffix(p, "; ")
		}
	}
	if len(msgs) == 0 {
		return p + fmt.Sprintf("want an error containing %q, got HTTP %d %s", c.ExpectError, a.status, clip(string(a.body)))
	}
	return p + fmt.Sprintf("want an error containing %q, got %q", c.ExpectError, strings.Join(msgs, " | "))
}

// failureMessage explains an n8n error answer. n8n answers a failed "last node" webhook with only
// {"message":"Error in workflow"}, so the error is read from the newest failed execution of the
// workflow that started after the request.
func failureMessage(ctx context.Context, api API, workflowID string, a answer) string {
	base := fmt.Sprintf("n8n answered %s", clip(string(a.body)))
	if workflowID == "" {
		return base
	}
	// The execution row can lag the answer a little.
	for attempt := 0; attempt < 10; attempt++ {
		exs, err := api.ListExecutions(ctx, workflowID, 20)
		if err != nil {
			return base + " (and its execution could not be listed: " + err.Error() + ")"
		}
		for _, e := range exs {
			if e.Status != "error" && e.Status != "crashed" {
				continue
			}
			if !e.StartedAt.IsZero() && e.StartedAt.Before(a.at.Add(-2*time.Second)) {
				continue
			}
			data, err := api.ExecutionData(ctx, e.ID)
			if err != nil {
				return base + " (execution " + e.ID + " could not be read: " + err.Error() + ")"
			}
			return ExecutionErrorMessage(data) + " (execution " + e.ID + ")"
		}
		select {
		case <-ctx.Done():
			return base
		case <-time.After(200 * time.Millisecond):
		}
	}
	return base + " (no failed execution found)"
}

// ExecutionErrorMessage extracts the error message (and description) of a failed execution from
// n8n's execution JSON with run data.
func ExecutionErrorMessage(execution []byte) string {
	doc := gjson.ParseBytes(execution)
	e := doc.Get("data.resultData.error")
	if !e.Exists() {
		// Older shapes and per-node errors: the first error found in the run data.
		doc.Get("data.resultData.runData").ForEach(func(_, runs gjson.Result) bool {
			runs.ForEach(func(_, run gjson.Result) bool {
				if run.Get("error").Exists() {
					e = run.Get("error")
					return false
				}
				return true
			})
			return !e.Exists()
		})
	}
	if !e.Exists() {
		return "the execution failed without an error message"
	}
	msg := e.Get("message").String()
	if d := e.Get("description").String(); d != "" {
		msg += " (" + d + ")"
	}
	if n := e.Get("node.name").String(); n != "" {
		msg = "node " + n + ": " + msg
	}
	return msg
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// MarshalReport is the --json form of a report.
func MarshalReport(r *Report) ([]byte, error) { return json.MarshalIndent(r, "", "  ") }

// WriteTable prints the results as a fixed-width table with the totals.
func WriteTable(w io.Writer, r *Report) {
	width := 10
	for _, x := range r.Results {
		width = max(width, len(strings.TrimSuffix(x.Suite, ".json"))+1+len(x.Case))
	}
	width = min(width, 90)
	fmt.Fprintf(w, "\n%-*s  %-4s  %5s  %8s  %8s  %s\n", width, "CASE", "", "REQS", "P50 ms", "MAX ms", "WORKERS")
	for _, x := range r.Results {
		label := strings.TrimSuffix(x.Suite, ".json") + "/" + x.Case
		if len(label) > width {
			label = label[:width-3] + "..."
		}
		fmt.Fprintf(w, "%-*s  %-4s  %5d  %8.0f  %8.0f  %s\n", width, label, strings.ToUpper(x.Status), x.Requests, x.P50Ms, x.MaxMs, strings.Join(x.Workers, ","))
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d skipped; import %.1f s, ready %.1f s, total %.1f s\n",
		r.Passed, r.Failed, r.Skipped, r.ImportMs/1000, r.ReadyMs/1000, r.TotalMs/1000)
}

// webhookMethod is the HTTP method of the Webhook node serving path (n8n's default is GET).
func webhookMethod(wf []byte, path string) string {
	method := "GET"
	gjson.GetBytes(wf, "nodes").ForEach(func(_, n gjson.Result) bool {
		if n.Get("type").String() == "n8n-nodes-base.webhook" && strings.Trim(n.Get("parameters.path").String(), "/") == path {
			if m := n.Get("parameters.httpMethod").String(); m != "" {
				method = m
			}
			return false
		}
		return true
	})
	return method
}
