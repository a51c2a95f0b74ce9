package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Execution slots. Every waiting caller holds an n8n execution slot (and each nesting level
// does), so more concurrent callers than slots, or a recursion deeper than the slots, can starve
// the functions they wait for. The target (issue 12, item 4): every call completes, or fails fast
// with an error that names the limit and what to change. These tests measure that on the stack
// (2 workers x concurrency 10 = 20 slots by default); they only run with N8N_FN_E2E_SLOTS=1
// because they fill the stack's slots for minutes. N8N_FN_SLOTS_CALLERS (40) and
// N8N_FN_SLOTS_DEPTH (25) change the load.

// slotOutcome is one caller's answer.
type slotOutcome struct {
	took   time.Duration
	status int
	err    string // "" when the answer is right
}

func needSlotsStack(t *testing.T) *Stack {
	t.Helper()
	if os.Getenv("N8N_FN_E2E_SLOTS") != "1" {
		t.Skip("SKIP: fills every execution slot of the stack for minutes; set N8N_FN_E2E_SLOTS=1 to run it")
	}
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; functions need the n8n-fn sidecars", s.Env.RunnerKind)
	}
	return s
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q is not a positive number", name, v)
	}
	return n
}

// callConcurrently fires n webhook calls at once and returns each outcome; check judges a 200 body.
func callConcurrently(t *testing.T, s *Stack, path string, n int, body func(i int) []byte, check func(i int, b []byte) string, timeout time.Duration) []slotOutcome {
	t.Helper()
	c := *s.Client
	c.HTTP = &http.Client{Timeout: timeout}
	out := make([]slotOutcome, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			r, err := c.CallWebhook(Ctx(t, timeout+time.Minute), http.MethodPost, path, body(i))
			o := slotOutcome{took: time.Since(t0), status: r.Status}
			switch {
			case err != nil:
				o.err = "no answer: " + err.Error()
			case r.Status != http.StatusOK:
				o.err = fmt.Sprintf("HTTP %d: %s", r.Status, clip(r.Body))
			default:
				o.err = check(i, r.Body)
			}
			out[i] = o
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// logOutcomes prints counts, error kinds and times, and returns the number of right answers.
func logOutcomes(t *testing.T, what string, out []slotOutcome) int {
	t.Helper()
	var ok []time.Duration
	kinds := map[string][]time.Duration{}
	for _, o := range out {
		if o.err == "" {
			ok = append(ok, o.took)
			continue
		}
		k := o.err
		if len(k) > 600 {
			// The reason is at the end of a nested call's message.
			k = k[:200] + " ... " + k[len(k)-400:]
		}
		kinds[k] = append(kinds[k], o.took)
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i] < ok[j] })
	if len(ok) > 0 {
		t.Logf("%s: %d of %d right, in %s .. %s (median %s)", what, len(ok), len(out),
			ok[0].Round(100*time.Millisecond), ok[len(ok)-1].Round(100*time.Millisecond), ok[len(ok)/2].Round(100*time.Millisecond))
	} else {
		t.Logf("%s: 0 of %d right", what, len(out))
	}
	for k, ds := range kinds {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		t.Logf("  %d x after %s .. %s: %s", len(ds), ds[0].Round(100*time.Millisecond), ds[len(ds)-1].Round(100*time.Millisecond), k)
	}
	return len(ok)
}

// failsFastNamingTheLimit reports whether every failed call failed within d with an error that
// says which limit was hit.
func failsFastNamingTheLimit(out []slotOutcome, d time.Duration) bool {
	for _, o := range out {
		if o.err == "" {
			continue
		}
		msg := strings.ToLower(o.err)
		if o.took > d || !(strings.Contains(msg, "slot") || strings.Contains(msg, "concurrency") || strings.Contains(msg, "limit")) {
			return false
		}
	}
	return true
}

// TestSlotsManyCallers: N8N_FN_SLOTS_CALLERS (40) callers of one function at once, the body waits
// 3 s. With 20 slots, 40 waiting callers can hold every slot while the function executions they
// wait for sit in n8n's queue.
func TestSlotsManyCallers(t *testing.T) {
	s := needSlotsStack(t)
	n := envInt(t, "N8N_FN_SLOTS_CALLERS", 40)
	name := UniqueName(t, "slots")
	const timeoutMs = 120000
	s.Deploy(t, Chain("n8n-fn slots "+name+" function", spread(
		WebhookNode(name+"/fn"),
		fnDirective("Function", map[string]any{"op": "function", "name": name, "timeoutMs": timeoutMs, "maxConcurrency": 100}),
		codeNodeMode("Body", "runOnceForAllItems",
			"await new Promise(r => setTimeout(r, 3000));\nreturn $input.all().map(i => ({ json: { ...i.json, done: true } }));"),
		fnDirective("Return", map[string]any{"op": "return"}),
	)...))
	s.Deploy(t, Chain("n8n-fn slots "+name+" caller", spread(
		WebhookNode(name+"/call"),
		continueOnError(fnDirective("Call", map[string]any{"op": "call", "function": name, "timeoutMs": timeoutMs})),
	)...))
	// One call first: the sidecars discover the function, so the load measures slots, not discovery.
	warm := callConcurrently(t, s, name+"/call", 1, func(int) []byte { return []byte(`{"i":-1}`) },
		func(_ int, b []byte) string { return checkDone(b, -1) }, 2*time.Minute)
	if warm[0].err != "" {
		t.Fatalf("warm-up call: %s", warm[0].err)
	}
	t0 := time.Now()
	out := callConcurrently(t, s, name+"/call", n, func(i int) []byte { return []byte(fmt.Sprintf(`{"i":%d}`, i)) },
		func(i int, b []byte) string { return checkDone(b, i) }, timeoutMs*time.Millisecond+time.Minute)
	t.Logf("%d callers done after %s", n, time.Since(t0).Round(100*time.Millisecond))
	if right := logOutcomes(t, fmt.Sprintf("%d concurrent callers", n), out); right < n && !failsFastNamingTheLimit(out, 10*time.Second) {
		t.Errorf("%d of %d calls failed, not fast and not naming the limit they hit", n-right, n)
	}
}

