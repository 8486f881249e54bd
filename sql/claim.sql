-- raceguard.claim() and the lease functions: every function and bad input
-- on one session. Concurrency is in test/isolation; load in test/stress.
CREATE TYPE job_status AS ENUM ('pending', 'sent', 'failed');
CREATE TABLE invoices (
    id integer PRIMARY KEY,
    status job_status NOT NULL DEFAULT 'pending',
    due date,
    claim_token bigint,
    claimed_until timestamptz
);
INSERT INTO invoices (id, due, status)
    SELECT g, date '2026-11-01' + g, CASE WHEN g % 5 = 0 THEN 'sent' ELSE 'pending' END::job_status
    FROM generate_series(1, 10) g;

-- claim(): up to batch matching rows, locked, in order_by order; the filter
-- is evaluated with the caller's search_path (job_status is found).
BEGIN;
SELECT id, status FROM raceguard.claim(NULL::invoices, 'status = ''pending''::job_status', 3, 'due DESC');
SELECT locktype, mode, granted FROM pg_locks
 WHERE locktype = 'relation' AND relation = 'invoices'::regclass AND pid = pg_backend_pid();
COMMIT;
-- The defaults: filter 'true', batch 1; and a single known row.
BEGIN;
SELECT id FROM raceguard.claim(NULL::invoices, order_by => 'id');
SELECT id, status FROM raceguard.claim(NULL::invoices, 'id = 7');
COMMIT;
-- A NULL filter means no filter; an empty order_by means none.
SELECT count(*) FROM raceguard.claim(NULL::invoices, NULL, 100, '');

-- claim_lease(): writes one new token and clock_timestamp() + lease into the
-- claimed rows and returns them as written; the lease outlives the call.
CREATE TEMP TABLE leases AS
    SELECT 'first' AS call, id, claim_token, claimed_until
    FROM raceguard.claim_lease(NULL::invoices, 'status = ''pending''', 2, '5 minutes', 'id');
SELECT id, claim_token IS NOT NULL AS has_token,
       claimed_until > clock_timestamp() + interval '4 minutes' AS leased_for_5_minutes
  FROM leases ORDER BY id;
SELECT count(DISTINCT claim_token) AS tokens_in_one_call FROM leases;
SELECT id FROM invoices WHERE claim_token IS NOT NULL ORDER BY id;
-- Leased rows are not claimable by another lease, until the lease runs out.
INSERT INTO leases
    SELECT 'second', id, claim_token, claimed_until
    FROM raceguard.claim_lease(NULL::invoices, 'id IN (1, 2, 3)', 10, '5 minutes');
SELECT call, id FROM leases ORDER BY id;
UPDATE invoices SET claimed_until = clock_timestamp() - interval '1 second' WHERE id = 1;  -- time passes
INSERT INTO leases
    SELECT 'third', id, claim_token, claimed_until
    FROM raceguard.claim_lease(NULL::invoices, 'id IN (1, 2, 3)', 10, '5 minutes');
SELECT call, id FROM leases WHERE call = 'third';
-- Tokens are unique: one per call.
SELECT count(DISTINCT claim_token) AS distinct_tokens, count(DISTINCT call) AS calls FROM leases;

-- release_lease() and extend_lease() act only on rows that still hold the
-- token (fencing) and return how many they changed. The first call's token
-- now holds row 2 only: row 1 expired and was leased again.
SELECT raceguard.extend_lease(NULL::invoices, (SELECT claim_token FROM leases WHERE id = 2), '1 hour') AS extended;
SELECT id, claimed_until > clock_timestamp() + interval '59 minutes' AS extended_to_an_hour
  FROM invoices WHERE id IN (1, 2) ORDER BY id;
-- The documented completion pattern with the first token completes row 2
-- and finds nothing on row 1.
UPDATE invoices SET status = 'sent', claim_token = NULL, claimed_until = NULL
 WHERE id IN (1, 2) AND claim_token = (SELECT claim_token FROM leases WHERE call = 'first' LIMIT 1)
