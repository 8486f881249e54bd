-- raceguard.running_balance(): every rule of SPEC §3 on one session.
-- Concurrency is in test/isolation; load in test/stress.
CREATE TABLE payments (
    id bigserial PRIMARY KEY,
    account_id integer,
    amount bigint,
    running_balance bigint,
    entry_no bigint,
    idempotency_key text UNIQUE,
    note text
);
CREATE UNIQUE INDEX payments_chain ON payments (account_id, entry_no);
CREATE TRIGGER payments_running_balance
    BEFORE INSERT OR UPDATE OR DELETE ON payments
    FOR EACH ROW EXECUTE FUNCTION
        raceguard.running_balance('amount', 'running_balance', 'account_id', 'seq=entry_no', 'min_balance=0');

-- Single-row and multi-row INSERT; a supplied balance or seq is overwritten.
INSERT INTO payments (account_id, amount) VALUES (1, 100);
INSERT INTO payments (account_id, amount, running_balance, entry_no) VALUES (1, -30, 12345, 99);
INSERT INTO payments (account_id, amount) VALUES (2, 50), (1, 5), (2, -20), (1, 1);
-- INSERT ... SELECT, several rows of each group in one statement.
INSERT INTO payments (account_id, amount) SELECT 1 + g % 2, g FROM generate_series(1, 6) g;
-- COPY.
COPY payments (account_id, amount) FROM stdin;
2	1000
1	-2
3	7
\.
SELECT account_id, entry_no, amount, running_balance FROM payments ORDER BY account_id, entry_no;
SELECT * FROM raceguard.verify_running_balance('payments');

-- Several appends in one transaction build on each other; a rolled-back
-- transaction and a rolled-back savepoint leave no trace.
BEGIN;
INSERT INTO payments (account_id, amount) VALUES (3, 10);
INSERT INTO payments (account_id, amount) VALUES (3, 10) RETURNING entry_no, running_balance;
ROLLBACK;
BEGIN;
INSERT INTO payments (account_id, amount) VALUES (3, 1);
SAVEPOINT before_mistake;
INSERT INTO payments (account_id, amount) VALUES (3, 500);
ROLLBACK TO SAVEPOINT before_mistake;
INSERT INTO payments (account_id, amount) VALUES (3, 2) RETURNING entry_no, running_balance;
COMMIT;
SELECT entry_no, amount, running_balance FROM payments WHERE account_id = 3 ORDER BY entry_no;

-- An append skipped by ON CONFLICT (the idempotent retry) leaves no trace:
-- no gap in seq, its amount in no later balance.
INSERT INTO payments (account_id, amount, idempotency_key) VALUES (3, 40, 'invoice-17')
    ON CONFLICT (idempotency_key) DO NOTHING RETURNING entry_no, running_balance;
INSERT INTO payments (account_id, amount, idempotency_key) VALUES (3, 40, 'invoice-17')
    ON CONFLICT (idempotency_key) DO NOTHING RETURNING entry_no, running_balance;
INSERT INTO payments (account_id, amount, idempotency_key) VALUES (3, 40, 'invoice-17')
    ON CONFLICT (idempotency_key) DO UPDATE SET note = 'retried' RETURNING entry_no, running_balance, note;
INSERT INTO payments (account_id, amount) VALUES (3, 1) RETURNING entry_no, running_balance;
-- ... and DO UPDATE may not rewrite the ledger columns.
SELECT sqlstate, message FROM regress.error_of($$
    INSERT INTO payments (account_id, amount, idempotency_key) VALUES (3, 41, 'invoice-17')
    ON CONFLICT (idempotency_key) DO UPDATE SET amount = excluded.amount$$);
SELECT * FROM raceguard.verify_running_balance('payments');

-- min_balance: a withdrawal that would overdraw fails with 23514 and writes
-- nothing; one that fits is accepted.
SELECT * FROM regress.error_of($$INSERT INTO payments (account_id, amount) VALUES (3, -1000)$$) \gx
INSERT INTO payments (account_id, amount) VALUES (3, -51) RETURNING entry_no, running_balance;
SELECT sqlstate FROM regress.error_of($$INSERT INTO payments (account_id, amount) VALUES (3, -1)$$);
SELECT max(entry_no) AS last_entry FROM payments WHERE account_id = 3;

