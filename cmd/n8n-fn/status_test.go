package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
	"github.com/n8n-fn/n8n-fn/registry"
)

// TestStatusShowsBudget: `n8n-fn status` reports what unanswered calls hold in Redis against the
// budget it reads from N8N_FN_REDIS_BUDGET_BYTES, in text and in --json, and refuses a bad value.
func TestStatusShowsBudget(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, err := registry.New(srv.Client(), registry.Config{Prefix: srv.Prefix()})
	if err != nil {
		t.Fatal(err)
	}
	fn := registry.FunctionKey{Scope: registry.ScopeGlobal, Name: "budgeted"}
	if err := reg.EnsureGroup(ctx, fn); err != nil {
		t.Fatal(err)
	}
	params := `{"blob":"` + strings.Repeat("x", 5000) + `"}`
	if _, err := reg.AddCall(ctx, registry.Call{ID: "c1", Function: fn, ReplyKey: reg.ReplyKey("caller"),
		Params: json.RawMessage(params), Deadline: time.Now().Add(time.Minute).UTC(), Caller: "caller"}); err != nil {
		t.Fatal(err)
	}
	used, _, err := reg.BudgetUsage(ctx)
	if err != nil || used < int64(len(params)) {
		t.Fatalf("budget counter %d (%v), want at least the params' %d bytes", used, err, len(params))
	}
	t.Setenv("N8N_FN_REDIS_URL", srv.URL())
	t.Setenv("N8N_FN_PREFIX", srv.Prefix())
	t.Setenv("N8N_FN_REDIS_BUDGET_BYTES", "1000000")

	var out, errOut bytes.Buffer
	if err := statusCmd(ctx, nil, &out, &errOut); err != nil {
		t.Fatalf("status: %v (%s)", err, errOut.String())
	}
	want := fmt.Sprintf("unanswered calls hold %d of 1000000 bytes (%.1f%% full", used, 100*float64(used)/1e6)
	if !strings.Contains(out.String(), want) {
		t.Fatalf("status does not say %q:\n%s", want, out.String())
	}

	out.Reset()
	if err := statusCmd(ctx, []string{"--json"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Budget struct {
			UsedBytes  int64 `json:"usedBytes"`
			LimitBytes int64 `json:"limitBytes"`
		} `json:"budget"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got.Budget.UsedBytes != used || got.Budget.LimitBytes != 1000000 {
		t.Fatalf("status --json budget = %+v (%v), want used %d of 1000000:\n%s", got.Budget, err, used, out.String())
	}

	t.Setenv("N8N_FN_REDIS_BUDGET_BYTES", "lots")
	if err := statusCmd(ctx, nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), "N8N_FN_REDIS_BUDGET_BYTES") {
		t.Fatalf("a bad budget must be refused naming the variable, got %v", err)
	}
}
