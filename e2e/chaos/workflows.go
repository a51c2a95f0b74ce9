package chaos

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// The suite's two workflows. The function's body reports its start and its completion to the
// counter and waits the time the client asked for (like a call to an outside API); its result
// carries the client's key and 2·n, so a wrong or mixed-up answer is seen.
//
//	caller:   Webhook (last node) -> n8n-fn call (on error: continue, so the error reaches the client)
//	function: Webhook -> n8n-fn function -> Code (report start, wait ms, report done) -> n8n-fn return

// bodyJS is the function body; %q is the counter's URL.
const bodyJS = `const callId = $execution.customData.get('n8nfn_callId') || '';
const worker = $execution.customData.get('n8nfn_servedBy') || '';
const out = [];
for (const item of $input.all()) {
  const b = item.json.body || {};
  const rep = { key: String(b.key || ''), callId, exec: String($execution.id), worker };
  await helpers.httpRequest({ method: 'POST', url: %[1]q + '/start', body: rep, json: true, timeout: 5000 });
  await new Promise(r => setTimeout(r, Number(b.ms) || 1000));
  await helpers.httpRequest({ method: 'POST', url: %[1]q + '/done', body: rep, json: true, timeout: 5000 });
  out.push({ json: { ...item.json, done: true, key: b.key, v: (Number(b.n) || 0) * 2, worker } });
}
return out;`

// functionWorkflow is the function named name, served at webhook path name+"-fn".
func functionWorkflow(name, counterURL string, timeoutMs int64) ([]byte, error) {
	return chain("n8n-fn chaos "+name+" function",
		webhookNode(name+"-fn"),
		directiveNode("Function", map[string]any{"op": "function", "name": name, "scope": "global", "timeoutMs": timeoutMs}),
		codeNode("Body", fmt.Sprintf(bodyJS, counterURL)),
		directiveNode("Return", map[string]any{"op": "return"}),
	)
}

// callerWorkflow calls the function once per request, at webhook path name.
func callerWorkflow(name string, timeoutMs int64) ([]byte, error) {
	call := directiveNode("Call", map[string]any{"op": "call", "function": name, "timeoutMs": timeoutMs})
	// The Code node turns a failed call into an item {error: message}: the client sees which error.
	call["onError"] = "continueRegularOutput"
	return chain("n8n-fn chaos "+name+" caller", webhookNode(name), call)
}

func webhookNode(path string) map[string]any {
	return map[string]any{
		"id": uuid(), "name": "Webhook", "type": "n8n-nodes-base.webhook", "typeVersion": 2.1,
		"position": []int{0, 0}, "webhookId": uuid(),
		"parameters": map[string]any{"httpMethod": "POST", "path": path, "responseMode": "lastNode",
			"responseData": "allEntries", "options": map[string]any{}},
	}
}

func codeNode(name, js string) map[string]any {
	return map[string]any{
		"id": uuid(), "name": name, "type": "n8n-nodes-base.code", "typeVersion": 2, "position": []int{0, 0},
		"parameters": map[string]any{"mode": "runOnceForAllItems", "language": "javaScript", "jsCode": js},
	}
}

// directiveNode is a Code node holding an n8n-fn directive header and the explaining throw.
func directiveNode(name string, d map[string]any) map[string]any {
	b, _ := json.Marshal(d) // a map of strings and numbers always encodes
	return codeNode(name, "/* @n8n-fn "+string(b)+" */\nthrow new Error(\"n8n-fn: this node must run on the n8n-fn sidecar runner\");\n")
}

func chain(name string, nodes ...map[string]any) ([]byte, error) {
	conns := map[string]any{}
	for i := range nodes {
		nodes[i]["position"] = []int{220 * i, 0}
		if i+1 < len(nodes) {
			conns[nodes[i]["name"].(string)] = map[string]any{
				"main": [][]map[string]any{{{"node": nodes[i+1]["name"], "type": "main", "index": 0}}},
			}
		}
	}
	b, err := json.Marshal(map[string]any{"name": name, "nodes": nodes, "connections": conns,
		"settings": map[string]any{"executionOrder": "v1"}})
	if err != nil {
		return nil, fmt.Errorf("chaos: encode workflow %s: %w", name, err)
	}
	return b, nil
}

func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
