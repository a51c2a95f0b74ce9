#!/usr/bin/env bash
# scripts/redis-topologies.sh — the replay of test-workflows with the functions' Redis on a real
# Redis Cluster and through Sentinel, each on a stack of its own next to the main one.
#
# Usage: scripts/redis-topologies.sh [cluster|sentinel|all]   (default all)
#   cluster   3 masters (cluster mode), sidecars on redis+cluster://; replay; every n8nfn: key must be
#             on the cluster and none on n8n's queue Redis
#   sentinel  a master, a replica and a Sentinel, sidecars on redis+sentinel://; replay with a
#             SENTINEL FAILOVER in the middle of its cases (TOPO_FAILOVER_AFTER, 10 s after the
#             sidecars serve the functions); every request must be answered right (0 lost)
# n8n's queue stays on its own standalone Redis. Settings: N8N_FN_CACHE (~/.cache/n8n-fn; the n8n
# install of N8N_VERSION there is linked, not copied), N8N_VERSION (2.41.1), TOPO_PORT_BASE (8678:
# the stack's ports), TOPO_REDIS_PORT (6392: n8n's Redis), TOPO_FN_PORT (6601: first function-Redis port).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${N8N_FN_CACHE:-$HOME/.cache/n8n-fn}
V=${N8N_VERSION:-2.41.1}
PORT_BASE=${TOPO_PORT_BASE:-8678}
QPORT=${TOPO_REDIS_PORT:-6392}
FP=${TOPO_FN_PORT:-6601}
WORK=$CACHE/topologies
GO=${GO:-go}

say() { printf '[topologies] %s\n' "$*"; }
die() { printf '[topologies] ERROR: %s\n' "$*" >&2; exit 1; }

[ -x "$CACHE/n8n/$V/node_modules/n8n/bin/n8n" ] || die "n8n $V is not installed in $CACHE/n8n/$V (scripts/stack.sh install)"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || die "needs redis-server and redis-cli"

SC=$WORK/stack-cache
mkdir -p "$SC/n8n" "$SC/bin"
ln -sfn "$CACHE/n8n/$V" "$SC/n8n/$V"
ln -sfn "$CACHE/node24" "$SC/node24"

PIDS=()
# start_redis NAME PORT ARGS...: a redis-server of ours in $WORK/NAME, its pid remembered.
start_redis() {
	local name=$1 port=$2
	shift 2
	rm -rf "${WORK:?}/$name"
	mkdir -p "$WORK/$name"
	(cd "$WORK/$name" && exec redis-server --port "$port" --bind 127.0.0.1 --save '' --daemonize no "$@") >"$WORK/$name.log" 2>&1 </dev/null &
	PIDS+=("$!")
	local i
	for ((i = 0; i < 50; i++)); do redis-cli -p "$port" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
	die "redis $name on :$port did not start; see $WORK/$name.log"
}
stop_all() {
	stack down >/dev/null 2>&1 || true
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	PIDS=()
}
trap stop_all EXIT

stack() { N8N_FN_CACHE=$SC N8N_VERSION=$V N8N_FN_STACK_PORT_BASE=$PORT_BASE REDIS_PORT=$QPORT N8N_FN_STACK_FN_REDIS_URL=$FN_URL "$ROOT/scripts/stack.sh" "$@"; }
replay() { "$SC/bin/n8n-fn-topo" replay --env "$SC/stack/stack.env" --redis-url "$FN_URL" test-workflows; }
fn_keys() { redis-cli -p "$1" --scan --pattern 'n8nfn:*' | wc -l; }

(cd "$ROOT" && $GO build -o "$SC/bin/n8n-fn-topo" ./cmd/n8n-fn)

run_cluster() {
	local p ports=() addrs=()
	for p in "$FP" $((FP + 1)) $((FP + 2)); do
		start_redis "cluster-$p" "$p" --cluster-enabled yes --cluster-config-file nodes.conf --appendonly yes
		ports+=("$p")
		addrs+=("127.0.0.1:$p")
	done
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$WORK/cluster-create.log" 2>&1 ||
		die "redis-cli --cluster create failed; see $WORK/cluster-create.log"
	for ((p = 0; p < 50; p++)); do redis-cli -p "$FP" cluster info | grep -q cluster_state:ok && break; sleep 0.2; done
	FN_URL="redis+cluster://${addrs[0]}?addr=${addrs[1]}&addr=${addrs[2]}"
	say "cluster ${addrs[*]}; stack of n8n $V on :$PORT_BASE, sidecars on $FN_URL"
	stack down >/dev/null 2>&1 || true # a stack left over from an interrupted run uses the old URL
	free_queue_port
	stack up >"$WORK/stack-up.log" 2>&1 || die "stack up failed; see $WORK/stack-up.log"
	redis-cli -p "$QPORT" --scan --pattern 'n8nfn:*' | xargs -r redis-cli -p "$QPORT" del >/dev/null
	replay
	local on_cluster=0
	for p in "${ports[@]}"; do on_cluster=$((on_cluster + $(fn_keys "$p"))); done
	say "n8nfn: keys on the cluster: $on_cluster, on n8n's Redis: $(fn_keys "$QPORT")"
	[ "$on_cluster" -gt 0 ] && [ "$(fn_keys "$QPORT")" = 0 ] || die "the functions did not run on the cluster"
	stop_all
}

