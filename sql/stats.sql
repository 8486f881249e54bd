-- raceguard.stats: every counter moves by a known amount, a rejection's
-- count outlives its error, counts show at commit, a reset zeroes them, and
-- the statistics of dropped triggers and tables go with their DROP.
--
-- Statistics are collected on PostgreSQL 17 and later, and before 17 only
-- with raceguard in shared_preload_libraries. Without them (the alternative
-- output stats_1.out) the view is empty and a NOTICE says how to enable
-- them, while every guard works the same. `collects` is what this server
-- should do; with it in both outputs a server that collects nothing where
-- it should matches neither.
SELECT current_setting('server_version_num')::integer >= 170000
       OR 'raceguard' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
       AS collects;

CREATE SCHEMA stats_test;
SET search_path = stats_test, public;
SELECT raceguard.stats_reset();

-- What the counters of this test's guards are now.
CREATE VIEW counters AS
SELECT table_name, trigger_name, guard, rows_checked, versions_bumped, stale_writes, blind_writes, overflows,
       violations, appends, appends_waited, serialization_failures, min_balance_rejections, updates_refused,
       deletes_refused, entries_restored, calls, rows_claimed, leases_taken, releases, releases_fenced, extends,
       extends_fenced,
       stats_reset IS NOT NULL AS counting
FROM raceguard.stats
WHERE table_name IN (SELECT oid FROM pg_class WHERE relnamespace = 'stats_test'::regnamespace)
ORDER BY table_name::text, trigger_name;

-- lock_version: UPDATE rows checked, versions bumped, stale writes, blind
-- writes (strict=true), overflows. INSERTs are not checks.
CREATE TABLE orders (id integer PRIMARY KEY, payload integer, lock_version integer);
CREATE TRIGGER orders_lock_version BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
CREATE TABLE strict_orders (id integer PRIMARY KEY, payload integer, lock_version smallint);
CREATE TRIGGER strict_orders_lock_version BEFORE INSERT OR UPDATE ON strict_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('strict=true');
-- A guard that never fired shows zeros, and no stats_reset yet.
SELECT * FROM counters;
INSERT INTO orders SELECT g, 0 FROM generate_series(1, 3) g;
INSERT INTO strict_orders VALUES (1, 0, 32766);
UPDATE orders SET payload = payload + 1;                          -- 3 checked, 3 bumped
UPDATE orders SET payload = 9, lock_version = 7 WHERE id = 1;     -- stale: 1 checked, 1 stale
UPDATE strict_orders SET payload = 1;                             -- blind: 1 checked, 1 blind
UPDATE strict_orders SET lock_version = 32766;                    -- 1 checked, 1 bumped (to 32767)
UPDATE strict_orders SET lock_version = 32767;                    -- overflow: 1 checked, 1 overflow
SELECT * FROM counters;

-- A rejection in a transaction that is rolled back is still counted (the
-- counts are flushed at abort too); counts show when their transaction ends.
BEGIN;
UPDATE orders SET lock_version = 1 WHERE id = 2;                  -- stale
ROLLBACK;
BEGIN;
UPDATE orders SET payload = 5 WHERE id = 3;                       -- bumped, not shown yet
SELECT rows_checked, versions_bumped, stale_writes FROM counters WHERE trigger_name = 'orders_lock_version';
COMMIT;
SELECT rows_checked, versions_bumped, stale_writes FROM counters WHERE trigger_name = 'orders_lock_version';

-- raceguard.track_stats = off counts nothing; on again, counting goes on.
SET raceguard.track_stats = off;
UPDATE orders SET payload = 6;
RESET raceguard.track_stats;
UPDATE orders SET payload = 7 WHERE id = 1;
SELECT rows_checked, versions_bumped FROM counters WHERE trigger_name = 'orders_lock_version';

-- immutable_once_set: UPDATE rows checked, violations.
CREATE TABLE conversations (id integer PRIMARY KEY, texter_id integer);
CREATE TRIGGER conversations_texter BEFORE UPDATE ON conversations
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('texter_id');
INSERT INTO conversations VALUES (1, NULL), (2, NULL);
UPDATE conversations SET texter_id = 10;                          -- 2 checked
UPDATE conversations SET texter_id = 11 WHERE id = 1;             -- steal: 1 checked, 1 violation
SELECT * FROM counters WHERE guard = 'immutable_once_set';

