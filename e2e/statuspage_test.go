package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// chromium finds Debian's headless-capable Chromium (scripts/test.sh and .ci/run install the
// `chromium` package); the test skips, saying so, where there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("SKIP: no headless Chromium on PATH: install Debian's package (apt-get install -y chromium; scripts/test.sh does it when run as root)")
	return ""
}

// headless runs Chromium on url with a virtual-time budget long enough for the page's fetches.
func headless(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--disable-extensions",
		"--user-data-dir=" + t.TempDir(), "--window-size=1400,1000", "--virtual-time-budget=8000"}
	cmd := exec.CommandContext(Ctx(t, 90*time.Second), bin, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, clip(stderr.Bytes()))
	}
	return stdout.Bytes()
}

type statusAPI struct {
	Sidecar   string              `json:"sidecar"`
	Functions []statusAPIFunction `json:"functions"`
	Sidecars  []struct {
		ID string `json:"id"`
	} `json:"sidecars"`
	Recent []struct {
		ID       string `json:"callId"`
		Function string `json:"function"`
		Outcome  string `json:"outcome"`
	} `json:"recentCalls"`
}

type statusAPIFunction struct {
	Function     string   `json:"function"`
	LiveSidecars []string `json:"liveSidecars"`
	Length       int64    `json:"length"`
	Pending      int64    `json:"pending"`
	DeadLetters  int64    `json:"deadLetters"`
}

// functionCells is what the page's row of f should show, by cell class.
func functionCells(f statusAPIFunction) map[string]string {
	live := "none"
	if len(f.LiveSidecars) > 0 {
		live = strings.Join(f.LiveSidecars, ", ")
	}
	return map[string]string{"length": fmt.Sprint(f.Length), "pending": fmt.Sprint(f.Pending), "dead": fmt.Sprint(f.DeadLetters), "live": live}
}

func readStatusAPI(t *testing.T, base string) statusAPI {
	t.Helper()
	var api statusAPI
	r, err := http.Get(base + "/status/api")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if err := json.NewDecoder(r.Body).Decode(&api); err != nil {
		t.Fatalf("/status/api: %v", err)
	}
	return api
}

// cell returns the text of the td with class cls in row.
func cell(row, cls string) string {
	m := regexp.MustCompile(`<td class="[^"]*\b` + cls + `\b[^"]*">([^<]*)</td>`).FindStringSubmatch(row)
	if m == nil {
		return "(no " + cls + " cell)"
	}
	return html.UnescapeString(m[1])
}

// TestStatusPageInChromium opens a sidecar's status page in headless Chromium after a nested call
// chain ran, and checks that what the page shows is what its API says: every function's queue
// figures, every sidecar, the recent calls with their outcomes, and the chain's tree with its
// three executions and their links into n8n. A screenshot is kept under the cache directory.
func TestStatusPageInChromium(t *testing.T) {
	s := NeedStack(t)
	if s.Env.RunnerKind != "sidecar" {
		t.Skipf("SKIP: the stack runs RUNNER_KIND=%s; the status page is the n8n-fn sidecars'", s.Env.RunnerKind)
	}
	bin := chromium(t)
	port := strings.TrimSpace(strings.Split(s.Env.Vars["N8N_FN_HEALTH_PORTS"], ",")[0])
	base := "http://127.0.0.1:" + port
	if r, err := http.Get(base + "/status/api"); err != nil || r.StatusCode != http.StatusOK {
		code := 0
		if r != nil {
			code = r.StatusCode
			r.Body.Close()
		}
		t.Skipf("SKIP: the sidecar at %s serves no status page (HTTP %d, %v): start the stack with N8N_FN_STATUS_PAGE=true (scripts/stack.sh's default) and a binary that has it (scripts/stack.sh restart-runners)", base, code, err)
	}
	name := UniqueName(t, "page")
	ids, _, outerWF, innerWF := nestedChain(t, s, name)

	// The page reads the API itself a moment after this test does, and between the two reads a
	// just published function may gain live sidecars: a cell is right when it shows what the API
	// said just before or just after the page was rendered.
	api := readStatusAPI(t, base)
	page := base + "/status?trace=" + ids["caller"]
	dom := string(headless(t, bin, "--dump-dom", page))
	after := readStatusAPI(t, base)
	if !strings.Contains(dom, `data-loaded="1"`) {
		t.Fatalf("the page did not load its data in Chromium:\n%s", clip([]byte(dom)))
	}
	if !strings.Contains(dom, `<b id="sidecar">`+api.Sidecar+`</b>`) {
		t.Errorf("the page does not name the sidecar %s", api.Sidecar)
	}
	ours := 0
	for _, f := range api.Functions {
		m := regexp.MustCompile(`<tr data-function="` + regexp.QuoteMeta(html.EscapeString(f.Function)) + `">(.*?)</tr>`).FindStringSubmatch(dom)
		if m == nil {
			t.Errorf("function %s of the API is not on the page", f.Function)
			continue
		}
		if strings.Contains(f.Function, name) {
			ours++
		}
		want := functionCells(f)
		then := want
		for _, g := range after.Functions {
			if g.Function == f.Function {
				then = functionCells(g)
			}
		}
		for cls, w := range want {
			if got := cell(m[1], cls); got != w && got != then[cls] {
				t.Errorf("function %s: the page shows %s %q, the API says %q before and %q after", f.Function, cls, got, w, then[cls])
			}
		}
	}
	if ours != 2 {
		t.Errorf("the page shows %d of the chain's 2 functions", ours)
	}
	for _, sc := range api.Sidecars {
		if !strings.Contains(dom, `data-sidecar="`+html.EscapeString(sc.ID)+`"`) {
			t.Errorf("sidecar %s of the API is not on the page", sc.ID)
		}
	}
	chainCalls := 0
	for _, c := range api.Recent {
		m := regexp.MustCompile(`<tr class="call[^"]*" data-call="` + regexp.QuoteMeta(c.ID) + `">(.*?)</tr>`).FindStringSubmatch(dom)
		if m == nil {
			t.Errorf("recent call %s of the API is not on the page", c.ID)
			continue
		}
		want := c.Outcome
		if want == "" {
			want = "running"
		}
		if got := cell(m[1], "outcome"); got != want {
			t.Errorf("recent call %s: the page shows outcome %q, the API %q", c.ID, got, want)
		}
		if strings.Contains(c.Function, name) {
			chainCalls++
		}
	}
	if chainCalls != 2 {
		t.Errorf("the recent calls hold %d of the chain's 2 calls", chainCalls)
	}
	tree := dom[strings.Index(dom, `<div id="tree"`):]
	for _, want := range []string{
		`data-execution="` + ids["caller"] + `"`, `data-execution="` + ids["outer"] + `"`, `data-execution="` + ids["inner"] + `"`,
		"/workflow/" + outerWF + "/executions/" + ids["outer"], "/workflow/" + innerWF + "/executions/" + ids["inner"],
		"global/" + name + "-outer", "global/" + name + "-inner",
	} {
		if !strings.Contains(tree, want) {
			t.Errorf("the call tree on the page lacks %s", want)
		}
	}

	cache := os.Getenv("N8N_FN_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "n8n-fn")
	}
	dir := filepath.Join(cache, "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "status-page.png")
	headless(t, bin, "--screenshot="+shot, page)
	b, err := os.ReadFile(shot)
	if err != nil || len(b) < 10000 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s: %d bytes, %v", shot, len(b), err)
	}
	t.Logf("status page checked against its API (%d functions, %d sidecars, %d recent calls, the chain's tree); screenshot: %s",
		len(api.Functions), len(api.Sidecars), len(api.Recent), shot)
}
