package n8napi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeN8N answers like n8n's public API for the handful of routes the client uses.
func fakeN8N(t *testing.T) (*httptest.Server, *[]string) {
	t.Helper()
	var seen []string
	mux := http.NewServeMux()
	check := func(w http.ResponseWriter, r *http.Request) bool {
		seen = append(seen, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		if r.Header.Get("X-N8N-API-KEY") != "k" {
			w.WriteHeader(401)
			io.WriteString(w, `{"message":"'X-N8N-API-KEY' header required"}`)
			return false
		}
		return true
	}
	mux.HandleFunc("POST /api/v1/workflows", func(w http.ResponseWriter, r *http.Request) {
		if !check(w, r) {
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("bad body: %v", err)
		}
		for k := range body {
			switch k {
			case "name", "nodes", "connections", "settings":
			default:
				w.WriteHeader(400)
				io.WriteString(w, `{"message":"request/body must NOT have additional properties"}`)
				return
			}
		}
		io.WriteString(w, `{"id":"wf1","name":"x","active":false}`)
	})
	mux.HandleFunc("GET /api/v1/workflows", func(w http.ResponseWriter, r *http.Request) {
		if !check(w, r) {
			return
		}
		switch r.URL.Query().Get("cursor") {
		case "":
			io.WriteString(w, `{"data":[{"id":"a","name":"A","active":true}],"nextCursor":"c2"}`)
		case "c2":
			io.WriteString(w, `{"data":[{"id":"b","name":"B","active":true}],"nextCursor":null}`)
		default:
			w.WriteHeader(400)
		}
	})
	mux.HandleFunc("GET /api/v1/workflows/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !check(w, r) {
			return
		}
		if r.PathValue("id") != "wf1" {
			w.WriteHeader(404)
			io.WriteString(w, `{"message":"Not Found"}`)
			return
		}
		io.WriteString(w, `{"id":"wf1","name":"x","active":true,"versionId":"v1","nodes":[],"connections":{}}`)
	})
	mux.HandleFunc("PUT /api/v1/workflows/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !check(w, r) {
			return
		}
		var body map[string]json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("bad body: %v", err)
		}
		for k := range body {
			switch k {
			case "name", "nodes", "connections", "settings":
			default:
				w.WriteHeader(400)
				io.WriteString(w, `{"message":"request/body must NOT have additional properties"}`)
				return
			}
		}
		if r.PathValue("id") != "wf1" {
			w.WriteHeader(404)
			io.WriteString(w, `{"message":"Not Found"}`)
			return
		}
		io.WriteString(w, `{"id":"wf1","name":`+string(body["name"])+`}`)
	})
	mux.HandleFunc("POST /api/v1/workflows/{id}/publish", func(w http.ResponseWriter, r *http.Request) {
		if check(w, r) {
			io.WriteString(w, `{"id":"wf1","active":true}`)
		}
	})
	published, deleteTries := true, 0
	mux.HandleFunc("POST /api/v1/workflows/{id}/unpublish", func(w http.ResponseWriter, r *http.Request) {
		if check(w, r) {
			published = false
			io.WriteString(w, `{"id":"wf1","active":false}`)
		}
	})
	mux.HandleFunc("DELETE /api/v1/workflows/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !check(w, r) {
			return
		}
		if published || deleteTries < 2 { // what n8n 2.41 does: published, then "still being unpublished"
			deleteTries++
			w.WriteHeader(409)
			io.WriteString(w, `{"message":"Cannot delete a published workflow. Unpublish it before deleting."}`)
			return
		}
		io.WriteString(w, `{"id":"wf1"}`)
	})
	probes := 0
	mux.HandleFunc("OPTIONS /webhook/{path}", func(w http.ResponseWriter, r *http.Request) {
		probes++
		if r.Header.Get("Access-Control-Request-Method") != "POST" || probes < 3 {
			w.WriteHeader(500) // n8n: "The requested webhook ... is not registered."
			return
		}
		w.WriteHeader(204)
	})
	mux.HandleFunc("GET /api/v1/executions", func(w http.ResponseWriter, r *http.Request) {
		if check(w, r) {
			io.WriteString(w, `{"data":[{"id":43,"workflowId":"`+r.URL.Query().Get("workflowId")+`","status":"error"},{"id":"42","workflowId":"wf1","status":"success"}],"nextCursor":null}`)
		}
	})
	mux.HandleFunc("GET /api/v1/executions/{id}", func(w http.ResponseWriter, r *http.Request) {
		if check(w, r) {
			io.WriteString(w, `{"id":42,"workflowId":"wf1","finished":true,"mode":"webhook","status":"success","data":{"x":1}}`)
		}
	})
	mux.HandleFunc("POST /webhook/{path}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		w.WriteHeader(201)
		w.Write(b)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &seen
}