-- running_balance: appends, min_balance rejections, refused updates and
-- deletes. (Lock waits and 40001 take two sessions: the isolation spec
-- stats_backends.)
CREATE TABLE payments (account_id integer, amount bigint, balance bigint, entry_no bigint, memo text);
CREATE UNIQUE INDEX ON payments (account_id, entry_no);
CREATE TRIGGER payments_running_balance BEFORE INSERT OR UPDATE OR DELETE ON payments
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=entry_no', 'min_balance=0');
INSERT INTO payments (account_id, amount) VALUES (1, 100), (1, -30), (2, 5);   -- 3 appends
INSERT INTO payments (account_id, amount) VALUES (1, -500);                    -- below min_balance
UPDATE payments SET memo = 'fine' WHERE account_id = 2;                        -- allowed, not counted
UPDATE payments SET amount = 1 WHERE account_id = 2;                           -- refused update
DELETE FROM payments WHERE account_id = 2;                                     -- refused delete
SELECT * FROM counters WHERE guard = 'running_balance';

-- appends counts the entries inserted: not those INSERT ... ON CONFLICT
-- skipped, nor those a later trigger skipped, whether first, in the middle
-- or last of their statement; like pg_stat_user_tables.n_tup_ins, an entry
-- inserted and then rolled back with its transaction counts.
CREATE TABLE transfers (account_id integer, amount bigint, balance bigint, entry_no bigint,
                        request_id text UNIQUE, memo text);
CREATE UNIQUE INDEX ON transfers (account_id, entry_no);
CREATE TRIGGER transfers_running_balance BEFORE INSERT OR UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=entry_no');
CREATE FUNCTION skip_on_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN CASE WHEN NEW.memo = 'hold' THEN NULL ELSE NEW END;
END $$;
CREATE TRIGGER transfers_zz_hold BEFORE INSERT ON transfers FOR EACH ROW EXECUTE FUNCTION skip_on_hold();
INSERT INTO transfers (account_id, amount, request_id) VALUES (1, 10, 'a');                          -- 1
INSERT INTO transfers (account_id, amount, request_id)
VALUES (1, 10, 'a'), (1, 5, 'b'), (1, 10, 'a') ON CONFLICT DO NOTHING;                               -- 1 (b)
INSERT INTO transfers (account_id, amount, request_id) VALUES (1, 10, 'a') ON CONFLICT DO NOTHING;   -- 0
INSERT INTO transfers (account_id, amount, request_id) VALUES (1, 10, 'a')
ON CONFLICT (request_id) DO UPDATE SET memo = 'retried';                                             -- 0
INSERT INTO transfers (account_id, amount, request_id, memo)
VALUES (1, 1, 'c', 'hold'), (1, 2, 'd', NULL), (1, 3, 'e', 'hold');                                  -- 1 (d)
BEGIN;
INSERT INTO transfers (account_id, amount, request_id) VALUES (2, 7, 'f') ON CONFLICT DO NOTHING;    -- 1
INSERT INTO transfers (account_id, amount, request_id) VALUES (2, 7, 'f') ON CONFLICT DO NOTHING;    -- 0
COMMIT;
BEGIN;
INSERT INTO transfers (account_id, amount, request_id) VALUES (2, 1, 'g');                          -- 1, rolled back
ROLLBACK;
SELECT appends, (SELECT count(*) FROM transfers) AS entries FROM counters WHERE trigger_name = 'transfers_running_balance';

