#!/usr/bin/env bash
# Runs the randomized tests (model-based tests of the four trigger guards,
# and the trigger-argument fuzzer) in a database of their own. Needs PG* set
# (test/suites.sh runs it inside the throwaway cluster).
#   RACEGUARD_SEED=n            replay a run (each test prints its seed)
#   RACEGUARD_SHAPE=i           with the seed: only shape i of a test
#   RACEGUARD_RANDOM_SECONDS=s  time budget per test (default 40, the fuzzer 20)
#   bash test/random/run.sh [test...]   e.g. running_balance argument_fuzz
set -uo pipefail
cd "$(dirname "$0")"
python=python3
"$python" -c 'import psycopg2' 2>/dev/null || python=/usr/bin/python3
db=raceguard_random
dropdb --if-exists "$db" && createdb "$db" &&
    psql -qX -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION raceguard;" || exit 1
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(running_balance lock_version immutable_once_set transition argument_fuzz)
status=0
for test in "${tests[@]}"; do
    echo "--- $test"
    PGDATABASE=$db "$python" "$test.py" || status=1
done
exit $status
