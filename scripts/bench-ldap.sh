#!/usr/bin/env bash
# LDAP sync benchmark (make bench-ldap): 100,000 users and 2,000 groups
# (about 300,000 memberships) loaded into a throwaway slapd with slapadd,
# then in one run: the floor (ldapsearch -E pr=1000/noprompt paged dump to
# /dev/null), dirsyncd's first full sync, no-change full sync and
# incremental sync after 100 changed entries, into SQLite and PostgreSQL,
# each with its peak RSS. See ldapsync/bench_test.go (BenchmarkLDAPSync).
# Before it, BenchmarkLDAPRead (ldapsync/readfloor_bench_test.go) times the
# reads alone against the same floor: go-ldap's read of the floor's search,
# and the full sync's own reads without a store. DIRSYNCD_BENCH_LDAP_READ=0
# skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
export DIRSYNCD_BENCH_LDAP_USERS="${DIRSYNCD_BENCH_LDAP_USERS:-100000}"
export DIRSYNCD_BENCH_LDAP_GROUPS="${DIRSYNCD_BENCH_LDAP_GROUPS:-2000}"
# The dirsyncd binary is measured too, one process per run under /usr/bin/time -v.
export DIRSYNCD_BENCH_BIN="${DIRSYNCD_BENCH_BIN:-$(mktemp -d)/dirsyncd}"
[ -x "$DIRSYNCD_BENCH_BIN" ] || go build -o "$DIRSYNCD_BENCH_BIN" ./cmd/dirsyncd
echo "bench-ldap: ${DIRSYNCD_BENCH_LDAP_USERS} users, ${DIRSYNCD_BENCH_LDAP_GROUPS} groups, $(nproc) cores" >&2
benches='^(BenchmarkLDAPRead|BenchmarkLDAPSync)$'
[ "${DIRSYNCD_BENCH_LDAP_READ:-1}" = 0 ] && benches='^BenchmarkLDAPSync$'
exec go test -run '^$' -bench "$benches" -benchtime 1x -count 1 -timeout 60m -v ./ldapsync/
