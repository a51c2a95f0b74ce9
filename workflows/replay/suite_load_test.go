package replay

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestLoadSuiteMessages pins every refusal of loadSuite word for word, and what it makes of a good
// suite (webhook paths, case defaults).
func TestLoadSuiteMessages(t *testing.T) {
	const wf = `{"name":"x","nodes":[{"name":"W","type":"n8n-nodes-base.webhook","parameters":{"path":"/p/"}},` +
		`{"name":"Off","type":"n8n-nodes-base.webhook","disabled":true,"parameters":{"path":"off"}},` +
		`{"name":"E","type":"n8n-nodes-base.webhook","parameters":{"path":"/"}},` +
		`{"name":"C","type":"n8n-nodes-base.code","parameters":{"path":"code"}}],"connections":{}}`
	for _, tc := range []struct {
		name, wf, cases string // cases "-": no cases file
		want            string // the error with the directory replaced by DIR
	}{
		{"no workflow", "-", "-", "load replay suite: open DIR/a.json: no such file or directory"},
		{"not json", `{`, "-", "invalid replay suite: DIR/a.json is not valid JSON"},
		{"no name", `{"nodes":[],"connections":{}}`, "-", "invalid replay suite: DIR/a.json is not an n8n workflow (needs name, nodes, connections)"},
		{"nodes not array", `{"name":"x","nodes":{},"connections":{}}`, "-", "invalid replay suite: DIR/a.json is not an n8n workflow (needs name, nodes, connections)"},
		{"no connections", `{"name":"x","nodes":[]}`, "-", "invalid replay suite: DIR/a.json is not an n8n workflow (needs name, nodes, connections)"},
		{"no cases file", wf, "-", "invalid replay suite: DIR/a.json has no cases file DIR/a.cases.json (write one, or move the workflow out of the directory)"},
		{"cases not json", wf, `{`, "invalid replay suite: DIR/a.cases.json: unexpected EOF"},
		{"unknown field", wf, `{"cases":[],"typo":1}`, `invalid replay suite: DIR/a.cases.json: json: unknown field "typo"`},
		{"no cases", wf, `{"cases":[]}`, "invalid replay suite: DIR/a.cases.json has no cases"},
		{"no name", wf, `{"cases":[{"webhook":"p","expect":{}}]}`, `invalid replay suite: DIR/a.cases.json, case 0 (""): missing name`},
		{"no webhook", wf, `{"cases":[{"name":"c","expect":{}}]}`, `invalid replay suite: DIR/a.cases.json, case 0 ("c"): missing webhook (the path to call)`},
		{"no expectation", wf, `{"cases":[{"name":"c","webhook":"p"}]}`, `invalid replay suite: DIR/a.cases.json, case 0 ("c"): give expect or expectError`},
		{"both", wf, `{"cases":[{"name":"c","webhook":"p","expect":{},"expectError":"e"}]}`, `invalid replay suite: DIR/a.cases.json, case 0 ("c"): give expect or expectError, not both`},
		{"second case", wf, `{"cases":[{"name":"a","webhook":"p","expect":{}},{"name":"b","webhook":"p","expect":{},"repeat":-1}]}`,
			`invalid replay suite: DIR/a.cases.json, case 1 ("b"): concurrency, repeat, maxMs, expectWorkers and expectParallel must not be negative`},
	} {
		for _, neg := range negatives(tc.want) {
			cases := tc.cases
			if neg != "" {
				cases = `{"cases":[{"name":"a","webhook":"p","expect":{}},{"name":"b","webhook":"p","expect":{},"` + neg + `":-1}]}`
			}
			dir := t.TempDir()
			if tc.wf != "-" {
				writeFile(t, filepath.Join(dir, "a.json"), tc.wf)
			}
			if cases != "-" {
				writeFile(t, filepath.Join(dir, "a.cases.json"), cases)
			}
			_, err := loadSuite(dir, "a.json")
			if err == nil {
				t.Errorf("%s %s: loaded", tc.name, neg)
				continue
			}
			if got := strings.ReplaceAll(err.Error(), dir, "DIR"); got != tc.want {
				t.Errorf("%s %s:\n got %s\nwant %s", tc.name, neg, got, tc.want)
			}
			if strings.HasPrefix(tc.want, "invalid replay suite") != errors.Is(err, ErrSuite) {
				t.Errorf("%s: errors.Is(ErrSuite) = %v", tc.name, errors.Is(err, ErrSuite))
			}
		}
	}

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.json"), wf)
	writeFile(t, filepath.Join(dir, "a.cases.json"), `{"description":"d","origin":"1.2","cases":[`+
		`{"name":"defaults","webhook":"/p/","expect":[]},`+
		`{"name":"set","webhook":"p","method":"GET","concurrency":3,"repeat":2,"workerField":"w","expectError":"boom","maxMs":5}]}`)
	s, err := loadSuite(dir, "a.json")
	if err != nil {
		t.Fatal(err)
	}
	want := Suite{File: "a.json", Name: "x", Workflow: json.RawMessage(wf), Webhooks: []string{"p"}, Description: "d", Origin: "1.2",
		Cases: []Case{
			{Name: "defaults", Webhook: "p", Method: "POST", Expect: json.RawMessage(`[]`), Concurrency: 1, Repeat: 1, WorkerField: "worker"},
			{Name: "set", Webhook: "p", Method: "GET", ExpectError: "boom", MaxMs: 5, Concurrency: 3, Repeat: 2, WorkerField: "w"},
		}}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("loadSuite:\n got %+v\nwant %+v", s, want)
	}
}

// negatives is, for the message about negative numbers, every field it names (each is tried on
// its own); one empty entry for every other message.
func negatives(want string) []string {
	if strings.HasSuffix(want, "must not be negative") {
		return []string{"concurrency", "repeat", "maxMs", "expectWorkers", "expectParallel"}
	}
	return []string{""}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
