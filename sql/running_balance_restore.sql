-- The restore path. A restore keeps a ledger's entries as dumped: pg_restore
-- -j may create a partitioned ledger's trigger before every partition's data
-- is loaded, so the trigger's clones fire on the dumped rows, in whatever
-- order they arrive. Rows are kept only with raceguard.restoring on, which
-- only a superuser (or, from 15 on, a role granted SET on it) can turn on,
-- and only for the role that may set it, outside SECURITY DEFINER code.
-- check_function_bodies, which any role can turn off, changes nothing.
-- (test/privileges/matrix.py runs the grant and the connection options.)

-- A fresh session: a role's SET before the library is loaded leaves a
-- placeholder, which the library refuses when it loads.
CREATE ROLE regress_restore_clerk;
GRANT USAGE ON SCHEMA regress TO PUBLIC;
SET SESSION AUTHORIZATION regress_restore_clerk;
SET raceguard.restoring = on;
CREATE TEMP TABLE clerk_ledger (account integer NOT NULL, amount bigint NOT NULL,
                                balance bigint NOT NULL DEFAULT 0, entry_no bigint NOT NULL DEFAULT 0);
CREATE INDEX ON clerk_ledger (account, entry_no);
CREATE TRIGGER clerk_ledger_balance BEFORE INSERT ON clerk_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no');
INSERT INTO clerk_ledger VALUES (1, 5, 500, 50);
SHOW raceguard.restoring;
SELECT account, entry_no, amount, balance FROM clerk_ledger;
-- Once loaded, the setting is refused outright.
SELECT sqlstate, message FROM regress.error_of($$SET raceguard.restoring = on$$);
SELECT sqlstate, message FROM regress.error_of($$SET LOCAL raceguard.restoring = on$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT set_config('raceguard.restoring', 'on', false)$$);
SELECT sqlstate, message FROM regress.error_of($$ALTER ROLE regress_restore_clerk SET raceguard.restoring = on$$);
SELECT sqlstate, message FROM regress.error_of(
    $$CREATE FUNCTION pg_temp.clerk_restoring() RETURNS void LANGUAGE sql SET raceguard.restoring = on AS 'SELECT'$$);
RESET SESSION AUTHORIZATION;

-- Issue 20, defect 1: a statement-level trigger with check_function_bodies
-- off (the CREATE TRIGGER only warns) crashed the server at its first row.
-- Any role can make these: a TEMP table needs no privilege.
SET SESSION AUTHORIZATION regress_restore_clerk;
CREATE TEMP TABLE m (acct int, amount bigint, bal bigint, seq bigint);
SET check_function_bodies = off;
CREATE TRIGGER m_before_statement BEFORE INSERT ON m FOR EACH STATEMENT
    EXECUTE FUNCTION raceguard.running_balance('amount', 'bal', 'acct', 'seq=seq');
CREATE TRIGGER m_after_statement AFTER INSERT ON m FOR EACH STATEMENT
    EXECUTE FUNCTION raceguard.running_balance('amount', 'bal', 'acct', 'seq=seq');
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO m VALUES (1, 1, 1, 1)$$);
DROP TRIGGER m_before_statement ON m;
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO m VALUES (1, 1, 1, 1)$$);
RESET check_function_bodies;
SELECT count(*) AS rows_written FROM m;
DROP TABLE m, clerk_ledger;
RESET SESSION AUTHORIZATION;
-- The same with raceguard.restoring on, as a superuser: refused the same way.
SET raceguard.restoring = on;
SET check_function_bodies = off;
CREATE TEMP TABLE m2 (acct int, amount bigint, bal bigint, seq bigint);
CREATE TRIGGER m2_before_statement BEFORE INSERT ON m2 FOR EACH STATEMENT
    EXECUTE FUNCTION raceguard.running_balance('amount', 'bal', 'acct', 'seq=seq');
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO m2 VALUES (1, 1, 1, 1)$$);
CREATE TRIGGER m2_after_row AFTER INSERT ON m2 FOR EACH ROW
    EXECUTE FUNCTION raceguard.running_balance('amount', 'bal', 'acct', 'seq=seq');
DROP TRIGGER m2_before_statement ON m2;
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO m2 VALUES (1, 1, 1, 1)$$);
RESET check_function_bodies;
RESET raceguard.restoring;
SELECT count(*) AS rows_written FROM m2;

