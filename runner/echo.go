package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/n8n-fn/n8n-fn/n8nproto"
	"github.com/n8n-fn/n8n-fn/runner/functions"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// fetchInput pulls the task's input items (inputData.main[0]) and its node's name through one
// data request.
func fetchInput(ctx context.Context, t *n8nproto.UpstreamTask) ([]map[string]json.RawMessage, string, error) {
	raw, err := t.RequestData(ctx, json.RawMessage(n8nproto.InputOnlyParams))
	if err != nil {
		return nil, "", fmt.Errorf("request input data from n8n: %w", err)
	}
	var data struct {
		Node struct {
			Name string `json:"name"`
		} `json:"node"`
		InputData struct {
			Main [][]map[string]json.RawMessage `json:"main"`
		} `json:"inputData"`
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		return nil, "", fmt.Errorf("decode n8n's data response: %w", err)
	}
	if len(data.InputData.Main) == 0 {
		return nil, data.Node.Name, nil
	}
	return data.InputData.Main[0], data.Node.Name, nil
}

// echoOp returns the input items unchanged plus json._n8nfn = {"echo":true,"sidecar":<id>} and a
// pairedItem pointing at the input item: it proves a Code node reached the sidecar.
func (s *Sidecar) echoOp(ctx context.Context, t *n8nproto.UpstreamTask, h *workflows.Header, _ n8nproto.CodeSettings) (n8nproto.Parts, error) {
	items, node, err := fetchInput(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("echo: %w", err)
	}
	if _, err := workflows.ParseEcho(node, h); err != nil {
		return nil, &functions.OpError{Message: "n8n-fn: " + strings.TrimPrefix(err.Error(), "n8n-fn: "),
			Description: "The echo op takes no field but \"op\" and \"v\".", Err: err}
	}
	marker, _ := json.Marshal(map[string]any{"echo": true, "sidecar": s.cfg.ID})
	out := make([]map[string]json.RawMessage, 0, len(items))
	for i, it := range items {
		var fields map[string]json.RawMessage
		if j := it["json"]; len(j) > 0 && string(j) != "null" {
			if err := json.Unmarshal(j, &fields); err != nil {
				return nil, fmt.Errorf("echo: input item %d: json is not an object: %w", i, err)
			}
		}
		if fields == nil {
			fields = map[string]json.RawMessage{}
		}
		fields["_n8nfn"] = marker
		j, err := json.Marshal(fields)
		if err != nil {
			return nil, fmt.Errorf("echo: encode item %d: %w", i, err)
		}
		item := map[string]json.RawMessage{"json": j, "pairedItem": json.RawMessage(fmt.Sprintf(`{"item":%d}`, i))}
		if b, ok := it["binary"]; ok {
			item["binary"] = b
		}
		out = append(out, item)
	}
	b, err := json.Marshal(map[string]any{"result": out})
	if err != nil {
		return nil, fmt.Errorf("echo: encode the output: %w", err)
	}
	return n8nproto.Parts{b}, nil
}
