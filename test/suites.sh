#!/usr/bin/env bash
# The suites themselves; test/run_all.sh runs this inside a throwaway cluster
# (PGHOST, PGPORT, PGUSER, PGPASSWORD set by pg_virtualenv).
set -uo pipefail
cd "$(dirname "$0")/.."
# The PostgreSQL major under test: an already-set PG_CONFIG wins (15 by default).
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}

passed=0
failed=0
failures=()
# How long each suite took, printed at the end: CI's budget is spent here.
timings=()
run_suite() {
    local name=$1
    shift
    echo
    echo "=== $name"
    # A suite that is a script runs under a time limit, so that a hang fails
    # that suite instead of stalling the whole run.
    local limit=()
    declare -F "$1" >/dev/null || limit=(timeout --kill-after=30 "${RACEGUARD_SUITE_TIMEOUT:-1200}")
    local started=$SECONDS
    if "${limit[@]}" "$@"; then
        passed=$((passed + 1))
        echo "--- passed in $((SECONDS - started)) s: $name"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "--- FAILED in $((SECONDS - started)) s: $name"
    fi
    timings+=("$(printf '%5d s  %s' $((SECONDS - started)) "$name")")
}

regress() {
    rm -rf results/ regression.diffs regression.out output_iso/
    # PostgreSQL 13 installs no isolation tester: build it (a no-op from 14 on).
    bash test/isolation/build_tester.sh || return 1
    if make -s PG_CONFIG="$PG_CONFIG" installcheck; then
        return 0
    fi
    for diffs in regression.diffs output_iso/regression.diffs; do
        [ -f "$diffs" ] && cat "$diffs"
    done
    return 1
}

pgtap() {
    local db=raceguard_pgtap
    dropdb --if-exists "$db" && createdb "$db" &&
        psql -qX -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION pgtap; CREATE EXTENSION raceguard;" &&
        psql -qX -v ON_ERROR_STOP=1 -d "$db" -f test/pgtap/setup/helpers.sql &&
        pg_prove -d "$db" test/pgtap/*.sql
}

stress() {
    local db=raceguard_stress script status=0
    dropdb --if-exists "$db" && createdb "$db" &&
        psql -qX -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION raceguard;" || return 1
    for script in test/stress/*.sh; do
        [ "$(basename "$script")" = lib.sh ] && continue
        echo "--- $script"
        PGDATABASE=$db bash "$script" || status=1
    done
    echo "--- test/stress/running_balance.sh, ledger partitioned by month"
    PGDATABASE=$db STRESS_LAYOUT=monthly bash test/stress/running_balance.sh || status=1
    return $status
}

run_suite "release metadata (META.json, control file, package, make dist)" bash test/meta.sh
run_suite "pg_regress and isolation specs" regress
run_suite "pgTAP" pgtap
run_suite "statistics with raceguard preloaded, and their bound" bash test/stats/preload.sh
run_suite "running_balance with raceguard preloaded: the shared last entries, and every running_balance test again" bash test/preloaded/run.sh
run_suite "stress" stress
run_suite "update: ALTER EXTENSION raceguard UPDATE, each path" bash test/upgrade/update.sh
run_suite "dump and restore" bash test/dump/dump_restore.sh
run_suite "logical replication: a ledger on a subscriber" bash test/replication/subscriber.sh
run_suite "Citus: a coordinator and two workers (skipped when Citus is not installed)" bash test/citus/run.sh
run_suite "faults: lease tokens after a crash" bash test/faults/claim_crash.sh
run_suite "faults: lease tokens after a promotion" bash test/faults/claim_promotion.sh
run_suite "faults: lease tokens after pg_upgrade" bash test/faults/claim_upgrade.sh
run_suite "fuzz: claim parameters" bash test/fuzz/claim_fuzz.sh
run_suite "fuzz: every guard in every firing mode, table kind, enabled state and setting" bash test/fuzz/firing_modes.sh
run_suite "privileges and settings: each guard through every path, with every setting a role can change" bash test/privileges/matrix.sh
run_suite "randomized" bash test/random/run.sh
run_suite "randomized running_balance with raceguard preloaded (60 s)" bash test/random/preloaded.sh
# The ORM packages: each builds its package, installs it from the artifact
# and runs a real application against this cluster.
for integration in integrations/*/test/run.sh; do
    [ -f "$integration" ] || continue
    name=$(basename "$(dirname "$(dirname "$integration")")")
    run_suite "integration: $name" bash "$integration"
done
run_suite "docs: every SQL example, link and object of README.md and docs/" python3 test/docs/examples.py

echo
echo "suite times:"
printf '  %s\n' "${timings[@]}"
[ $failed -eq 0 ] || echo "failed suites: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ $failed -eq 0 ]
