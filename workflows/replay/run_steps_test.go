package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// memAPI is n8n's public API as far as Run uses it, in memory: each webhook answers a fixed body,
// and every call is written to a log so a test sees the order of the steps.
type memAPI struct {
	mu        sync.Mutex
	log       []string
	existing  []Workflow
	answers   map[string]string // webhook path -> 200 body
	failCalls map[string]error  // method name -> error it returns
	next      int
}

func (a *memAPI) note(format string, args ...any) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	call := fmt.Sprintf(format, args...)
	a.log = append(a.log, call)
	return a.failCalls[strings.SplitN(call, " ", 2)[0]]
}

func (a *memAPI) ListWorkflows(context.Context) ([]Workflow, error) {
	return a.existing, a.note("list")
}
func (a *memAPI) CreateWorkflow(_ context.Context, wf []byte) (string, error) {
	a.mu.Lock()
	a.next++
	id := fmt.Sprintf("w%d", a.next)
	a.mu.Unlock()
	return id, a.note("create %s", id)
}
func (a *memAPI) PublishWorkflow(_ context.Context, id string) error { return a.note("publish %s", id) }
func (a *memAPI) UnpublishWorkflow(_ context.Context, id string) error {
	return a.note("unpublish %s", id)
}
func (a *memAPI) DeleteWorkflow(_ context.Context, id string) error { return a.note("delete %s", id) }
func (a *memAPI) WaitWebhook(_ context.Context, method, path string) error {
	return a.note("wait %s %s", method, path)
}
func (a *memAPI) CallWebhook(_ context.Context, method, path string, _ []byte) (int, []byte, error) {
	err := a.note("call %s %s", method, path)
	return 200, []byte(a.answers[path]), err
}
func (a *memAPI) ListExecutions(context.Context, string, int) ([]Execution, error) {
	return nil, a.note("executions")
}
func (a *memAPI) ExecutionData(_ context.Context, id string) ([]byte, error) {
	return nil, a.note("execution %s", id)
}

func memSuites() []Suite {
	return []Suite{
		{File: "a.json", Name: "A", Workflow: json.RawMessage(`{"nodes":[]}`), Webhooks: []string{"a"}, Cases: []Case{
			{Name: "passes", Webhook: "a", Method: "POST", Expect: json.RawMessage(`{"ok":true}`), Concurrency: 2, Repeat: 1, WorkerField: "worker"},
			{Name: "fails", Webhook: "a", Method: "POST", Expect: json.RawMessage(`{"ok":false}`), Concurrency: 1, Repeat: 1, WorkerField: "worker"},
			{Name: "skipped", Webhook: "a", Skip: "not today", Concurrency: 1, Repeat: 1},
		}},
		{File: "b.json", Name: "B", Workflow: json.RawMessage(`{"nodes":[]}`), Webhooks: []string{"b"}, Cases: []Case{
			{Name: "workers", Webhook: "b", Method: "GET", Expect: json.RawMessage(`[{}]`), Concurrency: 1, Repeat: 2, WorkerField: "worker"},
		}},
	}
}

