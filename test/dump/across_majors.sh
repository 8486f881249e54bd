#!/usr/bin/env bash
# A dump taken on one PostgreSQL major restores into a later one with
# raceguard installed: test/matrix.sh dumps majors_source.sql's database on
# 15 and restores it into 17 and 18, plain (psql) and in parallel
# (pg_restore -j 4). After each restore check_guards() is empty, both
# ledgers verify, the lease token sequence has not gone backwards, the
# guards are those of the source, and every guard still fires
# (majors_check.sql).
#     bash test/dump/across_majors.sh dump DIR      # writes DIR
#     bash test/dump/across_majors.sh restore DIR   # reads DIR
# Runs against the cluster in PGHOST/PGPORT (pg_virtualenv); creates and
# drops its own databases.
set -uo pipefail
cd "$(dirname "$0")"
action=${1:-} dir=${2:-}
[ -n "$dir" ] && { [ "$action" = dump ] || [ "$action" = restore ]; } ||
    { echo "usage: $0 dump|restore DIR" >&2; exit 2; }
db=raceguard_majors
psql_quiet() { psql -qAtX -v ON_ERROR_STOP=1 "$@"; }
server_major() { psql_quiet -d postgres -c "SELECT current_setting('server_version_num')::int / 10000"; }

guards() {
    psql_quiet -d "$1" -c "SELECT table_name, trigger_name, guard, columns, options, timing, events, enabled, clone_of
                             FROM raceguard.guards ORDER BY table_name::text COLLATE \"C\", trigger_name COLLATE \"C\""
}

if [ "$action" = dump ]; then
    rm -rf "$dir" && mkdir -p "$dir" || exit 1
    dropdb --if-exists "$db" 2>/dev/null
    createdb "$db" && psql_quiet -d "$db" -f majors_source.sql >/dev/null || exit 1
    psql_quiet -d "$db" -c "SELECT max(claim_token) FROM app.jobs" >"$dir/source_token" &&
        guards "$db" >"$dir/guards.txt" &&
        server_major >"$dir/source_major" || exit 1
    pg_dump -f "$dir/plain.sql" "$db" && pg_dump -Fd -f "$dir/dump.dir" "$db" || { echo "FAIL: pg_dump"; exit 1; }
    dropdb "$db"
    echo "ok: dumped on $(cat "$dir/source_major") ($(pg_dump --version)): $(wc -l <"$dir/guards.txt") guards, lease tokens up to $(cat "$dir/source_token")"
    exit 0
fi

source_major=$(cat "$dir/source_major") source_token=$(cat "$dir/source_token") || exit 1
target_major=$(server_major) || exit 1
log=$(mktemp)
trap 'rm -f "$log"; dropdb --if-exists "$db" 2>/dev/null' EXIT
status=0
check_restore() {
    local how=$1 failed=0 line check ok detail
    if grep -E 'ERROR|error:' "$log"; then
        echo "FAIL $how: the restore raised errors"
        failed=1
    fi
    if ! diff -u "$dir/guards.txt" <(guards "$db"); then
        echo "FAIL $how: the restored guards differ from the source's"
        failed=1
    fi
    local checks=0
    while IFS='|' read -r check ok detail; do
        checks=$((checks + 1))
        if [ "$ok" != t ]; then
            echo "FAIL $how: $check ($detail)"
            failed=1
        fi
    done < <(psql_quiet -d "$db" -v source_token="$source_token" -f majors_check.sql 2>&1 || echo "majors_check.sql|f|did not run to its end")
    [ "$checks" -eq "$(grep -c "^SELECT '" majors_check.sql)" ] || { echo "FAIL $how: $checks checks ran"; failed=1; }
    [ $failed -eq 0 ] && echo "ok $how: $source_major -> $target_major, $checks checks passed (guards as dumped, check_guards() empty, ledgers verify, tokens go on, every guard fires)"
    [ $failed -eq 0 ] || status=1
}

dropdb --if-exists "$db" 2>/dev/null
createdb "$db" && psql -qX -d "$db" -f "$dir/plain.sql" >/dev/null 2>"$log"
check_restore "plain (psql)"
dropdb "$db" && createdb "$db" && PGOPTIONS='-c raceguard.restoring=on' pg_restore -j 4 -d "$db" "$dir/dump.dir" 2>"$log"
check_restore "parallel (pg_restore -j 4)"
exit $status
