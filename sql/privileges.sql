-- Who sees which guards (1.4). raceguard.guards, check_guards() and
-- verify_running_balance() are for every role, and each shows a role the
-- guards of the tables it may see: tables it owns (or whose owner's
-- privileges it has), or holds any privilege on, on the table or on a
-- column; superusers see all. The helpers behind them describe, check and
-- open no other table (that they take no lock on it either is shown by
-- test/isolation/specs/privileges_no_lock.spec).
CREATE ROLE regress_guard_owner;
CREATE ROLE regress_guard_member IN ROLE regress_guard_owner;  -- has the owner's privileges
CREATE ROLE regress_guard_clerk;      -- INSERT on the ledger, SELECT on its amounts
CREATE ROLE regress_guard_auditor;    -- SELECT on one column of the orders
CREATE ROLE regress_guard_stranger;   -- no privilege on these tables
CREATE SCHEMA owned AUTHORIZATION regress_guard_owner;
GRANT USAGE ON SCHEMA owned, regress
    TO regress_guard_owner, regress_guard_clerk, regress_guard_auditor, regress_guard_stranger;
-- The migration-time check is on, as in guards.sql.
ALTER EVENT TRIGGER raceguard_validate_guards ENABLE ALWAYS;

-- The owner's tables: orders with a disabled guard (a problem
-- check_guards() reports), a ledger with two entries, and a guard left
-- broken by a migration that went through with check_function_bodies off.
SET ROLE regress_guard_owner;
CREATE TABLE owned.orders (id integer PRIMARY KEY, note text, lock_version integer);
CREATE TRIGGER orders_lock_version BEFORE INSERT OR UPDATE ON owned.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
ALTER TABLE owned.orders DISABLE TRIGGER orders_lock_version;
CREATE TABLE owned.ledger (amount integer, balance integer, entry_no integer);
CREATE INDEX ON owned.ledger (entry_no);
CREATE TRIGGER ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON owned.ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'seq=entry_no');
INSERT INTO owned.ledger (amount) VALUES (10), (-3);
CREATE TABLE owned.notes (id integer, body text);
SET check_function_bodies = off;
CREATE TRIGGER notes_once BEFORE UPDATE ON owned.notes
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('author');
RESET check_function_bodies;
GRANT INSERT, SELECT (amount) ON owned.ledger TO regress_guard_clerk;
GRANT SELECT (id) ON owned.orders TO regress_guard_auditor;
RESET ROLE;

-- The owner sees and checks its guards, and verifies its ledger.
SET ROLE regress_guard_owner;
SELECT table_name, trigger_name, guard, columns, enabled FROM raceguard.guards ORDER BY table_name::text, trigger_name;
SELECT * FROM raceguard.check_guards();
SELECT * FROM raceguard.verify_running_balance('owned.ledger');
-- The migration-time check still stops the owner's ALTER TABLE that would
-- break its guard.
SELECT sqlstate, message FROM regress.error_of($$ALTER TABLE owned.ledger RENAME COLUMN entry_no TO n$$);
RESET ROLE;

-- A member of the owner role has the owner's privileges: the same guards.
SET ROLE regress_guard_member;
SELECT table_name, trigger_name FROM raceguard.guards ORDER BY table_name::text, trigger_name;
SELECT count(*) AS problems FROM raceguard.check_guards();
RESET ROLE;

-- INSERT on the ledger, and SELECT on its amounts: its guard (nothing wrong
-- with it), no other; its balances stay unread without SELECT on them
-- (PostgreSQL's own 42501, for the columns the check reads).
SET ROLE regress_guard_clerk;
SELECT table_name, trigger_name, guard, options FROM raceguard.guards ORDER BY table_name::text, trigger_name;
SELECT * FROM raceguard.check_guards();
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.verify_running_balance('owned.ledger')$$);
RESET ROLE;

-- SELECT on one column of the orders: the orders' guard and its problem.
SET ROLE regress_guard_auditor;
SELECT table_name, trigger_name FROM raceguard.guards ORDER BY table_name::text, trigger_name;
SELECT * FROM raceguard.check_guards();
SELECT * FROM regress.error_of($$SELECT * FROM raceguard.verify_running_balance('owned.ledger')$$) \gx
RESET ROLE;

-- No privilege on any of them: no guard, no problem, no balance (refused
-- before raceguard reads the ledger's guard, with PostgreSQL's message). The
-- helpers say nothing about these tables either: NULL definitions and
-- problems, and check_guard_ddl() skips the broken guard it would otherwise
-- report, for the created trigger as for the altered table.
SET ROLE regress_guard_stranger;
SELECT count(*) AS guards FROM raceguard.guards;
SELECT count(*) AS problems FROM raceguard.check_guards();
SELECT * FROM regress.error_of($$SELECT * FROM raceguard.verify_running_balance('owned.ledger')$$) \gx
SELECT t.tgname, raceguard.guard_definition(t.oid) IS NULL AS no_definition,
       raceguard.guard_problems(t.oid) IS NULL AS no_problems
  FROM pg_trigger t WHERE t.tgrelid::regclass::text LIKE 'owned.%' ORDER BY 1;
SELECT sqlstate, message FROM regress.error_of(format('SELECT raceguard.check_guard_ddl(%s, %L)',
    (SELECT oid FROM pg_trigger WHERE tgname = 'notes_once'), 'CREATE TRIGGER'));
SELECT sqlstate, message FROM regress.error_of(format('SELECT raceguard.check_guard_ddl(%s, %L)',
    'owned.notes'::regclass::oid, 'ALTER TABLE'));
RESET ROLE;

-- The same calls as the owner report the broken guard.
SET ROLE regress_guard_owner;
SELECT sqlstate, message FROM regress.error_of(format('SELECT raceguard.check_guard_ddl(%s, %L)',
    (SELECT oid FROM pg_trigger WHERE tgname = 'notes_once'), 'CREATE TRIGGER'));
SELECT sqlstate, message FROM regress.error_of(format('SELECT raceguard.check_guard_ddl(%s, %L)',
    'owned.notes'::regclass::oid, 'ALTER TABLE'));
RESET ROLE;

-- A superuser sees every guard.
SELECT table_name, trigger_name FROM raceguard.guards WHERE table_name::text LIKE 'owned.%' ORDER BY table_name::text, trigger_name;
SELECT * FROM raceguard.check_guards() WHERE table_name::text LIKE 'owned.%';

-- The privileges that make it so.
SELECT has_table_privilege('regress_guard_stranger', 'raceguard.guards', 'SELECT') AS stranger_may_read_guards;
SELECT p.oid::regprocedure AS function, has_function_privilege('regress_guard_stranger', p.oid, 'EXECUTE') AS stranger_may_call
  FROM pg_proc p
 WHERE p.oid IN ('raceguard.check_guards()'::regprocedure, 'raceguard.verify_running_balance(regclass)'::regprocedure,
                 'raceguard.guard_definition(oid)'::regprocedure, 'raceguard.guard_problems(oid)'::regprocedure,
                 'raceguard.check_guard_ddl(oid, text)'::regprocedure)
 ORDER BY p.oid::regprocedure::text;

DROP SCHEMA owned CASCADE;
REVOKE USAGE ON SCHEMA regress
    FROM regress_guard_owner, regress_guard_clerk, regress_guard_auditor, regress_guard_stranger;
DROP ROLE regress_guard_member, regress_guard_clerk, regress_guard_auditor, regress_guard_stranger, regress_guard_owner;
