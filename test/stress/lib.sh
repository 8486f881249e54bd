# Shared by the stress tests (sourced): strict mode, a work directory that
# goes away on exit, a pgbench runner that shows pgbench's output when it
# fails, and the numbers of pgbench's summary. Needs PG* set.
set -euo pipefail
clients=${STRESS_CLIENTS:-8}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# run_pgbench NAME CLIENTS TRANSACTIONS [OPTION...]: runs $work/NAME.sql with
# a fixed number of transactions per client; output in $work/NAME.out.
run_pgbench() {
    local name=$1 count=$2 transactions=$3
    shift 3
    # pgbench retries serialization failures and deadlocks (--max-tries)
    # from PostgreSQL 15 on; with an older one, pgbench_retry.py does.
    local pgbench=(pgbench)
    if [[ " $* " == *" --max-tries="* && "$(pgbench --help)" != *--max-tries* ]]; then
        pgbench=(python3 "$(dirname "${BASH_SOURCE[0]}")/pgbench_retry.py")
    fi
    "${pgbench[@]}" -n -c "$count" -j $(( count < 2 ? 1 : 2 )) -t "$transactions" "$@" -f "$work/$name.sql" \
        >"$work/$name.out" 2>&1 || { cat "$work/$name.out"; exit 1; }
}

# pgbench_number NAME LABEL: e.g. pgbench_number guarded "number of transactions retried"
pgbench_number() {
    sed -n "s/^$2: \([0-9]*\).*/\1/p" "$work/$1.out"
}

# expect A OP B MESSAGE: unless [ A OP B ] (e.g. expect "$lost" -eq 0 "..."),
# prints FAIL: MESSAGE and sets status=1.
expect() {
    [ "$1" "$2" "$3" ] || { echo "FAIL: $4"; status=1; }
}
