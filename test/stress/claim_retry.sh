#!/usr/bin/env bash
# Stress: retries and poison jobs. 8 workers lease one job at a time in
# autocommit, with attempts_column and max_attempts 3, from a queue of
# 2,000 jobs: healthy ones (completed at the first lease), flaky ones
# (released with exponential backoff, retry_after = 5 ms * 2^attempts, at
# their first two leases, completed at the third) and poison ones (the
# worker "crashes" at every lease: the lease runs out, simulated by moving
# the clock on for that row). A drain pass runs until nothing claimable is
# left. Then: every healthy and flaky job was completed exactly once, every
# poison job is a dead letter after exactly 3 leases (attempts = 3, its last
# token kept), every job's attempts equal its leases, no lease came before
# the retry time its release set, and nothing is lost.
# Bounded: a fixed number of transactions per worker, at most 200 drain passes.
source "$(dirname "$0")/lib.sh"
jobs=${STRESS_JOBS:-2000}
transactions=$(( jobs * 2 / clients ))

psql -qX -v ON_ERROR_STOP=1 -v jobs="$jobs" <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS stress_retry_jobs, stress_retry_leases, stress_retry_releases, stress_retry_done;
-- kind: 0 healthy, 1 flaky, 2 poison.
CREATE TABLE stress_retry_jobs (id integer PRIMARY KEY, kind integer NOT NULL, attempts integer,
                                done_at timestamptz, claim_token bigint, claimed_until timestamptz);
CREATE INDEX ON stress_retry_jobs (claim_token);
CREATE TABLE stress_retry_leases (job_id integer, token bigint, attempt integer, lease_now timestamptz);
CREATE TABLE stress_retry_releases (job_id integer, attempt integer, retry_no_earlier_than timestamptz);
CREATE TABLE stress_retry_done (job_id integer, worker integer);
INSERT INTO stress_retry_jobs (id, kind)
    SELECT g, CASE g % 10 WHEN 0 THEN 2 WHEN 5 THEN 1 ELSE 0 END FROM generate_series(1, :jobs) g;
SQL

cat >"$work/worker.sql" <<'SQL'
-- A lease's clock_timestamp() is its expiry minus the lease.
SELECT coalesce(min(claim_token), 0) AS token, coalesce(min(id), 0) AS id, coalesce(min(kind), 0) AS kind,
       coalesce(min(attempts), 0) AS attempts
  FROM raceguard.claim_lease(NULL::stress_retry_jobs, 'done_at IS NULL', 1, '10 minutes', 'id',
                             attempts_column => 'attempts', max_attempts => 3) AS leased \gset
\if :id > 0
INSERT INTO stress_retry_leases
    SELECT :id, :token, :attempts, claimed_until - interval '10 minutes' FROM stress_retry_jobs WHERE claim_token = :token;
\if :kind = 2
UPDATE stress_retry_jobs SET claimed_until = clock_timestamp() - interval '1 second' WHERE claim_token = :token;
\elif :kind = 1 and :attempts < 3
-- Before the release, so no later than the clock_timestamp() it adds retry_after to.
INSERT INTO stress_retry_releases VALUES (:id, :attempts, clock_timestamp() + interval '5 milliseconds' * power(2, :attempts));
SELECT raceguard.release_lease(NULL::stress_retry_jobs, :token,
                               retry_after => interval '5 milliseconds' * power(2, :attempts)) AS released \gset
DELETE FROM stress_retry_releases WHERE :released = 0 AND job_id = :id AND attempt = :attempts;
\else
WITH done AS (UPDATE stress_retry_jobs SET done_at = clock_timestamp(), claim_token = NULL, claimed_until = NULL
               WHERE claim_token = :token RETURNING id)
INSERT INTO stress_retry_done SELECT id, :client_id FROM done;
\endif
\endif
SQL

run_pgbench worker "$clients" "$transactions"
# Drain: what is still claimable (flaky jobs in their backoff, say).
passes=0
while [ "$(psql -qXAt -c "SELECT count(*) FROM stress_retry_jobs WHERE done_at IS NULL AND coalesce(attempts, 0) < 3")" -gt 0 ]; do
    passes=$((passes + 1))
    [ $passes -le 200 ] || { echo "FAIL: jobs still claimable after 200 drain passes"; exit 1; }
    run_pgbench worker 2 50
    sleep 0.05
done

read -r healthy done_twice not_done poison dead dead_wrong flaky_released leases_off early lost < <(psql -qXAt -F ' ' -c "
    SELECT (SELECT count(*) FROM stress_retry_jobs WHERE kind < 2),
           (SELECT count(*) FROM (SELECT job_id FROM stress_retry_done GROUP BY job_id HAVING count(*) > 1) twice),
           (SELECT count(*) FROM stress_retry_jobs j WHERE kind < 2
               AND (done_at IS NULL OR (SELECT count(*) FROM stress_retry_done d WHERE d.job_id = j.id) <> 1)),
           (SELECT count(*) FROM stress_retry_jobs WHERE kind = 2),
           (SELECT count(*) FROM stress_retry_jobs j WHERE kind = 2 AND done_at IS NULL AND attempts = 3
               AND claim_token = (SELECT l.token FROM stress_retry_leases l WHERE l.job_id = j.id AND l.attempt = 3)),
           (SELECT count(*) FROM stress_retry_jobs WHERE kind = 2 AND (done_at IS NOT NULL OR attempts IS DISTINCT FROM 3)),
           (SELECT count(DISTINCT job_id) FROM stress_retry_releases),
           (SELECT count(*) FROM stress_retry_jobs j
             WHERE coalesce(attempts, 0) <> (SELECT count(*) FROM stress_retry_leases l WHERE l.job_id = j.id)),
           (SELECT count(*) FROM stress_retry_releases r JOIN stress_retry_leases l
                ON l.job_id = r.job_id AND l.attempt = r.attempt + 1 WHERE l.lease_now < r.retry_no_earlier_than),
           (SELECT $jobs - count(*) FROM stress_retry_jobs WHERE done_at IS NOT NULL OR attempts = 3)")

echo "healthy and flaky: $healthy jobs, $not_done not completed exactly once ($done_twice completed twice); $flaky_released flaky jobs released with backoff"
echo "poison: $poison jobs, $dead dead letters after exactly 3 leases with their last token, $dead_wrong otherwise"
echo "$leases_off jobs whose attempts differ from their leases, $early leases before their retry time, $lost jobs lost; $passes drain passes"
status=0
[ "$not_done" -eq 0 ] && [ "$done_twice" -eq 0 ] || { echo "FAIL: a job was not completed exactly once"; status=1; }
[ "$dead" -eq "$poison" ] && [ "$dead_wrong" -eq 0 ] || { echo "FAIL: a poison job is not a dead letter after exactly 3 leases"; status=1; }
[ "$leases_off" -eq 0 ] || { echo "FAIL: attempts differ from leases"; status=1; }
[ "$early" -eq 0 ] || { echo "FAIL: a released job was leased before its retry time"; status=1; }
[ "$lost" -eq 0 ] || { echo "FAIL: jobs lost"; status=1; }
[ "$poison" -gt 0 ] && [ "$flaky_released" -eq $(( jobs / 10 )) ] || { echo "FAIL: the workload has no poison jobs or did not retry every flaky one"; status=1; }
[ $status -ne 0 ] || echo "ok: healthy jobs done exactly once, poison jobs dead after exactly 3 leases, backoff kept, nothing lost"
psql -qX -c "DROP TABLE stress_retry_jobs, stress_retry_leases, stress_retry_releases, stress_retry_done"
exit $status
