-- The cluster-wide views without Citus (1.6): cluster_guards(),
-- check_cluster_guards() and cluster_stats() show this database's
-- raceguard.guards, check_guards() and raceguard.stats, with the table as a
-- schema-qualified, quoted name, and no Citus columns (citus_table and nodes
-- NULL, no shards). Each role sees what it sees in the local views. The
-- folding of shards over Citus nodes is tested by test/citus/run.sh.
CREATE ROLE regress_cluster_owner;
CREATE ROLE regress_cluster_clerk;     -- SELECT on one column of the ledger
CREATE ROLE regress_cluster_stranger;  -- no privilege on these tables
CREATE SCHEMA "cluster ""Test""" AUTHORIZATION regress_cluster_owner;
GRANT USAGE ON SCHEMA "cluster ""Test""" TO regress_cluster_clerk, regress_cluster_stranger;
SET ROLE regress_cluster_owner;
CREATE TABLE "cluster ""Test"""."Odd ""Ledger""" (account_id integer NOT NULL, amount bigint NOT NULL, balance bigint, n bigint);
CREATE INDEX ON "cluster ""Test"""."Odd ""Ledger""" (account_id, n);
CREATE TRIGGER "balance ""x""" BEFORE INSERT OR UPDATE OR DELETE ON "cluster ""Test"""."Odd ""Ledger"""
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n');
INSERT INTO "cluster ""Test"""."Odd ""Ledger""" (account_id, amount) VALUES (1, 5), (1, 6), (2, 7);
CREATE TABLE "cluster ""Test""".orders (id integer PRIMARY KEY, lock_version integer);
CREATE TRIGGER orders_lock_version BEFORE INSERT OR UPDATE ON "cluster ""Test""".orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
ALTER TABLE "cluster ""Test""".orders DISABLE TRIGGER orders_lock_version;  -- a problem check_guards() reports
GRANT SELECT (amount) ON "cluster ""Test"""."Odd ""Ledger""" TO regress_cluster_clerk;
RESET ROLE;

-- This test's guards, as the owner sees them.
SET ROLE regress_cluster_owner;
SELECT * FROM raceguard.cluster_guards() WHERE table_name LIKE '"cluster ""Test"""%' ORDER BY 1, 2;
SELECT * FROM raceguard.check_cluster_guards() WHERE table_name LIKE '"cluster ""Test"""%';
RESET ROLE;

-- For every role, the same rows as the local views (whatever other tests
-- left in the database): as many, and none that differs.
CREATE FUNCTION pg_temp.same_as_local() RETURNS TABLE (listing text, cluster_rows bigint, local_rows bigint, differing bigint)
    LANGUAGE sql AS $$
    WITH cluster_guards AS (
        SELECT table_name, trigger_name, guard, columns, options, timing, events, enabled, clone_of, citus_table, nodes, shards
          FROM raceguard.cluster_guards()),
    local_guards AS (
        SELECT format('%I.%I', n.nspname, c.relname) AS table_name, g.trigger_name, g.guard, g.columns, g.options, g.timing,
               g.events, g.enabled,
               (SELECT format('%I.%I', pn.nspname, p.relname) FROM pg_class p JOIN pg_namespace pn ON pn.oid = p.relnamespace
                 WHERE p.oid = g.clone_of) AS clone_of,
               NULL::text AS citus_table, NULL::integer[] AS nodes, 0::bigint AS shards
          FROM raceguard.guards g JOIN pg_class c ON c.oid = g.table_name JOIN pg_namespace n ON n.oid = c.relnamespace),
    cluster_problems AS (SELECT table_name, trigger_name, problem, nodes, shards FROM raceguard.check_cluster_guards()),
    local_problems AS (
        SELECT format('%I.%I', n.nspname, c.relname) AS table_name, g.trigger_name, g.problem, NULL::integer[] AS nodes,
               NULL::bigint[] AS shards
          FROM raceguard.check_guards() g JOIN pg_class c ON c.oid = g.table_name JOIN pg_namespace n ON n.oid = c.relnamespace),
    cluster_stats AS (SELECT * FROM raceguard.cluster_stats()),
    local_stats AS (
        SELECT format('%I.%I', n.nspname, c.relname) AS table_name, s.trigger_name, s.guard, s.rows_checked, s.versions_bumped,
               s.stale_writes, s.blind_writes, s.overflows, s.violations, s.appends, s.appends_waited, s.total_wait_time,
               s.max_wait_time, s.serialization_failures, s.min_balance_rejections, s.updates_refused, s.deletes_refused,
               s.entries_restored, s.calls, s.rows_claimed, s.leases_taken, s.releases, s.releases_fenced, s.extends,
               s.extends_fenced, s.stats_reset, s.transitions_refused, s.duplicates_caught, NULL::integer[] AS nodes
          FROM raceguard.stats s JOIN pg_class c ON c.oid = s.table_name JOIN pg_namespace n ON n.oid = c.relnamespace)
    SELECT 'guards', (SELECT count(*) FROM cluster_guards), (SELECT count(*) FROM local_guards),
           (SELECT count(*) FROM ((TABLE cluster_guards EXCEPT ALL TABLE local_guards)
                                  UNION ALL (TABLE local_guards EXCEPT ALL TABLE cluster_guards)) d)
    UNION ALL
    SELECT 'problems', (SELECT count(*) FROM cluster_problems), (SELECT count(*) FROM local_problems),
           (SELECT count(*) FROM ((TABLE cluster_problems EXCEPT ALL TABLE local_problems)
                                  UNION ALL (TABLE local_problems EXCEPT ALL TABLE cluster_problems)) d)
    UNION ALL
    SELECT 'stats', (SELECT count(*) FROM cluster_stats), (SELECT count(*) FROM local_stats),
           (SELECT count(*) FROM ((TABLE cluster_stats EXCEPT ALL TABLE local_stats)
                                  UNION ALL (TABLE local_stats EXCEPT ALL TABLE cluster_stats)) d)
