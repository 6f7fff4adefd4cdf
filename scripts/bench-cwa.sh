#!/usr/bin/env bash
# CWA sync benchmark (make bench-cwa): the fake CWA (cwasync/cwafake, in
# process, over HTTP) serves 5,000 firms, 15,000 offices and 50,000 legacy
# logins (one in ten with a dirsyncd user of the same e-mail); dirsyncd
# syncs them into PostgreSQL (and SQLite): "initial" into an empty store,
# "repeat" with no changes (which must write nothing; the benchmark fails
# otherwise). Per phase seconds (snapshot, fetch, state, apply), the
# process's CPU seconds (cpu-s) and the PostgreSQL backends' (pg-cpu-s) are
# reported beside ns/op. Target (issue 5): the PostgreSQL sync in <= 5 s on
# 2 cores. See cwasync/bench_test.go.
#
#   BENCH_CWA_COUNT        repetitions (default 3)
#   BENCH_CWA_STORES       regexp of stores (default postgres; "." for both)
#   BENCH_CWA_CONCURRENCY  requests in flight (default 16, as cwa.concurrency)
#   BENCH_CWA_FAKE         "nethttp" serves the fake with net/http's server
#                          instead of cwafake.ServeLean (for comparison)
set -euo pipefail
cd "$(dirname "$0")/.."
count="${BENCH_CWA_COUNT:-3}"
stores="${BENCH_CWA_STORES:-postgres}"
echo "bench-cwa: 5000 firms, 15000 offices, 50000 logins; stores ${stores}; count ${count}; fake ${BENCH_CWA_FAKE:-lean}; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec go test -run '^$' -bench "^BenchmarkSync\$/${stores}/" -benchtime 1x -count "${count}" -timeout 60m ./cwasync/
