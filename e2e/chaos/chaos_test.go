package chaos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	const key = "chaos-1-baseline-c0-3"
	ok := fmt.Sprintf(`[{"key":%q,"done":true,"v":14,"worker":"worker1","body":{}}]`, key)
	cases := []struct {
		name, body, outcome, kind string
		status                    int
	}{
		{"right", ok, OutcomeOK, "", 200},
		{"call error item", `[{"error":"n8n-fn call chaos-4e1d3616: timed out after 45s waiting for the result (call id 01JABCDEF123, attempt 1)"}]`,
			OutcomeError, "call failed: n8n-fn call <id>: timed out after 45s waiting for the result (call id <id>, attempt N)", 200},
		{"n8n error status", `{"code":0,"message":"Workflow execution failed"}`, OutcomeError, "HTTP 500: Workflow execution failed", 500},
		{"plain error status", `Bad Gateway`, OutcomeError, "HTTP 502: Bad Gateway", 502},
		{"another key", `[{"key":"other","done":true,"v":14}]`, OutcomeWrong, "answer for key other", 200},
		{"not done", fmt.Sprintf(`[{"key":%q,"v":14}]`, key), OutcomeWrong, "answer without done=true", 200},
		{"wrong value", fmt.Sprintf(`[{"key":%q,"done":true,"v":15}]`, key), OutcomeWrong, "v=15, want 14", 200},
		{"two items", ok[:len(ok)-1] + "," + ok[1:], OutcomeWrong, "2 items, want 1", 200},
		{"no items", `[]`, OutcomeWrong, "0 items, want 1", 200},
		{"not JSON", `<html>`, OutcomeWrong, "not a JSON array of items: <html>", 200},
		{"main starting", `n8n is starting up. Please wait`, OutcomeError, "main starting up: n8n is starting up. Please wait", 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			outcome, kind := classify(c.status, []byte(c.body), key, 7)
			if outcome != c.outcome || kind != c.kind {
				t.Fatalf("classify = %q, %q; want %q, %q", outcome, kind, c.outcome, c.kind)
			}
		})
	}
}

// Transport errors are told apart by what they mean for the call: never sent (main refused it),
// dropped while n8n had it, or no answer at all (lost).
func TestClassifyTransport(t *testing.T) {
	// A real refused connection and a real client timeout, not hand-made errors.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = http.Post("http://"+addr+"/x", "application/json", nil)
	if o, k := classifyTransport(err); o != OutcomeError || k != "main unreachable (connection refused)" {
		t.Errorf("refused: %q %q (%v)", o, k, err)
	}

	// A server that accepts and never answers: the client times out.
	hang := listen(t, func(c net.Conn) { <-t.Context().Done(); c.Close() })
	_, err = (&http.Client{Timeout: 200 * time.Millisecond}).Post("http://"+hang+"/x", "application/json", nil)
	if o, _ := classifyTransport(err); o != OutcomeLost {
		t.Errorf("timeout: %q (%v)", o, err)
	}
	// A server that reads the request and closes the connection: main died with the call.
	drop := listen(t, func(c net.Conn) { _, _ = c.Read(make([]byte, 4096)); c.Close() })
	_, err = http.Post("http://"+drop+"/x", "application/json", strings.NewReader("{}"))
	if o, k := classifyTransport(err); o != OutcomeError || k != "main dropped the connection" {
		t.Errorf("dropped: %q %q (%v)", o, k, err)
	}
	if o, _ := classifyTransport(fmt.Errorf("x: %w", syscall.ECONNREFUSED)); o != OutcomeError {
		t.Errorf("wrapped ECONNREFUSED: %q", o)
	}
}

// listen serves each connection with handle until the test ends and returns the address.
func listen(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln.Addr().String()
}

