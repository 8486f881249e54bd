#!/usr/bin/env bash
# Runs the benchmarks on a throwaway PostgreSQL 15 cluster tuned for
# benchmarking (settings below), after installing what is needed, then draws
# the plots of docs/benchmarks.md from the run's results.
#     bash bench/run.sh            # full run, about 40 minutes on 2 cores
#     bash bench/run.sh --quick    # smaller sizes, for development
# Durability (fsync, full_page_writes, synchronous_commit) is not set here:
# bench.py switches it per case with ALTER SYSTEM (safe: all three on, what
# users run; fast: all three off), so the command line must not fix it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The plots need matplotlib.
if ! dpkg-query -W -f='${Status}' python3-matplotlib 2>/dev/null | grep -q 'install ok installed'; then
    echo "== installing: python3-matplotlib"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-matplotlib >/dev/null
fi
# One locale everywhere, so outputs (sort order, encoding) do not depend on the machine.
export LANG=C.UTF-8 LC_ALL=C.UTF-8
settings=(
    shared_buffers=2GB
    work_mem=64MB
    maintenance_work_mem=512MB
    max_wal_size=16GB
    min_wal_size=16GB
    wal_init_zero=off
    checkpoint_timeout=1h
    autovacuum=off
    jit=off
    max_connections=50
    max_locks_per_transaction=256
    # raceguard.stats counts before PostgreSQL 17 only when preloaded; every
    # figure is measured with statistics on, as installed, and stats_cost
    # compares on with off.
    shared_preload_libraries=raceguard
    # The transfers report each side's commits per WAL flush and the share
    # of time spent in fsync (two clock reads per flush).
    track_wal_io_timing=on
)
options=()
for setting in "${settings[@]}"; do options+=(-o "$setting"); done
rm -f bench/results/latest.json
status=0
pg_virtualenv -t -v 15 "${options[@]}" /usr/bin/python3 bench/bench.py "$@" || status=$?
# Drawn even when a check failed (the figures were measured); not when the
# run wrote no results.
if [ -f bench/results/latest.json ]; then
    /usr/bin/python3 bench/plot.py bench/results/latest.json docs/img
fi
exit "$status"
