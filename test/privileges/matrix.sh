#!/usr/bin/env bash
# Runs matrix.py (each guard's workload through every path, with every
# setting a role can change) in a database of its own. Needs PG* set to a
# superuser (test/suites.sh runs it in the throwaway cluster).
#   RACEGUARD_SEED=n            replay a run (it prints its seed)
#   RACEGUARD_SHAPE=i           with the seed: only cell i
#   RACEGUARD_RANDOM_SECONDS=s  time for the run (default 45; the covering cells always run)
set -euo pipefail
cd "$(dirname "$0")"
python=python3
"$python" -c 'import psycopg2' 2>/dev/null || python=/usr/bin/python3
db=raceguard_privileges
dropdb --if-exists "$db" 2>/dev/null; createdb "$db"
psql -qX -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION raceguard"
status=0
PGDATABASE=$db "$python" matrix.py || status=1
dropdb "$db"
exit $status
