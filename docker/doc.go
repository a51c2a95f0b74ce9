// Package docker holds the sidecar's Dockerfile and the static checks of compose.queue-mode.yml
// (compose_test.go): no Docker engine is needed to run them. The *-env-names.txt files list the
// environment variables n8n 2.41.1 (scripts/extract-n8n-env.sh) and the official
// task-runner-launcher (its internal/config and docs/setup.md) read.
package docker
