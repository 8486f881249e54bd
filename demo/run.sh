#!/usr/bin/env bash
# raceguard demonstration: builds and installs the extension, starts a
# throw-away PostgreSQL 15 cluster and plays every race twice, without and
# with raceguard. Exits non-zero when a race does not end as expected.
#
#   bash demo/run.sh                 # every race
#   bash demo/run.sh "lost update"   # only the named races
set -euo pipefail

bash "$(dirname "$0")/../scripts/setup.sh"

cd "$(dirname "$0")/.."
# One locale everywhere, so outputs do not depend on the machine.
export LANG=C.UTF-8 LC_ALL=C.UTF-8
# -t keeps the cluster's configuration in a temporary directory even as root,
# so the demo does not collide with another pg_virtualenv run (the test suite)
# over /etc/postgresql/15/regress.
exec pg_virtualenv -t -v 15 /usr/bin/python3 demo/races.py "$@"
