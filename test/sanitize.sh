#!/usr/bin/env bash
# Runs the tests against raceguard built with AddressSanitizer and
# UndefinedBehaviorSanitizer (`make SANITIZE=1`), in a Debian 12 root file
# system with its own PostgreSQL 15 (scripts/chroot.sh), so nothing on this
# machine changes. Run as root:
#     bash test/sanitize.sh
# The suites are those of test/suites.sh (the README's test command), run
# against servers with libasan preloaded (and test/sanitize/asan_shim.c).
# Any sanitizer report or server crash, or any failed suite, fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != --inside ]; then
    source scripts/chroot.sh
    started=$SECONDS
    chroot_make bookworm 15
    echo "== bookworm root ready ($((SECONDS - started)) s)"
    started=$SECONDS
    status=0
    chroot_run bookworm 15 bash /raceguard/test/sanitize.sh --inside || status=$?
    echo "== sanitizer run: $((SECONDS - started)) s"
    exit $status
fi

# Inside the root: the repository is /raceguard, read-only; build a copy.
export PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
export PATH=/usr/lib/postgresql/15/bin:$PATH SANITIZE=1
work=/tmp/sanitize
build=$work/build
mkdir -p "$build" "$work/socket"
tar -C /raceguard --exclude=.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude=.build-mode \
    --exclude=results --exclude=output_iso --exclude=regression.diffs --exclude=regression.out -cf - . |
    tar -C "$build" -xf -
cd "$build"

echo "== building raceguard with sanitizers"
make -s PG_CONFIG="$PG_CONFIG" SANITIZE=1 >/dev/null
make -s PG_CONFIG="$PG_CONFIG" SANITIZE=1 install >/dev/null
gcc -shared -fPIC -O2 -Wall -Wextra -o "$work/asan_shim.so" test/sanitize/asan_shim.c -ldl
libasan=$(realpath "$(gcc -print-file-name=libasan.so)")
library=$("$PG_CONFIG" --pkglibdir)/raceguard.so

# Every server started here, by this script or by a test that makes its own
# cluster, runs with the sanitizer runtime: the postgres binary is replaced,
# in this run's throwaway view of the root only, by a script that preloads
# it. The shim comes after libasan (which must be first); it is explained in
# its source. Memory contexts free their blocks all at once at exit, which
# would look like leaks. ASan's reports go to $reports, from whichever
# server; UBSan's to the server's log. Either aborts the backend, so a test
# that met one fails too, and the server logs the crash.
reports=$work/reports
mkdir -m 1777 "$reports"
postgres=$(dirname "$PG_CONFIG")/postgres
mv "$postgres" "$postgres.unsanitized"
cat >"$postgres" <<WRAPPER
#!/bin/bash
export LD_PRELOAD="$libasan $work/asan_shim.so"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:log_path=$reports/asan
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1
exec -a "\$0" "$postgres.unsanitized" "\$@"
WRAPPER
chmod 755 "$postgres"

echo "== starting a server with $(basename "$libasan") preloaded"
chown -R postgres: "$work"
data=$work/data log=$work/server.log port=5432
runuser -u postgres -- initdb -D "$data" -U postgres -A trust --no-sync >"$work/initdb.log" ||
    { cat "$work/initdb.log"; exit 1; }
runuser -u postgres -- pg_ctl -D "$data" -l "$log" -w -t 120 \
    -o "-c listen_addresses='' -c unix_socket_directories='$work/socket' -c port=$port -c fsync=off -c jit=off" \
    start >/dev/null
stop_server() {
    runuser -u postgres -- pg_ctl -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}
trap stop_server EXIT
export PGHOST=$work/socket PGPORT=$port PGUSER=postgres PGDATABASE=postgres

passed=0
failed=0
failures=()
record() {
    local name=$1 status=$2
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures+=("$name")
    fi
}

# The sanitizers watch only when the server really runs with them: libasan
# mapped into the postmaster and into a backend that loaded raceguard, and
# the installed raceguard the instrumented build.
self_test() {
    local postmaster
    postmaster=$(head -n 1 "$data/postmaster.pid")
    grep -q libasan "/proc/$postmaster/maps" || { echo "FAIL: libasan is not loaded in the postmaster"; return 1; }
    grep -q __asan_report < <(nm -D "$library") || { echo "FAIL: $library is not instrumented"; return 1; }
    local maps
    maps=$(psql -qXAt -v ON_ERROR_STOP=1 -c "LOAD 'raceguard'" -c "SELECT pg_read_file('/proc/self/maps')") || return 1
    grep -q libasan <<<"$maps" && grep -q raceguard.so <<<"$maps" ||
        { echo "FAIL: a backend that loaded raceguard does not run with libasan"; return 1; }
    echo "ok: postmaster and backends run with $(basename "$libasan"); raceguard.so is instrumented"
}

echo
echo "=== sanitizer self-test"
status=0
self_test || status=1
record "sanitizer self-test" $status

echo
echo "=== test/suites.sh"
status=0
# The ORM packages' suites drive the same guards through frameworks: they
# run in the test command and the matrix, and say they skipped here.
export RACEGUARD_INTEGRATIONS_OPTIONAL=1
bash test/suites.sh 2>&1 | tee "$work/suites.out" || status=1
# Each suite counts as one.
suites_passed= suites_failed=
read -r suites_passed suites_failed < <(sed -n 's/^suites: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$work/suites.out" | tail -n 1) || true
passed=$((passed + ${suites_passed:-0}))
failed=$((failed + ${suites_failed:-0}))
[ "$status" -eq 0 ] || failures+=("test/suites.sh")
[ -n "${suites_passed:-}" ] || { failed=$((failed + 1)); failures+=("test/suites.sh (no summary)"); }

stop_server
trap - EXIT

echo
echo "=== sanitizer reports"
status=0
if [ -n "$(ls -A "$reports")" ]; then
    for report in $(ls "$reports" | head -n 3); do
        echo "--- $reports/$report"
        head -n 60 "$reports/$report"
    done
    echo "--- in all, $(ls "$reports" | wc -l) reports:"
    grep -h '^SUMMARY' "$reports"/* | sort | uniq -c
    status=1
fi
if grep -n -E 'ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer|terminated by signal' "$log"; then
    echo "(in the server log, $log); the first report:"
    grep -m 1 -A 25 -E 'ERROR: AddressSanitizer|runtime error:' "$log" || true
    status=1
fi
[ $status -ne 0 ] || echo "ok: no sanitizer report, no server crash in $(wc -l <"$log") lines of server log"
record "sanitizer reports" $status

echo
[ $failed -eq 0 ] || echo "failed: ${failures[*]}"
echo "sanitize: $passed passed, $failed failed"
[ $failed -eq 0 ]
