package bench

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Scenario names of the baseline; later benchmarks compare themselves with these.
const (
	ScenarioWebhookCode = "webhook-code"
	ScenarioSubWorkflow = "webhook-subworkflow"
	ScenarioWebhookNoOp = "webhook-noop"
)

// All returns every known scenario: the baselines first, then the n8n-fn ones.
func All() []Scenario {
	return append(Baseline(), functionScenarios()...)
}

// Select returns the scenarios whose names are listed (comma-separated); empty means all.
func Select(all []Scenario, names string) ([]Scenario, error) {
	if strings.TrimSpace(names) == "" {
		return all, nil
	}
	var out []Scenario
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		found := false
		for _, s := range all {
			if s.Name == n {
				out = append(out, s)
				found = true
			}
		}
		if !found {
			known := make([]string, len(all))
			for i, s := range all {
				known[i] = s.Name
			}
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", n, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// benchBody is what every baseline call sends; the checks look for it in the answer.
func benchBody() []byte { return []byte(`{"hello":"bench","n":1}`) }

// Baseline returns the three reference scenarios: webhook -> Code node, webhook -> Execute
// Workflow -> sub-workflow with a Code node, and a bare webhook (-> NoOp).
func Baseline() []Scenario {
	return []Scenario{
		{
			Name:        ScenarioWebhookCode,
			Description: "Webhook (last node) -> Code node (JS runner on the worker)",
			Workflows: []WorkflowFunc{func(path string, _ []string) ([]byte, error) {
				return chain("bench "+path, webhookNode(path),
					codeNode("Code", "return $input.all().map(item => ({ json: { ...item.json.body, probed: true } }));"))
			}},
			Body:  benchBody(),
			Check: expectItem("probed"),
		},
		{
			Name:        ScenarioSubWorkflow,
			Description: "Webhook -> Execute Workflow (wait) -> sub-workflow (trigger -> Code node)",
			Workflows: []WorkflowFunc{
				func(path string, _ []string) ([]byte, error) {
					trigger := node("When Executed by Another Workflow", "n8n-nodes-base.executeWorkflowTrigger", 1.1,
						map[string]any{"inputSource": "passthrough"})
					wf := workflow("bench "+path+" sub", []map[string]any{trigger,
						codeNode("Code", "return $input.all().map(item => ({ json: { ...item.json, sub: true } }));")})
					wf["settings"] = map[string]any{"executionOrder": "v1", "callerPolicy": "workflowsFromSameOwner"}
					return json.Marshal(wf)
				},
				func(path string, ids []string) ([]byte, error) {
					if len(ids) != 1 {
						return nil, errors.New("the sub-workflow must be imported first")
					}
					exec := node("Execute Workflow", "n8n-nodes-base.executeWorkflow", 1.2, map[string]any{
						"source":     "database",
						"workflowId": map[string]any{"__rl": true, "mode": "id", "value": ids[0]},
						"mode":       "once",
						"workflowInputs": map[string]any{"mappingMode": "defineBelow", "value": map[string]any{},
							"matchingColumns": []any{}, "schema": []any{}, "attemptToConvertTypes": false, "convertFieldsToString": true},
						"options": map[string]any{"waitForSubWorkflow": true},
					})
					return chain("bench "+path, webhookNode(path), exec)
				},
			},
			Body:  benchBody(),
			Check: expectItem("sub"),
		},
		{
			Name:        ScenarioWebhookNoOp,
			Description: "Webhook (last node) -> No Operation: queue round trip without any runner",
			Workflows: []WorkflowFunc{func(path string, _ []string) ([]byte, error) {
				return chain("bench "+path, webhookNode(path), node("No Operation", "n8n-nodes-base.noOp", 1, map[string]any{}))
			}},
			Body:  benchBody(),
			Check: expectItem(""),
		},
	}
}

// expectItem checks for HTTP 200 and one item that carries the request body (merged at the top
// level after the Code node, under "body" for a webhook item) and, when flag is set, flag: true at
// the top level.
func expectItem(flag string) func(int, []byte) error {
	return func(status int, body []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("HTTP %d: %.200s", status, body)
		}
		var items []map[string]any
		if err := json.Unmarshal(body, &items); err != nil || len(items) != 1 {
			return fmt.Errorf("want a one-item JSON array, got %.200s", body)
		}
		it := items[0]
		hello := it["hello"]
		if b, ok := it["body"].(map[string]any); ok && hello == nil {
			hello = b["hello"]
		}
		if hello != "bench" {
			return fmt.Errorf("answer lacks the request's hello=bench: %.200s", body)
		}
		if flag != "" && it[flag] != true {
			return fmt.Errorf("answer lacks %s=true: %.200s", flag, body)
		}
		return nil
	}
}

// expectItems checks for HTTP 200 and n items, each carrying the request's hello=bench, its own
// index i (0..n-1, in order: the answer must keep the items' order) and flag: true.
func expectItems(n int, flag string) func(int, []byte) error {
	return func(status int, body []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("HTTP %d: %.200s", status, body)
		}
		var items []map[string]any
		if err := json.Unmarshal(body, &items); err != nil || len(items) != n {
			return fmt.Errorf("want a %d-item JSON array, got %.200s", n, body)
		}
		for i, it := range items {
			if it["hello"] != "bench" || it["i"] != float64(i) || it[flag] != true {
				return fmt.Errorf("item %d lacks hello=bench, i=%d or %s=true: %.200s", i, i, flag, body)
			}
		}
		return nil
	}
}

// WebhookNode is a POST webhook that answers with the last node's items. Exported for scenarios
// added in other files of this package and for callers that build their own workflows.
func WebhookNode(path string) map[string]any { return webhookNode(path) }

func webhookNode(path string) map[string]any {
	n := node("Webhook", "n8n-nodes-base.webhook", 2.1, map[string]any{
		"httpMethod": "POST", "path": path, "responseMode": "lastNode", "responseData": "allEntries", "options": map[string]any{},
	})
	n["webhookId"] = uuid()
	return n
}

func codeNode(name, js string) map[string]any {
	return node(name, "n8n-nodes-base.code", 2, map[string]any{"mode": "runOnceForAllItems", "language": "javaScript", "jsCode": js})
}

func node(name, typ string, version float64, params map[string]any) map[string]any {
	return map[string]any{"id": uuid(), "name": name, "type": typ, "typeVersion": version, "position": []int{0, 0}, "parameters": params}
}

func workflow(name string, nodes []map[string]any) map[string]any {
	conns := map[string]any{}
	for i := 0; i+1 < len(nodes); i++ {
		conns[nodes[i]["name"].(string)] = map[string]any{
			"main": [][]map[string]any{{{"node": nodes[i+1]["name"], "type": "main", "index": 0}}},
		}
	}
	for i, n := range nodes {
		n["position"] = []int{220 * i, 0}
	}
	return map[string]any{"name": name, "nodes": nodes, "connections": conns, "settings": map[string]any{"executionOrder": "v1"}}
}

func chain(name string, nodes ...map[string]any) ([]byte, error) {
	return json.Marshal(workflow(name, nodes))
}

func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
