#!/usr/bin/env bash
# scripts/extract-n8n-env.sh — list the environment variable names an installed n8n reads, for
# docker/compose_test.go: @Env('NAME') in the compiled config classes (@n8n/config, the task
# runner's config, module configs in other @n8n/* packages) plus process.env.NAME reads in n8n,
# n8n-core, @n8n/* and the Code node.
# Usage: scripts/extract-n8n-env.sh [N8N_VERSION] > docker/n8n-<version>-env-names.txt
set -euo pipefail
CACHE=${N8N_FN_CACHE:-$HOME/.cache/n8n-fn}
V=${1:-${N8N_VERSION:-2.41.1}}
NM=$CACHE/n8n/$V/node_modules
[ -d "$NM/@n8n/config/dist" ] || { echo "n8n $V is not installed in $NM (scripts/stack.sh install)" >&2; exit 1; }
{
	grep -rhoE "Env\)\(['\"][A-Z0-9_]+['\"]" "$NM"/@n8n/*/dist "$NM/n8n/dist" --include='*.js' |
		sed -E "s/.*\(['\"]//; s/['\"]$//"
	grep -rhoE "process\.env(\.[A-Z][A-Z0-9_]+|\[['\"][A-Z][A-Z0-9_]+['\"]\])" \
		"$NM/n8n/dist" "$NM/n8n-core/dist" "$NM"/@n8n/*/dist "$NM/n8n-nodes-base/dist/nodes/Code" --include='*.js' |
		sed -E "s/process\.env(\.|\[['\"])//; s/['\"]\]$//"
} | sort -u
