#!/usr/bin/env bash
# Runs firing_modes.py (every guard in every firing mode, table kind,
# enabled state and setting, as a superuser and as a login role) in a
# database of its own. Needs PG* set to a superuser (test/suites.sh runs it
# in the throwaway cluster).
#   RACEGUARD_SEED=n            replay a run (it prints its seed)
#   RACEGUARD_SHAPE=i           with the seed: only case i
#   RACEGUARD_RANDOM_SECONDS=s  time for random cases after the covering ones (default 30)
set -euo pipefail
cd "$(dirname "$0")"
python=python3
"$python" -c 'import psycopg2' 2>/dev/null || python=/usr/bin/python3
db=raceguard_firing_modes
dropdb --if-exists "$db" 2>/dev/null; createdb "$db"
psql -qX -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION raceguard"
status=0
PGDATABASE=$db "$python" firing_modes.py || status=1
dropdb "$db"
exit $status
