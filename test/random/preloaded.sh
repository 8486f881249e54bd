#!/usr/bin/env bash
# The running_balance model (test/random/running_balance.py) with raceguard
# in shared_preload_libraries, in a throwaway cluster of its own (the
# suites' cluster has no preload): what an append remembers across backends
# in shared memory, which only a preloaded raceguard has, must give every
# append exactly what reading every partition gives, after each event and
# bypassed write the model makes.
#   RACEGUARD_SEED=n RACEGUARD_SHAPE=i   replay (as test/random/run.sh)
#   RACEGUARD_RANDOM_SECONDS=s          time budget (default 60)
#   PG_CONFIG=... bash test/random/preloaded.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export RACEGUARD_RANDOM_SECONDS=${RACEGUARD_RANDOM_SECONDS:-60}
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
# A cluster beside the suites' own: pg_virtualenv would reuse the port and
# settings directory the outer one exported.
env -u PGPORT -u PGSYSCONFDIR -u PG_CLUSTER_CONF_ROOT \
    pg_virtualenv -t -v "$major" -o shared_preload_libraries=raceguard -o max_prepared_transactions=2 \
        bash -c '
            preload=$(psql -XAtc "SHOW shared_preload_libraries" -d postgres) || exit 1
            if [ "$preload" != raceguard ]; then
                echo "shared_preload_libraries is \"$preload\", not raceguard"
                exit 1
            fi
            bash test/random/run.sh running_balance'