-- The ledger of the next cases: balance and seq NOT NULL DEFAULT 0, as many
-- schemas have them, owned by an ordinary role, with min_balance.
CREATE ROLE regress_ledger_owner;
CREATE ROLE regress_ledger_caller;
GRANT CREATE ON SCHEMA public TO regress_ledger_owner;
SET ROLE regress_ledger_owner;
CREATE TABLE owned (account integer NOT NULL, amount bigint NOT NULL,
                    balance bigint NOT NULL DEFAULT 0, entry_no bigint NOT NULL DEFAULT 0);
CREATE INDEX ON owned (account, entry_no);
CREATE TRIGGER owned_balance BEFORE INSERT OR UPDATE OR DELETE ON owned
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no',
                                                            'min_balance=0');
INSERT INTO owned (account, amount) VALUES (1, 100);
CREATE FUNCTION deposit(account integer, amount bigint, OUT balance bigint, OUT entry_no bigint)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS
$$ INSERT INTO owned (account, amount) VALUES (account, amount) RETURNING balance, entry_no $$;
REVOKE ALL ON FUNCTION deposit(integer, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION deposit(integer, bigint) TO regress_ledger_caller;
RESET ROLE;

-- Defect 2: a caller with no privilege on the ledger, through the owner's
-- SECURITY DEFINER function, with check_function_bodies off: computed, and
-- the overdraft refused.
SET ROLE regress_ledger_caller;
SET check_function_bodies = off;
SELECT * FROM deposit(1, 50);
SELECT sqlstate, message, constraint_name FROM regress.error_of($$SELECT * FROM deposit(1, -1000)$$);
RESET check_function_bodies;
RESET ROLE;

-- Defect 3: the owner's own role with check_function_bodies off in its
-- settings (a migration's ALTER ROLE, or a pooler's leftover): computed.
ALTER ROLE regress_ledger_owner SET check_function_bodies = off;
SET ROLE regress_ledger_owner;
SET check_function_bodies = off;
INSERT INTO owned (account, amount) VALUES (1, -20) RETURNING balance, entry_no;
INSERT INTO owned VALUES (1, 7, 900, 9) RETURNING balance, entry_no;
SELECT sqlstate, message, constraint_name FROM regress.error_of($$INSERT INTO owned (account, amount) VALUES (1, -1000)$$);
RESET check_function_bodies;
RESET ROLE;
ALTER ROLE regress_ledger_owner RESET check_function_bodies;

-- A superuser's settings do not open the path for another role: not a
-- role's own settings given by a superuser, not a SET before SET ROLE, not
-- a SECURITY DEFINER function called from a restoring session. Each
-- statement says once that the setting was not honoured; every row is
-- computed.
ALTER ROLE regress_ledger_owner SET raceguard.restoring = on;
SELECT setconfig FROM pg_db_role_setting WHERE setrole = 'regress_ledger_owner'::regrole;
ALTER ROLE regress_ledger_owner RESET raceguard.restoring;
SET raceguard.restoring = on;
SET ROLE regress_ledger_owner;
INSERT INTO owned VALUES (1, 1, 800, 8), (1, 1, 801, 9) RETURNING balance, entry_no;
RESET ROLE;
SELECT * FROM deposit(1, 2);
SELECT sqlstate, message, constraint_name FROM regress.error_of($$SELECT * FROM deposit(1, -1000)$$);
-- A superuser's SECURITY DEFINER helper that passes a seq and a balance on,
-- called from the restoring session: not kept either.
CREATE FUNCTION import_entry(account integer, amount bigint, balance bigint, entry_no bigint)
RETURNS TABLE (stored_balance bigint, stored_entry_no bigint)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS
$$ INSERT INTO owned VALUES (account, amount, balance, entry_no) RETURNING balance, entry_no $$;
SELECT * FROM import_entry(1, -1, 5000, 50);
SELECT sqlstate, message, constraint_name FROM regress.error_of($$SELECT * FROM import_entry(1, -1000, 5000, 51)$$);
-- A superuser restoring, outside definer code: the rows that carry a seq of
-- at least 1 and a balance are kept (one WARNING); a row whose seq is the
-- column's DEFAULT 0 is appended as usual.
INSERT INTO owned VALUES (2, 5, 5, 1), (2, 6, 11, 2);
INSERT INTO owned (account, amount) VALUES (2, 4) RETURNING balance, entry_no;
RESET raceguard.restoring;
SELECT account, entry_no, amount, balance FROM owned ORDER BY account, entry_no;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('owned');
DROP TABLE owned;
DROP FUNCTION deposit(integer, bigint);
DROP FUNCTION import_entry(integer, bigint, bigint, bigint);
REVOKE CREATE ON SCHEMA public FROM regress_ledger_owner;
DROP ROLE regress_ledger_owner;
DROP ROLE regress_ledger_caller;

-- Restoring a partitioned ledger: February's rows arrive before January's,
-- as a parallel restore may load them; every row keeps its seq and balance.
CREATE TABLE restored (account integer NOT NULL, amount bigint NOT NULL, balance bigint, entry_no bigint,
                       booked date NOT NULL) PARTITION BY RANGE (booked);
CREATE TABLE restored_jan PARTITION OF restored FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE restored_feb PARTITION OF restored FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE INDEX ON restored (account, entry_no);
CREATE TRIGGER restored_balance BEFORE INSERT OR UPDATE OR DELETE ON restored
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no');
SET raceguard.restoring = on;
COPY restored (account, amount, balance, entry_no, booked) FROM stdin;
1	5	35	3	2026-02-03
1	-10	25	4	2026-02-09
2	7	7	1	2026-02-10
1	10	10	1	2026-01-05
1	20	30	2	2026-01-20
\.
RESET raceguard.restoring;
SELECT account, entry_no, amount, balance, booked FROM restored ORDER BY account, entry_no;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('restored');
-- The next append after the restore continues each chain.
INSERT INTO restored (account, amount, booked) VALUES (1, 1, '2026-02-20'), (2, 1, '2026-02-20');
SELECT account, entry_no, amount, balance FROM restored WHERE booked = '2026-02-20' ORDER BY account;
-- The same COPY with only check_function_bodies off, as dump scripts run:
-- the supplied values are replaced (a restore must set raceguard.restoring).
SET check_function_bodies = off;
COPY restored (account, amount, balance, entry_no, booked) FROM stdin;
1	100	1000000	99	2026-02-21
\.
RESET check_function_bodies;
SELECT account, entry_no, amount, balance, booked FROM restored WHERE booked >= '2026-02-21' ORDER BY entry_no;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('restored');
-- Restoring, a row without its seq or balance is an append like any other.
SET raceguard.restoring = on;
INSERT INTO restored (account, amount, booked) VALUES (2, 3, '2026-02-23');
RESET raceguard.restoring;
SELECT account, entry_no, amount, balance FROM restored WHERE booked = '2026-02-23';
-- UPDATE and DELETE are refused while restoring too.
SET raceguard.restoring = on;
SELECT sqlstate, message FROM regress.error_of($$UPDATE restored SET balance = 0 WHERE account = 2$$);
SELECT sqlstate, message FROM regress.error_of($$DELETE FROM restored WHERE account = 2$$);
RESET raceguard.restoring;
DROP TABLE restored;

-- A parallel restore may fire the trigger before the chain index exists:
-- the dumped rows still load as they are (the restore path needs no index);
-- a computed append there fails until the index is restored.
CREATE TABLE early (account integer NOT NULL, amount bigint NOT NULL, balance bigint, entry_no bigint);
ALTER EVENT TRIGGER raceguard_validate_guards DISABLE;
CREATE TRIGGER early_balance BEFORE INSERT OR UPDATE OR DELETE ON early
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no');
ALTER EVENT TRIGGER raceguard_validate_guards ENABLE ALWAYS;
SET raceguard.restoring = on;
COPY early (account, amount, balance, entry_no) FROM stdin;
1	4	9	2
1	5	5	1
\.
SELECT sqlstate FROM regress.error_of($$INSERT INTO early (account, amount) VALUES (1, 1)$$);
RESET raceguard.restoring;
CREATE INDEX ON early (account, entry_no);
INSERT INTO early (account, amount) VALUES (1, 1);
SELECT account, entry_no, amount, balance FROM early ORDER BY entry_no;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('early');
DROP TABLE early;
REVOKE USAGE ON SCHEMA regress FROM PUBLIC;
DROP ROLE regress_restore_clerk;
