#!/usr/bin/env bash
# Stress: 8 workers drain a queue of 3,000 jobs, first with claim() in
# transactions (claim 10, log them as processed, mark them done, commit),
# then with leases in autocommit (lease 10, then complete with the fenced
# UPDATE ... WHERE claim_token = token); one lease worker in ten "dies"
# after leasing and never completes. After the dead workers' leases run out
# (the clock is moved on), a last pass drains what they left. Every job is
# processed exactly once (duplicates: 0) and none is left behind.
# A control that reads pending jobs without locking must process some twice.
# Bounded: a fixed number of transactions per worker.
source "$(dirname "$0")/lib.sh"
jobs=${STRESS_JOBS:-3000}
transactions=$(( jobs / (clients * 10) * 2 ))

psql -qX -v ON_ERROR_STOP=1 -v jobs="$jobs" <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS stress_jobs, stress_lease_jobs, stress_naive_jobs, stress_processed, stress_dead_tokens;
CREATE TABLE stress_jobs (id integer PRIMARY KEY, done_at timestamptz);
CREATE TABLE stress_naive_jobs (LIKE stress_jobs INCLUDING ALL);
CREATE TABLE stress_lease_jobs (id integer PRIMARY KEY, done_at timestamptz, claim_token bigint, claimed_until timestamptz);
CREATE INDEX ON stress_lease_jobs (claim_token);
CREATE TABLE stress_processed (queue text, job_id integer, worker integer);
CREATE TABLE stress_dead_tokens (token bigint);
INSERT INTO stress_jobs (id) SELECT generate_series(1, :jobs);
INSERT INTO stress_naive_jobs (id) SELECT generate_series(1, :jobs);
INSERT INTO stress_lease_jobs (id) SELECT generate_series(1, :jobs);
SQL

cat >"$work/naive.sql" <<'SQL'
BEGIN;
WITH picked AS (SELECT id FROM stress_naive_jobs WHERE done_at IS NULL ORDER BY id LIMIT 10),
     logged AS (INSERT INTO stress_processed SELECT 'naive', id, :client_id FROM picked RETURNING job_id)
UPDATE stress_naive_jobs SET done_at = clock_timestamp() WHERE id IN (SELECT job_id FROM logged);
COMMIT;
SQL
cat >"$work/claim.sql" <<'SQL'
BEGIN;
WITH claimed AS (SELECT id FROM raceguard.claim(NULL::stress_jobs, 'done_at IS NULL', 10, 'id')),
     logged AS (INSERT INTO stress_processed SELECT 'claim', id, :client_id FROM claimed RETURNING job_id)
UPDATE stress_jobs SET done_at = clock_timestamp() WHERE id IN (SELECT job_id FROM logged);
COMMIT;
SQL
cat >"$work/lease.sql" <<'SQL'
\set dies random(1, 10)
SELECT coalesce(min(claim_token), 0) AS token
  FROM raceguard.claim_lease(NULL::stress_lease_jobs, 'done_at IS NULL', 10, '10 minutes', 'id') \gset
\if :dies = 1
INSERT INTO stress_dead_tokens VALUES (:token);
\else
WITH done AS (UPDATE stress_lease_jobs SET done_at = clock_timestamp(), claim_token = NULL, claimed_until = NULL
               WHERE claim_token = :token RETURNING id)
INSERT INTO stress_processed SELECT 'lease', id, :client_id FROM done;
\endif
SQL

# The naive control's UPDATEs lock overlapping rows in no fixed order and
# can deadlock; a deadlocked transaction is run again (it still races).
run_pgbench naive "$clients" "$transactions" --max-tries=20
run_pgbench claim "$clients" "$transactions"
run_pgbench lease "$clients" "$transactions"
dead=$(psql -qXAt -c "SELECT count(*) FROM stress_lease_jobs WHERE claim_token IN (SELECT token FROM stress_dead_tokens)")
# The dead workers' leases run out: move the clock on for them.
psql -qX -c "UPDATE stress_lease_jobs SET claimed_until = clock_timestamp() - interval '1 second'
             WHERE claim_token IN (SELECT token FROM stress_dead_tokens)"
# A late worker drains what they left (bounded: as many passes as it takes, at most jobs/10).
sed '/^\\set dies/d; /^\\if/,/^\\else/d; /^\\endif/d' "$work/lease.sql" >"$work/drain.sql"
run_pgbench drain 1 $(( jobs / 10 ))

read -r naive_twice claim_twice lease_twice claim_left lease_left claim_done lease_done < <(psql -qXAt -F ' ' -c "
    SELECT (SELECT count(*) - count(DISTINCT job_id) FROM stress_processed WHERE queue = 'naive'),
           (SELECT count(*) - count(DISTINCT job_id) FROM stress_processed WHERE queue = 'claim'),
           (SELECT count(*) - count(DISTINCT job_id) FROM stress_processed WHERE queue = 'lease'),
           (SELECT count(*) FROM stress_jobs WHERE done_at IS NULL),
           (SELECT count(*) FROM stress_lease_jobs WHERE done_at IS NULL),
           (SELECT count(DISTINCT job_id) FROM stress_processed WHERE queue = 'claim'),
           (SELECT count(DISTINCT job_id) FROM stress_processed WHERE queue = 'lease')")

echo "control without raceguard: $naive_twice jobs processed twice"
echo "claim in transactions: $claim_done of $jobs jobs processed, $claim_twice twice, $claim_left left behind"
echo "leases in autocommit: $lease_done of $jobs jobs processed, $lease_twice twice, $lease_left left behind ($dead jobs abandoned by dead workers, drained after their leases ran out)"
status=0
[ "$naive_twice" -gt 0 ] || { echo "FAIL: the control processed nothing twice; the workload does not race"; status=1; }
[ "$claim_twice" -eq 0 ] && [ "$lease_twice" -eq 0 ] || { echo "FAIL: jobs processed twice"; status=1; }
[ "$claim_left" -eq 0 ] && [ "$lease_left" -eq 0 ] || { echo "FAIL: jobs left behind"; status=1; }
[ "$claim_done" -eq "$jobs" ] && [ "$lease_done" -eq "$jobs" ] || { echo "FAIL: processed counts differ from the queue"; status=1; }
[ "$dead" -gt 0 ] || { echo "FAIL: no worker died; the expiry path was not exercised"; status=1; }
[ $status -ne 0 ] || echo "ok: every job processed exactly once"
psql -qX -c "DROP TABLE stress_jobs, stress_lease_jobs, stress_naive_jobs, stress_processed, stress_dead_tokens"
exit $status
