package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/n8n-fn/n8n-fn/registry"
)

// ScenarioFunctionCall is the n8n-fn function call, compared with ScenarioSubWorkflow (n8n's own
// Execute Workflow) and ScenarioWebhookNoOp (one bare queued execution) in the same run.
const ScenarioFunctionCall = "fn-call"

// ScenarioFunctionCallImmediate is the same call with the function's Webhook answering at once
// ("Respond: Immediately"): main does not wait for the function's execution to end, at the price of
// errors in the function surfacing only at the caller's timeout.
const ScenarioFunctionCallImmediate = "fn-call-immediate"

// ScenarioFunctionCallBatch is fn-call with call batching on the function ("batch":{"max":16,
// "waitMs":5,"parallel":1}): concurrent calls meet in one sidecar's batches and share executions.
const ScenarioFunctionCallBatch = "fn-call-batch"

// Fan-out: one request becomes FanOutItems items and each item calls a sub-workflow / function
// whose body waits FanOutWaitMs, like a call to an outside API. n8n's Execute Workflow runs the
// items one after another on the caller's worker; n8n-fn's call runs them at once on any worker.
const (
	ScenarioSubWorkflowFanOut  = "webhook-subworkflow-fanout"
	ScenarioFunctionCallFanOut = "fn-call-fanout"
	// ScenarioFunctionCallFanOutBatch is fn-call-fanout with batching on the function: the
	// call node queues its calls together, so one execution serves them all.
	ScenarioFunctionCallFanOutBatch = "fn-call-fanout-batch"
	FanOutItems                     = 8
	// The same three with FanOutItemsWide items (issue 13's fan-out of 32): the native one runs 32
	// bodies one after another (about 4 s per request), so run it with a small --seq.
	ScenarioSubWorkflowFanOutWide       = "webhook-subworkflow-fanout32"
	ScenarioFunctionCallFanOutWide      = "fn-call-fanout32"
	ScenarioFunctionCallFanOutWideBatch = "fn-call-fanout32-batch"
	FanOutItemsWide                     = 32
	FanOutWaitMs                        = 100
	fanOutMaxSequential                 = 40
	fanOutSplitJS                       = "return Array.from({length: %d}, (_, i) => ({ json: { ...$input.first().json.body, i } }));"
	fanOutBodyJS                        = "await new Promise(r => setTimeout(r, %d));\nreturn $input.all().map(item => ({ json: { ...item.json, %s: true } }));"
	fanOutFunctionTimeoutMillis         = 30000
)

// functionScenarios returns the n8n-fn scenarios (a function call through the sidecars), measured
// in the same run as the baselines.
func functionScenarios() []Scenario {
	return []Scenario{
		functionCallScenario(ScenarioFunctionCall, "lastNode",
			"Webhook -> n8n-fn call -> (Redis stream -> dispatcher -> function workflow: Webhook -> function -> Code node -> return) -> reply; "+
				"same work as "+ScenarioSubWorkflow+", but the function runs as its own queued execution on any worker"),
		functionCallScenario(ScenarioFunctionCallImmediate, "onReceived",
			"as "+ScenarioFunctionCall+", with the function's Webhook set to respond immediately (main does not wait for the function's execution)"),
		functionCallScenarioWith(ScenarioFunctionCallBatch, "lastNode",
			"as "+ScenarioFunctionCall+", with call batching on the function (batch max 16, waitMs 5, parallel 1): concurrent calls share one execution",
			map[string]any{"batch": map[string]any{"max": 16, "waitMs": 5, "parallel": 1}}),
		subWorkflowFanOutScenario(ScenarioSubWorkflowFanOut, FanOutItems),
		functionFanOutScenario(ScenarioFunctionCallFanOut, ScenarioSubWorkflowFanOut, FanOutItems, nil),
		functionFanOutScenario(ScenarioFunctionCallFanOutBatch, ScenarioSubWorkflowFanOut, FanOutItems, map[string]any{"max": 32, "waitMs": 5}),
		subWorkflowFanOutScenario(ScenarioSubWorkflowFanOutWide, FanOutItemsWide),
		functionFanOutScenario(ScenarioFunctionCallFanOutWide, ScenarioSubWorkflowFanOutWide, FanOutItemsWide, nil),
		functionFanOutScenario(ScenarioFunctionCallFanOutWideBatch, ScenarioSubWorkflowFanOutWide, FanOutItemsWide, map[string]any{"max": 32, "waitMs": 5}),
	}
}

