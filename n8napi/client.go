// Package n8napi is a small client of n8n's public REST API (X-N8N-API-KEY) plus the reader of the
// stack env file that scripts/stack.sh writes. It is a leaf: it imports nothing from this module.
package n8napi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrNotFound is wrapped by errors for a workflow or execution that n8n does not know (HTTP 404).
var ErrNotFound = errors.New("not found")

// maxErrorBody caps how much of an error response is kept in an *Error.
const maxErrorBody = 2048

// Client talks to one n8n instance. It holds no mutable state and is safe for concurrent use.
type Client struct {
	BaseURL    string // e.g. http://127.0.0.1:5678 (no trailing slash)
	WebhookURL string // e.g. http://127.0.0.1:5678/webhook
	APIKey     string
	HTTP       *http.Client
}

// New returns a client for baseURL with the default webhook URL (baseURL + "/webhook").
func New(baseURL, apiKey string) *Client {
	baseURL = strings.TrimRight(baseURL, "/")
	return &Client{
		BaseURL:    baseURL,
		WebhookURL: baseURL + "/webhook",
		APIKey:     apiKey,
		HTTP:       &http.Client{Timeout: 60 * time.Second, Transport: NewTransport()},
	}
}

// NewTransport returns the HTTP transport used against n8n: keep-alive, with room for the
// benchmark's concurrent clients. (A webhook call that never got an answer was first blamed on
// keep-alive; the cause was n8n's Bull job retention, see scripts/stack.sh.)
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	// n8n's HTTP server keeps idle connections for Node's default 5 s: closing ours first avoids
	// sending a request on a socket n8n is closing at that moment ("connection reset by peer").
	t.IdleConnTimeout = IdleConnTimeout
	return t
}

// IdleConnTimeout is how long NewTransport keeps an idle connection to n8n (below Node's 5 s
// keepAliveTimeout).
const IdleConnTimeout = 4 * time.Second

// Error is returned when n8n answers with a non-2xx status. It names the operation and carries
// n8n's own message so that the cause is visible without a debugger.
type Error struct {
	Op      string // e.g. "create workflow"
	Method  string
	URL     string
	Status  int
	Message string // n8n's "message" field, or the raw body when it is not JSON
}

func (e *Error) Error() string {
	return fmt.Sprintf("n8n api: %s: %s %s: HTTP %d: %s", e.Op, e.Method, e.URL, e.Status, e.Message)
}

// Unwrap lets callers test errors.Is(err, ErrNotFound).
func (e *Error) Unwrap() error {
	if e.Status == http.StatusNotFound {
		return ErrNotFound
	}
	return nil
}

// Workflow is the part of n8n's workflow object that callers use; Raw keeps the whole object.
type Workflow struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Active      bool            `json:"active"`
	VersionID   string          `json:"versionId"`
	Nodes       json.RawMessage `json:"nodes"`
	Connections json.RawMessage `json:"connections"`
	Settings    json.RawMessage `json:"settings"`
	Raw         json.RawMessage `json:"-"`
}

// Execution is the part of n8n's execution object that callers use; Raw keeps the whole object.
type Execution struct {
	ID         string          `json:"-"`
	WorkflowID string          `json:"-"`
	Finished   bool            `json:"finished"`
	Mode       string          `json:"mode"`
	Status     string          `json:"status"`
	StartedAt  string          `json:"startedAt"`
	StoppedAt  string          `json:"stoppedAt"`
	Data       json.RawMessage `json:"data"`
	Raw        json.RawMessage `json:"-"`
}

// WebhookResponse is what a webhook call returned.
type WebhookResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// CreateWorkflow creates a workflow from its JSON (an n8n export is fine: read-only fields are
// dropped) and returns its id. The workflow is not published.
func (c *Client) CreateWorkflow(ctx context.Context, workflowJSON []byte) (string, error) {
	const op = "create workflow"
	body, err := writableWorkflow(op, workflowJSON)
	if err != nil {
		return "", err
	}
	var wf Workflow
	if err := c.do(ctx, op, http.MethodPost, "/api/v1/workflows", nil, body, &wf); err != nil {
		return "", err
	}
	if wf.ID == "" {
		return "", fmt.Errorf("n8n api: %s: response has no workflow id", op)
	}
	return wf.ID, nil
}

