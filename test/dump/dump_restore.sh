#!/usr/bin/env bash
# A dump restores exactly what it dumped: every trigger (name, table, enabled
# state, definition), disabled and broken raceguard guards included, and
# raceguard.check_guards() says the same of the restored database as of the
# source. Plain (pg_dump | psql, which goes on after an error), custom
# (pg_restore) and directory (pg_restore -j 2, where a ledger's trigger can
# be created before its index, or before a partition's rows) dumps. The
# restores that pg_restore runs set raceguard.restoring, as docs/operations.md
# says a restore does; the plain one shows that a script needs no setting
# (its triggers come after the data).
# Runs against the cluster in PGHOST/PGPORT (test/suites.sh runs it inside
# the throwaway cluster); creates and drops its own databases.
set -uo pipefail
cd "$(dirname "$0")"
source_db=raceguard_dump_source
target_db=raceguard_dump_target
work=$(mktemp -d)
drop_databases() { dropdb --if-exists "$source_db" 2>/dev/null; dropdb --if-exists "$target_db" 2>/dev/null; }
trap 'rm -rf "$work"; drop_databases' EXIT

psql_quiet() { psql -qAtX -v ON_ERROR_STOP=1 "$@"; }

# What must survive: every user trigger with its table, name, enabled state
# and definition, the guards' problems, and the rows. Partitions' clones
# count as user triggers: before PostgreSQL 15 they are marked internal.
snapshot() {
    psql_quiet -d "$1" <<'SQL'
SELECT 'trigger', c.oid::regclass, t.tgname, t.tgenabled, t.tgparentid <> 0 AS clone, pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE (NOT t.tgisinternal OR t.tgparentid <> 0) AND c.relnamespace = 'app'::regnamespace
 ORDER BY c.oid::regclass::text COLLATE "C", t.tgname COLLATE "C";
SELECT 'problem', table_name, trigger_name, problem FROM raceguard.check_guards()
 ORDER BY table_name::text COLLATE "C", trigger_name COLLATE "C", problem COLLATE "C";
SELECT 'guard', table_name, trigger_name, guard, columns, options, enabled, clone_of FROM raceguard.guards
 ORDER BY table_name::text COLLATE "C", trigger_name COLLATE "C";
SELECT 'rows', 'app.orders', count(*), sum(lock_version) FROM app.orders;
SELECT 'rows', 'app.payments', count(*), sum(balance) FROM app.payments;
SELECT 'rows', 'app.ledger', count(*), sum(balance) FROM app.ledger;
SELECT 'ledger problems', count(*) FROM raceguard.verify_running_balance('app.payments');
SQL
}

status=0
check_restore() {
    local format=$1 log=$2
    snapshot "$target_db" >"$work/target.txt" || { echo "FAIL $format: cannot read the restored database"; status=1; return; }
    if ! diff -u "$work/source.txt" "$work/target.txt"; then
        echo "FAIL $format: the restored database differs from the source"
        status=1
    elif grep -qE 'ERROR:|error:' "$log"; then
        echo "FAIL $format: the restore raised errors:"
        cat "$log"
        status=1
    else
        echo "ok $format: $(grep -c '^trigger' "$work/target.txt") triggers, $(grep -c '^problem' "$work/target.txt") problems, as in the source"
    fi
    grep 'WARNING' "$log" | sort | uniq -c | sed 's/^/    restore said: /'
}

fresh_target() { dropdb --if-exists "$target_db" 2>/dev/null; createdb "$target_db"; }

drop_databases
createdb "$source_db" || exit 1
psql_quiet -d "$source_db" -f source.sql || exit 1
snapshot "$source_db" >"$work/source.txt" || exit 1
# The source must hold what the test is about, or it proves nothing.
for needed in "tickets_assignee|D" "broken_misspelt|O" "broken_no_index|O" "broken_child_gone|O" \
              "cases_lock_version|A" "cases_owner|R" "mirror_balance|A" "ledger_balance|D"; do
    grep -q "|${needed}|" "$work/source.txt" || { echo "FAIL: the source has no trigger $needed"; exit 1; }
done

fresh_target && pg_dump "$source_db" 2>"$work/plain.log" | psql -qX -d "$target_db" >/dev/null 2>>"$work/plain.log"
check_restore "plain (pg_dump | psql)" "$work/plain.log"

pg_dump -Fc -f "$work/dump.custom" "$source_db" &&
    fresh_target && PGOPTIONS='-c raceguard.restoring=on' pg_restore -d "$target_db" "$work/dump.custom" 2>"$work/custom.log"
check_restore "custom (pg_dump -Fc, pg_restore)" "$work/custom.log"

pg_dump -Fd -f "$work/dump.dir" "$source_db" &&
    fresh_target && PGOPTIONS='-c raceguard.restoring=on' pg_restore -j 2 -d "$target_db" "$work/dump.dir" 2>"$work/directory.log"
check_restore "directory (pg_dump -Fd, pg_restore -j 2)" "$work/directory.log"

exit $status