func TestNormalize(t *testing.T) {
	cases := map[string]string{
		"execution 1234 failed":             "execution N failed",
		"call id 01JABCDEF1234 attempt 2":   "call id <id> attempt N",
		"raise N8N_RUNNERS_TASK_TIMEOUT=30": "raise N8N_RUNNERS_TASK_TIMEOUT=N",
		"  many   spaces\n":                 "many spaces",
		"key chaos-ab12cd34-worker-c1-20":   "key <id>",
	}
	for in, want := range cases {
		if got := normalize(in); got != want {
			t.Errorf("normalize(%q) = %q, want %q", in, got, want)
		}
	}
	long := strings.Repeat("é", 200)
	if got := normalize(long); len(got) > 170 || !strings.HasSuffix(got, "...") || !utf8Valid(got) {
		t.Errorf("long message not cut cleanly: %d bytes", len(got))
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// The counter counts starts and completions per key over real HTTP, pairs a completion with its
// execution's start, and refuses reports it cannot use.
func TestCounter(t *testing.T) {
	c, err := startCounter()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	post := func(path string, ev any) int {
		t.Helper()
		b, _ := json.Marshal(ev)
		resp, err := http.Post(c.url+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	a1 := bodyEvent{Key: "k1", CallID: "c1", Exec: "10", Worker: "worker1"}
	a2 := bodyEvent{Key: "k1", CallID: "c1", Exec: "11", Worker: "worker2"} // the re-run
	b1 := bodyEvent{Key: "k2", CallID: "c2", Exec: "12", Worker: "worker2"}
	for _, s := range []struct {
		path string
		ev   bodyEvent
	}{{"/start", a1}, {"/start", a2}, {"/done", a2}, {"/start", b1}} {
		if code := post(s.path, s.ev); code != 200 {
			t.Fatalf("%s %+v: HTTP %d", s.path, s.ev, code)
		}
	}
	if bc := c.count("k1"); bc.Started != 2 || bc.Completed != 1 || bc.LastDone.IsZero() {
		t.Fatalf("k1 = %+v, want started 2, completed 1", bc)
	}
	if bc := c.count("k2"); bc.Started != 1 || bc.Completed != 0 {
		t.Fatalf("k2 = %+v", bc)
	}
	// a1's run died (never completes): it and b1 count as running, on their workers.
	run := c.running(time.Now(), time.Minute)
	if run["worker1"] != 1 || run["worker2"] != 1 {
		t.Fatalf("running = %v", run)
	}
	if len(c.running(time.Now().Add(2*time.Minute), time.Minute)) != 0 {
		t.Fatal("runs older than maxAge still count as running")
	}
	// A completion without a start (its start report got lost) is a run of its own.
	if code := post("/done", bodyEvent{Key: "k3", Exec: "13"}); code != 200 {
		t.Fatal(code)
	}
	if bc := c.count("k3"); bc.Started != 0 || bc.Completed != 1 {
		t.Fatalf("k3 = %+v", bc)
	}
	for _, bad := range []any{"not an object", map[string]string{"key": "k"}, map[string]string{"exec": "1"}} {
		if code := post("/start", bad); code != http.StatusBadRequest {
			t.Fatalf("bad report %v: HTTP %d, want 400", bad, code)
		}
	}
	if c.badReports() != 3 {
		t.Fatalf("bad reports = %d, want 3", c.badReports())
	}
}

func TestBusiest(t *testing.T) {
	if w := busiest(map[string]int{"worker2": 3, "worker1": 3, "worker3": 1}); w != "worker1" {
		t.Fatalf("tie: %q, want worker1", w)
	}
	if w := busiest(map[string]int{"worker1": 1, "worker2": 4}); w != "worker2" {
		t.Fatalf("%q", w)
	}
	if w := busiest(nil); w != "" {
		t.Fatalf("none: %q", w)
	}
}

func TestParsePidAndStat(t *testing.T) {
	if pid, start, err := parsePidFile([]byte("1234 98765\n")); err != nil || pid != 1234 || start != "98765" {
		t.Fatalf("%d %q %v", pid, start, err)
	}
	if pid, start, err := parsePidFile([]byte("42")); err != nil || pid != 42 || start != "" {
		t.Fatalf("%d %q %v", pid, start, err)
	}
	for _, bad := range []string{"", "x 1", "-3"} {
		if _, _, err := parsePidFile([]byte(bad)); err == nil {
			t.Errorf("pid file %q accepted", bad)
		}
	}
	// Our own /proc entry: running, and a name with a space and a ')' does not shift the fields.
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip("no /proc")
	}
	state, start, err := parseProcStat(b)
	// The thread-group leader may be sleeping while another thread of ours reads the file.
	if err != nil || (state != "R" && state != "S") || start == "" {
		t.Fatalf("self: %q %q %v", state, start, err)
	}
	fake := []byte("77 (we ird) name) Z 1 77 77 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 555 0 0")
	if state, start, err := parseProcStat(fake); err != nil || state != "Z" || start != "555" {
		t.Fatalf("fake: %q %q %v", state, start, err)
	}
	if _, _, err := parseProcStat([]byte("77 (x) S 1")); err == nil {
		t.Fatal("short stat accepted")
	}
}

// A stack process that died and was not reaped (a zombie) is not running for the suite either,
// and neither is a pid that now belongs to another process.
func TestStackPidZombieAndReuse(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/pids", 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Stack{pids: dir + "/pids"}
	// A child we do not wait for becomes a zombie when it exits.
	proc, err := os.StartProcess("/bin/sh", []string{"sh", "-c", "exit 0"}, &os.ProcAttr{})
	if err != nil {
		t.Skip("no /bin/sh")
	}
	defer func() { _, _ = proc.Wait() }()
	st, _ := os.ReadFile("/proc/" + strconv.Itoa(proc.Pid) + "/stat")
	_, start, _ := parseProcStat(st)
	write := func(content string) {
		if err := os.WriteFile(dir+"/pids/w.pid", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("%d %s", proc.Pid, start))
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(proc.Pid) + "/stat")
		if state, _, _ := parseProcStat(b); state == "Z" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child did not become a zombie")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := s.Pid("w"); ok {
		t.Fatal("a zombie counts as running")
	}
	// Our own pid with another start time: a reused pid.
	write(fmt.Sprintf("%d 1", os.Getpid()))
	if _, ok := s.Pid("w"); ok {
		t.Fatal("a reused pid counts as the stack's process")
	}
	self, _ := os.ReadFile("/proc/self/stat")
	_, selfStart, _ := parseProcStat(self)
	write(fmt.Sprintf("%d %s", os.Getpid(), selfStart))
	if pid, ok := s.Pid("w"); !ok || pid != os.Getpid() {
		t.Fatal("a running process with its start time is not found")
	}
	if err := s.Signal("missing", syscall.Signal(0)); err == nil {
		t.Fatal("signal to a process without pid file succeeded")
	}
}

func TestConfig(t *testing.T) {
	var c Config
	c.fill(Defaults())
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Experiments) != len(Experiments())-1 || c.ClientTimeout != 180*time.Second {
		t.Fatalf("defaults: %d experiments, client timeout %s", len(c.Experiments), c.ClientTimeout)
	}
	var s Config
	s.fill(ShortDefaults())
	if s.ClientTimeout != 150*time.Second || len(s.Experiments) != 3 {
		t.Fatalf("short: %+v", s)
	}
	// The short run (make test runs it) must stay within about 5 minutes: each experiment's period
	// plus, at worst, one call that waits for the client timeout, plus the settle time.
	budget := time.Duration(len(s.Experiments))*s.Period + s.ClientTimeout + s.Settle
	if budget > 4*time.Minute {
		t.Fatalf("short run budget %s is above 4 min before setup and recovery", budget)
	}
	// A longer call timeout given on the command line still gets a client timeout above it.
	l := Config{CallTimeout: 10 * time.Minute}
	l.fill(ShortDefaults())
	if l.ClientTimeout != 12*time.Minute {
		t.Fatalf("short with a 10 min call timeout: client timeout %s", l.ClientTimeout)
	}
	bad := c
	bad.Experiments = []string{"baseline", "nope"}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown experiment: %v", err)
	}
	bad = c
	bad.FaultAt = bad.Period
	if err := bad.Validate(); err == nil {
		t.Fatal("fault after the period accepted")
	}
	bad = c
	bad.ClientTimeout = bad.CallTimeout
	if err := bad.Validate(); err == nil {
		t.Fatal("client timeout not above the call timeout accepted")
	}
	b, err := json.Marshal(c)
	if err != nil || !strings.Contains(string(b), `"call_timeout":"2m30s"`) {
		t.Fatalf("config JSON %s, %v", b, err)
	}
}

