#!/usr/bin/env bash
# make test-postgres: the store suite and the supervisor's end-to-end suite
# against a MongoDB-wire server of its own process — FerretDB v1 on a real
# PostgreSQL server — through RUNNERD_TEST_MONGO_URI, on both write paths.
#
# It needs PostgreSQL's server binaries (Debian: apt-get install postgresql;
# .ci/run installs them) and starts a throwaway cluster of its own on a free
# loopback port, in a temporary directory removed at the end. As root the
# cluster runs as the postgres user (initdb refuses root). The cluster runs
# with fsync off: it is a test server, durability is not under test.
#
# With arguments, it runs them instead of the suites, with the same
# environment (e.g. scripts/test-postgres.sh go test -tags ... -run X ./store/).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
TAGS=${TAGS:-ferretdb_no_postgresql}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)}
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
	echo "test-postgres: no PostgreSQL server binaries (set PGBIN, or on Debian: apt-get install postgresql)" >&2
	exit 1
fi

work=$(mktemp -d /tmp/runnerd-pg.XXXXXX)
chmod 755 "$work"
pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
ferret_pid=
cleanup() {
	if [ -n "$ferret_pid" ]; then kill "$ferret_pid" 2>/dev/null || true; wait "$ferret_pid" 2>/dev/null || true; fi
	if [ -f "$work/data/postmaster.pid" ]; then pg "$PGBIN/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/data" "$work/sock"
if [ "$(id -u)" = 0 ]; then chown postgres "$work/data" "$work/sock"; fi
pg "$PGBIN/initdb" -D "$work/data" -A trust -U postgres -E UTF8 --no-sync >"$work/initdb.log" 2>&1 ||
	{ cat "$work/initdb.log" >&2; exit 1; }

# PostgreSQL cannot pick a free port itself: try a few.
started=
for _ in 1 2 3 4 5 6 7 8; do
	port=$((20000 + RANDOM % 30000))
	if pg "$PGBIN/pg_ctl" -D "$work/data" -l "$work/data/postgres.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $port -k $work/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
		start >/dev/null; then
		started=1
		break
	fi
done
if [ -z "$started" ]; then
	cat "$work/data/postgres.log" >&2
	exit 1
fi
pg "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U postgres ferretdb
echo "test-postgres: $("$PGBIN/postgres" --version) on 127.0.0.1:$port"

mkdir -p bin
"$GO" build -o bin/ferretdb-pg ./internal/pgtest/ferretdb
bin/ferretdb-pg --postgresql-url "postgres://postgres@127.0.0.1:$port/ferretdb" --uri-file "$work/uri" >/dev/null 2>"$work/ferretdb.log" &
ferret_pid=$!
for _ in $(seq 1 100); do
	[ -s "$work/uri" ] && break
	kill -0 "$ferret_pid" 2>/dev/null || { cat "$work/ferretdb.log" >&2; exit 1; }
	sleep 0.1
done
RUNNERD_TEST_MONGO_URI=$(cat "$work/uri")
export RUNNERD_TEST_MONGO_URI RUNNERD_BIN=${RUNNERD_BIN:-$PWD/bin}
echo "test-postgres: FerretDB (PostgreSQL backend, pid $ferret_pid) at $RUNNERD_TEST_MONGO_URI"

if [ $# -gt 0 ]; then
	"$@"
	exit
fi

status=0
run() {
	echo "test-postgres: RUNNERD_TEST_WRITE_PATH=$1 go test $2 ${3:+-run '$3'}"
	RUNNERD_TEST_WRITE_PATH=$1 "$GO" test -tags "$TAGS" -count=1 -timeout 15m ${3:+-run "$3"} "$2" || status=1
}
run auto ./store/
run conditional ./store/
run auto ./supervisor/
run conditional ./supervisor/ "${E2E_RUN:-.}"
if ! kill -0 "$ferret_pid" 2>/dev/null; then
	echo "test-postgres: FerretDB exited during the tests" >&2
	cat "$work/ferretdb.log" >&2
	status=1
fi
exit $status
