// Package e2e holds the end-to-end tests that drive the real n8n queue-mode stack started by
// scripts/stack.sh (make up). They read the stack's env file through n8napi.LoadStackEnv. Without a
// running stack they skip with a message, unless N8N_FN_E2E_REQUIRED=1 (set by scripts/test.sh),
// which turns a missing stack into a failure.
package e2e
