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

// functionScenarios returns the n8n-fn scenarios (a function call through the sidecars), measured
// in the same run as the baselines.
func functionScenarios() []Scenario {
	return []Scenario{
		functionCallScenario(ScenarioFunctionCall, "lastNode",
			"Webhook -> n8n-fn call -> (Redis stream -> dispatcher -> function workflow: Webhook -> function -> Code node -> return) -> reply; "+
				"same work as "+ScenarioSubWorkflow+", but the function runs as its own queued execution on any worker"),
		functionCallScenario(ScenarioFunctionCallImmediate, "onReceived",
			"as "+ScenarioFunctionCall+", with the function's Webhook set to respond immediately (main does not wait for the function's execution)"),
	}
}

func functionCallScenario(name, fnResponseMode, description string) Scenario {
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
				return chain("bench "+path+" function", hook,
					directiveNode("Function", map[string]any{"op": "function", "name": path, "scope": "global", "timeoutMs": 15000}),
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