$$;
GRANT EXECUTE ON FUNCTION pg_temp.same_as_local() TO PUBLIC;
-- Statistics may not be collected here (a NOTICE says so, then both are empty).
SET client_min_messages = warning;
SELECT listing, cluster_rows = local_rows AS same_count, differing, cluster_rows > 0 AS any_rows
  FROM pg_temp.same_as_local() WHERE listing <> 'stats';
SELECT listing, cluster_rows = local_rows AS same_count, differing FROM pg_temp.same_as_local() WHERE listing = 'stats';
-- The clerk sees the ledger's guard (a column privilege is enough), not
-- the orders'; the stranger sees neither. Statistics are for everyone, as
-- raceguard.stats is.
SET ROLE regress_cluster_clerk;
SELECT table_name, trigger_name FROM raceguard.cluster_guards() WHERE table_name LIKE '"cluster ""Test"""%';
SELECT count(*) AS problems_seen FROM raceguard.check_cluster_guards() WHERE table_name LIKE '"cluster ""Test"""%';
SELECT listing, cluster_rows = local_rows AS same_count, differing FROM pg_temp.same_as_local();
SET ROLE regress_cluster_stranger;
SELECT count(*) AS guards_seen FROM raceguard.cluster_guards() WHERE table_name LIKE '"cluster ""Test"""%';
SELECT count(*) AS problems_seen FROM raceguard.check_cluster_guards() WHERE table_name LIKE '"cluster ""Test"""%';
SELECT listing, cluster_rows = local_rows AS same_count, differing FROM pg_temp.same_as_local();
RESET ROLE;
RESET client_min_messages;

-- The internal helpers: a kind that is not one of the three is refused.
SELECT raceguard.node_guard_rows('everything');
SELECT * FROM raceguard.cluster_rows(NULL);

-- How Citus names a shard's copy of a table or trigger: "<name>_<shard id>",
-- or a name too long for that cut short and hashed before the shard id.
SELECT raceguard.citus_shard_named('ledger_102008', 'ledger', 102008) AS plain,
       raceguard.citus_shard_named('ledger_102009', 'ledger', 102008) AS other_shard,
       raceguard.citus_shard_named('ledgers_102008', 'ledger', 102008) AS other_table,
       raceguard.citus_shard_named('a_table_with_a_name_long_enough_that_citus_hash_8bdbe1e0_102012',
                                   'a_table_with_a_name_long_enough_that_citus_hashes_its_shards_x', 102012) AS hashed,
       raceguard.citus_shard_named('a_table_with_a_name_long_enough_that_citus_hash_8bdbe1e0_102012',
                                   'a_table_with_a_name_long_enough_that_is_another', 102012) AS hashed_other,
       raceguard.citus_shard_named('short_8bdbe1e0_102012', 'short', 102012) AS hashed_but_fits;

DROP SCHEMA "cluster ""Test""" CASCADE;
DROP ROLE regress_cluster_owner, regress_cluster_clerk, regress_cluster_stranger;