func TestTable(t *testing.T) {
	rep := Report{Results: []Result{
		{Experiment: "baseline", Calls: 10, OK: 10, P50s: 2.1, P95s: 3, MaxS: 3.2},
		{Experiment: "redis-kill", Calls: 9, OK: 7, Errors: 1, Lost: 1, CompletedTwice: 2, CompletedTwiceOK: 1,
			ErrorKinds: map[string]int{"call failed: x": 1, "lost: no answer within the client timeout": 1},
			Faults:     []string{"t+5.0s kill -9 redis"}},
	}}
	var b strings.Builder
	rep.Table(&b)
	out := b.String()
	for _, want := range []string{"baseline", "redis-kill", "2(1 ok)", "total", "19", "fault   t+5.0s kill -9 redis", "1×   call failed: x"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestCheck(t *testing.T) {
	good := Report{Results: []Result{
		{Experiment: "baseline", Calls: 10, OK: 10},
		{Experiment: "redis-kill", Calls: 9, OK: 9, StartedTwice: 1, Faults: []string{"t+5.0s kill -9 redis"}},
		// n8n fails the callers whose execution died with the worker: allowed.
		{Experiment: "worker-restart", Calls: 9, OK: 7, Errors: 2, CompletedTwice: 1},
		// n8n itself fails a caller's request while its queue's Redis loads: allowed.
		{Experiment: "redis-restart", Calls: 9, OK: 8, Errors: 1, ErrorKinds: map[string]int{"HTTP 500: LOADING Redis is loading the dataset in memory": 1}},
	}}
	if err := good.Check(); err != nil {
		t.Fatalf("a run within the targets: %v", err)
	}
	cases := []struct {
		name string
		res  Result
		bad  int
		want string
	}{
		{"lost", Result{Experiment: "worker-restart", Calls: 9, OK: 8, Lost: 1}, 0, "worker-restart: 1 of 9 calls lost"},
		{"wrong", Result{Experiment: "main-kill", Calls: 9, OK: 8, Wrong: 1}, 0, "main-kill: 1 of 9 calls answered wrong"},
		{"twice for an answered caller", Result{Experiment: "sidecar-kill", Calls: 9, OK: 9, CompletedTwice: 1, CompletedTwiceOK: 1}, 0, "1 bodies completed twice"},
		{"error without a fault", Result{Experiment: "baseline", Calls: 9, OK: 8, Errors: 1}, 0, "baseline: 1 of 9 calls ended in an error"},
		{"n8n-fn error in a Redis blip", Result{Experiment: "redis-kill", Calls: 9, OK: 8, Errors: 1, FnErrors: 1}, 0, "redis-kill: 1 of 9 calls failed in n8n-fn"},
		{"fault not injected", Result{Experiment: "worker-down", Calls: 9, OK: 9, Faults: []string{"t+10.0s fault failed: chaos: worker1 still running after 20s"}}, 0, "fault failed"},
		{"bad counter reports", Result{Experiment: "baseline", Calls: 1, OK: 1}, 2, "2 malformed reports"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := Report{Results: append(slices.Clone(good.Results), c.res), BadReports: c.bad}
			err := rep.Check()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Check = %v, want an error with %q", err, c.want)
			}
		})
	}
}

