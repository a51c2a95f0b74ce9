package runner

import (
	"context"
	_ "embed" // the status page is one file, built into the binary: no external assets
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/n8n-fn/n8n-fn/registry"
)

//go:embed status.html
var statusPage []byte

// statusRead bounds the Redis reads of one status page request.
const statusRead = 5 * time.Second

// statusView is what /status/api answers and the status page draws.
type statusView struct {
	Sidecar   string               `json:"sidecar"` // the sidecar that answered
	At        time.Time            `json:"at"`
	Functions []functionView       `json:"functions"`
	Sidecars  []sidecarView        `json:"sidecars"`
	Recent    []registry.TraceCall `json:"recentCalls"`
	Problems  []string             `json:"problems,omitempty"` // what could not be read
}

type functionView struct {
	Function           string   `json:"function"`
	Registered         bool     `json:"registered"`
	WorkflowID         string   `json:"workflowId,omitempty"`
	LiveSidecars       []string `json:"liveSidecars"`
	Length             int64    `json:"length"`
	Pending            int64    `json:"pending"`
	OldestPendingAgeMs int64    `json:"oldestPendingAgeMs"`
	DeadLetters        int64    `json:"deadLetters"`
}

type sidecarView struct {
	ID     string    `json:"id"`
	Serves []string  `json:"serves"`
	At     time.Time `json:"at"`
}

// recentShown is how many recent calls the page lists.
const recentShown = 50

// statusHandlers serves the opt-in status page (N8N_FN_STATUS_PAGE) on the health listener: the
// page itself, its data (the same as `n8n-fn status`) and a call tree (as `n8n-fn trace --json`).
func (s *Sidecar) statusHandlers(mux *http.ServeMux) {
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
		_, _ = w.Write(statusPage)
	})
	mux.HandleFunc("GET /status/api", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.statusView(r))
	})
	mux.HandleFunc("GET /status/api/trace", func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimSpace(r.URL.Query().Get("id"))
		if id == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "give a call id or an execution id: /status/api/trace?id=ID"})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), statusRead)
		defer cancel()
		tree, err := s.fns.Trace(ctx, id)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		case err != nil && !errors.Is(err, registry.ErrTraceCut):
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		default:
			writeJSON(w, http.StatusOK, tree)
		}
	})
}

func (s *Sidecar) statusView(r *http.Request) statusView {
	ctx, cancel := context.WithTimeout(r.Context(), statusRead)
	defer cancel()
	v := statusView{Sidecar: s.cfg.ID, At: time.Now().UTC(), Functions: []functionView{}, Sidecars: []sidecarView{}, Recent: []registry.TraceCall{}}
	st, sc, err := s.fns.Status(ctx)
	if err != nil {
		v.Problems = append(v.Problems, "status: "+err.Error())
	}
	for _, f := range st {
		fv := functionView{Function: f.Function.String(), Registered: f.Registered, LiveSidecars: f.LiveSidecars, Length: f.Length,
			Pending: f.Pending, OldestPendingAgeMs: f.OldestPendingAge.Milliseconds(), DeadLetters: f.DeadLetters}
		if f.Record != nil {
			fv.WorkflowID = f.Record.WorkflowID
		}
		v.Functions = append(v.Functions, fv)
	}
	for _, c := range sc {
		serves := make([]string, 0, len(c.Serves))
		for _, k := range c.Serves {
			serves = append(serves, k.String())
		}
		v.Sidecars = append(v.Sidecars, sidecarView{ID: c.ID, Serves: serves, At: c.At})
	}
	recent, err := s.fns.RecentCalls(ctx, recentShown)
	if err != nil {
		v.Problems = append(v.Problems, "recent calls: "+err.Error())
	}
	if recent != nil {
		v.Recent = recent
	}
	return v
}