RETURNING id;
-- Now the first token holds nothing: it neither extends nor releases.
SELECT raceguard.extend_lease(NULL::invoices, (SELECT claim_token FROM leases WHERE call = 'first' LIMIT 1), '1 hour') AS extended,
       raceguard.release_lease(NULL::invoices, (SELECT claim_token FROM leases WHERE call = 'first' LIMIT 1)) AS released;
-- The third call's token releases row 1.
SELECT raceguard.release_lease(NULL::invoices, (SELECT claim_token FROM leases WHERE call = 'third')) AS released;
SELECT id, status, claim_token, claimed_until FROM invoices WHERE id IN (1, 2) ORDER BY id;

-- Another schema, quoted names, custom lease columns, a partitioned table.
CREATE SCHEMA "Billing Dept";
CREATE TABLE "Billing Dept"."Open Items" ("Item Id" integer, "Lease Token" bigint, "Lease End" timestamptz, region text)
    PARTITION BY LIST (region);
CREATE TABLE "Billing Dept"."Open Items EU" PARTITION OF "Billing Dept"."Open Items" FOR VALUES IN ('eu');
CREATE TABLE "Billing Dept"."Open Items US" PARTITION OF "Billing Dept"."Open Items" FOR VALUES IN ('us');
INSERT INTO "Billing Dept"."Open Items" ("Item Id", region) VALUES (1, 'eu'), (2, 'us'), (3, 'eu'), (4, 'us');
BEGIN;
SELECT "Item Id", region FROM raceguard.claim(NULL::"Billing Dept"."Open Items", '"Item Id" > 1', 2, '"Item Id"');
COMMIT;
SELECT "Item Id", "Lease Token" IS NOT NULL AS leased
  FROM raceguard.claim_lease(NULL::"Billing Dept"."Open Items", 'region = ''us''', 5, '1 minute', NULL,
                             'Lease Token', 'Lease End')
 ORDER BY 1;
SELECT raceguard.release_lease(NULL::"Billing Dept"."Open Items",
                               (SELECT max("Lease Token") FROM "Billing Dept"."Open Items"), 'Lease Token', 'Lease End') AS released;

-- A table with a dropped column: rows come back in the table's row type.
CREATE TABLE reshaped (id integer PRIMARY KEY, obsolete text, status text, claim_token bigint, claimed_until timestamptz);
INSERT INTO reshaped VALUES (1, 'x', 'pending'), (2, 'y', 'pending');
ALTER TABLE reshaped DROP COLUMN obsolete;
BEGIN;
SELECT * FROM raceguard.claim(NULL::reshaped, 'true', 5, 'id');
COMMIT;
SELECT id, status, claim_token IS NOT NULL AS leased FROM raceguard.claim_lease(NULL::reshaped, 'true', 5, '1 minute', 'id') ORDER BY id;

-- Bad input: each a clear error.
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::integer)$$);
CREATE TYPE money_pair AS (amount numeric, currency text);
SELECT sqlstate, message, hint FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::money_pair)$$);
CREATE VIEW pending_invoices AS SELECT * FROM invoices WHERE status = 'pending';
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::pending_invoices)$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::invoices, 'true', 0)$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::invoices, 'true', NULL)$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::invoices, 'status = ')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::invoices, 'no_such_column = 1')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::invoices, 'true', 1, 'id DESC DESC')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::invoices, 'true', 1, NULL)$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::invoices, 'true', 1, '-1 minute')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::invoices, 'true', -5, '1 minute')$$);
SELECT * FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::invoices, 'true', 1, '1 minute', NULL, 'lease_token')$$) \gx
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::invoices, 'true', 1, '1 minute', NULL, 'id')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::invoices, 'true', 1, '1 minute', NULL, 'claim_token', 'due')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT raceguard.release_lease(NULL::invoices, NULL)$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT raceguard.extend_lease(NULL::invoices, 1, '0 seconds')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT raceguard.release_lease(NULL::invoices, 1, 'claim_token', 'nope')$$);
-- Nothing was leased by the failed calls: only row 3, from above.
SELECT id FROM invoices WHERE claim_token IS NOT NULL;

