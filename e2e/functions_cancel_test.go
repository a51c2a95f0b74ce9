package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/n8n-fn/n8n-fn/registry"
)

// TestStoppedCallerWithdrawsItsQueuedCall: every dispatcher is busy with a slow function
// (maxConcurrency 1 each), a second caller's call waits in the queue, and the user stops that
// caller's execution. n8n cancels the call's task; the call must leave the queue and never run,
// while the calls already running finish normally.
func TestStoppedCallerWithdrawsItsQueuedCall(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; functions need the n8n-fn sidecars", s.Env.RunnerKind)
	}
	if s.Env.RedisURL == "" {
		t.Skip("SKIP: the stack env has no REDIS_URL")
	}
	rdb, err := registry.NewClient(s.Env.RedisURL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	reg, err := registry.New(rdb, registry.Config{Prefix: s.Env.Vars["N8N_FN_PREFIX"]})
	if err != nil {
		t.Fatal(err)
	}
	sidecars := 1 + len(s.Env.WorkerBrokerPorts) // main and each worker have one, each dispatches

	name := UniqueName(t, "withdraw")
	fnWF := s.Deploy(t, Chain("n8n-fn withdraw "+name+" function", spread(
		WebhookNode(name+"/fn"),
		fnDirective("Function", map[string]any{"op": "function", "name": name, "maxConcurrency": 1, "timeoutMs": 120000}),
		// Slow enough that stopping the second caller surely happens while every dispatcher is busy.
		codeNodeMode("Slow body", "runOnceForAllItems",
			"await new Promise(r => setTimeout(r, 20000));\nreturn $input.all().map(i => ({ json: { ...i.json, done: true } }));"),
		fnDirective("Return", map[string]any{"op": "return"}),
	)...))
	s.Deploy(t, Chain("n8n-fn withdraw "+name+" busy caller", spread(
		WebhookNode(name+"/busy"),
		codeNodeMode("Items", "runOnceForAllItems", fmt.Sprintf("return Array.from({length: %d}, (_, i) => ({ json: { i } }));", sidecars)),
		fnDirective("Call", map[string]any{"op": "call", "function": name, "timeoutMs": 110000}),
	)...))
	stoppedWF := s.Deploy(t, Chain("n8n-fn withdraw "+name+" stopped caller", spread(
		WebhookNode(name+"/stopped"),
		fnDirective("Call", map[string]any{"op": "call", "function": name, "timeoutMs": 110000}),
	)...))

	key := registry.FunctionKey{Scope: registry.ScopeGlobal, Name: name}
	ctx := Ctx(t, 3*time.Minute)
	waitUntil(t, ctx, fmt.Sprintf("all %d sidecars serve %s", sidecars, name), func() bool {
		live, err := reg.LiveSidecars(ctx, key)
		return err == nil && len(live) == sidecars
	})
	status := func() registry.FunctionStatus {
		st, err := reg.FunctionStatus(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	call := func(path string) <-chan int {
		ch := make(chan int, 1)
		go func() {
			c := *s.Client
			c.HTTP = &http.Client{}
			r, err := c.CallWebhook(ctx, http.MethodPost, path, []byte(`{}`))
			if err != nil {
				ch <- -1
				return
			}
			ch <- r.Status
		}()
		return ch
	}
	busy := call(name + "/busy")
	waitUntil(t, ctx, "every dispatcher busy with one call", func() bool {
		st := status()
		return st.Pending == int64(sidecars) && st.Length == int64(sidecars)
	})
	stopped := call(name + "/stopped")
	waitUntil(t, ctx, "the stopped caller's call waiting in the queue", func() bool {
		st := status()
		return st.Length == int64(sidecars)+1 && st.Pending == int64(sidecars) // added, not delivered
	})
	execID := waitRunning(t, s, stoppedWF, 10*time.Second)
	time.Sleep(500 * time.Millisecond) // the call task is running on a sidecar
	stopExecution(t, s, ctx, execID)
	// Withdrawn = deleted from the stream (Redis stops reporting the group's lag after a deletion).
	waitUntil(t, ctx, "the stopped caller's call withdrawn from the queue", func() bool { return status().Length == int64(sidecars) })
	if code := <-stopped; code == http.StatusOK {
		t.Errorf("the stopped caller answered 200")
	}
	if code := <-busy; code != http.StatusOK {
		t.Fatalf("busy caller: HTTP %d", code)
	}
	time.Sleep(2 * time.Second) // a dispatcher is free now: it would take a call still queued
	list, err := s.Client.ListExecutions(ctx, fnWF, 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != sidecars {
		t.Fatalf("the function ran %d times, want %d: the stopped caller's call must not run", len(list), sidecars)
	}
}

// waitUntil polls cond every 100 ms until it holds or ctx ends.
func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestTimedOutCallStopsItsRunningFunction: a caller that gives up (its call's timeout) stops the
// function execution already running for it, and that execution's own nested call stops the
// execution it waits for in turn: cancellation goes down the call tree.
func TestTimedOutCallStopsItsRunningFunction(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; functions need the n8n-fn sidecars", s.Env.RunnerKind)
	}
	name := UniqueName(t, "tree")
	leafWF := s.Deploy(t, Chain("n8n-fn tree "+name+" leaf", spread(
		WebhookNode(name+"/leaf"),
		fnDirective("Function", map[string]any{"op": "function", "name": name + "-leaf", "timeoutMs": 120000}),
		codeNodeMode("Slow body", "runOnceForAllItems",
			"await new Promise(r => setTimeout(r, 60000));\nreturn $input.all();"),
		fnDirective("Return", map[string]any{"op": "return"}),
	)...))
	midWF := s.Deploy(t, Chain("n8n-fn tree "+name+" middle", spread(
		WebhookNode(name+"/mid"),
		fnDirective("Function", map[string]any{"op": "function", "name": name + "-mid", "timeoutMs": 120000}),
		fnDirective("Call leaf", map[string]any{"op": "call", "function": name + "-leaf", "timeoutMs": 110000}),
		fnDirective("Return", map[string]any{"op": "return"}),
	)...))
	s.Deploy(t, Chain("n8n-fn tree "+name+" caller", spread(
		WebhookNode(name+"/call"),
		fnDirective("Call mid", map[string]any{"op": "call", "function": name + "-mid", "timeoutMs": 6000}),
	)...))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = s.Client.CallWebhook(Ctx(t, 60*time.Second), http.MethodPost, name+"/call", []byte(`{}`))
	}()
	midExec := waitRunning(t, s, midWF, 30*time.Second)
	leafExec := waitRunning(t, s, leafWF, 30*time.Second)
	<-done // the caller timed out after 6 s
	gaveUp := time.Now()
	ctx := Ctx(t, 60*time.Second)
	for _, ex := range []struct{ what, id string }{{"middle", midExec}, {"leaf", leafExec}} {
		waitUntil(t, ctx, "the "+ex.what+" execution to stop", func() bool {
			e, err := s.Client.GetExecution(ctx, ex.id, false)
			return err == nil && e.Status != "running" && e.Status != "new"
		})
		e, _ := s.Client.GetExecution(ctx, ex.id, false)
		t.Logf("%s execution %s: %s, %s after the caller gave up", ex.what, ex.id, e.Status, time.Since(gaveUp).Round(100*time.Millisecond))
	}
	if took := time.Since(gaveUp); took > 20*time.Second {
		t.Errorf("the call tree stopped only %s after the caller gave up (the leaf's body takes 60 s)", took.Round(time.Second))
	}
}
