#!/usr/bin/env bash
# running_balance with raceguard in shared_preload_libraries, in a throwaway
# cluster of its own (the suites' cluster has no preload): the shared last
# entries (sql/running_balance_shared.sql, and the isolation spec
# running_balance_shared: what each way around the guard does to them), the
# group lock's wakeups (isolation spec running_balance_group_lock), and
# every running_balance test and isolation spec again, since with preload
# their appends go through the shared entries and the group lock's wakeups
# too; a prepared transaction written around the guard across a restart
# (test/preloaded/prepared_restart.sh); the running_balance stress test,
# flat and partitioned by month; and the hand-over's stress test
# (test/stress/handover.py).
#     PG_CONFIG=... bash test/preloaded/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
bash test/isolation/build_tester.sh || exit 1
rm -rf results/ regression.diffs regression.out output_iso/
regress="setup running_balance_shared running_balance running_balance_errors running_balance_shapes running_balance_groups"
isolation="helpers running_balance_shared running_balance_group_lock running_balance_same_group running_balance_other_groups running_balance_repeatable_read running_balance_memo_update running_balance_min_balance running_balance_idempotent running_balance_deadlock running_balance_routing running_balance_confirmed running_balance_handover running_balance_handover_limit"
status=0
# A cluster beside the suites' own: pg_virtualenv would reuse the port and
# settings directory the outer one exported.
# Then the running_balance stress test, flat and partitioned by month.
env -u PGPORT -u PGSYSCONFDIR -u PG_CLUSTER_CONF_ROOT REGRESS="$regress" ISOLATION="$isolation" \
    pg_virtualenv -t -v "$major" -o shared_preload_libraries=raceguard -o max_prepared_transactions=2 bash -c '
        make -s PG_CONFIG="$PG_CONFIG" installcheck REGRESS="$REGRESS" ISOLATION="$ISOLATION" || exit 1
        bash test/preloaded/prepared_restart.sh || exit 1
        createdb raceguard_stress && psql -qX -d raceguard_stress -c "CREATE EXTENSION raceguard" || exit 1
        for layout in flat monthly; do
            PGDATABASE=raceguard_stress STRESS_LAYOUT=$layout bash test/stress/running_balance.sh || exit 1
        done
        PGDATABASE=raceguard_stress /usr/bin/python3 test/stress/handover.py || exit 1' || status=1
if [ $status -ne 0 ]; then
    for diffs in regression.diffs output_iso/regression.diffs; do
        [ -f "$diffs" ] && cat "$diffs"
    done
fi
exit $status
