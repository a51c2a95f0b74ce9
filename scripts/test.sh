#!/usr/bin/env bash
# scripts/test.sh — the project's one test command (`make test`, run by .ci/run):
# build, vet, gofmt, staticcheck, unit tests (-race), the stack (started when it is not up), end-to-end tests,
# the bad-input corpus against the stack, the replay of test-workflows/, and last the short chaos run,
# which kills and restarts this stack's Redis and a worker (N8N_FN_TEST_CHAOS=0 skips it). Any failure fails the run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CACHE=${N8N_FN_CACHE:-$HOME/.cache/n8n-fn}
GO=${GO:-go}
step() { printf '\n=== %s\n' "$*"; }
t0=$(date +%s)

step "go build ./..."
$GO build ./...

step "go vet ./..."
$GO vet ./...

step "gofmt"
# shellcheck disable=SC2046 # file names have no spaces; word splitting is intended
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt -l reports (run gofmt -w on them):"
	echo "$unformatted"
	exit 1
fi

step "staticcheck"
# Installed into the cache on first use (CI starts with only Go); the version is pinned so a new
# staticcheck release cannot fail a run by itself: bump it here on purpose.
STATICCHECK_VERSION=v0.8.2
staticcheck_bin="$CACHE/tools/staticcheck-$STATICCHECK_VERSION/staticcheck"
if [ ! -x "$staticcheck_bin" ]; then
	echo "installing staticcheck $STATICCHECK_VERSION into $(dirname "$staticcheck_bin")"
	GOBIN="$(dirname "$staticcheck_bin")" $GO install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
"$staticcheck_bin" ./...

step "shellcheck (scripts)"
if command -v shellcheck >/dev/null; then
	shellcheck -S warning scripts/*.sh .ci/run
else
	echo "SKIPPED: shellcheck is not installed (.ci/run installs it)"
fi

step "unit tests (go test -race, everything except e2e)"
# shellcheck disable=SC2046
$GO test -race -count=1 $($GO list ./... | grep -v '/e2e$' | grep -v '/e2e/')

step "stack (scripts/stack.sh up: idempotent, starts only what is not running)"
scripts/stack.sh up

step "headless Chromium (the status page e2e test opens the page in it)"
# Debian's chromium package, installed like CI's other packages (.ci/run lists it too). Without it
# (not root, no apt-get, no package) TestStatusPageInChromium skips and says why.
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
	echo "chromium: $(command -v chromium || command -v chromium-browser)"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
		echo "could not install chromium: TestStatusPageInChromium will skip"
else
	echo "SKIPPED: chromium is not installed and this is not root with apt-get: TestStatusPageInChromium will skip"
fi

step "end-to-end tests (go test ./e2e/...)"
# Required: a stack that is not there is a failure here, not a skip.
N8N_FN_E2E_REQUIRED=1 $GO test -count=1 -timeout 20m -skip TestBadInputCorpusOnStack ./e2e/...

step "bad-input corpus against the stack (test-workflows/bad-input), then: sidecars healthy, a call and a relayed Code node work"
# After the other end-to-end tests, so the health check at its end also sees what they left.
corpus_log=$(mktemp)
if ! N8N_FN_E2E_REQUIRED=1 $GO test -count=1 -timeout 10m -run TestBadInputCorpusOnStack -v ./e2e >"$corpus_log" 2>&1; then
	grep -v '^=== ' "$corpus_log"
	rm -f "$corpus_log"
	exit 1
fi
grep -E '^ok|bad-input corpus on the stack' "$corpus_log"
rm -f "$corpus_log"

step "replay of test-workflows (n8n-fn replay)"
runner_kind=$(sed -n 's/^N8N_STACK_RUNNER_KIND=//p' "$CACHE/stack/stack.env")
if [ "$runner_kind" != sidecar ]; then
	# Function directives need the n8n-fn sidecar; with the official runner they throw by design.
	echo "SKIPPED: the stack runs RUNNER_KIND=$runner_kind runners, replay needs RUNNER_KIND=sidecar (scripts/stack.sh)"
	step "all tests passed in $(($(date +%s) - t0)) s (replay skipped)"
	exit 0
fi
mkdir -p "$CACHE/bin"
$GO build -o "$CACHE/bin/n8n-fn-test" ./cmd/n8n-fn
"$CACHE/bin/n8n-fn-test" replay test-workflows

step "migration corpus: origin workflows converted by n8n-fn migrate, replayed against the origin's items"
migration_out=$(mktemp -d)
N8N_FN_MIGRATION_OUT="$migration_out" $GO test -count=1 -run TestMigrationCorpus ./workflows/replay
"$CACHE/bin/n8n-fn-test" replay "$migration_out"
rm -rf "$migration_out"

# Last, because it kills processes of this stack (Redis, then a worker) while calls run: nothing else
# runs on the stack then, and the suite brings back what it killed (scripts/stack.sh up) and waits
# until a probe call is answered after each experiment; the `up` after it checks once more that
# every process runs. It fails the run when a call is lost or answered wrong, a body completed
# twice for a caller that got its answer, any call failed in baseline, or n8n-fn's call node
# failed one in redis-kill (n8n itself may fail a caller's request while its Redis is away).
# About 3-5 minutes.
if [ "${N8N_FN_TEST_CHAOS:-1}" = 0 ]; then
	step "chaos, short: SKIPPED (N8N_FN_TEST_CHAOS=0)"
else
	step "chaos, short (n8n-fn chaos --short --check: kills and restarts this stack's Redis and a worker)"
	mkdir -p "$CACHE/chaos"
	"$CACHE/bin/n8n-fn-test" chaos --short --check --env "$CACHE/stack/stack.env" \
		--out "$CACHE/chaos/test-$(date -u +%Y%m%dT%H%M%SZ).json"
	scripts/stack.sh up
fi

step "all tests passed in $(($(date +%s) - t0)) s"