func TestWorkflows(t *testing.T) {
	fn, err := functionWorkflow("chaos-x", "http://127.0.0.1:1234", 45000)
	if err != nil {
		t.Fatal(err)
	}
	caller, err := callerWorkflow("chaos-x", 45000)
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Nodes []map[string]any `json:"nodes"`
	}
	if err := json.Unmarshal(fn, &wf); err != nil || len(wf.Nodes) != 4 {
		t.Fatalf("function workflow: %v, %d nodes", err, len(wf.Nodes))
	}
	js := wf.Nodes[2]["parameters"].(map[string]any)["jsCode"].(string)
	if !strings.Contains(js, `"http://127.0.0.1:1234" + '/start'`) || !strings.Contains(js, `'/done'`) {
		t.Fatalf("body does not report to the counter:\n%s", js)
	}
	if err := json.Unmarshal(caller, &wf); err != nil || wf.Nodes[1]["onError"] != "continueRegularOutput" {
		t.Fatalf("caller's call node does not continue on error: %v", wf.Nodes)
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{`[{"key":"k","done":true,"v":2}]`, `[{"error":"x"}]`, `{"message":"m"}`, `[]`, `null`, `[null]`, `[{"v":"2"}]`} {
		f.Add(200, []byte(s))
	}
	f.Add(500, []byte(`{"message":"Workflow execution failed"}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		outcome, kind := classify(status, body, "k", 1)
		switch outcome {
		case OutcomeOK:
			if status != 200 || kind != "" {
				t.Fatalf("ok with status %d kind %q", status, kind)
			}
		case OutcomeError, OutcomeWrong:
			if kind == "" || len(kind) > 220 {
				t.Fatalf("%s without a short kind: %q", outcome, kind)
			}
		default:
			t.Fatalf("outcome %q", outcome)
		}
	})
}

func FuzzParseReport(f *testing.F) {
	f.Add([]byte(`{"key":"k","callId":"c","exec":"1","worker":"worker1"}`))
	f.Add([]byte(`{"key":""}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := parseReport(b)
		if err == nil && (ev.Key == "" || ev.Exec == "" || len(b) > maxReportBytes) {
			t.Fatalf("accepted %q as %+v", b, ev)
		}
		if err != nil && errors.Unwrap(err) == nil && !strings.Contains(err.Error(), "report") {
			t.Fatalf("error does not say what was wrong: %v", err)
		}
	})
}

// TestNormalizeWords pins the word rules of normalize one by one: what a word is (letters,
// digits, '-' and '_'), which words become N or <id>, and where a long message is cut.
func TestNormalizeWords(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"007", "N"},
		{"-", "-"},
		{"--12", "--12"},
		{"a1b2c3d4", "<id>"},
		{"a1b2c3d", "a1b2c3d"},
		{"abcdefg1", "abcdefg1"},
		{"ab_12345678", "ab_12345678"},
		{"12345678-ab", "<id>"},
		{"x:1,y=22;z(333)", "x:N,y=N;z(N)"},
		{"né 12é34 end9", "né NéN end9"},
		{"tab\tand\nnewline  99", "tab and newline N"},
		{"trailing 42", "trailing N"},
		{"日本 1", "日本 N"},
		{strings.Repeat("a ", 80), strings.TrimSpace(strings.Repeat("a ", 80))},
		{strings.Repeat("ab ", 60), strings.Repeat("ab ", 53) + "a..."},
		{strings.Repeat("x", 159) + "é", strings.Repeat("x", 159) + "..."},
	} {
		if got := normalize(tc.in); got != tc.want {
			t.Errorf("normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
