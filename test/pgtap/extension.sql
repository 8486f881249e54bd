-- The extension's objects, where they live and how they are declared.
BEGIN;
SELECT plan(20);

SELECT has_schema('raceguard');
-- Version 1.6, reachable from 1.5, 1.4, 1.3, 1.2, 1.1 and 1.0 by ALTER EXTENSION raceguard
-- UPDATE; CREATE EXTENSION runs its full script, raceguard--1.6.sql.
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'raceguard'), '1.6', 'raceguard 1.6 is installed');
SELECT is((SELECT path FROM pg_extension_update_paths('raceguard') WHERE source = '1.0' AND target = '1.1'), '1.0--1.1',
          'ALTER EXTENSION raceguard UPDATE goes from 1.0 to 1.1 by one script');
SELECT is((SELECT path FROM pg_extension_update_paths('raceguard') WHERE source = '1.1' AND target = '1.2'), '1.1--1.2',
          'ALTER EXTENSION raceguard UPDATE goes from 1.1 to 1.2 by one script');
SELECT is((SELECT path FROM pg_extension_update_paths('raceguard') WHERE source = '1.3' AND target = '1.4'), '1.3--1.4',
          'ALTER EXTENSION raceguard UPDATE goes from 1.3 to 1.4 by one script');
SELECT is((SELECT path FROM pg_extension_update_paths('raceguard') WHERE source = '1.4' AND target = '1.5'), '1.4--1.5',
          'ALTER EXTENSION raceguard UPDATE goes from 1.4 to 1.5 by one script');
SELECT is((SELECT path FROM pg_extension_update_paths('raceguard') WHERE source = '1.5' AND target = '1.6'), '1.5--1.6',
          'ALTER EXTENSION raceguard UPDATE goes from 1.5 to 1.6 by one script');
SELECT is((SELECT path FROM pg_extension_update_paths('raceguard') WHERE source = '1.0' AND target = '1.6'), '1.0--1.1--1.2--1.3--1.4--1.5--1.6',
          'ALTER EXTENSION raceguard UPDATE goes from 1.0 to 1.6 through 1.1, 1.2, 1.3, 1.4 and 1.5');
SELECT is((SELECT array_agg(version::text ORDER BY version::text) FROM pg_available_extension_versions WHERE name = 'raceguard'),
          ARRAY['1.0', '1.1', '1.2', '1.3', '1.4', '1.5', '1.6'], 'versions 1.0 to 1.6 are available');
SELECT has_function('raceguard', 'lock_version', ARRAY[]::name[]);
SELECT function_returns('raceguard', 'lock_version', ARRAY[]::name[], 'trigger');
SELECT function_lang_is('raceguard', 'lock_version', ARRAY[]::name[], 'c');

-- Every object of the extension lives in schema raceguard.
SELECT is_empty($$
    SELECT pg_describe_object(d.classid, d.objid, 0)
    FROM pg_depend d
    JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
    LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
    LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
    LEFT JOIN pg_type t ON d.classid = 'pg_type'::regclass AND t.oid = d.objid
    WHERE e.extname = 'raceguard' AND d.deptype = 'e'
      AND coalesce(p.pronamespace, c.relnamespace, t.typnamespace, 'raceguard'::regnamespace)
          <> 'raceguard'::regnamespace
$$, 'every object of the extension is in schema raceguard');

-- SQL and PL/pgSQL functions pin search_path (except the claim functions,
-- which must run the caller's filter under the caller's search_path).
SELECT is_empty($$
    SELECT p.oid::regprocedure
    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
    WHERE p.pronamespace = 'raceguard'::regnamespace
      AND l.lanname <> 'c'
      AND p.proname NOT IN ('claim', 'claim_lease', 'release_lease', 'extend_lease')
      AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS setting WHERE setting LIKE 'search\_path=%')
$$, 'SQL-language functions have a pinned search_path');

-- The C trigger functions carry no SET clause: it would cost a GUC save and
-- restore on every row. They resolve nothing by name at run time instead.
SELECT is_empty($$
    SELECT p.oid::regprocedure
    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
    WHERE p.pronamespace = 'raceguard'::regnamespace AND l.lanname = 'c'
      AND p.proconfig IS NOT NULL
$$, 'C functions have no SET clause');
SELECT is((SELECT proconfig FROM pg_proc WHERE oid = 'raceguard.lock_version()'::regprocedure),
          NULL, 'lock_version() has no SET search_path');
SELECT has_function('raceguard', 'transition', ARRAY[]::name[]);
SELECT function_returns('raceguard', 'transition', ARRAY[]::name[], 'trigger');

-- No SECURITY DEFINER anywhere.
SELECT is_empty($$
    SELECT oid::regprocedure FROM pg_proc
    WHERE pronamespace = 'raceguard'::regnamespace AND prosecdef
$$, 'no SECURITY DEFINER functions');

-- Only superusers and roles granted it may reset the statistics.
SELECT ok(NOT has_function_privilege('public', 'raceguard.stats_reset()', 'EXECUTE'),
          'PUBLIC may not execute raceguard.stats_reset()');

SELECT * FROM finish();
ROLLBACK;
