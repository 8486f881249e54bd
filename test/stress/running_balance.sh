#!/usr/bin/env bash
# Stress: many clients append payments over a few accounts, two appends per
# transaction, one transaction in ten rolled back on purpose; first at READ
# COMMITTED, then at REPEATABLE READ with retry on 40001 (pgbench
# --max-tries). Afterwards every account's chain is exact (seq gapless,
# balance = previous balance + amount), the final balance is the sum of the
# committed amounts, and verify_running_balance() returns nothing.
# A control without the guard (read the last balance, then insert, as
# applications do) must break its chains, or this test could not tell.
# Bounded: a fixed number of transactions per client.
# STRESS_LAYOUT=monthly: the guarded ledger is partitioned by month (six
# months), and each append books into a random month, the newest most often,
# so that a group's last entry moves between partitions (with raceguard
# preloaded, where appends read the one partition the shared entry names).
source "$(dirname "$0")/lib.sh"
transactions=${STRESS_TRANSACTIONS:-200}
accounts=${STRESS_ACCOUNTS:-5}
layout=${STRESS_LAYOUT:-flat}

psql -qX -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS stress_payments, stress_naive;
CREATE TABLE stress_naive (account_id integer NOT NULL, amount bigint, running_balance bigint, entry_no bigint);
SQL
if [ "$layout" = monthly ]; then
    psql -qX -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE stress_payments (account_id integer NOT NULL, amount bigint, running_balance bigint, entry_no bigint,
                              booked date NOT NULL DEFAULT '2026-06-15') PARTITION BY RANGE (booked);
SELECT format('CREATE TABLE stress_payments_%s PARTITION OF stress_payments FOR VALUES FROM (%L) TO (%L)', m,
              date '2026-01-01' + make_interval(months => m - 1), date '2026-01-01' + make_interval(months => m))
FROM generate_series(1, 6) m \gexec
CREATE INDEX ON stress_payments (account_id, entry_no);
SQL
    booked_column=", booked"
    booked_value=", date '2026-01-01' + CASE WHEN :pick = 0 THEN :older ELSE :newest END"
else
    psql -qX -v ON_ERROR_STOP=1 -c "CREATE TABLE stress_payments (LIKE stress_naive)" \
        -c "CREATE UNIQUE INDEX ON stress_payments (account_id, entry_no)"
    booked_column=""
    booked_value=""
fi
psql -qX -v ON_ERROR_STOP=1 -c "CREATE TRIGGER stress_payments_balance BEFORE INSERT OR UPDATE OR DELETE ON stress_payments
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'running_balance', 'account_id', 'seq=entry_no')"

cat >"$work/naive.sql" <<SQL
\set account random(1, $accounts)
\set amount random(-50, 100)
BEGIN;
SELECT coalesce(max(entry_no), 0) AS last_no,
       coalesce((array_agg(running_balance ORDER BY entry_no DESC))[1], 0) AS last_balance
  FROM stress_naive WHERE account_id = :account \gset
INSERT INTO stress_naive VALUES (:account, :amount, :last_balance + :amount, :last_no + 1);
COMMIT;
SQL
for level in "READ COMMITTED" "REPEATABLE READ"; do
    name=${level// /_}
    cat >"$work/$name.sql" <<SQL
\set account random(1, $accounts)
\set first random(-50, 100)
\set second random(-50, 100)
\set abandon random(1, 10)
\set pick random(0, 3)
\set older random(0, 150)
\set newest random(151, 180)
BEGIN ISOLATION LEVEL $level;
SELECT count(*) FROM stress_payments WHERE account_id = :account;
INSERT INTO stress_payments (account_id, amount$booked_column) VALUES (:account, :first$booked_value);
INSERT INTO stress_payments (account_id, amount$booked_column) VALUES (:account, :second$booked_value);
\if :abandon = 1
ROLLBACK;
\else
COMMIT;
\endif
SQL
done

run_pgbench naive "$clients" "$transactions"
run_pgbench READ_COMMITTED "$clients" "$transactions"
rc_rows=$(psql -qXAt -c "SELECT count(*) FROM stress_payments")
run_pgbench REPEATABLE_READ "$clients" "$transactions" --max-tries=1000

retried=$(pgbench_number REPEATABLE_READ "number of transactions retried")
failed_rc=$(pgbench_number READ_COMMITTED "number of failed transactions")
failed_rr=$(pgbench_number REPEATABLE_READ "number of failed transactions")

naive_broken=$(psql -qXAt -c "
    SELECT count(*) FROM (
        SELECT account_id FROM stress_naive GROUP BY account_id
        HAVING count(*) <> count(DISTINCT entry_no)
            OR sum(amount) <> (array_agg(running_balance ORDER BY entry_no DESC, running_balance))[1]) broken")
read -r rows problems gaps wrong_final < <(psql -qXAt -F ' ' -c "
    SELECT (SELECT count(*) FROM stress_payments),
           (SELECT count(*) FROM raceguard.verify_running_balance('stress_payments')),
           (SELECT count(*) FROM (SELECT account_id FROM stress_payments GROUP BY account_id
                                   HAVING max(entry_no) <> count(*) OR min(entry_no) <> 1) g),
           (SELECT count(*) FROM (SELECT account_id FROM stress_payments GROUP BY account_id
                                   HAVING sum(amount) <> (array_agg(running_balance ORDER BY entry_no DESC))[1]) f)")

echo "control without raceguard: $naive_broken of $accounts account chains broken"
echo "with running_balance ($layout ledger): $rows entries ($rc_rows at READ COMMITTED, the rest at REPEATABLE READ with $retried retries after 40001);" \
     "verify_running_balance: $problems problems; $gaps accounts with seq gaps; $wrong_final final balances differing from the sum of amounts"
status=0
[ "$naive_broken" -gt 0 ] || { echo "FAIL: the control broke no chain; the workload does not race"; status=1; }
[ "$rc_rows" -gt 0 ] && [ "$rows" -gt "$rc_rows" ] || { echo "FAIL: nothing was appended"; status=1; }
[ "$problems" -eq 0 ] || { echo "FAIL: verify_running_balance found $problems problems"; status=1; }
[ "$gaps" -eq 0 ] || { echo "FAIL: seq gaps in $gaps accounts"; status=1; }
[ "$wrong_final" -eq 0 ] || { echo "FAIL: $wrong_final final balances are wrong"; status=1; }
[ "${failed_rc:-0}" -eq 0 ] && [ "${failed_rr:-0}" -eq 0 ] || { echo "FAIL: transactions failed (rc ${failed_rc:-0}, rr ${failed_rr:-0})"; status=1; }
[ "${retried:-0}" -gt 0 ] || { echo "FAIL: no REPEATABLE READ append was ever refused; the workload does not race"; status=1; }
[ $status -ne 0 ] || echo "ok: every chain is exact"
psql -qX -c "DROP TABLE stress_payments, stress_naive"
exit $status