// subWorkflowFanOutScenario is n8n's native fan-out of items sub-workflow runs.
func subWorkflowFanOutScenario(name string, items int) Scenario {
	sc := Scenario{
		Name: name,
		Description: fmt.Sprintf("Webhook -> %d items -> Execute Workflow (each item, wait) -> sub-workflow (trigger -> Code waiting %d ms): "+
			"n8n runs the items one after another on the caller's worker", items, FanOutWaitMs),
		Body:          benchBody(),
		Check:         expectItems(items, "sub"),
		MaxSequential: fanOutMaxSequential,
		Ref:           name, // it is the reference of the function fan-outs, not a candidate
	}
	base := Baseline()[1].Workflows // webhook-subworkflow: the sub-workflow, then its caller
	sc.Workflows = []WorkflowFunc{
		func(path string, ids []string) ([]byte, error) {
			wf, nodes, err := decodeWorkflow(base[0], path, ids)
			if err != nil {
				return nil, err
			}
			code := nodes[1]["parameters"].(map[string]any)
			code["jsCode"] = fmt.Sprintf(fanOutBodyJS, FanOutWaitMs, "sub")
			return json.Marshal(wf)
		},
		func(path string, ids []string) ([]byte, error) {
			wf, nodes, err := decodeWorkflow(base[1], path, ids)
			if err != nil {
				return nil, err
			}
			exec := nodes[1]
			exec["parameters"].(map[string]any)["mode"] = "each"
			return chain(wf["name"].(string), nodes[0], codeNode("Split", fmt.Sprintf(fanOutSplitJS, items)), exec)
		},
	}
	return sc
}

// decodeWorkflow builds a workflow with wf and decodes it for changes: the workflow and its nodes.
func decodeWorkflow(wf WorkflowFunc, path string, ids []string) (map[string]any, []map[string]any, error) {
	b, err := wf(path, ids)
	if err != nil {
		return nil, nil, err
	}
	var w map[string]any
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, nil, fmt.Errorf("decode workflow: %w", err)
	}
	raw, _ := w["nodes"].([]any)
	nodes := make([]map[string]any, len(raw))
	for i, n := range raw {
		if nodes[i], _ = n.(map[string]any); nodes[i] == nil {
			return nil, nil, fmt.Errorf("decode workflow: node %d is not an object", i)
		}
	}
	if len(nodes) < 2 {
		return nil, nil, fmt.Errorf("decode workflow: %d nodes, want at least 2", len(nodes))
	}
	return w, nodes, nil
}

