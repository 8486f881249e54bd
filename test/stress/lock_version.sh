#!/usr/bin/env bash
# Stress: many clients increment a few counters with read-modify-write in
# separate statements, sending back the version they read ("echo" protocol),
# and retry on 40001 (pgbench --max-tries). Afterwards every committed
# increment is in the counter: value = the number of logged increments.
# The same workload on a table without the guard is run first as a control:
# it must lose increments, or this test could not tell the difference.
# Bounded: a fixed number of transactions per client. Needs PG* env set.
source "$(dirname "$0")/lib.sh"
transactions=${STRESS_TRANSACTIONS:-150}

psql -qX -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS stress_counters, stress_increments, stress_unguarded, stress_unguarded_increments;
CREATE TABLE stress_counters (id integer PRIMARY KEY, value bigint NOT NULL, lock_version integer);
CREATE TRIGGER stress_counters_lock_version BEFORE INSERT OR UPDATE ON stress_counters
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
CREATE TABLE stress_increments (counter_id integer NOT NULL);
CREATE TABLE stress_unguarded (LIKE stress_counters);
CREATE TABLE stress_unguarded_increments (LIKE stress_increments);
INSERT INTO stress_counters (id, value, lock_version) SELECT g, 0, 0 FROM generate_series(1, 2) g;
INSERT INTO stress_unguarded (id, value, lock_version) SELECT g, 0, 0 FROM generate_series(1, 2) g;
SQL

# One read-modify-write increment; the INSERT logs it in the same transaction.
script() {
    cat <<SQL
\set id random(1, 2)
BEGIN;
SELECT value, lock_version FROM $1 WHERE id = :id \gset
UPDATE $1 SET value = :value + 1, lock_version = :lock_version WHERE id = :id;
INSERT INTO $2 (counter_id) VALUES (:id);
COMMIT;
SQL
}
script stress_unguarded stress_unguarded_increments >"$work/unguarded.sql"
script stress_counters stress_increments >"$work/guarded.sql"

run_pgbench unguarded "$clients" "$transactions"
run_pgbench guarded "$clients" "$transactions" --max-tries=1000

processed=$(pgbench_number guarded "number of transactions actually processed")
retried=$(pgbench_number guarded "number of transactions retried")
failed=$(pgbench_number guarded "number of failed transactions")

read -r unguarded_logged unguarded_value < <(psql -qXAt -F ' ' -c \
    "SELECT (SELECT count(*) FROM stress_unguarded_increments), (SELECT sum(value) FROM stress_unguarded)")
read -r logged total mismatched < <(psql -qXAt -F ' ' -c "
    SELECT (SELECT count(*) FROM stress_increments),
           (SELECT sum(value) FROM stress_counters),
           (SELECT count(*) FROM stress_counters c
             WHERE c.value <> (SELECT count(*) FROM stress_increments i WHERE i.counter_id = c.id))")

echo "control without raceguard: $unguarded_logged increments committed, counters hold $unguarded_value"
echo "with lock_version: $processed transactions committed ($retried retried after 40001, ${failed:-0} failed); $logged increments logged, counters hold $total"

status=0
[ "$unguarded_value" -lt "$unguarded_logged" ] || { echo "FAIL: the control lost no increment; the workload does not race"; status=1; }
[ "$processed" -eq $((clients * transactions)) ] || { echo "FAIL: not every transaction committed"; status=1; }
[ "$logged" -eq "$processed" ] || { echo "FAIL: logged increments differ from committed transactions"; status=1; }
[ "$total" -eq "$logged" ] || { echo "FAIL: $((logged - total)) increments lost"; status=1; }
[ "$mismatched" -eq 0 ] || { echo "FAIL: $mismatched counters disagree with their log"; status=1; }
[ "${retried:-0}" -gt 0 ] || { echo "FAIL: no stale write was ever rejected; the workload does not race"; status=1; }
[ $status -ne 0 ] || echo "ok: no increment lost"
psql -qX -c "DROP TABLE stress_counters, stress_increments, stress_unguarded, stress_unguarded_increments"
exit $status
