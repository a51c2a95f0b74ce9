# Two commands matter: `make up` (stack + runners) and `make test` (everything). See README.md.
SHELL := /bin/bash
GO ?= go
CACHE ?= $(or $(N8N_FN_CACHE),$(HOME)/.cache/n8n-fn)

.PHONY: up down status logs restart-runners install test unit e2e build vet fmt bench-baseline bench docker-check versions version-test redis-topologies help

up:               ## install what is missing, start Redis + n8n main + workers + runners, write stack.env
	scripts/stack.sh up
down:             ## stop everything scripts/stack.sh started
	scripts/stack.sh down
status:
	scripts/stack.sh status
logs:
	scripts/stack.sh logs
restart-runners:  ## rebuild the n8n-fn binary and restart only the runners/sidecars
	scripts/stack.sh restart-runners
install:
	scripts/stack.sh install

test:             ## build, vet, gofmt, unit tests, stack up, e2e tests, replay
	scripts/test.sh

build:
	$(GO) build ./...
	$(GO) build -o bin/n8n-fn ./cmd/n8n-fn
vet:
	$(GO) vet ./...
fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)
e2e:
	N8N_FN_E2E_REQUIRED=1 $(GO) test -count=1 ./e2e/...

bench-baseline:   ## baseline stack benchmark (webhook->Code, ->sub-workflow, ->NoOp); JSON in $(CACHE)/bench/
	$(GO) run ./cmd/n8n-fn bench --scenarios webhook-code,webhook-subworkflow,webhook-noop
bench:            ## every scenario (baselines + n8n-fn calls) in one run
	$(GO) run ./cmd/n8n-fn bench

docker-check:     ## static checks of compose.queue-mode.yml (no Docker engine needed)
	$(GO) test -count=1 ./docker/...

versions:         ## protocol tests + relay cases against every supported n8n version's runner (scripts/versions.sh matrix)
	scripts/versions.sh matrix
version-test:     ## the same for one version: make version-test V=1.123.81 (scripts/versions.sh test V)
	@[ -n "$(V)" ] || { echo "usage: make version-test V=<n8n version>"; exit 2; }
	scripts/versions.sh test $(V)

redis-topologies: ## replay test-workflows with the functions on a real Redis Cluster and through Sentinel with a failover (scripts/redis-topologies.sh)
	scripts/redis-topologies.sh all

help:
	@grep -E '^[a-z-]+:.*##' Makefile | sed -E 's/:.*## /\t/'
