-- raceguard.running_balance() on ledger shapes outside the README's: index
-- key options, collations, numeric specials and scales, generated columns.
-- Each shape is either served exactly or refused at CREATE TRIGGER (the
-- migration-time check is on here), with nothing written.
ALTER EVENT TRIGGER raceguard_validate_guards ENABLE ALWAYS;
CREATE SCHEMA shapes;
SET search_path = shapes, public;
CREATE FUNCTION chain(ledger regclass) RETURNS TABLE (grp text, seq bigint, amount numeric, balance numeric)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format('SELECT account::text, entry_no::bigint, amount::numeric, balance::numeric
                                 FROM %s ORDER BY account::text COLLATE "C", entry_no', ledger);
END $$;

-- A DESC seq key: the last entry is the first in index order. Appends from
-- new sessions (no per-backend hints) read it right, unique index or not.
CREATE TABLE desc_ledger (account integer NOT NULL, amount bigint, balance bigint, entry_no bigint);
CREATE UNIQUE INDEX ON desc_ledger (account DESC NULLS LAST, entry_no DESC NULLS FIRST) INCLUDE (amount);
CREATE TRIGGER desc_ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON desc_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no');
INSERT INTO shapes.desc_ledger (account, amount) VALUES (1, 10), (1, 10), (1, 10);
\c -
INSERT INTO shapes.desc_ledger (account, amount) VALUES (1, 10);
\c -
INSERT INTO shapes.desc_ledger (account, amount) VALUES (1, 10), (2, 5);
\c -
SET search_path = shapes, public;
SELECT * FROM chain('desc_ledger');
SELECT count(*) AS problems FROM raceguard.verify_running_balance('desc_ledger');

-- Index collation must be the group column's own: otherwise the index would
-- put values in one chain that the group lock (and GROUP BY) keeps apart, or
-- the reverse.
CREATE COLLATION case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE c_ledger (account text COLLATE "C" NOT NULL, amount bigint, balance bigint, entry_no bigint);
CREATE INDEX c_ledger_ci ON c_ledger (account COLLATE case_insensitive, entry_no);
SELECT * FROM regress.error_of($$CREATE TRIGGER c_ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON shapes.c_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no')$$) \gx
CREATE TABLE ci_ledger (account text COLLATE case_insensitive NOT NULL, amount bigint, balance bigint, entry_no bigint);
CREATE INDEX ci_ledger_c ON ci_ledger (account COLLATE "C", entry_no);
SELECT sqlstate, message, detail FROM regress.error_of($$CREATE TRIGGER ci_ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON shapes.ci_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no')$$);
-- With the column's own (case-insensitive) collation, 'A' and 'a' are one
-- group, as GROUP BY has them.
CREATE INDEX ON ci_ledger (account, entry_no);
CREATE TRIGGER ci_ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON ci_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no');
INSERT INTO ci_ledger (account, amount) VALUES ('A', 1), ('a', 2), ('b', 4);
\c -
SET search_path = shapes, public;
INSERT INTO ci_ledger (account, amount) VALUES ('a', 8);
SELECT * FROM chain('ci_ledger');
SELECT lower(account) AS account, count(*), max(balance) FROM ci_ledger GROUP BY account ORDER BY 1;

-- Each group column exactly once: (a, a, seq) does not serve groups (a, b).
CREATE TABLE dup_ledger (a integer NOT NULL, b integer NOT NULL, amount bigint, balance bigint, entry_no bigint);
CREATE INDEX dup_ledger_aa ON dup_ledger (a, a, entry_no);
SELECT sqlstate, message, detail FROM regress.error_of($$CREATE TRIGGER dup_ledger_balance BEFORE INSERT ON shapes.dup_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'a', 'b', 'seq=entry_no')$$);
-- An operator class whose order is not the integers' own cannot order seq
-- (here a reversed one, which would make the first entry look like the last).
CREATE FUNCTION reversed_cmp(bigint, bigint) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT btint8cmp($2, $1)';
CREATE OPERATOR CLASS reversed_int8_ops FOR TYPE bigint USING btree AS
    OPERATOR 1 pg_catalog.>, OPERATOR 2 pg_catalog.>=, OPERATOR 3 pg_catalog.=, OPERATOR 4 pg_catalog.<=,
    OPERATOR 5 pg_catalog.<, FUNCTION 1 reversed_cmp(bigint, bigint);
DROP INDEX dup_ledger_aa;
CREATE INDEX dup_ledger_reversed ON dup_ledger (b, a, entry_no reversed_int8_ops);
SELECT sqlstate, detail FROM regress.error_of($$CREATE TRIGGER dup_ledger_balance BEFORE INSERT ON shapes.dup_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'a', 'b', 'seq=entry_no')$$);
SELECT count(*) AS triggers_created FROM pg_trigger WHERE tgname IN ('c_ledger_balance', 'dup_ledger_balance');

-- NaN and infinities never reach a balance (23514, nothing written), and
-- min_balance holds after them.
CREATE TABLE num_ledger (account integer NOT NULL, amount numeric, balance numeric, entry_no bigint);
CREATE INDEX ON num_ledger (account, entry_no);
CREATE TRIGGER num_ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON num_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no', 'min_balance=0');
INSERT INTO num_ledger (account, amount) VALUES (1, 100);
SELECT * FROM regress.error_of($$INSERT INTO shapes.num_ledger (account, amount) VALUES (1, 'NaN')$$) \gx
-- Numeric infinities arrived in PostgreSQL 14; on 13 the input itself is
-- refused (22P02, expected/running_balance_shapes_1.out), so none can reach the guard.
SELECT sqlstate, message, detail FROM regress.error_of($$INSERT INTO shapes.num_ledger (account, amount) VALUES (1, 'Infinity')$$);
SELECT sqlstate, message, detail FROM regress.error_of($$INSERT INTO shapes.num_ledger (account, amount) VALUES (1, '-Infinity')$$);
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO shapes.num_ledger (account, amount) VALUES (1, -1000000)$$);
INSERT INTO num_ledger (account, amount) VALUES (1, -100), (1, '-0');
SELECT * FROM chain('num_ledger');
-- A last balance that is not finite (written with the guard bypassed) ends
-- the chain loudly.
SET session_replication_role = replica;
INSERT INTO num_ledger VALUES (2, 'NaN', 'NaN', 1);
RESET session_replication_role;
SELECT sqlstate, message, hint FROM regress.error_of($$INSERT INTO shapes.num_ledger (account, amount) VALUES (2, 1)$$);
-- The options are plain numbers: NaN and Infinity are refused (22023).
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER num_ledger_nan BEFORE INSERT ON shapes.num_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no', 'initial=NaN')$$);
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER num_ledger_inf BEFORE INSERT ON shapes.num_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no', 'min_balance=-Infinity')$$);