-- Ledger rows are history: changing the amount, balance, seq or group, and
-- DELETE, fail with 23514. Other columns may change, and writing the ledger
-- columns with their current values (an ORM saving every column) is allowed.
SELECT sqlstate, column_name, constraint_name FROM regress.error_of($$UPDATE payments SET amount = 0 WHERE account_id = 3 AND entry_no = 1$$);
SELECT sqlstate, column_name FROM regress.error_of($$UPDATE payments SET running_balance = 0 WHERE account_id = 3 AND entry_no = 1$$);
SELECT sqlstate, column_name FROM regress.error_of($$UPDATE payments SET entry_no = 100 WHERE account_id = 3 AND entry_no = 1$$);
SELECT sqlstate, column_name FROM regress.error_of($$UPDATE payments SET account_id = 9 WHERE account_id = 3 AND entry_no = 1$$);
SELECT * FROM regress.error_of($$DELETE FROM payments WHERE account_id = 3$$) \gx
UPDATE payments SET note = 'reconciled' WHERE account_id = 3 AND entry_no = 1;
UPDATE payments SET note = 'saved whole', amount = amount, running_balance = running_balance,
    entry_no = entry_no, account_id = account_id WHERE account_id = 3 AND entry_no = 2;
SELECT entry_no, note FROM payments WHERE account_id = 3 AND note IS NOT NULL ORDER BY entry_no;

-- NULL amount or group: 23502.
SELECT * FROM regress.error_of($$INSERT INTO payments (account_id, amount) VALUES (1, NULL)$$) \gx
SELECT sqlstate, message, column_name FROM regress.error_of($$INSERT INTO payments (account_id, amount) VALUES (NULL, 5)$$);

-- Deposits are always accepted, even below the minimum (initial=-50).
CREATE TABLE overdrawn (account_id integer, amount integer, balance integer, n integer);
CREATE INDEX ON overdrawn (account_id, n);
CREATE TRIGGER overdrawn_balance BEFORE INSERT ON overdrawn FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n', 'min_balance=0', 'initial=-50');
INSERT INTO overdrawn (account_id, amount) VALUES (1, 10) RETURNING balance, n;
SELECT sqlstate FROM regress.error_of($$INSERT INTO overdrawn (account_id, amount) VALUES (1, -1)$$);
INSERT INTO overdrawn (account_id, amount) VALUES (1, 45), (1, -5) RETURNING balance, n;

-- No group column: one balance for the whole table.
CREATE TABLE cash_book (amount numeric(10,2), balance numeric(10,2), line integer);
CREATE UNIQUE INDEX ON cash_book (line);
CREATE TRIGGER cash_book_balance BEFORE INSERT OR UPDATE OR DELETE ON cash_book FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'seq=line', 'initial=100.50');
INSERT INTO cash_book (amount) VALUES (10), (-0.25), (1.005) RETURNING *;
SELECT * FROM raceguard.verify_running_balance('cash_book');
-- numeric overflow of the balance column's precision: 22003.
SELECT sqlstate FROM regress.error_of($$INSERT INTO cash_book (amount) VALUES (99999999)$$);

-- Several group columns; groups compare with the type's equality, as
-- GROUP BY does (numeric 1.0 and 1.00 are one group).
CREATE TABLE fx_ledger (account numeric, currency text, amount bigint, balance bigint, seq integer);
CREATE INDEX ON fx_ledger (currency, account, seq);
CREATE TRIGGER fx_ledger_balance BEFORE INSERT ON fx_ledger FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'currency', 'seq=seq');
INSERT INTO fx_ledger (account, currency, amount) VALUES (42, 'EUR', 5), (42, 'USD', 7), (42.0, 'EUR', 1), (42.00, 'EUR', 1);
SELECT account, currency, seq, balance FROM fx_ledger ORDER BY currency, seq;
SELECT * FROM raceguard.verify_running_balance('fx_ledger');