func TestClientWorkflowLifecycle(t *testing.T) {
	srv, seen := fakeN8N(t)
	c := New(srv.URL+"/", "k")
	ctx := context.Background()

	// An export with read-only fields must be accepted: the client drops them.
	id, err := c.CreateWorkflow(ctx, []byte(`{"id":"old","active":true,"versionId":"v","tags":[],"name":"x","nodes":[],"connections":{}}`))
	if err != nil || id != "wf1" {
		t.Fatalf("CreateWorkflow = %q, %v", id, err)
	}
	wf, err := c.GetWorkflow(ctx, "wf1")
	if err != nil || !wf.Active || wf.VersionID != "v1" || len(wf.Raw) == 0 {
		t.Fatalf("GetWorkflow = %+v, %v", wf, err)
	}
	if err := c.UpdateWorkflow(ctx, "wf1", []byte(`{"id":"wf1","active":true,"meta":{},"name":"y","nodes":[],"connections":{}}`)); err != nil {
		t.Fatalf("UpdateWorkflow: %v", err)
	}
	if err := c.UpdateWorkflow(ctx, "nope", []byte(`{"name":"y","nodes":[],"connections":{}}`)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UpdateWorkflow of an unknown id: %v", err)
	}
	if err := c.UpdateWorkflow(ctx, "wf1", []byte(`{"name":"y"}`)); err == nil || !strings.Contains(err.Error(), `no "nodes" field`) {
		t.Fatalf("UpdateWorkflow without nodes: %v", err)
	}
	if err := c.PublishWorkflow(ctx, "wf1"); err != nil {
		t.Fatal(err)
	}
	all, err := c.ListWorkflows(ctx, true)
	if err != nil || len(all) != 2 || all[1].ID != "b" {
		t.Fatalf("ListWorkflows = %+v, %v", all, err)
	}
	if err := c.DeleteWorkflow(ctx, "wf1"); err != nil {
		t.Fatal(err)
	}
	ex, err := c.GetExecution(ctx, "42", true)
	if err != nil || ex.ID != "42" || ex.WorkflowID != "wf1" || ex.Status != "success" || string(ex.Data) != `{"x":1}` {
		t.Fatalf("GetExecution = %+v, %v", ex, err)
	}
	exs, err := c.ListExecutions(ctx, "wf1", 2)
	if err != nil || len(exs) != 2 || exs[0].ID != "43" || exs[0].WorkflowID != "wf1" || exs[1].ID != "42" {
		t.Fatalf("ListExecutions = %+v, %v", exs, err)
	}
	joined := strings.Join(*seen, "\n")
	for _, want := range []string{"active=true", "cursor=c2", "includeData=true", "POST /api/v1/workflows/wf1/publish", "POST /api/v1/workflows/wf1/unpublish", "PUT /api/v1/workflows/wf1?", "limit=2&workflowId=wf1"} {
		if !strings.Contains(joined, want) {
			t.Errorf("requests %q lack %q", joined, want)
		}
	}
}

