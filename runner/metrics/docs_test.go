package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v2"
)

// monitoringDir holds the Grafana dashboard and the Prometheus alert rules shipped with n8n-fn.
const monitoringDir = "../../docs/monitoring"

var metricName = regexp.MustCompile(`\bn8n_fn_[a-zA-Z0-9_]+`)

// MonitoringQueries returns every PromQL expression of the dashboard and the alert rules, by
// where it is ("dashboard: panel title", "alert: name").
func monitoringQueries(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	raw, err := os.ReadFile(filepath.Join(monitoringDir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if len(dash.Panels) == 0 {
		t.Fatal("grafana-dashboard.json has no panels")
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for i, tg := range p.Targets {
			out["dashboard: "+p.Title+" #"+string(rune('A'+i))] = tg.Expr
		}
	}
	for _, v := range dash.Templating.List {
		out["dashboard variable: "+v.Name] = v.Definition
	}

	raw, err = os.ReadFile(filepath.Join(monitoringDir, "prometheus-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.UnmarshalStrict(raw, &rules); err != nil {
		t.Fatalf("prometheus-alerts.yml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
				t.Errorf("alert rule %+v needs alert, expr, a severity label and a summary", r)
			}
			out["alert: "+r.Alert] = r.Expr
		}
	}
	return out
}

// MetricNamesIn lists the n8n_fn_ series names a PromQL expression reads.
func metricNamesIn(expr string) []string { return metricName.FindAllString(expr, -1) }

// TestDashboardsAndAlertsUseRealMetrics: every n8n-fn metric the dashboard and the alert rules
// read exists in a real scrape of the metrics (every hook touched once), and the alerts the
// operators need are there. e2e TestMetricsCountRealCalls checks the same against the stack.
func TestDashboardsAndAlertsUseRealMetrics(t *testing.T) {
	m := New()
	exercise(m)
	have := map[string]bool{}
	for _, n := range scrape(t, m).Names() {
		have[n] = true
	}
	queries := monitoringQueries(t)
	used := map[string]bool{}
	for where, q := range queries {
		names := metricNamesIn(q)
		if len(names) == 0 && !strings.Contains(q, `up{job="n8n-fn"}`) {
			t.Errorf("%s reads no n8n-fn metric: %s", where, q)
		}
		for _, n := range names {
			used[n] = true
			if !have[n] {
				t.Errorf("%s uses %s, which the sidecar does not export", where, n)
			}
		}
		if strings.Count(q, "(") != strings.Count(q, ")") || strings.Count(q, "{") != strings.Count(q, "}") {
			t.Errorf("%s: unbalanced brackets: %s", where, q)
		}
	}
	for _, a := range []string{"N8nFnDeadLetters", "N8nFnOldestPendingCallOld", "N8nFnNoLiveSidecar", "N8nFnRerunRateHigh", "N8nFnRunnerDisconnected"} {
		if _, ok := queries["alert: "+a]; !ok {
			t.Errorf("alert %s is missing", a)
		}
	}
	// Every metric of ours is on the dashboard somewhere (a new metric needs a panel).
	var missing []string
	for n := range have {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if strings.HasPrefix(n, Prefix) && !used[n] && !used[base] && !used[base+"_bucket"] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("metrics on no dashboard panel or alert: %v", missing)
	}
}
