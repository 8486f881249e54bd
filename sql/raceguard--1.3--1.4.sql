-- raceguard 1.3 -> 1.4 update script: no login role can crash the server
-- or slip a row past a guard (issue 20). Each part below says what it
-- changes and why.
--
-- There is no full raceguard--1.4.sql: CREATE EXTENSION raceguard (1.4)
-- runs raceguard--1.2.sql, raceguard--1.2--1.3.sql and then this script.

\echo Use "ALTER EXTENSION raceguard UPDATE TO '1.4'" to load this file. \quit

-- Part 1: the restore path (raceguard.restoring).




-- Part 2: privileges (who may see and check which guards).




-- Part 3: statistics.
--
-- raceguard.stats gains entries_restored (after deletes_refused): the
-- entries running_balance's restore path kept as loaded. The column comes
-- from raceguard.guard_stats(), whose result grows a column, so the view
-- and the function are dropped and made again, as they were plus that
-- column (with their privileges and comments). A view of the user's over
-- raceguard.stats blocks this with 2BP01 (nothing is dropped with CASCADE):
-- see docs/operations.md. Until this runs, the 1.4 library serves the 1.3
-- declaration of guard_stats() without the new column.

DROP VIEW raceguard.stats;
DROP FUNCTION raceguard.guard_stats(oid, text);

CREATE FUNCTION raceguard.guard_stats(object_oid oid, guard_name text,
    OUT guard text,
    OUT rows_checked bigint, OUT versions_bumped bigint, OUT stale_writes bigint, OUT blind_writes bigint,
    OUT overflows bigint,
    OUT violations bigint,
    OUT appends bigint, OUT appends_waited bigint, OUT total_wait_time double precision,
    OUT max_wait_time double precision, OUT serialization_failures bigint, OUT min_balance_rejections bigint,
    OUT updates_refused bigint, OUT deletes_refused bigint, OUT entries_restored bigint,
    OUT calls bigint, OUT rows_claimed bigint, OUT leases_taken bigint, OUT releases bigint,
    OUT releases_fenced bigint, OUT extends bigint, OUT extends_fenced bigint,
    OUT stats_reset timestamptz)
    RETURNS SETOF record
    LANGUAGE c STRICT VOLATILE ROWS 1
    AS 'MODULE_PATHNAME', 'raceguard_guard_stats';

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

GRANT SELECT ON raceguard.stats TO PUBLIC;

COMMENT ON VIEW raceguard.stats IS
    'raceguard.stats (table_name, trigger_name, guard, rows_checked, versions_bumped, stale_writes, blind_writes, overflows, violations, appends, appends_waited, total_wait_time, max_wait_time, serialization_failures, min_balance_rejections, updates_refused, deletes_refused, entries_restored, calls, rows_claimed, leases_taken, releases, releases_fenced, extends, extends_fenced, stats_reset) -- cumulative statistics per guard trigger, and per table claimed from, since stats_reset (before PostgreSQL 17 with shared_preload_libraries = ''raceguard''); see docs/operations.md';

COMMENT ON FUNCTION raceguard.guard_stats(oid, text) IS
    'raceguard.guard_stats(object_oid oid, guard_name text) RETURNS SETOF record (guard text, then the counters and stats_reset, the columns of raceguard.stats after trigger_name) -- internal: the counters of one trigger, or for guard_name ''claim'' of the claim functions on one table; used by the view raceguard.stats; see docs/internals.md';


-- Part 4: event triggers that stay harmless without the library.




-- Part 5: lease tokens after pg_upgrade.
--
-- A lease token is the WAL timeline times 2^48 plus the next value of
-- raceguard.lease_token_seq; the timeline keeps a promoted standby's tokens
-- apart from those the old primary handed out after the standby's last WAL.
-- pg_upgrade (and a restore into a new cluster) starts on timeline 1 again,
-- so the timeline no longer tells those apart: a server abandoned at a
-- failover may have handed out any value of the sequence's block on its
-- timeline, values this database never saw. lease_tokens_after_upgrade()
-- moves the sequence up by as many blocks of 2^48 as the old cluster's
-- timeline, so that every token from then on is above every token any
-- earlier timeline can have handed out, and bounds it to its new block
-- (MAXVALUE), as claim_lease() requires past the first block.

CREATE FUNCTION raceguard.lease_tokens_after_upgrade(old_timeline integer)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    block_size constant bigint := 281474976710656;  -- 2^48 values of the sequence
    high_limit constant bigint := 32768;             -- timeline + block: tokens stay positive
    next_value bigint;
    new_block bigint;
BEGIN
    IF old_timeline IS NULL OR old_timeline < 1 OR old_timeline >= high_limit THEN
        RAISE EXCEPTION 'old_timeline must be the old cluster''s WAL timeline, from 1 to %, not %',
                        high_limit - 1, coalesce(old_timeline::text, '<NULL>')
              USING ERRCODE = '22023',
                    HINT = 'Read it from pg_controldata on the old data directory (Latest checkpoint''s TimeLineID); see docs/operations.md.';
    END IF;
    -- ALTER SEQUENCE locks the sequence against nextval() until this
    -- transaction ends: a lease taking a token meanwhile waits, and one
    -- that took a token before has committed by now, so the value read
    -- next is the sequence's last.
    ALTER SEQUENCE raceguard.lease_token_seq NO CYCLE;
    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
      INTO next_value FROM raceguard.lease_token_seq;
    new_block := next_value / block_size + old_timeline;
    IF new_block + 1 >= high_limit THEN
        RAISE EXCEPTION 'lease tokens are exhausted: the sequence''s block % plus old_timeline % leaves no timeline for new tokens',
                        next_value / block_size, old_timeline
              USING ERRCODE = '2200H';
    END IF;
    EXECUTE pg_catalog.format('ALTER SEQUENCE raceguard.lease_token_seq MAXVALUE %s RESTART WITH %s',
                              (new_block + 1) * block_size - 1, next_value + old_timeline * block_size);
    -- The move must survive a crash right after the commit: commit it
    -- synchronously, whatever the caller's synchronous_commit.
    PERFORM pg_catalog.set_config('synchronous_commit', 'on', true);
    -- Every earlier token is below this, every token from now on at least this.
    RETURN (new_block + 1) * block_size;
END
$function$;

REVOKE ALL ON FUNCTION raceguard.lease_tokens_after_upgrade(integer) FROM PUBLIC;

COMMENT ON FUNCTION raceguard.lease_tokens_after_upgrade(integer) IS
    'raceguard.lease_tokens_after_upgrade(old_timeline integer) RETURNS bigint -- run once after pg_upgrade, or after restoring a dump into another cluster, before any lease, with the WAL timeline the old cluster was on: moves raceguard.lease_token_seq above every token handed out on any earlier timeline (pg_upgrade restarts at timeline 1) and bounds it there; returns the value that separates them: every earlier token is below it, every later one at least it; see docs/operations.md';

COMMENT ON SEQUENCE raceguard.lease_token_seq IS
    'raceguard.lease_token_seq (SEQUENCE AS bigint) -- internal: the lease tokens, used by claim_lease(), which takes one per call, so a token is unique in the database; dumped with the data, so a restored database goes on above the tokens it handed out (after pg_upgrade or a restore into another cluster run lease_tokens_after_upgrade() too); see docs/claims.md';

-- End of the update script.
