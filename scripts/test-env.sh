#!/usr/bin/env bash
# scripts/test-env.sh — the real services the tests use, started and stopped by us.
#
#   scripts/test-env.sh test [go test args...]   go test -race -count=1 -timeout 30m (default packages ./...)
#   scripts/test-env.sh run -- COMMAND [ARGS...] run any command (from the repo root) with the services up
#
# It installs what is missing (apt, Debian), starts a throwaway PostgreSQL cluster on a free loopback port
# in a temp dir, checks the OpenLDAP binaries the tests start per test, exports
#
#   DIRSYNCD_TEST_PG_DSN            superuser DSN of the throwaway cluster (testenv.Postgres makes one DB per test)
#   DIRSYNCD_TEST_SLAPD             /usr/sbin/slapd
#   DIRSYNCD_TEST_LDAP_SCHEMA_DIR   /etc/ldap/schema
#   DIRSYNCD_TEST_LDAP_MODULE_DIR   /usr/lib/ldap
#
# and always stops PostgreSQL and removes the temp dir on exit, keeping the command's exit code.
#
# Knobs: DIRSYNCD_TEST_TIMEOUT (go test -timeout, default 30m), DIRSYNCD_TEST_KEEP=1 (keep the temp dir
# for inspection), DIRSYNCD_TEST_BROWSER=0 (do not install chromium for the browser tests, see ensure_chromium).
set -euo pipefail