-- Types and overflow: smallint balance and seq stop at their maximum (22003).
CREATE TABLE small_ledger (amount smallint, balance smallint, seq smallint);
CREATE INDEX ON small_ledger (seq);
CREATE TRIGGER small_ledger_balance BEFORE INSERT ON small_ledger FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'seq=seq', 'initial=32760');
INSERT INTO small_ledger (amount) VALUES (7);
SELECT * FROM regress.error_of($$INSERT INTO small_ledger (amount) VALUES (1)$$) \gx
SELECT * FROM small_ledger;
CREATE TABLE seq_limit (amount bigint, balance bigint, seq smallint);
CREATE INDEX ON seq_limit (seq);
CREATE TRIGGER seq_limit_balance BEFORE INSERT ON seq_limit FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'seq=seq');
ALTER TABLE seq_limit DISABLE TRIGGER seq_limit_balance;
INSERT INTO seq_limit VALUES (0, 0, 32767);
ALTER TABLE seq_limit ENABLE TRIGGER seq_limit_balance;
SELECT sqlstate, column_name FROM regress.error_of($$INSERT INTO seq_limit (amount) VALUES (1)$$);
-- A bigint seq at its last value fails too (it must not wrap around), and
-- nothing is written.
ALTER TABLE seq_limit ALTER COLUMN seq TYPE bigint;
ALTER TABLE seq_limit DISABLE TRIGGER seq_limit_balance;
INSERT INTO seq_limit VALUES (0, 0, 9223372036854775807);
ALTER TABLE seq_limit ENABLE TRIGGER seq_limit_balance;
SELECT sqlstate, column_name FROM regress.error_of($$INSERT INTO seq_limit (amount) VALUES (1)$$);
SELECT count(*) AS rows, min(seq), max(seq) FROM seq_limit;
-- verify_running_balance() reports a row that follows the last seq value
-- (written around the guard) instead of failing with 22003 itself.
ALTER TABLE seq_limit DISABLE TRIGGER seq_limit_balance;
INSERT INTO seq_limit VALUES (1, 1, NULL);
ALTER TABLE seq_limit ENABLE TRIGGER seq_limit_balance;
SELECT * FROM raceguard.verify_running_balance('seq_limit');

-- A partitioned ledger (by month): one chain per account across partitions.
CREATE TABLE entries (account_id integer, booked date, amount bigint, balance bigint, entry_no bigint)
    PARTITION BY RANGE (booked);
CREATE TABLE entries_2026_10 PARTITION OF entries FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
CREATE TABLE entries_2026_11 PARTITION OF entries FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
CREATE INDEX ON entries (account_id, entry_no);
CREATE TRIGGER entries_balance BEFORE INSERT OR UPDATE OR DELETE ON entries FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account_id', 'seq=entry_no');
INSERT INTO entries (account_id, booked, amount) VALUES (1, '2026-10-30', 10), (1, '2026-11-02', 5), (2, '2026-11-03', 1);
-- Straight into a partition: the chain still continues across partitions.
INSERT INTO entries_2026_10 (account_id, booked, amount) VALUES (1, '2026-10-31', 100);
-- A partition attached later joins the chain.
CREATE TABLE entries_2026_12 (LIKE entries);
ALTER TABLE entries ATTACH PARTITION entries_2026_12 FOR VALUES FROM ('2026-12-01') TO ('2027-01-01');
INSERT INTO entries (account_id, booked, amount) VALUES (1, '2026-12-01', 1000);
-- ... and the older partitions' triggers, set up before the attach, see it.
INSERT INTO entries_2026_11 (account_id, booked, amount) VALUES (1, '2026-11-30', 10000);
SELECT tableoid::regclass AS partition, account_id, entry_no, amount, balance FROM entries ORDER BY account_id, entry_no;
SELECT * FROM raceguard.verify_running_balance('entries');
-- A detached partition leaves the chain (its entries are no longer the
-- ledger's): the next append builds on what the ledger still holds.
CREATE TABLE entries_2027_01 PARTITION OF entries FOR VALUES FROM ('2027-01-01') TO ('2027-02-01');
INSERT INTO entries (account_id, booked, amount) VALUES (2, '2027-01-05', 50);
ALTER TABLE entries DETACH PARTITION entries_2027_01;
INSERT INTO entries_2026_11 (account_id, booked, amount) VALUES (2, '2026-11-20', 7) RETURNING entry_no, balance;
SELECT * FROM raceguard.verify_running_balance('entries');
DROP TABLE entries_2027_01;
-- Moving an entry to another partition is a DELETE plus an INSERT: refused
-- like any DELETE; a change of the partition key within one partition is not.
SELECT sqlstate, message FROM regress.error_of($$UPDATE entries SET booked = '2026-12-15' WHERE account_id = 2$$);
UPDATE entries SET booked = '2026-11-04' WHERE account_id = 2 RETURNING tableoid::regclass, booked, balance;

-- TRUNCATE: nothing is kept outside the ledger, so the chain restarts cleanly.
TRUNCATE overdrawn;
INSERT INTO overdrawn (account_id, amount) VALUES (1, 60) RETURNING balance, n;
-- UNLOGGED and TEMP ledgers work the same way (after a crash an UNLOGGED
-- ledger is empty and its chains restart, as after TRUNCATE).
CREATE UNLOGGED TABLE unlogged_ledger (amount integer, balance integer, seq integer);
CREATE INDEX ON unlogged_ledger (seq);
CREATE TRIGGER unlogged_ledger_balance BEFORE INSERT ON unlogged_ledger FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'seq=seq');
INSERT INTO unlogged_ledger (amount) VALUES (1), (2), (3) RETURNING *;
CREATE TEMP TABLE temp_ledger (amount integer, balance integer, seq integer);
CREATE INDEX ON temp_ledger (seq);
CREATE TRIGGER temp_ledger_balance BEFORE INSERT ON temp_ledger FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'seq=seq');
INSERT INTO temp_ledger (amount) VALUES (4), (5) RETURNING *;
SELECT * FROM raceguard.verify_running_balance('temp_ledger');