-- entries_restored counts the entries the restore path kept as loaded
-- (raceguard.restoring, a superuser's setting); they are not appends.
-- A row without its seq is appended as usual.
SET raceguard.restoring = on;
SET client_min_messages = error;
INSERT INTO transfers (account_id, amount, balance, entry_no, request_id) VALUES (9, 5, 5, 1, 'r1'), (9, 6, 11, 2, 'r2');
INSERT INTO transfers (account_id, amount, request_id) VALUES (9, 1, 'r3');
RESET client_min_messages;
RESET raceguard.restoring;
SELECT appends, entries_restored, (SELECT count(*) FROM transfers) AS entries
FROM counters WHERE trigger_name = 'transfers_running_balance';

-- The library serves the declaration of guard_stats() of 1.2 and 1.3 (no
-- entries_restored) until ALTER EXTENSION UPDATE, every counter in its
-- place; any other shape is refused (42804).
CREATE FUNCTION guard_stats_1_3(object_oid oid, guard_name text,
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
    RETURNS SETOF record LANGUAGE c STRICT AS '$libdir/raceguard', 'raceguard_guard_stats';
SELECT s.guard, s.appends, s.min_balance_rejections, s.updates_refused, s.deletes_refused, s.calls, s.extends_fenced,
       s.stats_reset IS NOT NULL AS counting
FROM pg_trigger t, guard_stats_1_3(t.oid, 'running_balance') s
WHERE t.tgname = 'payments_running_balance' AND t.tgrelid = 'stats_test.payments'::regclass;
CREATE FUNCTION guard_stats_short(object_oid oid, guard_name text, OUT guard text, OUT rows_checked bigint)
    RETURNS SETOF record LANGUAGE c STRICT AS '$libdir/raceguard', 'raceguard_guard_stats';
DO $$
DECLARE
    message text;
    hint text;
BEGIN
    PERFORM * FROM guard_stats_short(0, 'lock_version');
EXCEPTION WHEN datatype_mismatch THEN
    GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RAISE NOTICE '42804: % (%)', message, hint;
END $$;

-- The claim functions, one row per table claimed from: calls and rows of
-- claim() and claim_lease(), leases taken, releases and extends that
-- matched, and those that found no row holding the token (fenced off).
CREATE TABLE jobs (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz);
INSERT INTO jobs SELECT g FROM generate_series(1, 10) g;
SELECT count(*) FROM raceguard.claim(NULL::jobs, 'id <= 2', 5);                      -- 1 call, 2 rows
SELECT count(*) FROM raceguard.claim_lease(NULL::jobs, 'id > 7', 5, '1 hour');        -- 1 call, 3 rows, 3 leases
SELECT raceguard.extend_lease(NULL::jobs, (SELECT max(claim_token) FROM jobs), '2 hours');   -- matched
SELECT raceguard.release_lease(NULL::jobs, (SELECT max(claim_token) FROM jobs));             -- matched
SELECT raceguard.release_lease(NULL::jobs, 424242);                                          -- fenced off
SELECT raceguard.extend_lease(NULL::jobs, 424242, '1 hour');                                 -- fenced off
SELECT * FROM counters WHERE guard = 'claim';

-- A reset: every counter of the database back to zero, counting from now.
SELECT max(stats_reset) < now() AS counted_before FROM raceguard.stats WHERE table_name IN (SELECT oid FROM pg_class WHERE relnamespace = 'stats_test'::regnamespace);
SELECT clock_timestamp() AS before_reset \gset
SELECT raceguard.stats_reset();
SELECT count(*) AS guards,
       count(*) FILTER (WHERE coalesce(rows_checked, 0) + coalesce(stale_writes, 0) + coalesce(violations, 0) +
                              coalesce(appends, 0) + coalesce(calls, 0) + coalesce(releases_fenced, 0) > 0) AS nonzero,
       count(*) FILTER (WHERE stats_reset >= :'before_reset') AS reset_now
FROM raceguard.stats WHERE table_name IN (SELECT oid FROM pg_class WHERE relnamespace = 'stats_test'::regnamespace);

-- Only superusers and roles granted EXECUTE may reset; everyone may read.
CREATE ROLE regress_stats_reader;
GRANT USAGE ON SCHEMA stats_test TO regress_stats_reader;
GRANT SELECT ON counters TO regress_stats_reader;
SET ROLE regress_stats_reader;
SELECT count(*) > 0 AS readable FROM counters;
SELECT raceguard.stats_reset();
RESET ROLE;
GRANT EXECUTE ON FUNCTION raceguard.stats_reset() TO regress_stats_reader;
SET ROLE regress_stats_reader;
SELECT raceguard.stats_reset();
RESET ROLE;
REVOKE EXECUTE ON FUNCTION raceguard.stats_reset() FROM regress_stats_reader;

-- The statistics of a dropped trigger, or of a dropped table's triggers and
-- claims, go when the DROP commits; a rolled-back DROP keeps them.
UPDATE orders SET payload = 8;
SELECT count(*) FROM raceguard.claim(NULL::jobs, 'true', 1);
CREATE VIEW tracked AS
SELECT o.guard, coalesce(t.tgname::text, o.object_oid::regclass::text) AS name
FROM raceguard.tracked_objects() o
LEFT JOIN pg_trigger t ON o.guard <> 'claim' AND t.oid = o.object_oid
WHERE coalesce(t.tgrelid, o.object_oid) IN (SELECT oid FROM pg_class WHERE relnamespace = 'stats_test'::regnamespace)
ORDER BY 1, 2;
SELECT * FROM tracked;
CREATE TABLE dropped AS
SELECT oid FROM pg_trigger WHERE tgrelid = 'stats_test.orders'::regclass AND tgname = 'orders_lock_version'
UNION ALL SELECT 'stats_test.jobs'::regclass::oid;
BEGIN;
DROP TRIGGER orders_lock_version ON orders;
ROLLBACK;
SELECT count(*) AS still_tracked FROM raceguard.tracked_objects() WHERE object_oid IN (SELECT oid FROM dropped);
-- So does a DROP in a savepoint rolled back, also after an inner savepoint
-- around it was released; a DROP in a released savepoint goes at COMMIT.
BEGIN;
SAVEPOINT outer_drop;
SAVEPOINT inner_drop;
DROP TRIGGER orders_lock_version ON orders;
RELEASE SAVEPOINT inner_drop;
ROLLBACK TO SAVEPOINT outer_drop;
COMMIT;
SELECT count(*) AS still_tracked FROM raceguard.tracked_objects() WHERE object_oid IN (SELECT oid FROM dropped);
BEGIN;
SAVEPOINT dropping;
DROP TRIGGER orders_lock_version ON orders;
RELEASE SAVEPOINT dropping;
COMMIT;
DROP TABLE jobs;
SELECT count(*) AS still_tracked FROM raceguard.tracked_objects() WHERE object_oid IN (SELECT oid FROM dropped);
SELECT * FROM tracked;

-- A guard counted and dropped in one transaction: its counts of that
-- transaction do not make its entry again when the DROP commits.
CREATE TABLE short_lived (id integer PRIMARY KEY, payload integer, lock_version integer,
                          claim_token bigint, claimed_until timestamptz);
CREATE TRIGGER short_lived_lock_version BEFORE INSERT OR UPDATE ON short_lived
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO short_lived VALUES (1, 0);
INSERT INTO dropped
SELECT oid FROM pg_trigger WHERE tgname = 'short_lived_lock_version' UNION ALL SELECT 'short_lived'::regclass::oid;
BEGIN;
UPDATE short_lived SET payload = 1;
SELECT count(*) FROM raceguard.claim(NULL::short_lived, 'true', 1);
DROP TABLE short_lived;
COMMIT;
SELECT count(*) AS still_tracked FROM raceguard.tracked_objects() WHERE object_oid IN (SELECT oid FROM dropped);

-- Guards dropped where no sql_drop event trigger sees it go all the same:
-- the clone trigger DETACH PARTITION removes from the partition, and the
-- triggers of temporary tables dropped ON COMMIT, by DISCARD TEMP and at the
-- end of their session.
CREATE TABLE ledger (account_id integer, amount bigint, balance bigint, entry_no bigint, day date)
    PARTITION BY RANGE (day);
CREATE TABLE ledger_january PARTITION OF ledger FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE ledger_february PARTITION OF ledger FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
CREATE INDEX ON ledger (account_id, entry_no);
CREATE TRIGGER ledger_running_balance BEFORE INSERT OR UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=entry_no');
INSERT INTO ledger (account_id, amount, day) VALUES (1, 10, '2024-01-15'), (1, 5, '2024-02-15');
INSERT INTO dropped SELECT oid FROM pg_trigger WHERE tgrelid = 'ledger_february'::regclass;
ALTER TABLE ledger DETACH PARTITION ledger_february;
SELECT count(*) AS still_tracked FROM raceguard.tracked_objects() WHERE object_oid IN (SELECT oid FROM dropped);
SELECT * FROM tracked WHERE guard = 'running_balance';
BEGIN;
CREATE TEMP TABLE scratch (id integer PRIMARY KEY, payload integer, lock_version integer) ON COMMIT DROP;
CREATE TRIGGER scratch_lock_version BEFORE INSERT OR UPDATE ON scratch
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO scratch VALUES (1, 0);
UPDATE scratch SET payload = 1;
INSERT INTO dropped SELECT oid FROM pg_trigger WHERE tgname = 'scratch_lock_version';
COMMIT;
CREATE TEMP TABLE scratch (id integer PRIMARY KEY, payload integer, lock_version integer);
CREATE TRIGGER scratch_lock_version BEFORE INSERT OR UPDATE ON scratch
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO scratch VALUES (1, 0);
UPDATE scratch SET payload = 1;
INSERT INTO dropped SELECT oid FROM pg_trigger WHERE tgname = 'scratch_lock_version';
DISCARD TEMP;
SELECT count(*) AS still_tracked FROM raceguard.tracked_objects() WHERE object_oid IN (SELECT oid FROM dropped);
CREATE TEMP TABLE scratch (id integer PRIMARY KEY, payload integer, lock_version integer);
CREATE TRIGGER scratch_lock_version BEFORE INSERT OR UPDATE ON scratch
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO scratch VALUES (1, 0);
UPDATE scratch SET payload = 1;
INSERT INTO dropped SELECT oid FROM pg_trigger WHERE tgname = 'scratch_lock_version';
CREATE FUNCTION wait_for_exit(backend integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- A session's temporary tables are dropped before it leaves pg_stat_activity.
    WHILE EXISTS (SELECT FROM pg_stat_activity WHERE pid = backend) LOOP
        PERFORM pg_sleep(0.01);
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
END $$;
SELECT pg_backend_pid() AS temp_session \gset
\c -
SET search_path = stats_test, public;
SELECT wait_for_exit(:temp_session);
SELECT count(*) AS still_tracked FROM raceguard.tracked_objects() WHERE object_oid IN (SELECT oid FROM dropped);

-- Bad input to the helper the view calls.
SELECT * FROM raceguard.guard_stats(0, 'no_such_guard');

RESET search_path;
DROP SCHEMA stats_test CASCADE;
DROP ROLE regress_stats_reader;
