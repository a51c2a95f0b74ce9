package runner

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
)

// healthHandler serves /healthz (the process is alive), /readyz (it can take tasks: connected to
// n8n, a runner behind it unless mode none, the function runtime ready, not shutting down) and
// /metrics (Prometheus; the queue gauges read Redis at scrape time).
func (s *Sidecar) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "id": s.cfg.ID})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		problems := s.notReady(r.Context())
		warnings := s.fns.Warnings()
		if len(problems) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "id": s.cfg.ID, "problems": problems, "warnings": warnings})
			return
		}
		body := map[string]any{"status": "ready", "id": s.cfg.ID, "running": s.runner.Running()}
		if len(warnings) > 0 {
			body["warnings"] = warnings // the sidecar works; some calls fail until an operator acts
		}
		writeJSON(w, http.StatusOK, body)
	})
	mux.Handle("GET /metrics", s.met.Handler())
	if s.cfg.StatusPage {
		s.statusHandlers(mux) // opt-in: it shows function and workflow names, ids and sidecars
	}
	if s.cfg.Pprof {
		// Opt-in: profiles show task data in memory dumps, so this is for a trusted health address only.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// notReady lists why the sidecar cannot take tasks; empty means ready.
func (s *Sidecar) notReady(ctx context.Context) []string {
	var problems []string
	if s.draining.Load() {
		problems = append(problems, "shutting down")
	}
	if !s.runner.Connected() {
		problems = append(problems, "not connected to n8n's task broker at "+s.cfg.BrokerURI)
	}
	if s.cfg.RunnerMode != ModeNone {
		for _, t := range s.cfg.TaskTypes {
			if !s.broker.HasRunner(t) {
				problems = append(problems, "no "+t+" runner registered behind the sidecar (mode "+s.cfg.RunnerMode+")")
			}
		}
	}
	if err := s.fns.Ready(ctx); err != nil {
		problems = append(problems, "functions: "+err.Error())
	}
	return problems
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