-- Within one transaction, appends after the first know their group's last
-- entry without reading it, as long as every computed append was really
-- inserted. Each way an append can vanish inside a transaction, followed by
-- more appends in the same transaction: the chain stays exact.
CREATE TABLE cached (account_id integer, amount bigint, balance bigint, seq bigint, key text UNIQUE);
CREATE UNIQUE INDEX ON cached (account_id, seq);
CREATE TRIGGER cached_balance BEFORE INSERT OR UPDATE OR DELETE ON cached FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account_id', 'seq=seq');
-- A later-sorting trigger that skips entries with amount 0.
CREATE FUNCTION regress.skip_zero() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RETURN CASE WHEN NEW.amount = 0 THEN NULL ELSE NEW END; END $$;
CREATE TRIGGER cached_zz_skip_zero BEFORE INSERT ON cached FOR EACH ROW EXECUTE FUNCTION regress.skip_zero();
BEGIN;
INSERT INTO cached (account_id, amount, key) VALUES (1, 10, 'a'), (1, 20, 'b'), (2, 5, 'c');
-- ON CONFLICT skips in the middle of a multi-row statement ...
INSERT INTO cached (account_id, amount, key) VALUES (1, 1, 'd'), (1, 1000, 'a'), (1, 2, 'e'), (2, 1000, 'c'), (2, 3, 'f')
    ON CONFLICT (key) DO NOTHING;
-- ... and as a statement of its own.
INSERT INTO cached (account_id, amount, key) VALUES (1, 1000, 'b') ON CONFLICT (key) DO NOTHING;
-- A later trigger skips rows (amount 0).
INSERT INTO cached (account_id, amount) VALUES (1, 0), (1, 4), (2, 0), (1, 0), (2, 6);
-- ON CONFLICT DO UPDATE updates instead of appending.
INSERT INTO cached (account_id, amount, key) VALUES (1, 1000, 'd') ON CONFLICT (key) DO UPDATE SET key = 'd2';
INSERT INTO cached (account_id, amount) VALUES (1, 8);
-- A rolled-back savepoint.
SAVEPOINT before_mistake;
INSERT INTO cached (account_id, amount) VALUES (1, 5000), (2, 5000);
ROLLBACK TO SAVEPOINT before_mistake;
INSERT INTO cached (account_id, amount) VALUES (1, 16), (2, 7);
-- A failed statement caught by a savepoint.
SAVEPOINT before_overflow;
INSERT INTO cached (account_id, amount) VALUES (1, 9223372036854775807);
ROLLBACK TO SAVEPOINT before_overflow;
INSERT INTO cached (account_id, amount) VALUES (1, 32);
-- An entry written around the trigger (with wrong values, which verify
-- reports below), then an append: the append reads it and builds on it.
SET LOCAL session_replication_role = replica;
INSERT INTO cached (account_id, amount, balance, seq) VALUES (1, 64, 155, 10);
SET LOCAL session_replication_role = origin;
INSERT INTO cached (account_id, amount) VALUES (1, 128);
COMMIT;
SELECT account_id, seq, amount, balance, key FROM cached ORDER BY account_id, seq;
SELECT * FROM raceguard.verify_running_balance('cached');

-- The same with a trigger on INSERT only: an ON CONFLICT DO UPDATE then
-- updates a row without the trigger seeing the update, and the next append
-- must still not build on the append that was not inserted.
CREATE TABLE cached_inserts (account_id integer, amount bigint, balance bigint, seq bigint, key text UNIQUE, note text);
CREATE UNIQUE INDEX ON cached_inserts (account_id, seq);
CREATE TRIGGER cached_inserts_balance BEFORE INSERT ON cached_inserts FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account_id', 'seq=seq');
BEGIN;
INSERT INTO cached_inserts (account_id, amount, key) VALUES (1, 10, 'a'), (1, 20, 'b');
INSERT INTO cached_inserts (account_id, amount, key) VALUES (1, 1000, 'a') ON CONFLICT (key) DO UPDATE SET note = 'seen twice';
INSERT INTO cached_inserts (account_id, amount, key) VALUES (1, 40, 'c');
COMMIT;
SELECT account_id, seq, amount, balance, key, note FROM cached_inserts ORDER BY account_id, seq;
SELECT * FROM raceguard.verify_running_balance('cached_inserts');