# ---------------------------------------------------------------------------------------------- helpers
section() { printf '\n==> %s\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
die() {
	printf '\n!!! test-env: %s\n' "$*" >&2
	exit 1
}

usage() {
	sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# as_root runs a command as root (directly, or with password-less sudo for developers).
as_root() {
	if is_root; then
		"$@"
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		die "need root to run: $* (install the package yourself, or run as root)"
	fi
}

APT_UPDATED=0
apt_install() {
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand"
	if [ "$APT_UPDATED" -eq 0 ]; then
		info "apt-get update"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
		APT_UPDATED=1
	fi
	info "apt-get install $*"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 ||
		die "apt-get install $* failed"
}

# port_in_use reports whether something listens on 127.0.0.1:PORT.
port_in_use() {
	local port=$1
	if command -v ss >/dev/null 2>&1; then
		ss -Htln "sport = :$port" 2>/dev/null | grep -q . && return 0
	fi
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# free_port prints a loopback port nobody listens on (below the Linux ephemeral range).
free_port() {
	local port i
	for i in $(seq 1 200); do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
		if ! port_in_use "$port"; then
			echo "$port"
			return 0
		fi
	done
	die "no free loopback port found between 20000 and 32000"
}

# ------------------------------------------------------------------------------------------------ state
TMP=""
PG_BIN=""
PG_DATA=""
PG_LOG=""
PG_STARTED=0
CHILD=""

# pg_as_owner runs a PostgreSQL server binary as the cluster owner (initdb refuses root).
pg_as_owner() {
	if is_root; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# descendants prints the pids of every process below PID (read from /proc; no procps needed).
descendants() {
	local stat pid ppid rest
	local -A kids=()
	for stat in /proc/[0-9]*/stat; do
		read -r rest <"$stat" 2>/dev/null || continue
		pid=${rest%% *}
		rest=${rest##*) } # the command name may hold spaces and parentheses
		read -r _ ppid _ <<<"$rest" # state, ppid, ...
		kids[$ppid]+="$pid "
	done
	local queue=("$1") p c
	while [ "${#queue[@]}" -gt 0 ]; do
		p=${queue[0]}
		queue=("${queue[@]:1}")
		for c in ${kids[$p]:-}; do
			echo "$c"
			queue+=("$c")
		done
	done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
		section "Stopping the command (pid $CHILD and its descendants)"
		# go test's test binaries (and the slapd they start) would outlive a signal to go alone.
		# shellcheck disable=SC2046
		kill -TERM $(descendants "$CHILD") "$CHILD" 2>/dev/null
		wait "$CHILD" 2>/dev/null
	fi
	if [ "$PG_STARTED" -eq 1 ]; then
		section "Stopping PostgreSQL"
		if ! pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -t 30 -w stop >/dev/null 2>&1; then
			info "fast shutdown failed; immediate shutdown"
			pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -t 30 -w stop >/dev/null 2>&1 ||
				info "pg_ctl stop failed; see $PG_LOG"
		fi
	fi
	if [ -n "$TMP" ] && [ -d "$TMP" ]; then
		if [ "${DIRSYNCD_TEST_KEEP:-}" = 1 ]; then
			info "keeping $TMP (DIRSYNCD_TEST_KEEP=1)"
		else
			rm -rf "$TMP"
		fi
	fi
	if [ "$rc" -eq 0 ]; then
		section "Done: success"
	else
		section "Done: exit code $rc"
	fi
	exit "$rc"
}

# --------------------------------------------------------------------------------------------------- Go
ensure_go() {
	section "Go toolchain"
	if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
		export PATH="/usr/local/go/bin:$PATH"
	fi
	command -v go >/dev/null 2>&1 || die "go not found (expected on PATH or at /usr/local/go/bin)"
	info "$(go version)"
	# -race needs cgo, which needs a C compiler; Go silently disables cgo when there is none.
	if ! command -v "$(go env CC)" >/dev/null 2>&1; then
		info "no C compiler for the race detector; installing gcc"
		apt_install gcc libc6-dev
	fi
	export CGO_ENABLED=1
	# Tests need no VCS stamp, and a clone owned by another user would make stamping fail.
	export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
	section "Go modules"
	go mod download || die "go mod download failed (is the Go proxy reachable?)"
	info "module cache: $(go env GOMODCACHE)"
}

# ------------------------------------------------------------------------------------------- PostgreSQL
find_pg_bin() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

start_postgres() {
	section "PostgreSQL"
	if ! PG_BIN=$(find_pg_bin); then
		info "server binaries not found under /usr/lib/postgresql/*/bin"
		apt_install postgresql
		PG_BIN=$(find_pg_bin) || die "postgresql installed but no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
	fi
	info "server: $PG_BIN ($("$PG_BIN/postgres" --version))"
	if is_root && ! id -u postgres >/dev/null 2>&1; then
		info "creating system user postgres"
		useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres ||
			die "useradd postgres failed"
	fi

	PG_DATA="$TMP/pg/data"
	PG_LOG="$TMP/pg/postgres.log"
	local sock="$TMP/pg/sock"
	mkdir -p "$PG_DATA" "$sock"
	chmod 700 "$PG_DATA"
	if is_root; then
		chown -R postgres:postgres "$TMP/pg"
	fi

	info "initdb $PG_DATA"
	if ! pg_as_owner "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
		--no-sync >"$TMP/initdb.log" 2>&1; then
		cat "$TMP/initdb.log" >&2
		die "initdb failed"
	fi
	# A throwaway cluster: no durability, many connections (parallel tests, pools per test), loopback only.
	pg_as_owner tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF

# --- scripts/test-env.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
max_connections = 300
shared_buffers = 64MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_parallel_workers_per_gather = 0
log_min_messages = warning
EOF

	local port attempt
	for attempt in 1 2 3; do
		port=$(free_port)
		info "starting on 127.0.0.1:$port (attempt $attempt)"
		if pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -o "-p $port" -w -t 60 start >/dev/null 2>&1; then
			PG_STARTED=1
			break
		fi
		# The port may have been taken between probe and bind; anything else fails below.
		if ! grep -q 'could not bind\|Address already in use' "$PG_LOG" 2>/dev/null; then
			break
		fi
	done
	if [ "$PG_STARTED" -ne 1 ]; then
		printf '\n--- %s ---\n' "$PG_LOG" >&2
		cat "$PG_LOG" >&2 2>/dev/null || true
		die "PostgreSQL did not start"
	fi
	if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -t 30; then
		cat "$PG_LOG" >&2
		die "PostgreSQL started but does not accept connections on 127.0.0.1:$port"
	fi
	export DIRSYNCD_TEST_PG_DSN="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
	info "DIRSYNCD_TEST_PG_DSN=$DIRSYNCD_TEST_PG_DSN"
}

# ---------------------------------------------------------------------------------------------- OpenLDAP
# The tests start their own slapd per test (internal/testenv); here we only make sure it is installed.
ensure_openldap() {
	section "OpenLDAP"
	local missing=()
	[ -x /usr/sbin/slapd ] || missing+=(slapd)
	command -v ldapsearch >/dev/null 2>&1 || missing+=(ldap-utils)
	if [ "${#missing[@]}" -gt 0 ]; then
		info "missing: ${missing[*]}"
		apt_install slapd ldap-utils
	fi
	[ -x /usr/sbin/slapd ] || die "/usr/sbin/slapd not found after installing slapd"
	[ -f /etc/ldap/schema/core.schema ] || die "/etc/ldap/schema/core.schema not found"
	ls /usr/lib/ldap/back_mdb*.so* >/dev/null 2>&1 || die "back_mdb module not found in /usr/lib/ldap"
	# The Debian package's post-install leaves a configured slapd on port 389 when an init system is
	# present; our tests use their own instances and ports, so it does not matter.
	export DIRSYNCD_TEST_SLAPD=/usr/sbin/slapd
	export DIRSYNCD_TEST_LDAP_SCHEMA_DIR=/etc/ldap/schema
	export DIRSYNCD_TEST_LDAP_MODULE_DIR=/usr/lib/ldap
	info "$(/usr/sbin/slapd -VV 2>&1 | head -n 1)"
	info "DIRSYNCD_TEST_SLAPD=$DIRSYNCD_TEST_SLAPD"
	info "DIRSYNCD_TEST_LDAP_SCHEMA_DIR=$DIRSYNCD_TEST_LDAP_SCHEMA_DIR"
	info "DIRSYNCD_TEST_LDAP_MODULE_DIR=$DIRSYNCD_TEST_LDAP_MODULE_DIR"
}

# ------------------------------------------------------------------------------------------- node / npm
ensure_node() {
	section "Node.js"
	if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
		info "node $(node --version), npm $(npm --version 2>/dev/null)"
	else
		info "node/npm not found (no test needs them yet)"
	fi
}

# ------------------------------------------------------------------------------------------------ browser
# The browser tests (server/browser_test.go) drive headless Chromium: Debian's `chromium` package,
# installed here when missing (--no-install-recommends keeps it to the browser and its libraries) and
# run with --headless --no-sandbox --disable-background-networking. DIRSYNCD_TEST_BROWSER=0 skips the
# install (the browser tests then skip locally, and fail under CI). Screenshots go to
# DIRSYNCD_TEST_ARTIFACTS (default var/test-artifacts/).
ensure_chromium() {
	[ "${DIRSYNCD_TEST_BROWSER:-1}" != 0 ] || return 0
	section "Chromium (browser tests)"
	command -v chromium >/dev/null 2>&1 || apt_install chromium
	export DIRSYNCD_TEST_CHROMIUM
	DIRSYNCD_TEST_CHROMIUM=$(command -v chromium) || die "chromium not found after install"
	info "DIRSYNCD_TEST_CHROMIUM=$DIRSYNCD_TEST_CHROMIUM"
}

# ------------------------------------------------------------------------------------------------- main
main() {
	[ "$#" -ge 1 ] || usage
	local mode=$1
	shift
	local cmd=()
	case "$mode" in
	test)
		cmd=(go test -race -count=1 -timeout "${DIRSYNCD_TEST_TIMEOUT:-30m}")
		if [ "$#" -gt 0 ]; then cmd+=("$@"); else cmd+=(./...); fi
		;;
	run)
		[ "${1:-}" = -- ] && shift
		[ "$#" -ge 1 ] || usage
		cmd=("$@")
		;;
	-h | --help | help) usage ;;
	*) usage ;;
	esac

	cd "$(dirname "$0")/.."
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	# As root the cluster runs as the postgres user, which must reach its data dir: use /tmp then.
	local base=${TMPDIR:-/tmp}
	if is_root; then base=/tmp; fi
	TMP=$(mktemp -d "$base/dirsyncd-test-env.XXXXXX")
	chmod 755 "$TMP"

	ensure_go
	ensure_openldap
	ensure_node
	ensure_chromium
	start_postgres

	section "Running: ${cmd[*]}"
	# In the background, so a TERM/INT to this script runs cleanup at once (bash defers traps while a
	# foreground command runs); stdin is passed on explicitly (a background job would get /dev/null).
	local rc=0
	"${cmd[@]}" <&0 &
	CHILD=$!
	wait "$CHILD" || rc=$?
	CHILD=""
	return "$rc"
}

main "$@"