func TestClientErrorsNameOperationAndMessage(t *testing.T) {
	srv, _ := fakeN8N(t)
	ctx := context.Background()
	_, err := New(srv.URL, "k").GetWorkflow(ctx, "nope")
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Status != 404 || !errors.Is(err, ErrNotFound) {
		t.Fatalf("want 404 *Error wrapping ErrNotFound, got %v", err)
	}
	if !strings.Contains(err.Error(), "get workflow nope") || !strings.Contains(err.Error(), "Not Found") {
		t.Errorf("error does not name op and n8n message: %v", err)
	}
	_, err = New(srv.URL, "wrong").ListWorkflows(ctx, false)
	if err == nil || !strings.Contains(err.Error(), "list workflows") || !strings.Contains(err.Error(), "X-N8N-API-KEY") {
		t.Errorf("auth error = %v", err)
	}
	if _, err := New(srv.URL, "k").CreateWorkflow(ctx, []byte(`{"name":"x"}`)); err == nil || !strings.Contains(err.Error(), `"nodes"`) {
		t.Errorf("missing nodes error = %v", err)
	}
	if _, err := New(srv.URL, "k").CreateWorkflow(ctx, []byte(`[1]`)); err == nil {
		t.Error("array accepted as workflow")
	}
}

func TestCallWebhook(t *testing.T) {
	srv, _ := fakeN8N(t)
	resp, err := New(srv.URL, "k").CallWebhook(context.Background(), http.MethodPost, "/echo", []byte(`{"a":1}`))
	if err != nil || resp.Status != 201 || string(resp.Body) != `{"a":1}` || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("CallWebhook = %+v, %v", resp, err)
	}
}

func TestWaitWebhook(t *testing.T) {
	srv, _ := fakeN8N(t)
	c := New(srv.URL, "k")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitWebhook(ctx, http.MethodPost, "p"); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if err := c.WaitWebhook(short, http.MethodGet, "p"); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Fatalf("GET never registered: %v", err)
	}
}

func TestLoadStackEnv(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "stack.env")
	content := "# written by stack.sh\nN8N_BASE_URL=http://127.0.0.1:5678/\nN8N_API_KEY='abc'\nexport REDIS_URL=\"redis://127.0.0.1:6379/0\"\n\nN8N_MAIN_BROKER_PORT=5679\nN8N_WORKER_BROKER_PORTS=5680,5681\n"
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := LoadStackEnv(p)
	if err != nil {
		t.Fatal(err)
	}
	if e.BaseURL != "http://127.0.0.1:5678" || e.WebhookURL != "http://127.0.0.1:5678/webhook" || e.APIKey != "abc" ||
		e.RedisURL != "redis://127.0.0.1:6379/0" || e.MainBrokerPort != 5679 || len(e.WorkerBrokerPorts) != 2 || e.WorkerBrokerPorts[1] != 5681 {
		t.Fatalf("LoadStackEnv = %+v", e)
	}
	if c := e.Client(); c.WebhookURL != "http://127.0.0.1:5678/webhook" || c.APIKey != "abc" {
		t.Errorf("Client = %+v", c)
	}

	if _, err := LoadStackEnv(filepath.Join(dir, "absent.env")); !errors.Is(err, ErrNoStackEnv) {
		t.Errorf("absent file: %v", err)
	}
	bad := filepath.Join(dir, "bad.env")
	os.WriteFile(bad, []byte("N8N_BASE_URL=x\nnot a pair\n"), 0o600)
	if _, err := LoadStackEnv(bad); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad line: %v", err)
	}
	incomplete := filepath.Join(dir, "incomplete.env")
	os.WriteFile(incomplete, []byte("N8N_BASE_URL=x\n"), 0o600)
	if _, err := LoadStackEnv(incomplete); err == nil || !strings.Contains(err.Error(), "N8N_API_KEY") {
		t.Errorf("missing key: %v", err)
	}
}

func TestDefaultStackEnvPath(t *testing.T) {
	t.Setenv("N8N_FN_CACHE", "/x/cache")
	if p, err := DefaultStackEnvPath(); err != nil || p != "/x/cache/stack/stack.env" {
		t.Fatalf("DefaultStackEnvPath = %q, %v", p, err)
	}
}