-- Privileges: the caller's own. Without UPDATE there is no claim (42501);
-- row-level security decides which rows a caller can claim.
CREATE ROLE regress_worker;
GRANT USAGE ON SCHEMA regress TO regress_worker;
GRANT SELECT ON invoices TO regress_worker;
SET ROLE regress_worker;
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::invoices)$$);
SELECT sqlstate FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::invoices, 'true', 1, '1 minute')$$);
RESET ROLE;
GRANT UPDATE ON invoices TO regress_worker;
ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
CREATE POLICY workers_see_even_ids ON invoices TO regress_worker USING (id % 2 = 0);
SET ROLE regress_worker;
SELECT id FROM raceguard.claim(NULL::invoices, 'true', 100, 'id');
SELECT id FROM raceguard.claim_lease(NULL::invoices, 'claim_token IS NULL', 100, '1 minute') ORDER BY id;
RESET ROLE;
DROP POLICY workers_see_even_ids ON invoices;
ALTER TABLE invoices DISABLE ROW LEVEL SECURITY;
REVOKE ALL ON invoices FROM regress_worker;
REVOKE ALL ON SCHEMA regress FROM regress_worker;
DROP ROLE regress_worker;

-- Nothing planted in the caller's schemas is called by the functions: with
-- look-alike functions and operators first on the search_path, claims work
-- and the traps never fire; the caller's filter still uses its own path.
CREATE SCHEMA trap;
CREATE FUNCTION trap.fire() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'a planted object was called'; END $$;
CREATE FUNCTION trap.int_lt(integer, integer) RETURNS boolean LANGUAGE sql AS 'SELECT trap.fire()';
CREATE OPERATOR trap.< (LEFTARG = integer, RIGHTARG = integer, FUNCTION = trap.int_lt);
CREATE FUNCTION trap.interval_le(interval, interval) RETURNS boolean LANGUAGE sql AS 'SELECT trap.fire()';
CREATE OPERATOR trap.<= (LEFTARG = interval, RIGHTARG = interval, FUNCTION = trap.interval_le);
CREATE FUNCTION trap.ts_le(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql AS 'SELECT trap.fire()';
CREATE OPERATOR trap.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = trap.ts_le);
CREATE FUNCTION trap.bigint_eq(bigint, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT trap.fire()';
CREATE OPERATOR trap.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = trap.bigint_eq);
CREATE FUNCTION trap.format(text, VARIADIC text[]) RETURNS text LANGUAGE sql AS 'SELECT trap.fire()::text';
CREATE FUNCTION trap.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS 'SELECT trap.fire()::text::timestamptz';
CREATE FUNCTION trap.nextval(regclass) RETURNS bigint LANGUAGE sql AS 'SELECT trap.fire()::int::bigint';
CREATE FUNCTION trap.pg_typeof(anyelement) RETURNS regtype LANGUAGE sql AS 'SELECT trap.fire()::text::regtype';
CREATE FUNCTION trap.quote_ident(text) RETURNS text LANGUAGE sql AS 'SELECT trap.fire()::text';
SET search_path = trap, public, pg_catalog;
BEGIN;
SELECT id FROM raceguard.claim(NULL::invoices, 'status = ''sent''::job_status', 2, 'id');
COMMIT;
SELECT count(*) AS leased FROM raceguard.claim_lease(NULL::invoices, 'id IN (9, 10)', 5, '1 minute');
SELECT raceguard.extend_lease(NULL::invoices, (SELECT max(claim_token) FROM public.invoices), '2 minutes') AS extended;
SELECT raceguard.release_lease(NULL::invoices, (SELECT max(claim_token) FROM public.invoices)) AS released;
-- ... while a trap the caller's own filter names does fire: the filter is
-- the caller's SQL.
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::invoices, 'id < 3')$$);
RESET search_path;
