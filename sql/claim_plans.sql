-- Kept claim plans: past the limit of kept plans (256) the least recently
-- used idle ones are freed, never one a call is running. A filter may call
-- a claim itself: here each of 300 outer rows runs an inner claim of its
-- own shape while the outer claim's plan runs.
CREATE TABLE outer_jobs (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz);
CREATE TABLE inner_jobs (id integer PRIMARY KEY);
INSERT INTO outer_jobs (id) SELECT generate_series(1, 310);
INSERT INTO inner_jobs (id) SELECT generate_series(1, 310);
SELECT pg_backend_pid() AS backend \gset

BEGIN;
SELECT count(*) AS claimed, sum(id) AS id_sum, min(id), max(id)
  FROM raceguard.claim(NULL::outer_jobs,
                       '(SELECT count(*) FROM raceguard.claim(NULL::inner_jobs, ''id = '' || outer_jobs.id)) = 1',
                       300, 'id');
COMMIT;
SELECT pg_backend_pid() = :backend AS same_backend;
-- The outer claim's plan is still kept (it was running when the inner
-- claims needed room), and the kept plans stayed within the limit. (Kept
-- plans are seen in pg_backend_memory_contexts, from PostgreSQL 14 on.)
CREATE FUNCTION pg_temp.kept_plans(statement_like text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    kept bigint;
BEGIN
    IF to_regclass('pg_catalog.pg_backend_memory_contexts') IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT count(*) FROM pg_catalog.pg_backend_memory_contexts
              WHERE name = ''CachedPlanSource'' AND ident LIKE $1' INTO kept USING statement_like;
    RETURN kept;
END $$;
SELECT coalesce(pg_temp.kept_plans('SELECT public.outer_jobs.* FROM public.outer_jobs WHERE%') = 1, true) AS outer_plan_kept,
       coalesce(pg_temp.kept_plans('%FOR UPDATE SKIP LOCKED') <= 256, true) AS within_limit;

-- The same with leases outside, and the inner shapes new again (the order
-- differs), so that the outer lease's plan is the oldest while it runs.
SELECT count(*) AS leased, count(DISTINCT claim_token) AS tokens, sum(id) AS id_sum
  FROM raceguard.claim_lease(NULL::outer_jobs,
                             '(SELECT count(*) FROM raceguard.claim(NULL::inner_jobs, ''id = '' || outer_jobs.id, 1, ''id DESC'')) = 1',
                             300, '1 minute', 'id DESC');
SELECT pg_backend_pid() = :backend AS same_backend;
SELECT count(*) AS leased_rows FROM outer_jobs WHERE claim_token IS NOT NULL;

-- Claims keep working, plans kept or freed alike.
BEGIN;
SELECT id FROM raceguard.claim(NULL::outer_jobs, 'id <= 3', 5, 'id');
SELECT id FROM raceguard.claim(NULL::inner_jobs, 'id = 7');
COMMIT;
SELECT pg_backend_pid() = :backend AS same_backend;
DROP TABLE outer_jobs, inner_jobs;

-- An error in the outer claim after the inner claims filled the kept plans:
-- the error's context names the outer claim's own statement (its plan and
-- text are still there), and the backend lives on.
CREATE TABLE outer_jobs (id integer PRIMARY KEY);
CREATE TABLE inner_jobs (id integer PRIMARY KEY);
INSERT INTO outer_jobs (id) SELECT generate_series(1, 310);
INSERT INTO inner_jobs (id) SELECT generate_series(1, 310);
CREATE FUNCTION pg_temp.error_context_of(statement text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    context text;
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN division_by_zero THEN
    GET STACKED DIAGNOSTICS context = PG_EXCEPTION_CONTEXT;
    RETURN context;
END $$;
SELECT strpos(context, 'FROM public.outer_jobs WHERE') > 0 AND strpos(context, 'LIMIT 300 FOR UPDATE SKIP LOCKED') > 0
       AS context_is_the_outer_claim
  FROM pg_temp.error_context_of($q$
    SELECT count(*) FROM raceguard.claim(NULL::outer_jobs,
        '(SELECT count(*) FROM raceguard.claim(NULL::inner_jobs, ''id >= '' || outer_jobs.id, 1, ''id DESC'')) = 1
         AND 1 / (300 - id) > -1', 300, 'id')
  $q$) AS context;
SELECT pg_backend_pid() = :backend AS same_backend;
DROP TABLE outer_jobs, inner_jobs;