// UpdateWorkflow replaces workflow id's name, nodes, connections and settings with those of
// workflowJSON (an export is fine: read-only fields are dropped), keeping its id. Whether a
// published workflow runs the new version at once is n8n's business: publish it to be sure.
func (c *Client) UpdateWorkflow(ctx context.Context, id string, workflowJSON []byte) error {
	op := "update workflow " + id
	body, err := writableWorkflow(op, workflowJSON)
	if err != nil {
		return err
	}
	return c.do(ctx, op, http.MethodPut, "/api/v1/workflows/"+url.PathEscape(id), nil, body, nil)
}

// writableWorkflow keeps the fields the API accepts on create and update: POST and PUT
// /api/v1/workflows have additionalProperties:false, so an export's read-only fields (id, active,
// versionId, tags, meta, ...) would be rejected.
func writableWorkflow(op string, workflowJSON []byte) ([]byte, error) {
	var in map[string]json.RawMessage
	if err := json.Unmarshal(workflowJSON, &in); err != nil {
		return nil, fmt.Errorf("n8n api: %s: workflow JSON is not an object: %w", op, err)
	}
	for _, f := range []string{"name", "nodes", "connections"} {
		if _, ok := in[f]; !ok {
			return nil, fmt.Errorf("n8n api: %s: workflow JSON has no %q field (need name, nodes, connections)", op, f)
		}
	}
	out := make(map[string]json.RawMessage, 6)
	for _, f := range []string{"name", "description", "nodes", "connections", "settings", "staticData"} {
		if v, ok := in[f]; ok && string(v) != "null" {
			out[f] = v
		}
	}
	if _, ok := out["settings"]; !ok {
		out["settings"] = json.RawMessage(`{}`) // required by the API
	}
	body, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("n8n api: %s: encode body: %w", op, err)
	}
	return body, nil
}

// GetWorkflow returns one workflow.
func (c *Client) GetWorkflow(ctx context.Context, id string) (Workflow, error) {
	var raw json.RawMessage
	if err := c.do(ctx, "get workflow "+id, http.MethodGet, "/api/v1/workflows/"+url.PathEscape(id), nil, nil, &raw); err != nil {
		return Workflow{}, err
	}
	return decodeWorkflow("get workflow "+id, raw)
}

// ListWorkflows returns every workflow (all pages), or only the published ones when activeOnly.
func (c *Client) ListWorkflows(ctx context.Context, activeOnly bool) ([]Workflow, error) {
	return c.ListWorkflowsWith(ctx, ListOptions{ActiveOnly: activeOnly})
}

// ListOptions narrows a workflow listing with the filters n8n's public API offers (2.41:
// active, tags, name, projectId, excludePinnedData; no field selection and no "changed since":
// every listed workflow comes with its nodes and those of its published version).
type ListOptions struct {
	ActiveOnly        bool   // active=true: published workflows only
	ExcludePinnedData bool   // excludePinnedData=true: leave out the editor's pinned test data
	Tag               string // tags=<Tag>: only workflows with this tag (one name: n8n ANDs a comma list)
}

// listPageSize is the largest page n8n's public API serves (limit is capped at 250).
const listPageSize = 250

