#!/usr/bin/env bash
# raceguard.stats with raceguard in shared_preload_libraries, in a throwaway
# cluster of its own (the suites' cluster has no preload): where PostgreSQL
# 16 and earlier collect statistics at all, and on 17+ that preloading
# changes nothing. Runs the statistics' pg_regress tests and isolation spec
# (sql/stats.sql, test/isolation/specs/stats_backends.spec: each counter by
# a known amount, across backends) and the bound (sql/stats_bounded.sql,
# with raceguard.max_tracked_guards = 10, and prepared transactions for its
# DROPs in them), after the shared helpers (sql/setup.sql).   PG_CONFIG=... bash test/stats/preload.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
bash test/isolation/build_tester.sh || exit 1
rm -rf results/ regression.diffs regression.out output_iso/
status=0
# A cluster beside the suites' own: pg_virtualenv would reuse the port and
# settings directory the outer one exported.
env -u PGPORT -u PGSYSCONFDIR -u PG_CLUSTER_CONF_ROOT \
    pg_virtualenv -t -v "$major" -o shared_preload_libraries=raceguard -o raceguard.max_tracked_guards=10 -o max_prepared_transactions=2 \
        make -s PG_CONFIG="$PG_CONFIG" installcheck REGRESS="setup stats transition_stats stats_bounded" ISOLATION="helpers stats_backends transition_stats" || status=1
if [ $status -ne 0 ]; then
    for diffs in regression.diffs output_iso/regression.diffs; do
        [ -f "$diffs" ] && cat "$diffs"
    done
fi
exit $status
