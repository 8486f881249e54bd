-- raceguard 1.1 -> 1.2 update script: statistics per guard (raceguard.stats).
-- Follows PostgreSQL's "Security Considerations for Extensions": no CREATE OR
-- REPLACE, everything schema-qualified, no SECURITY DEFINER.

\echo Use "ALTER EXTENSION raceguard UPDATE TO '1.2'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Statistics per guard (1.2): how often each guard fires and rejects, since
-- the last reset, like PostgreSQL's pg_stat_* views. Counted in each backend
-- and added to shared memory at transaction end; lost on a crash or restart.
-- Before PostgreSQL 17 they need shared_preload_libraries = 'raceguard'
-- (without it raceguard.stats is empty and says so with a NOTICE).
-- ---------------------------------------------------------------------------

-- The counters of one trigger (or, for guard 'claim', of the claim
-- functions on one table): one row, zeros when nothing was counted since
-- tracking began (stats_reset NULL then); no row when statistics are not
-- collected. Counters that do not apply to the guard are NULL.
CREATE FUNCTION raceguard.guard_stats(object_oid oid, guard_name text,
    OUT guard text,
    OUT rows_checked bigint, OUT versions_bumped bigint, OUT stale_writes bigint, OUT blind_writes bigint,
    OUT overflows bigint,
    OUT violations bigint,
    OUT appends bigint, OUT appends_waited bigint, OUT total_wait_time double precision,
    OUT max_wait_time double precision, OUT serialization_failures bigint, OUT min_balance_rejections bigint,
    OUT updates_refused bigint, OUT deletes_refused bigint,
    OUT calls bigint, OUT rows_claimed bigint, OUT leases_taken bigint, OUT releases bigint,
    OUT releases_fenced bigint, OUT extends bigint, OUT extends_fenced bigint,
    OUT stats_reset timestamptz)
    RETURNS SETOF record
    LANGUAGE c STRICT VOLATILE ROWS 1
    AS 'MODULE_PATHNAME', 'raceguard_guard_stats';

-- What the statistics hold for this database: triggers and tables claimed
-- from. A NOTICE says so when statistics are not collected.
CREATE FUNCTION raceguard.tracked_objects(OUT object_oid oid, OUT guard text)
    RETURNS SETOF record
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'raceguard_tracked_objects';

CREATE VIEW raceguard.stats AS
SELECT t.tgrelid::pg_catalog.regclass AS table_name,
       t.tgname AS trigger_name,
       s.*
FROM pg_catalog.pg_trigger t
CROSS JOIN LATERAL raceguard.guard_stats(
    t.oid,
    CASE t.tgfoid WHEN 'raceguard.lock_version()'::pg_catalog.regprocedure THEN 'lock_version'
                  WHEN 'raceguard.immutable_once_set()'::pg_catalog.regprocedure THEN 'immutable_once_set'
                  ELSE 'running_balance' END) s
WHERE t.tgfoid OPERATOR(pg_catalog.=) ANY (ARRAY['raceguard.lock_version()'::pg_catalog.regprocedure,
                                                 'raceguard.immutable_once_set()'::pg_catalog.regprocedure,
                                                 'raceguard.running_balance()'::pg_catalog.regprocedure])
UNION ALL
SELECT o.object_oid::pg_catalog.regclass,
       NULL::pg_catalog.name,
       s.*
FROM raceguard.tracked_objects() o
CROSS JOIN LATERAL raceguard.guard_stats(o.object_oid, 'claim') s
WHERE o.guard OPERATOR(pg_catalog.=) 'claim'
  AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) o.object_oid);

COMMENT ON VIEW raceguard.stats IS
    'cumulative statistics per guard trigger, and per table claimed from, since stats_reset: rows checked, stale writes, violations, appends and lock waits, claims and fenced-off releases';

-- Counters, like pg_stat_user_tables', are readable by everyone.
GRANT SELECT ON raceguard.stats TO PUBLIC;

-- Every counter of this database's guards back to zero. Superusers, and
-- roles granted EXECUTE on it.
CREATE FUNCTION raceguard.stats_reset() RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'raceguard_stats_reset';
REVOKE ALL ON FUNCTION raceguard.stats_reset() FROM PUBLIC;

COMMENT ON FUNCTION raceguard.stats_reset() IS
    'resets the counters of raceguard.stats for the current database (superuser, or a role granted EXECUTE)';

-- The statistics of dropped triggers and tables go when their DROP commits.
CREATE FUNCTION raceguard.forget_dropped_stats() RETURNS event_trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'raceguard_forget_dropped_stats';

CREATE EVENT TRIGGER raceguard_forget_dropped_stats ON sql_drop
    EXECUTE FUNCTION raceguard.forget_dropped_stats();
ALTER EVENT TRIGGER raceguard_forget_dropped_stats ENABLE ALWAYS;
