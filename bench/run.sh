#!/usr/bin/env bash
# Runs the benchmarks on a throwaway PostgreSQL 15 cluster tuned for
# benchmarking (settings below), after installing what is needed.
#     bash bench/run.sh            # full run, about 23 minutes on 2 cores
#     bash bench/run.sh --quick    # smaller sizes, for development
# The cluster is throwaway, so durability is off: fsync, full-page writes and
# synchronous commit cost the same on every side and only add noise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
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
    fsync=off
    full_page_writes=off
    synchronous_commit=off
    autovacuum=off
    jit=off
    max_connections=50
    max_locks_per_transaction=256
    # raceguard.stats counts before PostgreSQL 17 only when preloaded; every
    # figure is measured with statistics on, as installed, and stats_cost
    # compares on with off.
    shared_preload_libraries=raceguard
)
options=()
for setting in "${settings[@]}"; do options+=(-o "$setting"); done
exec pg_virtualenv -t -v 15 "${options[@]}" /usr/bin/python3 bench/bench.py "$@"
