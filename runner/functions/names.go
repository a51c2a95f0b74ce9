package functions

import (
	"github.com/n8n-fn/n8n-fn/registry"
	"github.com/n8n-fn/n8n-fn/workflows"
)

// Inside the runtime a function is named by registry.FunctionKey only (what Redis, the catalog,
// the dispatcher and the heartbeat use). workflows.FunctionRef is what the leaf package workflows
// says (directives, call contexts, discovery); the two leaves do not import each other, so the
// runtime converts here, where a name comes in from or goes out to package workflows.

// keyOf is the runtime's name for a function workflows names.
func keyOf(r workflows.FunctionRef) registry.FunctionKey {
	return registry.FunctionKey{Scope: r.Scope, Name: r.Name}
}

// refOf is workflows' name for k, for its checks (recursion depth) and wording.
func refOf(k registry.FunctionKey) workflows.FunctionRef {
	return workflows.FunctionRef{Scope: k.Scope, Name: k.Name}
}

// display names k for people: the name of a global function, else name plus workflow id.
func display(k registry.FunctionKey) string { return refOf(k).Display() }
