package runner

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/n8n-fn/n8n-fn/internal/redistest"
)

func getBody(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// The status page is opt-in; on, it is one self-contained page (nothing loaded from elsewhere),
// its data comes from the function registry, and /metrics is there either way.
func TestStatusPageAndMetrics(t *testing.T) {
	off, _, _ := testSidecar(t, func(c *Config) { c.RunnerMode = ModeNone })
	if code, _, _ := getBody(t, "http://"+off.HealthAddr()+"/status"); code != http.StatusNotFound {
		t.Errorf("/status without N8N_FN_STATUS_PAGE: %d, want 404", code)
	}
	code, _, body := getBody(t, "http://"+off.HealthAddr()+"/metrics")
	if code != 200 || !strings.Contains(body, "n8n_fn_n8n_connected 1") || !strings.Contains(body, `n8n_fn_runner_connected{task_type="javascript"} 0`) {
		t.Errorf("/metrics: %d\n%.2000s", code, body)
	}

	rs := redistest.Start(t)
	s, _, _ := testSidecar(t, func(c *Config) {
		c.RunnerMode, c.StatusPage = ModeNone, true
		c.Secret, c.RedisURL, c.Prefix = "0123456789abcdef0123", rs.URL(), rs.Prefix()
	})
	base := "http://" + s.HealthAddr()
	code, h, page := getBody(t, base+"/status")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("/status: %d %v", code, h)
	}
	if m := regexp.MustCompile(`(?i)(<script[^>]+src=|<link|<img|@import|url\(|https?://)`).FindString(page); m != "" {
		t.Errorf("the status page loads something from elsewhere: %q", m)
	}
	code, _, body = getBody(t, base+"/status/api")
	var v statusView
	if err := json.Unmarshal([]byte(body), &v); err != nil || code != 200 {
		t.Fatalf("/status/api: %d %v %s", code, err, body)
	}
	if v.Sidecar != s.cfg.ID || len(v.Problems) != 0 || v.Functions == nil || v.Recent == nil {
		t.Errorf("/status/api: %+v", v)
	}
	if code, _, body := getBody(t, base+"/status/api/trace"); code != http.StatusBadRequest || !strings.Contains(body, "call id or an execution id") {
		t.Errorf("trace without an id: %d %s", code, body)
	}
	if code, _, body := getBody(t, base+"/status/api/trace?id=nope"); code != http.StatusNotFound || !strings.Contains(body, "nothing is traced") {
		t.Errorf("trace of an unknown id: %d %s", code, body)
	}
}