-- Scales: an amount column that keeps more decimal places than the balance
-- is refused at CREATE TRIGGER; an unconstrained amount is refused per row
-- when the balance would round it.
CREATE TABLE scale_ledger (account integer NOT NULL, amount numeric(12,3), loose numeric, balance numeric(12,2), entry_no bigint);
CREATE INDEX ON scale_ledger (account, entry_no);
SELECT * FROM regress.error_of($$CREATE TRIGGER scale_ledger_balance BEFORE INSERT ON shapes.scale_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no')$$) \gx
CREATE TRIGGER scale_ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON scale_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('loose', 'balance', 'account', 'seq=entry_no');
INSERT INTO scale_ledger (account, loose) VALUES (1, 0.01), (1, 0.010), (1, 2);
SELECT * FROM regress.error_of($$INSERT INTO shapes.scale_ledger (account, loose) VALUES (1, 0.005)$$) \gx
SELECT account, loose, balance, entry_no FROM scale_ledger ORDER BY entry_no;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('scale_ledger');
-- Options held to the balance's typmod: out of range (22003, naming the
-- option) or rounded (22023) are refused.
SELECT * FROM regress.error_of($$CREATE TRIGGER scale_ledger_min BEFORE INSERT ON shapes.scale_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('loose', 'balance', 'account', 'seq=entry_no', 'min_balance=-12345678901')$$) \gx
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER scale_ledger_initial BEFORE INSERT ON shapes.scale_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('loose', 'balance', 'account', 'seq=entry_no', 'initial=0.005')$$);
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER scale_ledger_digits BEFORE INSERT ON shapes.scale_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('loose', 'balance', 'account', 'seq=entry_no', 'initial=1$$ || repeat('0', 200000) || $$')$$);
-- A balance past the typmod's precision: 22003 naming the column.
CREATE TABLE small_ledger (account integer NOT NULL, amount numeric, balance numeric(5,2), entry_no bigint);
CREATE INDEX ON small_ledger (account, entry_no);
CREATE TRIGGER small_ledger_balance BEFORE INSERT ON small_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no');
INSERT INTO small_ledger (account, amount) VALUES (1, 999.99);
SELECT sqlstate, message, table_name, column_name, constraint_name
  FROM regress.error_of($$INSERT INTO shapes.small_ledger (account, amount) VALUES (1, 0.01)$$);
SELECT count(*) AS entries FROM small_ledger;

-- Generated columns: a written one (balance, seq) would be recomputed after
-- the guard, a read one (amount, group) is computed after it: 0A000.
CREATE TABLE gen_ledger (account integer NOT NULL, amount bigint, balance bigint, entry_no bigint,
                         gen_balance bigint GENERATED ALWAYS AS (amount * 2) STORED,
                         gen_seq bigint GENERATED ALWAYS AS (amount) STORED,
                         gen_account integer GENERATED ALWAYS AS (account + 1) STORED,
                         gen_amount bigint GENERATED ALWAYS AS (amount) STORED);
CREATE INDEX ON gen_ledger (account, entry_no);
CREATE INDEX ON gen_ledger (account, gen_seq);
CREATE INDEX ON gen_ledger (gen_account, entry_no);
SELECT sqlstate, message, column_name FROM regress.error_of($$CREATE TRIGGER gen_ledger_balance BEFORE INSERT ON shapes.gen_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'gen_balance', 'account', 'seq=entry_no')$$);
SELECT sqlstate, message, column_name FROM regress.error_of($$CREATE TRIGGER gen_ledger_balance BEFORE INSERT ON shapes.gen_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=gen_seq')$$);
SELECT sqlstate, message, column_name FROM regress.error_of($$CREATE TRIGGER gen_ledger_balance BEFORE INSERT ON shapes.gen_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('gen_amount', 'balance', 'account', 'seq=entry_no')$$);
SELECT sqlstate, message, column_name FROM regress.error_of($$CREATE TRIGGER gen_ledger_balance BEFORE INSERT ON shapes.gen_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'gen_account', 'seq=entry_no')$$);
-- check_guards() reports the same for a guard created before the column
-- became unusable (the event trigger off, as a restore might leave it).
ALTER EVENT TRIGGER raceguard_validate_guards DISABLE;
CREATE TRIGGER gen_ledger_balance BEFORE INSERT ON gen_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'gen_balance', 'account', 'seq=entry_no');
ALTER EVENT TRIGGER raceguard_validate_guards ENABLE ALWAYS;
SELECT * FROM raceguard.check_guards() WHERE table_name = 'gen_ledger'::regclass;
SELECT count(*) AS entries FROM gen_ledger;

RESET search_path;
DROP SCHEMA shapes CASCADE;
