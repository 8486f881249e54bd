-- Virtual generated columns, which PostgreSQL 18 brought (and makes the
-- default for GENERATED ALWAYS AS without STORED). Their value is computed
-- when read and never stored: no trigger sees it, and a value a trigger
-- writes there is dropped. So every guard refuses one (0A000, naming the
-- trigger, the table and the column) at CREATE TRIGGER, or at its first row
-- when created unchecked, and nothing is written; and a guard on a table
-- that merely has one (a NULL in the stored row) works exactly.
--
-- Before 18 such columns cannot exist: there (expected/generated_virtual.out;
-- 18's output is generated_virtual_1.out) the same statements run on STORED
-- columns, the case virtual ones extend: the same refusals, except that an
-- AFTER trigger may guard a STORED column, and the same working guards.
SELECT current_setting('server_version_num')::int >= 180000 AS has_virtual_columns \gset
\if :has_virtual_columns
CREATE TABLE gen_orders (id integer PRIMARY KEY, qty integer, doubled integer GENERATED ALWAYS AS (qty * 2) VIRTUAL,
                         owner integer, owner_tag text GENERATED ALWAYS AS ('owner-' || owner) VIRTUAL,
                         lock_version integer GENERATED ALWAYS AS (1) VIRTUAL, version integer);
CREATE TABLE gen_ledger (account integer NOT NULL, amount bigint, amount_twice bigint GENERATED ALWAYS AS (amount * 2) VIRTUAL,
                         balance bigint, balance_shown bigint GENERATED ALWAYS AS (balance) VIRTUAL, entry_no bigint);
SELECT attname, attgenerated FROM pg_attribute
 WHERE attrelid IN ('gen_orders'::regclass, 'gen_ledger'::regclass) AND attgenerated <> '' ORDER BY attrelid, attnum;
\else
CREATE TABLE gen_orders (id integer PRIMARY KEY, qty integer, doubled integer GENERATED ALWAYS AS (qty * 2) STORED,
                         owner integer, owner_tag text GENERATED ALWAYS AS ('owner-' || owner) STORED,
                         lock_version integer GENERATED ALWAYS AS (1) STORED, version integer);
CREATE TABLE gen_ledger (account integer NOT NULL, amount bigint, amount_twice bigint GENERATED ALWAYS AS (amount * 2) STORED,
                         balance bigint, balance_shown bigint GENERATED ALWAYS AS (balance) STORED, entry_no bigint);
\endif
CREATE INDEX ON gen_ledger (account, entry_no);

INSERT INTO gen_orders (id, qty, owner) VALUES (1, 5, NULL), (2, 7, 9);
INSERT INTO gen_ledger (account, amount, balance, entry_no) VALUES (1, 10, 10, 1);

-- At CREATE TRIGGER (the event trigger on, as in a migration): each guard
-- on a generated column it cannot serve is refused and not created.
ALTER EVENT TRIGGER raceguard_validate_guards ENABLE ALWAYS;
-- lock_version writes its column.
SELECT * FROM regress.error_of($$CREATE TRIGGER gen_orders_lv BEFORE UPDATE ON gen_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('lock_version')$$) \gx
-- immutable_once_set: a virtual column is refused BEFORE and AFTER (no
-- trigger sees its value); a STORED one only BEFORE (AFTER sees its value,
-- and a change to it is then refused like any other).
SELECT * FROM regress.error_of($$CREATE TRIGGER gen_orders_owner BEFORE UPDATE ON gen_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner_tag')$$) \gx
SELECT sqlstate, message, column_name FROM regress.error_of($$CREATE TRIGGER gen_orders_owner_after AFTER UPDATE ON gen_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner_tag')$$);
SELECT sqlstate, column_name FROM regress.error_of($$UPDATE gen_orders SET owner = 43 WHERE id = 2$$);
DROP TRIGGER IF EXISTS gen_orders_owner_after ON gen_orders;
UPDATE gen_orders SET owner = 9 WHERE id = 2;  -- undoes the change where no guard was created (18)
-- running_balance reads the amount and writes the balance.
SELECT * FROM regress.error_of($$CREATE TRIGGER gen_ledger_rb BEFORE INSERT OR UPDATE OR DELETE ON gen_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount_twice', 'balance', 'account', 'seq=entry_no')$$) \gx
SELECT sqlstate, message, column_name FROM regress.error_of($$CREATE TRIGGER gen_ledger_rb BEFORE INSERT OR UPDATE OR DELETE ON gen_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance_shown', 'account', 'seq=entry_no')$$);
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid IN ('gen_orders'::regclass, 'gen_ledger'::regclass);

-- Created without the check (the event trigger off, or restored by
-- pg_restore), such a guard refuses its first row instead.
ALTER EVENT TRIGGER raceguard_validate_guards DISABLE;
CREATE TRIGGER gen_orders_lv BEFORE UPDATE ON gen_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('lock_version');
SELECT sqlstate, message, column_name FROM regress.error_of($$UPDATE gen_orders SET qty = 6 WHERE id = 1$$);
DROP TRIGGER gen_orders_lv ON gen_orders;
CREATE TRIGGER gen_orders_owner AFTER UPDATE ON gen_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('doubled');
SELECT sqlstate, column_name FROM regress.error_of($$UPDATE gen_orders SET qty = 6 WHERE id = 1$$);
DROP TRIGGER gen_orders_owner ON gen_orders;
ALTER EVENT TRIGGER raceguard_validate_guards ENABLE ALWAYS;
-- Nothing was written.
SELECT * FROM gen_orders ORDER BY id;
SELECT * FROM gen_ledger ORDER BY account, entry_no;

-- Guards on the plain columns of the same tables work exactly; the
-- generated columns before the version sit in the row as NULLs (virtual)
-- or values (stored), and the version lands in its own column.
CREATE TRIGGER gen_orders_lv BEFORE INSERT OR UPDATE ON gen_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('version');
CREATE TRIGGER gen_orders_owner BEFORE UPDATE ON gen_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner');
CREATE TRIGGER gen_ledger_rb BEFORE INSERT OR UPDATE OR DELETE ON gen_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no');
-- Versions NULL at first: the echo of 0 (NULL) stores 1, the echo of 1 stores 2.
UPDATE gen_orders SET qty = qty + 1, version = NULL WHERE id = 1;
UPDATE gen_orders SET owner = 42, version = 1 WHERE id = 1;
SELECT sqlstate FROM regress.error_of($$UPDATE gen_orders SET qty = 0, version = 1 WHERE id = 1$$);
SELECT sqlstate, constraint_name FROM regress.error_of($$UPDATE gen_orders SET owner = 43, version = 2 WHERE id = 1$$);
INSERT INTO gen_orders (id, qty) VALUES (3, 1);
SELECT * FROM gen_orders ORDER BY id;
INSERT INTO gen_ledger (account, amount) VALUES (2, 5), (1, -3), (1, 4);
SELECT * FROM gen_ledger ORDER BY account, entry_no;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('gen_ledger');
DROP TABLE gen_orders, gen_ledger;
