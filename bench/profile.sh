#!/usr/bin/env bash
# Profiles running_balance's append path: 8 clients appending single rows
# over 1,000 accounts (the benchmark's workload), with perf sampling every
# process of the throwaway cluster; prints where the backends' time goes.
#     bash bench/profile.sh              # 10 s of samples
#     PROFILE_SECONDS=30 bash bench/profile.sh
# Needs perf (Debian's linux-perf, installed when missing) and a kernel that
# lets root sample (perf_event_paranoid); the figures are shares of all the
# samples taken in postgres processes, so they hold on any machine speed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v perf >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends linux-perf >/dev/null
fi
export LANG=C.UTF-8 LC_ALL=C.UTF-8
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/profile_inside.sh" <<'INSIDE'
#!/usr/bin/env bash
set -euo pipefail
work=$1
seconds=${PROFILE_SECONDS:-10}
psql -qX -v ON_ERROR_STOP=1 <<'SQL'
CREATE EXTENSION raceguard;
CREATE TABLE ledger (account_id integer NOT NULL, amount bigint NOT NULL, running_balance bigint, entry_no bigint);
CREATE UNIQUE INDEX ON ledger (account_id, entry_no);
INSERT INTO ledger SELECT a, 1, n, n FROM generate_series(1, 1000) a, generate_series(1, 10) n;
CREATE TRIGGER guard BEFORE INSERT OR UPDATE OR DELETE ON ledger FOR EACH ROW
    EXECUTE FUNCTION raceguard.running_balance('amount', 'running_balance', 'account_id', 'seq=entry_no');
VACUUM ANALYZE ledger;
SQL
printf '\\set account random(1, 1000)\nINSERT INTO ledger (account_id, amount) VALUES (:account, 1);\n' >"$work/append.sql"
# Warm up (every backend's first touch of shared memory), then sample.
pgbench -n -c 8 -j 2 -T $((seconds + 4)) -f "$work/append.sql" >"$work/pgbench.out" 2>&1 &
pgbench_pid=$!
sleep 3
perf record -q -F 999 -g -a -o "$work/perf.data" -- sleep "$seconds" >/dev/null 2>&1
wait "$pgbench_pid"
grep -E "^tps" "$work/pgbench.out" | sed 's/^/pgbench: /'
problems=$(psql -qXAt -c "SELECT count(*) FROM raceguard.verify_running_balance('ledger')")
echo "verify_running_balance: $problems problems"
INSIDE
pg_virtualenv -t -v 15 -o shared_buffers=2GB -o fsync=off -o full_page_writes=off -o synchronous_commit=off \
    -o max_wal_size=16GB -o autovacuum=off -o jit=off bash "$work/profile_inside.sh" "$work"
report() {
    perf report -i "$work/perf.data" --comm postgres --stdio "$@" 2>/dev/null
}
echo
echo "== share of the backends' samples (inclusive), the append statement's parts"
report --children -g none --percent-limit 0.3 |
    grep -E '\] (exec_simple_query|pg_parse_query|pg_plan_queries|PortalRun|ExecBRInsertTriggers|heap_insert|ExecInsertIndexTuples|CommitTransactionCommand|asm_exc_page_fault)$' || true
echo
echo "== inside the guard (inclusive, of all the backends' samples)"
report --children -g none --percent-limit 0.05 |
    grep -E '\] (raceguard::.*(on_insert|begin_append|find_group_last_entry|remember_append|scan_part|find_last_entry|lock_group|group_hash_of|find_hint|slot_for_hint)|_bt_first|btgettuple|index_fetch_heap|index_beginscan_internal|index_endscan|LockAcquireExtended|heap_modify_tuple_by_cols|ExecForceStoreHeapTuple|table_slot_create|ExecDropSingleTupleTableSlot|relation_open|index_open)$' |
    sed -E 's/raceguard::(\(anonymous namespace\)::)?([a-z_]+)\(.*/raceguard \2/' || true
echo
echo "== top symbols by own time (all postgres processes)"
report --no-children -g none --percent-limit 1 -s dso,sym | grep -E '^ +[0-9]' | head -20
