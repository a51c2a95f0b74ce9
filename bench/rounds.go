package bench

import (
	"slices"
)

// Ratio compares one scenario with the reference scenario, round by round (scenario / reference):
// below 1 is faster for latencies, above 1 is more for throughput and CPU.
type Ratio struct {
	Scenario string `json:"scenario"`
	Ref      string `json:"ref"`
	// Per round, in round order.
	SeqP50 []float64 `json:"seq_p50"`
	SeqP95 []float64 `json:"seq_p95"`
	RPS    []float64 `json:"rps"`
	CPU    []float64 `json:"cpu_per_request,omitempty"`
	// Medians over the rounds.
	SeqP50Median float64 `json:"seq_p50_median"`
	SeqP95Median float64 `json:"seq_p95_median"`
	RPSMedian    float64 `json:"rps_median"`
	CPUMedian    float64 `json:"cpu_per_request_median,omitempty"`
}

// summarizeRounds folds the rounds of each scenario and phase into one row of medians, in the
// order the rows first appear.
func summarizeRounds(results []Result) []Result {
	type key struct{ scenario, phase string }
	var order []key
	groups := map[key][]Result{}
	for _, r := range results {
		k := key{r.Scenario, r.Phase}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]Result, 0, len(order))
	for _, k := range order {
		rs := groups[k]
		m := Result{Scenario: k.scenario, Phase: k.phase, Clients: rs[0].Clients, Codes: map[string]int{}}
		pick := func(f func(Result) float64) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			return median(v)
		}
		for _, r := range rs {
			m.Requests += r.Requests
			m.OK += r.OK
			m.Errors += r.Errors
			m.WallS += r.WallS
			for c, n := range r.Codes {
				m.Codes[c] += n
			}
			if m.FirstError == "" {
				m.FirstError = r.FirstError
			}
		}
		m.WallS = round(m.WallS)
		m.RPS = pick(func(r Result) float64 { return r.RPS })
		m.MeanMs = pick(func(r Result) float64 { return r.MeanMs })
		m.P50Ms = pick(func(r Result) float64 { return r.P50Ms })
		m.P90Ms = pick(func(r Result) float64 { return r.P90Ms })
		m.P95Ms = pick(func(r Result) float64 { return r.P95Ms })
		m.P99Ms = pick(func(r Result) float64 { return r.P99Ms })
		m.MinMs = pick(func(r Result) float64 { return r.MinMs })
		m.MaxMs = pick(func(r Result) float64 { return r.MaxMs })
		for _, r := range rs {
			for g := range r.CPUms {
				if m.CPUms == nil {
					m.CPUms = map[string]float64{}
				}
				if _, done := m.CPUms[g]; !done {
					m.CPUms[g] = pick(func(r Result) float64 { return r.CPUms[g] })
				}
			}
		}
		out = append(out, m)
	}
	return out
}

// ratios compares every selected scenario with its own reference or ref (default: n8n's Execute
// Workflow) round by round; scenarios whose reference was not measured are left out.
func ratios(results []Result, ref string, scenarios []Scenario) []Ratio {
	if ref == "" {
		ref = ScenarioSubWorkflow
	}
	find := func(name, phase string, round int) *Result {
		for i := range results {
			if r := &results[i]; r.Scenario == name && r.Phase == phase && r.Round == round {
				return r
			}
		}
		return nil
	}
	var out []Ratio
	for _, sc := range scenarios {
		ref := ref
		if sc.Ref != "" {
			ref = sc.Ref
		}
		if sc.Name == ref {
			continue
		}
		x := Ratio{Scenario: sc.Name, Ref: ref}
		for round := 1; ; round++ {
			s, b := find(sc.Name, "sequential", round), find(ref, "sequential", round)
			c, bc := find(sc.Name, "concurrent", round), find(ref, "concurrent", round)
			if s == nil || b == nil || c == nil || bc == nil {
				break
			}
			x.SeqP50 = append(x.SeqP50, div(s.P50Ms, b.P50Ms))
			x.SeqP95 = append(x.SeqP95, div(s.P95Ms, b.P95Ms))
			x.RPS = append(x.RPS, div(c.RPS, bc.RPS))
			if c.CPUms != nil && bc.CPUms != nil {
				x.CPU = append(x.CPU, div(c.CPUms["total"], bc.CPUms["total"]))
			}
		}
		if len(x.RPS) == 0 {
			continue
		}
		x.SeqP50Median, x.SeqP95Median, x.RPSMedian = median(x.SeqP50), median(x.SeqP95), median(x.RPS)
		if len(x.CPU) > 0 {
			x.CPUMedian = median(x.CPU)
		}
		out = append(out, x)
	}
	return out
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return float64(int64(a/b*1000+0.5)) / 1000
}

// median of the values (the mean of the middle two for an even count); 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return float64(int64((s[n/2-1]+s[n/2])/2*1000+0.5)) / 1000
}
