-- The claim functions: signatures, declarations, privileges and errors.
BEGIN;
SELECT plan(17);

SELECT has_function('raceguard', 'claim', ARRAY['anyelement', 'text', 'integer', 'text']);
SELECT has_function('raceguard', 'claim_lease', ARRAY['anyelement', 'text', 'integer', 'interval', 'text', 'name', 'name']);
SELECT has_function('raceguard', 'release_lease', ARRAY['anyelement', 'bigint', 'name', 'name']);
SELECT has_function('raceguard', 'extend_lease', ARRAY['anyelement', 'bigint', 'interval', 'name', 'name']);
SELECT function_returns('raceguard', 'claim', ARRAY['anyelement', 'text', 'integer', 'text'], 'setof anyelement');
SELECT function_returns('raceguard', 'release_lease', ARRAY['anyelement', 'bigint', 'name', 'name'], 'bigint');

-- SECURITY INVOKER, a small ROWS estimate, and no pinned search_path (the
-- caller's filter runs under the caller's own).
SELECT is_empty($$
    SELECT proname FROM pg_proc
    WHERE pronamespace = 'raceguard'::regnamespace
      AND proname IN ('claim', 'claim_lease', 'release_lease', 'extend_lease')
      AND (prosecdef OR proconfig IS NOT NULL)
$$, 'the claim functions are SECURITY INVOKER with no SET clause');
SELECT results_eq($$
    SELECT proname::text COLLATE "C", prorows::integer FROM pg_proc
    WHERE pronamespace = 'raceguard'::regnamespace AND proname IN ('claim', 'claim_lease') ORDER BY 1
$$, $$VALUES ('claim' COLLATE "C", 10), ('claim_lease', 10)$$, 'claims are declared ROWS 10');
SELECT is(pg_get_function_arguments('raceguard.claim(anyelement, text, integer, text)'::regprocedure),
          'target anyelement, filter text DEFAULT ''true''::text, batch integer DEFAULT 1, order_by text DEFAULT NULL::text',
          'claim() has the documented parameters and defaults');

-- Lease tokens come from a sequence pg_dump saves with the data, so a
-- restored database never hands out a token again.
SELECT ok((SELECT 'raceguard.lease_token_seq'::regclass = ANY (extconfig) FROM pg_extension WHERE extname = 'raceguard'),
          'the lease token sequence is dumped with the data (pg_extension_config_dump)');

CREATE TABLE queue (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz);
INSERT INTO queue (id) SELECT generate_series(1, 3);

SELECT results_eq($$SELECT id FROM raceguard.claim(NULL::queue, 'true', 2, 'id')$$, ARRAY[1, 2], 'claim returns the first rows in order');
SELECT throws_ok($$SELECT * FROM raceguard.claim(NULL::queue, 'true', 0)$$, '22023', 'batch must be at least 1, not 0', 'batch < 1');
SELECT throws_ok($$SELECT * FROM raceguard.claim(NULL::text)$$, '42809', 'text is not the row type of a table', 'a scalar target');
SELECT throws_ok($$SELECT * FROM raceguard.claim(NULL::queue, 'id =')$$, '42601', NULL, 'a filter that does not parse');
SELECT throws_ok($$SELECT * FROM raceguard.claim_lease(NULL::queue, 'true', 1, '0 seconds')$$, '22023', NULL, 'a non-positive lease');

-- A caller without UPDATE privilege cannot claim.
CREATE ROLE tap_reader;
GRANT SELECT ON queue TO tap_reader;
SET LOCAL ROLE tap_reader;
SELECT throws_ok($$SELECT * FROM raceguard.claim(NULL::queue)$$, '42501', NULL, 'claiming needs UPDATE privilege');
RESET ROLE;
-- PUBLIC may use the schema (for CREATE TRIGGER and the helpers).
SELECT ok(has_schema_privilege('tap_reader', 'raceguard', 'USAGE'), 'every role may use schema raceguard');

SELECT * FROM finish();
ROLLBACK;
