package metrics

import (
	"fmt"
	"io"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape is one parsed /metrics page: metric families by name. Tests and the documentation check
// (every metric a dashboard or alert uses exists) read it; so can an operator's tool.
type Scrape map[string]*dto.MetricFamily

// ParseScrape reads a page in Prometheus' text format.
func ParseScrape(r io.Reader) (Scrape, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse the metrics page: %w", err)
	}
	return Scrape(fams), nil
}

// Names lists the series names a query can use: each family's name, and for histograms also
// its _bucket, _sum and _count series.
func (s Scrape) Names() []string {
	var out []string
	for name, f := range s {
		out = append(out, name)
		if f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY {
			out = append(out, name+"_sum", name+"_count")
			if f.GetType() == dto.MetricType_HISTOGRAM {
				out = append(out, name+"_bucket")
			}
		}
	}
	sort.Strings(out)
	return out
}

// Value sums the samples of family name whose labels include every pair of labels ("k=v"): a
// counter's or gauge's value, a histogram's sample count. ok is false when no sample matched.
func (s Scrape) Value(name string, labels ...string) (v float64, ok bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		ok = true
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			v += m.Untyped.GetValue()
		}
	}
	return v, ok
}

func hasLabels(m *dto.Metric, want []string) bool {
	for _, kv := range want {
		k, v, _ := strings.Cut(kv, "=")
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