# stamp prefixes every line with the time in ms (the replay's progress: when each case ended).
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%s%3N)" "$line"; done; }

run_sentinel() {
	local m=$((FP + 10)) r=$((FP + 11)) s=$((FP + 20000 + 10))
	start_redis sentinel-master "$m" --appendonly yes
	start_redis sentinel-replica "$r" --appendonly yes --replicaof 127.0.0.1 "$m"
	mkdir -p "$WORK/sentinel"
	printf 'port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor fnmaster 127.0.0.1 %s 1\nsentinel down-after-milliseconds fnmaster 5000\nsentinel failover-timeout fnmaster 10000\n' \
		"$s" "$WORK/sentinel" "$m" >"$WORK/sentinel/sentinel.conf"
	(cd "$WORK/sentinel" && exec redis-server "$WORK/sentinel/sentinel.conf" --sentinel) >"$WORK/sentinel.log" 2>&1 </dev/null &
	PIDS+=("$!")
	local i
	for ((i = 0; i < 100; i++)); do
		redis-cli -p "$r" info replication | grep -q master_link_status:up && redis-cli -p "$s" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	FN_URL="redis+sentinel://127.0.0.1:$s?master_name=fnmaster"
	say "master :$m, replica :$r, sentinel :$s; stack of n8n $V on :$PORT_BASE, sidecars on $FN_URL"
	stack down >/dev/null 2>&1 || true
	free_queue_port
	stack up >"$WORK/stack-up.log" 2>&1 || die "stack up failed; see $WORK/stack-up.log"

	# The replay runs its cases one after another; SENTINEL FAILOVER is sent FAILOVER_AFTER seconds
	# after the sidecars serve the functions, in the middle of them. Its progress lines are stamped
	# to tell which cases ran before and after it.
	local progress=$WORK/replay.progress report=$WORK/replay.json after=${TOPO_FAILOVER_AFTER:-10}
	: >"$progress"
	(
		set -o pipefail
		"$SC/bin/n8n-fn-topo" replay --env "$SC/stack/stack.env" --redis-url "$FN_URL" --json test-workflows 2>&1 >"$report" | stamp >"$progress"
	) &
	local rpid=$! t0 tf rc=0
	t0=$(date +%s%3N)
	while ! grep -q 'functions ready' "$progress"; do
		kill -0 "$rpid" 2>/dev/null || break
		sleep 0.1
	done
	sleep "$after"
	tf=$(date +%s%3N)
	say "SENTINEL FAILOVER fnmaster ($(((tf - t0) / 1000)) s into the replay): $(redis-cli -p "$s" SENTINEL FAILOVER fnmaster)"
	wait "$rpid" || rc=$?
	cut -d' ' -f2- "$progress"
	local now
	now=$(redis-cli -p "$s" SENTINEL get-master-addr-by-name fnmaster | tail -1)
	say "master after the run: :$now (was :$m)"
	[ "$now" = "$r" ] || die "the failover did not happen during the replay"
	# Cases that ended before / after the failover, requests sent / answered right (a failed case's
	# requests count as not answered right), from the stamped progress and the JSON report.
	local counts
	counts=$(python3 - "$progress" "$report" "$tf" <<'PY'
import json, re, sys
progress, report, tf = sys.argv[1], sys.argv[2], int(sys.argv[3])
before = after = 0
during = ""
for line in open(progress):
    ts, _, rest = line.rstrip("\n").partition(" ")
    m = re.match(r"(PASS|FAIL|SKIP) (.*?) \(\d+ req", rest)
    if not m:
        continue
    if int(ts) < tf:
        before += 1
    else:
        if after == 0:
            during = m.group(2)
        after += 1
try:
    rep = json.load(open(report))
except ValueError:
    rep = {"results": []}
sent = sum(r["requests"] for r in rep["results"] if r["status"] != "skip")
right = sum(r["requests"] for r in rep["results"] if r["status"] == "pass")
print(before, after, sent, right, rep.get("failed", -1), during.replace(" ", "_"))
PY
	)
	local before after sent right failed during
	read -r before after sent right failed during <<<"$counts"
	say "failover during case ${during//_/ }: $before cases ended before it, $after after"
	say "requests sent $sent, answered right $right, lost or wrong $((sent - right)); failed cases: $failed"
	[ "$before" -gt 0 ] && [ "$after" -gt 0 ] || die "the failover was not in the middle of the cases ($before before, $after after): raise or lower TOPO_FAILOVER_AFTER"
	[ "$rc" = 0 ] && [ "$sent" -gt 0 ] && [ "$sent" = "$right" ] || die "calls were lost or answered wrong through the failover (replay exit $rc; see $WORK/replay.json and the stack logs in $SC/stack/logs)"
	stop_all
}

# free_queue_port: n8n's queue Redis of this run must be the stack's own; scripts/stack.sh would use
# any Redis it finds on the port, and two stacks on one queue take each other's jobs.
free_queue_port() {
	if redis-cli -p "$QPORT" ping >/dev/null 2>&1; then
		die "a Redis not started by this run answers on :$QPORT (another stack's?); set TOPO_REDIS_PORT to a free port"
	fi
}

case ${1:-all} in
cluster) run_cluster ;;
sentinel) run_sentinel ;;
all) run_cluster && run_sentinel ;;
*) sed -n '2,13p' "$0"; exit 2 ;;
esac
say "ok"
