#!/usr/bin/env bash
# Runs claim_fuzz.py (bad-input fuzzing of the claim functions) in a
# database of its own. Needs PG* set (test/suites.sh runs it in the
# throwaway cluster). CLAIM_FUZZ_SEED replays a run.
set -euo pipefail
cd "$(dirname "$0")"
python=python3
"$python" -c 'import psycopg2' 2>/dev/null || python=/usr/bin/python3
db=raceguard_claim_fuzz
dropdb --if-exists "$db" 2>/dev/null; createdb "$db"
psql -qX -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION raceguard"
status=0
PGDATABASE=$db "$python" claim_fuzz.py || status=1
dropdb "$db"
exit $status
