#!/usr/bin/env bash
# SCIM load benchmark (`make bench-scim`, which runs it under
# scripts/test-env.sh so that DIRSYNCD_TEST_PG_DSN names a PostgreSQL
# cluster). For dirsyncd on SQLite, dirsyncd on PostgreSQL, and the peer
# (scimmy + scimmy-routers from npm, in memory) the same workload runs
# (cmd/scimload): create USERS users at CONCURRENCY, then DURATION of
# filtered GETs, PUTs and group PATCHes. Prints requests/s, p50 and p99 per
# target, the CPU time per mixed request (the scimload process: server and
# load generator; on PostgreSQL also the backends serving it), and our
# mixed throughput as a ratio to the peer's.
#
# Variables: USERS (10000), CONCURRENCY (16), DURATION (20s), SKIP_PEER=1,
# SKIP_PG=1, BENCH_DIR (work directory, default a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-10000}
CONCURRENCY=${CONCURRENCY:-16}
DURATION=${DURATION:-20s}
GO=${GO:-go}
work=${BENCH_DIR:-$(mktemp -d -t bench-scim-XXXXXX)}
mkdir -p "$work"
results="$work/results.txt"
: >"$results"
peer_pid=""
pg_db=""
cleanup() {
	if [[ -n $peer_pid ]]; then kill "$peer_pid" 2>/dev/null || true; fi
	if [[ -n $pg_db ]]; then psql "$DIRSYNCD_TEST_PG_DSN" -qc "DROP DATABASE IF EXISTS $pg_db" >/dev/null 2>&1 || true; fi
	if [[ -z ${BENCH_DIR:-} ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT

echo "bench-scim: $(nproc) cores, USERS=$USERS CONCURRENCY=$CONCURRENCY DURATION=$DURATION, load average $(cut -d' ' -f1-3 /proc/loadavg)"
$GO build -o "$work/scimload" ./cmd/scimload
load() { "$work/scimload" -users "$USERS" -concurrency "$CONCURRENCY" -duration "$DURATION" "$@" | tee -a "$results"; }

load -store sqlite -label dirsyncd-sqlite

if [[ -z ${SKIP_PG:-} ]]; then
	if [[ -z ${DIRSYNCD_TEST_PG_DSN:-} ]]; then
		echo "bench-scim: DIRSYNCD_TEST_PG_DSN is not set (run through make bench-scim, or SKIP_PG=1)" >&2
		exit 1
	fi
	pg_db="scim_bench_$$"
	psql "$DIRSYNCD_TEST_PG_DSN" -qc "CREATE DATABASE $pg_db" >/dev/null
	dsn=$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$DIRSYNCD_TEST_PG_DSN" "$pg_db")
	load -store postgres -dsn "$dsn" -label dirsyncd-postgres
fi

if [[ -z ${SKIP_PEER:-} ]]; then
	peer="$work/peer"
	mkdir -p "$peer"
	cp scim/internal/load/package.json scim/internal/load/peer/server.mjs "$peer/"
	(cd "$peer" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
	PEER_TOKEN=peer-token node "$peer/server.mjs" >"$work/peer.log" 2>&1 &
	peer_pid=$!
	for _ in $(seq 100); do
		grep -q '^listening ' "$work/peer.log" 2>/dev/null && break
		sleep 0.1
	done
	url=$(sed -n 's/^listening //p' "$work/peer.log")
	[[ -n $url ]] || { echo "bench-scim: the peer did not start:" >&2; cat "$work/peer.log" >&2; exit 1; }
	load -target "$url" -token peer-token -label peer-scimmy
fi

echo
echo "| target | create req/s | create p50 / p99 ms | mixed req/s | mixed p50 / p99 ms | CPU ms / mixed request |"
echo "|---|---|---|---|---|---|"
sed -n 's/^RESULT //p' "$results" | jq -r '"| \(.label) | \(.create_rps|floor) | \(.create_p50_ms) / \(.create_p99_ms) | \(.mixed_rps|floor) | \(.mixed_p50_ms) / \(.mixed_p99_ms) | \(.mixed_cpu_ms_per_request*1000|floor/1000)\(if .mixed_pg_cpu_ms_per_request then " + \(.mixed_pg_cpu_ms_per_request*1000|floor/1000) (PostgreSQL)" else "" end) |"'
peer_rps=$(sed -n 's/^RESULT //p' "$results" | jq -r 'select(.label=="peer-scimmy") | .mixed_rps')
if [[ -n $peer_rps ]]; then
	sed -n 's/^RESULT //p' "$results" | jq -r --argjson p "$peer_rps" 'select(.label!="peer-scimmy") | "\(.label): mixed throughput \((.mixed_rps / $p * 100 | floor) / 100)x the peer"'
fi
