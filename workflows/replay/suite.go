// Package replay runs the bundled test workflows against a live n8n: it imports each workflow
// through n8n's public API (replacing one of the same name), publishes it, waits until the n8n-fn
// sidecars discovered its functions, calls the webhooks named by the workflow's cases file and
// compares the answers with the expected outputs or errors.
//
// A suite is one workflow file X.json plus its cases file X.cases.json in the same directory.
// Package replay does not talk HTTP itself: the caller passes an API (cmd/n8n-fn adapts the n8napi
// client) and a readiness check (cmd/n8n-fn asks the registry), so workflows stays a leaf.
package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tidwall/gjson"
)

// ErrSuite is wrapped by every error about a malformed workflow or cases file.
var ErrSuite = errors.New("invalid replay suite")

// CasesSuffix names the cases file of workflow X.json: X.cases.json.
const CasesSuffix = ".cases.json"

// Suite is one test workflow and its cases.
type Suite struct {
	File        string          // workflow file name, e.g. basic-function-test.json
	Name        string          // the workflow's name (the import replaces a workflow of this name)
	Workflow    json.RawMessage // the workflow JSON as in the file
	Webhooks    []string        // webhook paths the workflow serves (production URL paths)
	Description string
	Origin      string // migration corpus: the origin version of the workflow ("" otherwise)
	Cases       []Case
}

// Case is one request (or several, see Concurrency/Repeat) and what it must give.
type Case struct {
	Name    string          `json:"name"`
	Webhook string          `json:"webhook"`          // path under N8N_WEBHOOK_URL, e.g. n8n-fn-test/call-add
	Method  string          `json:"method,omitempty"` // default POST
	Body    json.RawMessage `json:"body,omitempty"`
	// Expect is matched against the webhook's JSON answer: objects need every expected key (more
	// keys are fine), arrays need the same length and each element to match, scalars must be equal.
	Expect json.RawMessage `json:"expect,omitempty"`
	// ExpectError passes the case when the request failed with an error containing this text (case-
	// insensitive): an n8n error answer (the message is read from the failed execution), or an item
	// with an "error" field (a node with "On Error: Continue").
	ExpectError string `json:"expectError,omitempty"`
	MaxMs       int    `json:"maxMs,omitempty"`       // every request must answer within this time
	Concurrency int    `json:"concurrency,omitempty"` // parallel requests per round (default 1)
	Repeat      int    `json:"repeat,omitempty"`      // rounds (default 1)
	// ExpectWorkers is the least number of distinct values of WorkerField seen over all answers'
	// items: 2 proves that calls ran on two workers.
	ExpectWorkers int    `json:"expectWorkers,omitempty"`
	WorkerField   string `json:"workerField,omitempty"` // default "worker"
	// ExpectParallel is the least number of an answer's items whose [startedAt, endedAt] intervals
	// (unix ms, set by the function) overlap at one instant: 2 proves the calls ran in parallel,
	// without timing the request.
	ExpectParallel int    `json:"expectParallel,omitempty"`
	Skip           string `json:"skip,omitempty"` // non-empty: not run, the text says why
	// Note documents the case (the migration corpus: how the origin's items were derived).
	Note string `json:"note,omitempty"`
	// KnownDifference (migration corpus): why the converted workflow cannot give exactly the
	// origin's items; Expect then lists only what it does give the same (Match ignores extra keys).
	KnownDifference string `json:"knownDifference,omitempty"`
}

type casesFile struct {
	Description string `json:"description"`
	// Origin (migration corpus): the n8n-nodes-function version the workflow was written for.
	Origin string `json:"origin,omitempty"`
	Cases  []Case `json:"cases"`
}

// Load reads every X.json with an X.cases.json next to it in dir, sorted by file name. A workflow
// without a cases file is an error (it would be imported but never checked).
func Load(dir string) ([]Suite, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load replay suites: %w", err)
	}
	var suites []Suite
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") || strings.HasSuffix(name, CasesSuffix) {
			continue
		}
		s, err := loadSuite(dir, name)
		if err != nil {
			return nil, err
		}
		suites = append(suites, s)
	}
	if len(suites) == 0 {
		return nil, fmt.Errorf("%w: no workflow files (*.json with a *%s next to them) in %s", ErrSuite, CasesSuffix, dir)
	}
	sort.Slice(suites, func(i, j int) bool { return suites[i].File < suites[j].File })
	seenName := map[string]string{}
	seenHook := map[string]string{}
	for _, s := range suites {
		if other, ok := seenName[s.Name]; ok {
			return nil, fmt.Errorf("%w: %s and %s both name their workflow %q (the import replaces by name)", ErrSuite, other, s.File, s.Name)
		}
		seenName[s.Name] = s.File
		for _, h := range s.Webhooks {
			if other, ok := seenHook[h]; ok {
				return nil, fmt.Errorf("%w: %s and %s both serve the webhook path %q", ErrSuite, other, s.File, h)
			}
			seenHook[h] = s.File
		}
	}
	for _, s := range suites {
		for _, c := range s.Cases {
			if _, ok := seenHook[c.Webhook]; !ok {
				return nil, fmt.Errorf("%w: %s, case %q: no workflow in %s serves the webhook path %q", ErrSuite, s.File, c.Name, dir, c.Webhook)
			}
		}
	}
	return suites, nil
}