-- verify_running_balance finds hand-made corruption (written with the
-- trigger disabled): a wrong balance, a missing entry, a seq out of line.
ALTER TABLE payments DISABLE TRIGGER payments_running_balance;
UPDATE payments SET running_balance = running_balance + 1 WHERE account_id = 1 AND entry_no = 3;
DELETE FROM payments WHERE account_id = 2 AND entry_no = 2;
INSERT INTO payments (account_id, amount, running_balance, entry_no) VALUES (3, 5, 5, 10);
ALTER TABLE payments ENABLE TRIGGER payments_running_balance;
SELECT * FROM raceguard.verify_running_balance('payments');
-- Its errors: a table without the guard, and a partition (its chains span
-- the whole ledger: verify the table the trigger was created on).
CREATE TABLE not_a_ledger (amount integer);
SELECT sqlstate, message, hint FROM regress.error_of($$SELECT * FROM raceguard.verify_running_balance('not_a_ledger')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.verify_running_balance('entries_2026_10')$$);
-- A guard without seq= (it fails at its first row too) cannot be verified.
CREATE TABLE seqless (amount integer, balance integer);
CREATE TRIGGER seqless_balance BEFORE INSERT ON seqless FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance');
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.verify_running_balance('seqless')$$);

-- Without Citus, a ledger created in the transaction that appends to it
-- appends as always, even on a connection named like Citus's own (the
-- refusal of rows Citus copies into a new shard needs Citus installed).
SET application_name = 'citus_internal gpid=10000000001';
BEGIN;
CREATE TABLE new_ledger (account_id integer, amount bigint, balance bigint, n bigint);
CREATE INDEX ON new_ledger (account_id, n);
CREATE TRIGGER new_ledger_balance BEFORE INSERT ON new_ledger FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n');
INSERT INTO new_ledger (account_id, amount) VALUES (1, 10), (1, 5), (2, 7);
COPY new_ledger (account_id, amount) FROM STDIN;
1	-3
\.
COMMIT;
RESET application_name;
SELECT account_id, n, amount, balance FROM new_ledger ORDER BY account_id, n;

-- A row written around the guard in the middle of a statement, after an
-- append of that statement was skipped by ON CONFLICT: one insert was
-- counted since that append, but it is not the append's row, so the next
-- append of the statement reads its group's last entry again (balance 11,
-- seq 2; it was once taken for the skipped append's: 511, seq 3). As a
-- replica (set_config() within the statement, a superuser's bypass) and
-- as a row kept by raceguard.restoring.
CREATE TABLE mid_bypass (id integer PRIMARY KEY, account integer NOT NULL, amount bigint NOT NULL,
                         balance bigint, n bigint);
CREATE UNIQUE INDEX ON mid_bypass (account, n);
CREATE TRIGGER mid_bypass_balance BEFORE INSERT OR UPDATE OR DELETE ON mid_bypass FOR EACH ROW
    EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
INSERT INTO mid_bypass (id, account, amount) VALUES (1, 1, 10);
INSERT INTO mid_bypass (id, account, amount, balance, n)
SELECT v.id, v.account, v.amount, v.balance, v.n
  FROM (VALUES (1, 1, 500, NULL::bigint, NULL::bigint, 'origin'),
               (2, 2, 7, 7, 1, 'replica'),
               (3, 1, 1, NULL, NULL, 'origin')) v (id, account, amount, balance, n, role)
 CROSS JOIN LATERAL (SELECT set_config('session_replication_role', v.role, true)) AS set_role
ON CONFLICT DO NOTHING;
BEGIN;
SET LOCAL raceguard.restoring = on;
INSERT INTO mid_bypass (id, account, amount, balance, n)
VALUES (3, 1, 500, NULL, NULL), (4, 3, 9, 9, 1), (5, 1, 1, NULL, NULL) ON CONFLICT DO NOTHING;
COMMIT;
SELECT id, account, amount, balance, n FROM mid_bypass ORDER BY id;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('mid_bypass');
DROP TABLE mid_bypass;
