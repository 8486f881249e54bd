-- The claim functions: signatures, declarations, privileges and errors.
BEGIN;
SELECT plan(29);

SELECT has_function('raceguard', 'claim', ARRAY['anyelement', 'text', 'integer', 'text']);
SELECT has_function('raceguard', 'claim_lease', ARRAY['anyelement', 'text', 'integer', 'interval', 'text', 'name', 'name', 'name', 'integer']);
SELECT has_function('raceguard', 'release_lease', ARRAY['anyelement', 'bigint', 'name', 'name', 'interval']);
-- 1.1 replaced 1.0's shorter signatures (no overloads left behind).
SELECT hasnt_function('raceguard', 'claim_lease', ARRAY['anyelement', 'text', 'integer', 'interval', 'text', 'name', 'name']);
SELECT hasnt_function('raceguard', 'release_lease', ARRAY['anyelement', 'bigint', 'name', 'name']);
SELECT has_function('raceguard', 'extend_lease', ARRAY['anyelement', 'bigint', 'interval', 'name', 'name']);
SELECT function_returns('raceguard', 'claim', ARRAY['anyelement', 'text', 'integer', 'text'], 'setof anyelement');
SELECT function_returns('raceguard', 'claim_lease', ARRAY['anyelement', 'text', 'integer', 'interval', 'text', 'name', 'name', 'name', 'integer'], 'setof anyelement');
SELECT function_returns('raceguard', 'release_lease', ARRAY['anyelement', 'bigint', 'name', 'name', 'interval'], 'bigint');

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
SELECT is(pg_get_function_arguments('raceguard.claim_lease(anyelement, text, integer, interval, text, name, name, name, integer)'::regprocedure),
          'target anyelement, filter text, batch integer, lease interval, order_by text DEFAULT NULL::text, '
          'token_column name DEFAULT ''claim_token''::name, until_column name DEFAULT ''claimed_until''::name, '
          'attempts_column name DEFAULT NULL::name, max_attempts integer DEFAULT NULL::integer',
          'claim_lease() has the documented parameters and defaults, attempts_column and max_attempts last');
SELECT is(pg_get_function_arguments('raceguard.release_lease(anyelement, bigint, name, name, interval)'::regprocedure),
          'target anyelement, token bigint, token_column name DEFAULT ''claim_token''::name, '
          'until_column name DEFAULT ''claimed_until''::name, retry_after interval DEFAULT NULL::interval',
          'release_lease() has the documented parameters and defaults, retry_after last');

-- Lease tokens come from a sequence pg_dump saves with the data, so a
-- restored database never hands out a token again.
SELECT ok((SELECT 'raceguard.lease_token_seq'::regclass = ANY (extconfig) FROM pg_extension WHERE extname = 'raceguard'),
          'the lease token sequence is dumped with the data (pg_extension_config_dump)');

CREATE TABLE queue (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz, attempts integer, note text);
INSERT INTO queue (id) SELECT generate_series(1, 3);

SELECT results_eq($$SELECT id FROM raceguard.claim(NULL::queue, 'true', 2, 'id')$$, ARRAY[1, 2], 'claim returns the first rows in order');
SELECT throws_ok($$SELECT * FROM raceguard.claim(NULL::queue, 'true', 0)$$, '22023', 'batch must be at least 1, not 0', 'batch < 1');
SELECT throws_ok($$SELECT * FROM raceguard.claim(NULL::text)$$, '42809', 'text is not the row type of a table', 'a scalar target');
SELECT throws_ok($$SELECT * FROM raceguard.claim(NULL::queue, 'id =')$$, '42601', NULL, 'a filter that does not parse');
SELECT throws_ok($$SELECT * FROM raceguard.claim_lease(NULL::queue, 'true', 1, '0 seconds')$$, '22023', NULL, 'a non-positive lease');
SELECT results_eq($$SELECT id FROM raceguard.claim_lease(NULL::queue, 'true', 3, '1 hour', 'id DESC', attempts_column => 'attempts')$$,
                  ARRAY[3, 2, 1], 'claim_lease returns its rows in order_by order');
SELECT results_eq($$SELECT attempts FROM queue ORDER BY id$$, ARRAY[1, 1, 1], 'each lease counts one attempt');
SELECT throws_ok($$SELECT * FROM raceguard.claim_lease(NULL::queue, 'true', 1, '1 hour', attempts_column => 'note')$$, '42804', NULL, 'an attempts column of the wrong type');
SELECT throws_ok($$SELECT * FROM raceguard.claim_lease(NULL::queue, 'true', 1, '1 hour', attempts_column => 'tries')$$, '42703', NULL, 'a missing attempts column');
SELECT throws_ok($$SELECT * FROM raceguard.claim_lease(NULL::queue, 'true', 1, '1 hour', attempts_column => 'attempts', max_attempts => 0)$$, '22023', 'max_attempts must be at least 1, not 0', 'max_attempts < 1');
SELECT throws_ok($$SELECT * FROM raceguard.claim_lease(NULL::queue, 'true', 1, '1 hour', max_attempts => 2)$$, '22023', 'max_attempts needs attempts_column', 'max_attempts without attempts_column');
SELECT throws_ok($$SELECT raceguard.release_lease(NULL::queue, 1, retry_after => '-1 second')$$, '22023', NULL, 'a negative retry_after');

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