// loadSuite reads the workflow file in dir and the cases file next to it.
func loadSuite(dir, file string) (Suite, error) {
	wfPath := filepath.Join(dir, file)
	s, err := readSuiteWorkflow(wfPath)
	if err != nil {
		return Suite{}, err
	}
	s.File = file
	casesPath := filepath.Join(dir, strings.TrimSuffix(file, ".json")+CasesSuffix)
	cf, err := readCasesFile(wfPath, casesPath)
	if err != nil {
		return Suite{}, err
	}
	s.Description, s.Origin = cf.Description, cf.Origin
	for i, c := range cf.Cases {
		if err := checkCase(c); err != nil {
			return Suite{}, fmt.Errorf("%w: %s, case %d (%q): %s", ErrSuite, casesPath, i, c.Name, err)
		}
		s.Cases = append(s.Cases, withCaseDefaults(c))
	}
	if len(s.Cases) == 0 {
		return Suite{}, fmt.Errorf("%w: %s has no cases", ErrSuite, casesPath)
	}
	return s, nil
}

// readSuiteWorkflow reads the workflow of a suite: its name (what the import replaces) and the
// webhook paths it serves (what its cases may call).
func readSuiteWorkflow(wfPath string) (Suite, error) {
	wf, err := os.ReadFile(wfPath)
	if err != nil {
		return Suite{}, fmt.Errorf("load replay suite: %w", err)
	}
	if !gjson.ValidBytes(wf) {
		return Suite{}, fmt.Errorf("%w: %s is not valid JSON", ErrSuite, wfPath)
	}
	doc := gjson.ParseBytes(wf)
	name := doc.Get("name").String()
	if name == "" || !doc.Get("nodes").IsArray() || !doc.Get("connections").IsObject() {
		return Suite{}, fmt.Errorf("%w: %s is not an n8n workflow (needs name, nodes, connections)", ErrSuite, wfPath)
	}
	return Suite{Name: name, Workflow: wf, Webhooks: webhookPaths(doc)}, nil
}

// webhookPaths are the paths of the workflow's enabled webhook nodes, without their slashes (as
// a case names them).
func webhookPaths(doc gjson.Result) []string {
	var paths []string
	doc.Get("nodes").ForEach(func(_, n gjson.Result) bool {
		if n.Get("type").String() == "n8n-nodes-base.webhook" && !n.Get("disabled").Bool() {
			if p := strings.Trim(n.Get("parameters.path").String(), "/"); p != "" {
				paths = append(paths, p)
			}
		}
		return true
	})
	return paths
}

// readCasesFile reads a cases file strictly: a misspelt field would silently check nothing.
func readCasesFile(wfPath, casesPath string) (casesFile, error) {
	cb, err := os.ReadFile(casesPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return casesFile{}, fmt.Errorf("%w: %s has no cases file %s (write one, or move the workflow out of the directory)", ErrSuite, wfPath, casesPath)
		}
		return casesFile{}, fmt.Errorf("load replay suite: %w", err)
	}
	var cf casesFile
	dec := json.NewDecoder(strings.NewReader(string(cb)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cf); err != nil {
		return casesFile{}, fmt.Errorf("%w: %s: %v", ErrSuite, casesPath, err)
	}
	return cf, nil
}

// checkCase refuses a case that could not be run or could not fail; the error is the bare reason.
func checkCase(c Case) error {
	switch {
	case c.Name == "":
		return errors.New("missing name")
	case c.Webhook == "":
		return errors.New("missing webhook (the path to call)")
	case len(c.Expect) == 0 && c.ExpectError == "":
		return errors.New("give expect or expectError")
	case len(c.Expect) > 0 && c.ExpectError != "":
		return errors.New("give expect or expectError, not both")
	case c.Concurrency < 0 || c.Repeat < 0 || c.MaxMs < 0 || c.ExpectWorkers < 0 || c.ExpectParallel < 0:
		return errors.New("concurrency, repeat, maxMs, expectWorkers and expectParallel must not be negative")
	}
	return nil
}

// withCaseDefaults is c with its webhook path as a workflow names it and the documented defaults
// for what it leaves out.
func withCaseDefaults(c Case) Case {
	c.Webhook = strings.Trim(c.Webhook, "/")
	if c.Method == "" {
		c.Method = "POST"
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.Repeat == 0 {
		c.Repeat = 1
	}
	if c.WorkerField == "" {
		c.WorkerField = "worker"
	}
	return c
}
