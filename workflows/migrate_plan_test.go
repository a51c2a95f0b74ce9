package workflows

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/n8n-fn/n8n-fn/internal/goldentest"
)

// migratePlanInput is two workflows whose Function nodes take each path of deciding a function
// (scope by option and by globalFunction; declared params with empty, duplicate and _functionCall
// names; required and defaulted ones), a workflow without an id, and calls across them.
func migratePlanInput() [][]byte {
	fn := func(name string, global bool, params ...string) string {
		return fmt.Sprintf(`{"name":%q,"type":"n8n-nodes-function.function","parameters":{"globalFunction":%v,"parameters":{"parameter":[%s]}},"position":[0,0]}`,
			name, global, strings.Join(params, ","))
	}
	call := func(name, target, wfID string, params string) string {
		return fmt.Sprintf(`{"name":%q,"type":"n8n-nodes-function.callFunction","parameters":{"functionName":%q,"workflowId":{"value":%q},"parameters":{"parameter":[%s]}},"position":[0,0]}`,
			name, target, wfID, params)
	}
	p := func(name, typ string, required bool, def string) string {
		return fmt.Sprintf(`{"name":%q,"type":%q,"required":%v,"defaultValue":%q}`, name, typ, required, def)
	}
	return [][]byte{
		[]byte(`{"id":"WfA","name":"A","nodes":[` + strings.Join([]string{
			fn("Add Numbers", false, p("a", "number", true, ""), p("b", "number", false, "2"), p("a", "string", false, ""), p("", "string", true, ""), p("_functionCall", "object", true, ""), p("c", "boolean", false, "")),
			fn("Shared", true),
			call("Call add", "Add Numbers", "", `{"name":"a","value":"1"}`),
			call("Call B", "InB", "WfB", ``),
		}, ",") + `],"connections":{"Call add":{"main":[[{"node":"Call B","type":"main","index":0}]]}}}`),
		[]byte(`{"name":"no id","nodes":[` + fn("InB", false, p("x", "string", false, "d")) + `,` + call("Call shared", "Shared", "WfA", ``) + `],"connections":{}}`),
		[]byte(`{"id":"WfB","name":"B","nodes":[` + fn("InB", false) + `],"connections":{}}`),
	}
}

// TestMigratePlan pins Migrate's output for migratePlanInput under several options, byte for
// byte against testdata/migrate-plan.golden (written before Migrate was split).
func TestMigratePlan(t *testing.T) {
	var got strings.Builder
	for _, opts := range []MigrateOptions{
		{Origin: "0.1.5"},
		{Origin: "0.2.1", Global: true, Typed: true},
		{Origin: "0.1.0", IDMap: map[string]string{"WfB": "NewB", "WfA": "NewA"}},
		{},
	} {
		opts.NewID = seqIDs()
		ms, err := Migrate(migratePlanInput(), opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			rep, _ := json.Marshal(m.Report)
			fmt.Fprintf(&got, "== origin %q global %v typed %v idmap %v: changed %v\n%s\n%s\n", opts.Origin, opts.Global, opts.Typed, opts.IDMap, m.Changed, rep, m.Workflow)
		}
	}
	for _, tc := range []struct {
		in   [][]byte
		opts MigrateOptions
		want string
	}{
		{[][]byte{[]byte(`{"nodes":[],"connections":{}}`), []byte(`[]`)}, MigrateOptions{}, "migrate: workflow #2: "},
		{migratePlanInput(), MigrateOptions{Origin: "7"}, "migrate: "},
	} {
		_, err := Migrate(tc.in, tc.opts)
		fmt.Fprintf(&got, "== error: %v\n", err)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Migrate error %v, want it to start %q", err, tc.want)
		}
	}
	goldentest.Check(t, "testdata/migrate-plan.golden", got.String())
}