// continueOnError makes a node pass its error on as an item: the caller's client then sees the
// call's own message (which limit was hit), not n8n's bare "Error in workflow".
func continueOnError(n Node) Node {
	n["onError"] = "continueRegularOutput"
	return n
}

func checkDone(b []byte, i int) string {
	var items []map[string]any
	if err := json.Unmarshal(b, &items); err != nil || len(items) != 1 {
		return "not one item: " + clip(b)
	}
	if msg, ok := items[0]["error"].(string); ok {
		return "error item: " + msg
	}
	body, _ := items[0]["body"].(map[string]any)
	if items[0]["done"] != true || body["i"] != float64(i) {
		return "wrong answer: " + clip(b)
	}
	return ""
}

// TestSlotsDeepRecursion: one call of a function that calls itself N8N_FN_SLOTS_DEPTH (25) levels
// deep. Each level's execution waits in its call node and holds a slot: deeper than the slots,
// the innermost levels cannot start.
func TestSlotsDeepRecursion(t *testing.T) {
	s := needSlotsStack(t)
	depth := envInt(t, "N8N_FN_SLOTS_DEPTH", 25)
	name := UniqueName(t, "recurse")
	const timeoutMs = 240000
	hook := WebhookNode(name + "/fn")
	fn := fnDirective("Function", map[string]any{"op": "function", "name": name, "timeoutMs": timeoutMs, "maxConcurrency": 100})
	ifNode := Node{
		"id": newID(), "name": "More", "type": "n8n-nodes-base.if", "typeVersion": 2.2, "position": []int{440, 0},
		"parameters": map[string]any{
			"conditions": map[string]any{
				"options":    map[string]any{"caseSensitive": true, "leftValue": "", "typeValidation": "loose", "version": 2},
				"conditions": []any{map[string]any{"id": newID(), "leftValue": "={{ $json.body.n }}", "rightValue": 0, "operator": map[string]any{"type": "number", "operation": "gt"}}},
				"combinator": "and",
			},
			"options": map[string]any{},
		},
	}
	dec := codeNodeMode("Dec", "runOnceForAllItems", "return $input.all().map(i => ({ json: { ...i.json, body: { n: i.json.body.n - 1 } } }));")
	call := fnDirective("Call", map[string]any{"op": "call", "function": name, "timeoutMs": timeoutMs})
	up := codeNodeMode("Up", "runOnceForAllItems", "return $input.all().map(i => ({ json: { ...i.json, levels: (i.json.levels || 0) + 1 } }));")
	ret := fnDirective("Return", map[string]any{"op": "return"})
	nodes := spread(hook, fn, ifNode, dec, call, up, ret)
	link := func(to string) map[string]any { return map[string]any{"node": to, "type": "main", "index": 0} }
	conns := map[string]any{
		"Webhook":  map[string]any{"main": [][]map[string]any{{link("Function")}}},
		"Function": map[string]any{"main": [][]map[string]any{{link("More")}}},
		"More":     map[string]any{"main": [][]map[string]any{{link("Dec")}, {link("Return")}}},
		"Dec":      map[string]any{"main": [][]map[string]any{{link("Call")}}},
		"Call":     map[string]any{"main": [][]map[string]any{{link("Up")}}},
		"Up":       map[string]any{"main": [][]map[string]any{{link("Return")}}},
	}
	s.Deploy(t, map[string]any{"name": "n8n-fn slots " + name + " recursive function", "nodes": nodes, "connections": conns,
		"settings": map[string]any{"executionOrder": "v1"}})
	s.Deploy(t, Chain("n8n-fn slots "+name+" caller", spread(
		WebhookNode(name+"/call"),
		continueOnError(fnDirective("Call", map[string]any{"op": "call", "function": name, "timeoutMs": timeoutMs})),
	)...))
	check := func(want int) func(int, []byte) string {
		return func(_ int, b []byte) string {
			var items []map[string]any
			if err := json.Unmarshal(b, &items); err != nil || len(items) != 1 {
				return "not one item: " + clip(b)
			}
			if msg, ok := items[0]["error"].(string); ok {
				return "error item: " + msg
			}
			levels, _ := items[0]["levels"].(float64)
			if int(levels) != want {
				return fmt.Sprintf("levels %v, want %d: %s", items[0]["levels"], want, clip(b))
			}
			return ""
		}
	}
	// Depth 2 first: the recursion works at all, and the sidecars know the function.
	warm := callConcurrently(t, s, name+"/call", 1, func(int) []byte { return []byte(`{"n":2}`) }, check(2), 3*time.Minute)
	if warm[0].err != "" {
		t.Fatalf("recursion 2 deep: %s", warm[0].err)
	}
	t.Logf("recursion 2 deep: right in %s", warm[0].took.Round(100*time.Millisecond))
	out := callConcurrently(t, s, name+"/call", 1, func(int) []byte { return []byte(fmt.Sprintf(`{"n":%d}`, depth)) },
		check(depth), timeoutMs*time.Millisecond+time.Minute)
	if right := logOutcomes(t, fmt.Sprintf("recursion %d deep", depth), out); right < 1 && !failsFastNamingTheLimit(out, 10*time.Second) {
		t.Errorf("the recursion %d deep failed, not fast and not naming the limit it hit", depth)
	}
}
