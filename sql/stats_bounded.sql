-- raceguard.stats keeps at most raceguard.max_tracked_guards entries: a new
-- one takes the place of the least recently updated, and a dropped guard's
-- entry goes with it, so the table stays within its bound however many
-- guards come and go. Run by test/stats/preload.sh, in a cluster of its own
-- with raceguard preloaded, max_tracked_guards = 10 and prepared
-- transactions enabled.
SHOW raceguard.max_tracked_guards;
CREATE SCHEMA bounded;
SET search_path = bounded, public;
CREATE VIEW tracked AS
SELECT t.tgname AS trigger_name
FROM raceguard.tracked_objects() o
JOIN pg_trigger t ON t.oid = o.object_oid
ORDER BY 1;

-- 15 guards, each updated once, in order, one transaction each (the
-- statements \gexec runs are not echoed).
\set ECHO none
SELECT format('CREATE TABLE t%s (id integer PRIMARY KEY, payload integer, lock_version integer)', lpad(g::text, 2, '0')),
       format('CREATE TRIGGER t%s_lock_version BEFORE INSERT OR UPDATE ON t%1$s FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version()',
              lpad(g::text, 2, '0')),
       format('INSERT INTO t%s VALUES (1, 0)', lpad(g::text, 2, '0'))
FROM generate_series(1, 15) g \gexec
SELECT format('UPDATE t%s SET payload = 1', lpad(g::text, 2, '0')) FROM generate_series(1, 15) g \gexec
\set ECHO all
-- The ten updated last.
SELECT * FROM tracked;
-- t01 again: it comes back (from zero), and t06, now the least recently updated, goes.
UPDATE t01 SET payload = 2;
SELECT * FROM tracked;
SELECT rows_checked, versions_bumped FROM raceguard.stats WHERE trigger_name IN ('t01_lock_version', 't15_lock_version') ORDER BY trigger_name;

-- 100 guards made, updated and dropped: the first takes t07's place, and
-- each drop frees its entry for the next. Nothing dropped stays tracked.
\set ECHO none
SELECT format('CREATE TABLE churn (id integer PRIMARY KEY, payload integer, lock_version integer)'),
       format('CREATE TRIGGER churn_lock_version BEFORE INSERT OR UPDATE ON churn FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version()'),
       'INSERT INTO churn VALUES (1, 0)',
       'UPDATE churn SET payload = 1',
       'DROP TABLE churn'
FROM generate_series(1, 100) g \gexec
\set ECHO all
SELECT count(*) AS tracked_entries FROM raceguard.tracked_objects();
SELECT * FROM tracked;

-- A leftover: the entry of a guard that no longer exists and that no DROP
-- forgot. Here a guard made and counted in a transaction rolled back (its
-- counts outlive the rollback, the guard does not). It fills the table.
BEGIN;
CREATE TABLE ghost (id integer PRIMARY KEY, payload integer, lock_version integer);
CREATE TRIGGER ghost_lock_version BEFORE INSERT OR UPDATE ON ghost
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO ghost VALUES (1, 0);
UPDATE ghost SET payload = 1;
SELECT oid AS ghost_trigger FROM pg_trigger WHERE tgname = 'ghost_lock_version' \gset
ROLLBACK;
SELECT count(*) AS tracked_entries, count(*) FILTER (WHERE object_oid = :ghost_trigger) AS leftovers
FROM raceguard.tracked_objects();
-- A new guard takes the leftover's place; t08, the least recently updated
-- live guard, stays.
CREATE TABLE newcomer (id integer PRIMARY KEY, payload integer, lock_version integer);
CREATE TRIGGER newcomer_lock_version BEFORE INSERT OR UPDATE ON newcomer
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO newcomer VALUES (1, 0);
UPDATE newcomer SET payload = 1;
SELECT count(*) AS tracked_entries, count(*) FILTER (WHERE object_oid = :ghost_trigger) AS leftovers
FROM raceguard.tracked_objects();
SELECT * FROM tracked;

-- A guard dropped by a prepared transaction: the DROP may still be rolled
-- back, so the guard's entry stays, and ROLLBACK PREPARED finds its
-- counters as they were.
UPDATE t15 SET payload = 3;
SELECT oid AS t15_trigger FROM pg_trigger WHERE tgname = 't15_lock_version' \gset
BEGIN;
DROP TABLE t15;
PREPARE TRANSACTION 'drop_t15';
SELECT count(*) AS still_tracked FROM raceguard.tracked_objects() WHERE object_oid = :t15_trigger;
ROLLBACK PREPARED 'drop_t15';
SELECT rows_checked, versions_bumped FROM raceguard.stats WHERE trigger_name = 't15_lock_version';
-- COMMIT PREPARED, which no module hears, leaves the entry over; it is
-- reclaimed when room is needed, before a live guard's.
BEGIN;
DROP TABLE t15;
PREPARE TRANSACTION 'drop_t15';
COMMIT PREPARED 'drop_t15';
SELECT count(*) AS leftovers FROM raceguard.tracked_objects() WHERE object_oid = :t15_trigger;
CREATE TABLE latecomer (id integer PRIMARY KEY, payload integer, lock_version integer);
CREATE TRIGGER latecomer_lock_version BEFORE INSERT OR UPDATE ON latecomer
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO latecomer VALUES (1, 0);
UPDATE latecomer SET payload = 1;
SELECT count(*) AS tracked_entries, count(*) FILTER (WHERE object_oid = :t15_trigger) AS leftovers
FROM raceguard.tracked_objects();
SELECT * FROM tracked;

RESET search_path;
DROP SCHEMA bounded CASCADE;
SELECT count(*) AS tracked_entries FROM raceguard.tracked_objects();