// TestRunSteps pins Run over an in-memory API: the order of its calls, its progress lines, its
// report and its error, for a plain run, a filtered one, --keep, readiness that fails, an import
// that fails and a cancelled context.
func TestRunSteps(t *testing.T) {
	answers := map[string]string{"a": `{"ok":true}`, "b": `[{"worker":"w1"}]`}
	for _, tc := range []struct {
		name      string
		opt       Options
		existing  []Workflow
		fail      map[string]error
		cancel    bool
		wantErr   string
		wantCalls string
		wantLines string
		wantRep   Report
	}{{
		name:      "all",
		existing:  []Workflow{{ID: "old", Name: "B"}, {ID: "other", Name: "C"}},
		wantErr:   "replay: cases failed: 1 of 4",
		wantCalls: "list|unpublish old|delete old|create w1|publish w1|create w2|publish w2|wait GET a|wait GET b|call POST a|call POST a|call POST a|call GET b|call GET b|unpublish w1|delete w1|unpublish w2|delete w2",
		wantLines: `replaced: deleted the old workflow "B" (old)
imported and published a.json                             as w1
imported and published b.json                             as w2
waiting until the sidecars serve the functions ...
functions ready after 0 ms
PASS a/passes (2 req, p50 0 ms, max 0 ms)
FAIL a/fails (1 req, p50 0 ms, max 0 ms)
     round 1 request 1: output differs: $.ok: want false, got true
SKIP a/skipped (0 req, p50 0 ms, max 0 ms)
     not today
PASS b/workers (2 req, p50 0 ms, max 0 ms) workers=w1
removed the 2 imported workflows`,
		wantRep: Report{Passed: 2, Failed: 1, Skipped: 1, Results: []Result{
			{Suite: "a.json", Case: "passes", Status: "pass", Requests: 2},
			{Suite: "a.json", Case: "fails", Status: "fail", Requests: 1, Detail: "round 1 request 1: output differs: $.ok: want false, got true"},
			{Suite: "a.json", Case: "skipped", Status: "skip", Detail: "not today"},
			{Suite: "b.json", Case: "workers", Status: "pass", Requests: 2, Workers: []string{"w1"}},
		}},
	}, {
		name:      "filter and keep",
		opt:       Options{Filter: "B/WORK", Keep: true},
		wantCalls: "list|create w1|publish w1|create w2|publish w2|wait GET a|wait GET b|call GET b|call GET b",
		wantLines: `imported and published a.json                             as w1
imported and published b.json                             as w2
waiting until the sidecars serve the functions ...
functions ready after 0 ms
PASS b/workers (2 req, p50 0 ms, max 0 ms) workers=w1
keeping 2 workflows in n8n (--keep)`,
		wantRep: Report{Passed: 1, Results: []Result{{Suite: "b.json", Case: "workers", Status: "pass", Requests: 2, Workers: []string{"w1"}}}},
	}, {
		name:      "not ready",
		fail:      map[string]error{"ready": errors.New("timeout")},
		wantErr:   "replay: the functions did not become ready: timeout",
		wantCalls: "list|create w1|publish w1|create w2|publish w2|wait GET a|wait GET b|unpublish w1|delete w1|unpublish w2|delete w2",
		wantLines: `imported and published a.json                             as w1
imported and published b.json                             as w2
waiting until the sidecars serve the functions ...
removed the 2 imported workflows`,
	}, {
		name:      "publish fails",
		fail:      map[string]error{"publish": errors.New("409")},
		wantErr:   "replay: publish a.json (workflow w1): 409",
		wantCalls: "list|create w1|publish w1|unpublish w1|delete w1",
		wantLines: `removed the 1 imported workflows`,
	}, {
		name:      "cancelled",
		cancel:    true,
		wantErr:   "context canceled",
		wantCalls: "list|create w1|publish w1|create w2|publish w2|wait GET a|wait GET b|unpublish w1|delete w1|unpublish w2|delete w2",
		wantLines: `imported and published a.json                             as w1
imported and published b.json                             as w2
waiting until the sidecars serve the functions ...
functions ready after 0 ms
removed the 2 imported workflows`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			api := &memAPI{existing: tc.existing, answers: answers, failCalls: tc.fail}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out strings.Builder
			opt := tc.opt
			opt.Progress = &out
			opt.WaitReady = func(context.Context, []Imported) error {
				if tc.cancel {
					cancel()
				}
				return api.failCalls["ready"]
			}
			rep, err := Run(ctx, api, memSuites(), opt)
			if got := fmt.Sprint(err); (err == nil && tc.wantErr != "") || (err != nil && got != tc.wantErr) {
				t.Errorf("error = %v, want %q", err, tc.wantErr)
			}
			if got := strings.Join(api.log, "|"); got != tc.wantCalls {
				t.Errorf("calls:\n got %s\nwant %s", got, tc.wantCalls)
			}
			if got := strings.TrimSuffix(out.String(), "\n"); got != tc.wantLines {
				t.Errorf("progress:\n got %s\nwant %s", got, tc.wantLines)
			}
			rep.ImportMs, rep.ReadyMs, rep.TotalMs = 0, 0, 0
			for i := range rep.Results {
				rep.Results[i].P50Ms, rep.Results[i].MaxMs = 0, 0
			}
			if !reflect.DeepEqual(*rep, tc.wantRep) {
				t.Errorf("report:\n got %+v\nwant %+v", *rep, tc.wantRep)
			}
		})
	}
	// Quiet without a progress writer.
	if _, err := Run(context.Background(), &memAPI{answers: answers}, memSuites()[1:], Options{RequestTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
}
