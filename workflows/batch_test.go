package workflows

import (
	"errors"
	"strings"
	"testing"
)

func TestParseFunctionBatch(t *testing.T) {
	parse := func(dir string) (*FunctionDirective, error) {
		h, err := ParseHeader(`/* @n8n-fn ` + dir + ` */`)
		if err != nil {
			t.Fatalf("header %s: %v", dir, err)
		}
		return ParseFunction("Fn", h)
	}
	d, err := parse(`{"op":"function","name":"f","batch":{"max":16,"waitMs":3}}`)
	if err != nil || d.Batch == nil || d.Batch.Max != 16 || d.Batch.WaitMs != 3 {
		t.Fatalf("batch: %+v %v", d, err)
	}
	d, err = parse(`{"op":"function","name":"f","batch":{"max":8}}`)
	if err != nil || d.Batch == nil || d.Batch.WaitMs != DefaultBatchWaitMs || d.Batch.Parallel != 0 {
		t.Fatalf("default waitMs and parallel: %+v %v", d.Batch, err)
	}
	d, err = parse(`{"op":"function","name":"f","batch":{"max":8,"parallel":1}}`)
	if err != nil || d.Batch == nil || d.Batch.Parallel != 1 {
		t.Fatalf("parallel: %+v %v", d.Batch, err)
	}
	// No batch, and max 1, mean one call per execution.
	for _, dir := range []string{`{"op":"function","name":"f"}`, `{"op":"function","name":"f","batch":{"max":1}}`} {
		if d, err := parse(dir); err != nil || d.Batch != nil {
			t.Errorf("%s: batch %+v, err %v; want none", dir, d.Batch, err)
		}
	}
	for dir, want := range map[string]string{
		`{"op":"function","name":"f","batch":16}`:                              "expected an object",
		`{"op":"function","name":"f","batch":{}}`:                              "batch.max",
		`{"op":"function","name":"f","batch":{"max":1000}}`:                    "batch.max",
		`{"op":"function","name":"f","batch":{"max":4,"waitMs":5000}}`:         "batch.waitMs",
		`{"op":"function","name":"f","batch":{"max":4,"wait":5}}`:              "wait",
		`{"op":"function","name":"f","batch":{"max":4,"parallel":-1}}`:         "batch.parallel",
		`{"op":"function","name":"f","batch":{"max":4,"parallel":1000}}`:       "batch.parallel",
		`{"op":"function","name":"f","batch":{"max":4,"parallel":1.5}}`:        "batch.parallel",
		`{"op":"function","name":"f","batch":{"max":4},"globalConcurrency":1}`: "cannot be combined with globalConcurrency",
	} {
		_, err := parse(dir)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to mention %q", dir, err, want)
		}
	}
}

func TestParseCallRefs(t *testing.T) {
	one := `{"function":"global/f","entryId":"1-0","callId":"c1","dispatch":1,"exp":1,"sig":"v1.a.b"}`
	two := `{"function":"global/f","entryId":"2-0","callId":"c2","dispatch":1,"exp":1,"sig":"v1.a.b"}`
	refs, batched, err := ParseCallRefs([]byte(one))
	if err != nil || batched || len(refs) != 1 || refs[0].CallID != "c1" {
		t.Fatalf("single: %v %v %v", refs, batched, err)
	}
	refs, batched, err = ParseCallRefs([]byte(`{"headers":{},"body":{"batch":[` + one + `,` + two + `]}}`))
	if err != nil || !batched || len(refs) != 2 || refs[1].EntryID != "2-0" {
		t.Fatalf("batch in a webhook item: %v %v %v", refs, batched, err)
	}
	for in, want := range map[string]string{
		`{"batch":[]}`:                        "1..",
		`{"batch":[` + one + `,` + one + `]}`: "appears twice",
		`{"batch":[` + one + `],"x":1}`:       "nothing else",
		`{"batch":{}}`:                        "nothing else",
		`{"batch":[{"function":"global/f"}]}`: "reference 0",
		`{"batch":[1]}`:                       "reference 0",
	} {
		_, _, err := ParseCallRefs([]byte(in))
		if err == nil || !errors.Is(err, ErrMalformedSig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want ErrMalformedSig mentioning %q", in, err, want)
		}
	}
}

func FuzzParseCallRefs(f *testing.F) {
	one := `{"function":"global/f","entryId":"1-0","callId":"c1","dispatch":1,"exp":1,"sig":"v1.a.b"}`
	for _, seed := range []string{one, `{"batch":[` + one + `]}`, `{"headers":{},"body":{"batch":[` + one + `,1]}}`, `{"batch":[]}`, `{"batch":null}`, `[`, `{}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		refs, batched, err := ParseCallRefs(in)
		if err != nil {
			if !errors.Is(err, ErrMalformedSig) {
				t.Fatalf("error does not wrap ErrMalformedSig: %v", err)
			}
			return
		}
		if len(refs) == 0 || (!batched && len(refs) != 1) || len(refs) > MaxBatch {
			t.Fatalf("%d refs, batched %v", len(refs), batched)
		}
		for _, r := range refs {
			if r.Function == "" || r.CallID == "" || r.EntryID == "" || r.Dispatch < 1 {
				t.Fatalf("accepted an incomplete reference %+v", r)
			}
		}
	})
}

func TestLintBatchRules(t *testing.T) {
	wf := func(dir string, extra string) []byte {
		return []byte(`{"id":"w1","name":"batched","nodes":[
		{"name":"W","type":"n8n-nodes-base.webhook","typeVersion":2.1,"parameters":{"httpMethod":"POST","path":"fn-b","responseMode":"lastNode","responseData":"allEntries"}},
		{"name":"F","type":"n8n-nodes-base.code","typeVersion":2,"parameters":{"jsCode":"/* @n8n-fn ` + dir + ` */"}},
		{"name":"Agg","type":"n8n-nodes-base.aggregate","typeVersion":1,"parameters":{}},
		{"name":"Once","type":"n8n-nodes-base.set","typeVersion":3,"executeOnce":` + extra + `,"parameters":{}},
		{"name":"R","type":"n8n-nodes-base.code","typeVersion":2,"parameters":{"jsCode":"/* @n8n-fn {\"op\":\"return\"} */"}}],
		"connections":{"W":{"main":[[{"node":"F","type":"main","index":0}]]},"F":{"main":[[{"node":"Agg","type":"main","index":0}]]},
		"Agg":{"main":[[{"node":"Once","type":"main","index":0}]]},"Once":{"main":[[{"node":"R","type":"main","index":0}]]}}}`)
	}
	got := map[string]string{}
	for _, f := range Lint(wf(`{\"op\":\"function\",\"name\":\"b\",\"batch\":{\"max\":8}}`, "true")) {
		got[f.Node] += f.Message + "|"
	}
	if !strings.Contains(got["Agg"], "aggregates the items of every call") || !strings.Contains(got["Once"], "Execute Once") {
		t.Fatalf("batch findings: %v", got)
	}
	// Without batch the same body is fine: one call per execution.
	for _, f := range Lint(wf(`{\"op\":\"function\",\"name\":\"b\"}`, "true")) {
		if strings.Contains(f.Message, "batch") {
			t.Errorf("finding about batch without batch: %v", f)
		}
	}
}