// functionFanOutScenario is the n8n-fn fan-out of items calls, compared with the native ref.
func functionFanOutScenario(name, ref string, items int, batch map[string]any) Scenario {
	var fnName string
	desc := fmt.Sprintf("Webhook -> %d items -> n8n-fn call (one call per item, in parallel) -> function (Webhook -> function -> Code waiting %d ms -> return) on any worker",
		items, FanOutWaitMs)
	if batch != nil {
		desc = fmt.Sprintf("as the fan-out of %d, with call batching on the function (batch max %v): the %d calls share one execution", items, batch["max"], items)
	}
	return Scenario{
		Name:        name,
		Description: desc,
		Workflows: []WorkflowFunc{
			func(path string, _ []string) ([]byte, error) {
				fnName = path
				fn := map[string]any{"op": "function", "name": path, "scope": "global", "timeoutMs": fanOutFunctionTimeoutMillis}
				if batch != nil {
					fn["batch"] = batch
				}
				return chain("bench "+path+" function", webhookNode(path+"-fn"),
					directiveNode("Function", fn),
					codeNode("Code", fmt.Sprintf(fanOutBodyJS, FanOutWaitMs, "fn")),
					directiveNode("Return", map[string]any{"op": "return"}))
			},
			func(path string, _ []string) ([]byte, error) {
				return chain("bench "+path, webhookNode(path),
					codeNode("Split", fmt.Sprintf(fanOutSplitJS, items)),
					directiveNode("Call", map[string]any{"op": "call", "function": path, "timeoutMs": fanOutFunctionTimeoutMillis}))
			},
		},
		Body:          benchBody(),
		Check:         expectItems(items, "fn"),
		Ready:         func(ctx context.Context, env Env) error { return functionReady(ctx, env, fnName) },
		MaxSequential: fanOutMaxSequential,
		Ref:           ref,
	}
}

func functionCallScenario(name, fnResponseMode, description string) Scenario {
	return functionCallScenarioWith(name, fnResponseMode, description, nil)
}

// functionCallScenarioWith is functionCallScenario with more fields in the function directive.
func functionCallScenarioWith(name, fnResponseMode, description string, extra map[string]any) Scenario {
	var fnName string // set when the function workflow is built: the run's path
	return Scenario{
		Name:        name,
		Description: description,
		Workflows: []WorkflowFunc{
			// The function: its name is the run's path, so runs never share a function.
			func(path string, _ []string) ([]byte, error) {
				fnName = path
				hook := webhookNode(path + "-fn")
				hook["parameters"].(map[string]any)["responseMode"] = fnResponseMode
				fn := map[string]any{"op": "function", "name": path, "scope": "global", "timeoutMs": 15000}
				for k, v := range extra {
					fn[k] = v
				}
				return chain("bench "+path+" function", hook,
					directiveNode("Function", fn),
					codeNode("Code", "return $input.all().map(item => ({ json: { ...item.json, fn: true } }));"),
					directiveNode("Return", map[string]any{"op": "return"}))
			},
			// The caller: the webhook item (body included) is the call's params.
			func(path string, _ []string) ([]byte, error) {
				return chain("bench "+path, webhookNode(path),
					directiveNode("Call", map[string]any{"op": "call", "function": path, "timeoutMs": 15000}))
			},
		},
		Body:  benchBody(),
		Check: expectItem("fn"),
		Ready: func(ctx context.Context, env Env) error { return functionReady(ctx, env, fnName) },
	}
}

// directiveNode is a Code node holding an n8n-fn directive header and the explaining throw.
func directiveNode(name string, d map[string]any) map[string]any {
	b, _ := json.Marshal(d)
	return codeNode(name, "/* @n8n-fn "+string(b)+" */\nthrow new Error(\"n8n-fn: this node must run on the n8n-fn sidecar runner\");\n")
}

// functionReady waits until a live sidecar serves the scenario's function: the sidecars discover
// published workflows periodically (or at once when a call names an unknown function).
func functionReady(ctx context.Context, env Env, name string) error {
	url := env.Stack.RedisURL
	if url == "" {
		return fmt.Errorf("the stack env has no REDIS_URL: cannot see whether the sidecars serve the function")
	}
	rdb, err := registry.NewClient(url, 0)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	defer rdb.Close()
	prefix := env.Stack.Vars["N8N_FN_PREFIX"]
	reg, err := registry.New(rdb, registry.Config{Prefix: prefix})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	key := registry.FunctionKey{Scope: registry.ScopeGlobal, Name: name}
	for {
		_, ok, err := reg.LookupFunction(ctx, key)
		if err == nil && ok {
			if ok, err = reg.HasLiveConsumer(ctx, key); err == nil && ok {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no live n8n-fn sidecar serves function %s after 60 s: is the stack running with RUNNER_KIND=sidecar?", name)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
