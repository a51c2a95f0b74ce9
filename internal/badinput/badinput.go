// Package badinput reads the bad-input corpus, test-workflows/bad-input/*.json: inputs a workflow,
// a caller, n8n or an operator can send to a sidecar, each with the error text it must get.
//
// A corpus file is one JSON object:
//
//	{"kind": "directive", "about": "...", "cases": [
//	  {"name": "unclosed header", "send": {"node": "N", "code": "/* @n8n-fn {"}, "error": ["not closed with */", "in node \"N\""]}
//	]}
//
// kind says what reads "send" (the offline runner, corpus_test.go, knows directive, params,
// call-params, context, callref, frame, limits and config; cases marked "stack": true need a real
// n8n stack and are left to the end-to-end suite). "error" lists substrings the error text must
// contain, "absent" substrings it must not (a value that must not be copied into it).
// The end-to-end suite (e2e TestBadInputCorpusOnStack, run by `make test`) sends every case through
// the real stack except those with "notOnStack": "why"; "stackError" is the text to expect there
// when it differs (the stack has its own secret and clock). Strings in
// "send" may hold {{repeat N TEXT}}, replaced by TEXT N times, for payloads of any size.
package badinput

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// File is one corpus file.
type File struct {
	Path  string `json:"-"`
	Kind  string `json:"kind"`
	About string `json:"about"`
	Cases []Case `json:"cases"`
}

// Case is one input and what its error must say.
type Case struct {
	Name   string          `json:"name"`
	Send   json.RawMessage `json:"send"`
	Error  []string        `json:"error"`
	Absent []string        `json:"absent,omitempty"`
	Stack  bool            `json:"stack,omitempty"`
	// StackError replaces Error when the case runs on the real stack and n8n or the stack's own
	// settings change the text (another N8N_FN_SECRET, the real clock, n8n refusing it first).
	StackError []string `json:"stackError,omitempty"`
	// NotOnStack says why the case cannot be sent through n8n (the end-to-end run skips it; the
	// offline run still runs it).
	NotOnStack string `json:"notOnStack,omitempty"`
}

// Load reads every *.json in dir, strictly: unknown fields, a case without name, send or error,
// and two cases of one name are errors.
func Load(dir string) ([]File, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("bad-input corpus %s: %w", dir, err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("bad-input corpus %s: no *.json files", dir)
	}
	sort.Strings(paths)
	var files []File
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("bad-input corpus: %w", err)
		}
		var f File
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			return nil, fmt.Errorf("bad-input corpus %s: %w", p, err)
		}
		f.Path = p
		seen := map[string]bool{}
		for i, c := range f.Cases {
			switch {
			case c.Name == "":
				return nil, fmt.Errorf("bad-input corpus %s: case %d has no name", p, i)
			case seen[c.Name]:
				return nil, fmt.Errorf("bad-input corpus %s: two cases named %q", p, c.Name)
			case len(c.Send) == 0 || len(c.Error) == 0:
				return nil, fmt.Errorf("bad-input corpus %s: case %q needs send and error", p, c.Name)
			}
			seen[c.Name] = true
		}
		files = append(files, f)
	}
	return files, nil
}

var repeatRe = regexp.MustCompile(`\{\{repeat (\d+) (.*?)\}\}`)

// maxExpanded bounds one expanded string (the corpus is test input, not a way to fill memory).
const maxExpanded = 64 << 20

// Expand replaces every {{repeat N TEXT}} in s.
func Expand(s string) (string, error) {
	var err error
	out := repeatRe.ReplaceAllStringFunc(s, func(m string) string {
		sub := repeatRe.FindStringSubmatch(m)
		n, perr := strconv.Atoi(sub[1])
		if perr != nil || n*len(sub[2]) > maxExpanded {
			err = errors.Join(err, fmt.Errorf("%.40s: bad count", m))
			return ""
		}
		return strings.Repeat(sub[2], n)
	})
	if len(out) > maxExpanded {
		return "", fmt.Errorf("expanded string is %d bytes, at most %d", len(out), maxExpanded)
	}
	return out, err
}

// Decode unmarshals a case's send object into v, strictly; the runner expands the strings it
// uses with Expand.
func (c Case) Decode(v any) error {
	dec := json.NewDecoder(strings.NewReader(string(c.Send)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("case %q: send: %w", c.Name, err)
	}
	return nil
}

// Check reports what is wrong with err as the case's outcome: nil error, a missing substring, or an
// absent one present.
func (c Case) Check(err error) error {
	if err == nil {
		return fmt.Errorf("no error, want one containing %q", c.Error)
	}
	msg := err.Error()
	var problems []string
	for _, want := range c.Error {
		if !strings.Contains(msg, want) {
			problems = append(problems, fmt.Sprintf("missing %q", want))
		}
	}
	for _, not := range c.Absent {
		if strings.Contains(msg, not) {
			problems = append(problems, fmt.Sprintf("contains %q", not))
		}
	}
	if len(problems) > 0 {
		shown := msg
		if len(shown) > 600 {
			shown = shown[:600] + fmt.Sprintf("…(%d bytes)", len(msg))
		}
		return fmt.Errorf("%s in error %q", strings.Join(problems, ", "), shown)
	}
	return nil
}