// ListWorkflowsWith returns every workflow that matches o (all pages).
func (c *Client) ListWorkflowsWith(ctx context.Context, o ListOptions) ([]Workflow, error) {
	const op = "list workflows"
	var all []Workflow
	cursor := ""
	for page := 0; ; page++ {
		q := url.Values{"limit": {fmt.Sprint(listPageSize)}}
		if o.ActiveOnly {
			q.Set("active", "true")
		}
		if o.ExcludePinnedData {
			q.Set("excludePinnedData", "true")
		}
		if o.Tag != "" {
			q.Set("tags", o.Tag)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var resp struct {
			Data       []json.RawMessage `json:"data"`
			NextCursor *string           `json:"nextCursor"`
		}
		if err := c.do(ctx, op, http.MethodGet, "/api/v1/workflows", q, nil, &resp); err != nil {
			return nil, err
		}
		for _, raw := range resp.Data {
			wf, err := decodeWorkflow(op, raw)
			if err != nil {
				return nil, err
			}
			all = append(all, wf)
		}
		if resp.NextCursor == nil || *resp.NextCursor == "" {
			return all, nil
		}
		if page > 10000 {
			return nil, fmt.Errorf("n8n api: %s: more than 10000 pages, cursor does not advance", op)
		}
		cursor = *resp.NextCursor
	}
}

// PublishWorkflow makes the workflow's current version live (webhooks registered at once).
func (c *Client) PublishWorkflow(ctx context.Context, id string) error {
	op := "publish workflow " + id
	err := c.do(ctx, op, http.MethodPost, "/api/v1/workflows/"+url.PathEscape(id)+"/publish", nil, []byte(`{}`), nil)
	var apiErr *Error
	if errors.As(err, &apiErr) && (apiErr.Status == http.StatusMethodNotAllowed || apiErr.Status == http.StatusNotFound) {
		// n8n 1.x has no /publish: it activates a workflow with /activate.
		return c.do(ctx, op, http.MethodPost, "/api/v1/workflows/"+url.PathEscape(id)+"/activate", nil, []byte(`{}`), nil)
	}
	return err
}

// UnpublishWorkflow takes the workflow offline.
func (c *Client) UnpublishWorkflow(ctx context.Context, id string) error {
	return c.do(ctx, "unpublish workflow "+id, http.MethodPost, "/api/v1/workflows/"+url.PathEscape(id)+"/unpublish", nil, []byte(`{}`), nil)
}

// DeleteWorkflow deletes the workflow. n8n 2.41 refuses to delete a published workflow (HTTP 409
// "Unpublish it before deleting"), and unpublishing is asynchronous (409 "still being unpublished"
// for a moment), so a published workflow is unpublished and the delete retried until ctx ends.
func (c *Client) DeleteWorkflow(ctx context.Context, id string) error {
	op := "delete workflow " + id
	unpublished := false
	for {
		err := c.do(ctx, op, http.MethodDelete, "/api/v1/workflows/"+url.PathEscape(id), nil, nil, nil)
		var apiErr *Error
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict {
			return err
		}
		if !unpublished {
			if uerr := c.UnpublishWorkflow(ctx, id); uerr != nil {
				return fmt.Errorf("n8n api: %s: %s; unpublishing failed: %w", op, apiErr.Message, uerr)
			}
			unpublished = true
			continue
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitWebhook waits until n8n serves method+path on its production webhook URL. Publishing is
// asynchronous in n8n 2.41 (it goes through an outbox): the publish call returns before the webhook
// is registered, and a call in that gap gets 404. The probe is a CORS preflight, which n8n answers
// 204 for a registered webhook and 500 "not registered" otherwise, without running the workflow.
func (c *Client) WaitWebhook(ctx context.Context, method, path string) error {
	u := c.WebhookURL + "/" + strings.TrimLeft(path, "/")
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodOptions, u, nil)
		if err != nil {
			return fmt.Errorf("n8n webhook: wait for %s %s: %w", method, u, err)
		}
		req.Header.Set("Origin", "http://n8n-fn.local")
		req.Header.Set("Access-Control-Request-Method", method)
		resp, err := c.HTTP.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("n8n webhook: %s %s not registered (last probe: %s): %w", method, u, last, ctx.Err())
		case <-tick.C:
		}
	}
}

// StopExecution stops a running execution (n8n cancels its running node's task, so a call node in
// it stops waiting too). An execution that already ended is not an error.
func (c *Client) StopExecution(ctx context.Context, id string) error {
	err := c.do(ctx, "stop execution "+id, http.MethodPost, "/api/v1/executions/"+url.PathEscape(id)+"/stop", nil, []byte(`{}`), nil)
	var apiErr *Error
	if errors.As(err, &apiErr) && (apiErr.Status == http.StatusNotFound || apiErr.Status == http.StatusConflict) {
		return nil // gone or finished already
	}
	return err
}

// GetExecution returns one execution; includeData adds its run data (can be large).
func (c *Client) GetExecution(ctx context.Context, id string, includeData bool) (Execution, error) {
	op := "get execution " + id
	q := url.Values{}
	if includeData {
		q.Set("includeData", "true")
	}
	var raw json.RawMessage
	if err := c.do(ctx, op, http.MethodGet, "/api/v1/executions/"+url.PathEscape(id), q, nil, &raw); err != nil {
		return Execution{}, err
	}
	return decodeExecution(op, raw)
}

// ListExecutions returns up to limit most recent executions of one workflow (newest first).
func (c *Client) ListExecutions(ctx context.Context, workflowID string, limit int) ([]Execution, error) {
	op := "list executions of workflow " + workflowID
	q := url.Values{"workflowId": {workflowID}, "limit": {fmt.Sprint(limit)}}
	var resp struct {
		Data []json.RawMessage `json:"data"`
	}
	if err := c.do(ctx, op, http.MethodGet, "/api/v1/executions", q, nil, &resp); err != nil {
		return nil, err
	}
	out := make([]Execution, 0, len(resp.Data))
	for _, raw := range resp.Data {
		e, err := decodeExecution(op, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// CallWebhook calls WebhookURL + "/" + path. Any HTTP status is returned, not turned into an
// error: callers test for n8n's error answers too. A JSON body gets content-type application/json.
func (c *Client) CallWebhook(ctx context.Context, method, path string, body []byte) (WebhookResponse, error) {
	u := c.WebhookURL + "/" + strings.TrimLeft(path, "/")
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return WebhookResponse{}, fmt.Errorf("n8n webhook: build %s %s: %w", method, u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return WebhookResponse{}, fmt.Errorf("n8n webhook: %s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return WebhookResponse{}, fmt.Errorf("n8n webhook: %s %s: read body: %w", method, u, err)
	}
	return WebhookResponse{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// do runs one API request; out (when non-nil) receives the decoded 2xx body.
func (c *Client) do(ctx context.Context, op, method, path string, q url.Values, body []byte, out any) error {
	u := c.BaseURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("n8n api: %s: build request: %w", op, err)
	}
	req.Header.Set("X-N8N-API-KEY", c.APIKey)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("n8n api: %s: %s %s: %w", op, method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("n8n api: %s: read response: %w", op, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &Error{Op: op, Method: method, URL: u, Status: resp.StatusCode, Message: errorMessage(b)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("n8n api: %s: decode response (HTTP %d): %w", op, resp.StatusCode, err)
	}
	return nil
}

// errorMessage extracts n8n's {"message": ..., "description": ...} or falls back to the raw body.
func errorMessage(b []byte) string {
	var e struct {
		Message     string `json:"message"`
		Description string `json:"description"`
	}
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		if e.Description != "" {
			return e.Message + " (" + e.Description + ")"
		}
		return e.Message
	}
	s := strings.TrimSpace(string(b))
	if len(s) > maxErrorBody {
		s = s[:maxErrorBody] + "..."
	}
	if s == "" {
		s = "(empty body)"
	}
	return s
}

func decodeWorkflow(op string, raw json.RawMessage) (Workflow, error) {
	var wf Workflow
	if err := json.Unmarshal(raw, &wf); err != nil {
		return Workflow{}, fmt.Errorf("n8n api: %s: decode workflow: %w", op, err)
	}
	wf.Raw = raw
	return wf, nil
}

// decodeExecution accepts ids as numbers or strings: the public API returns numbers, the
// internal API strings.
func decodeExecution(op string, raw json.RawMessage) (Execution, error) {
	var e Execution
	if err := json.Unmarshal(raw, &e); err != nil {
		return Execution{}, fmt.Errorf("n8n api: %s: decode execution: %w", op, err)
	}
	var ids struct {
		ID         json.RawMessage `json:"id"`
		WorkflowID json.RawMessage `json:"workflowId"`
	}
	if err := json.Unmarshal(raw, &ids); err != nil {
		return Execution{}, fmt.Errorf("n8n api: %s: decode execution ids: %w", op, err)
	}
	e.ID = idString(ids.ID)
	e.WorkflowID = idString(ids.WorkflowID)
	e.Raw = raw
	return e, nil
}

func idString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}
