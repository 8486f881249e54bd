-- A restore keeps a ledger's entries as dumped. pg_dump's scripts and
-- pg_restore run with check_function_bodies off, and pg_restore -j may
-- create a partitioned ledger's trigger before every partition's data is
-- loaded, so the trigger's clones fire on the dumped rows, in whatever order
-- they arrive. For the table's owner, with check_function_bodies off, an
-- entry that carries its seq and balance is kept as it is; for anyone else,
-- or with the setting on, appends are computed as always.
CREATE TABLE restored (account integer NOT NULL, amount bigint NOT NULL, balance bigint, entry_no bigint,
                       booked date NOT NULL) PARTITION BY RANGE (booked);
CREATE TABLE restored_jan PARTITION OF restored FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE restored_feb PARTITION OF restored FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE INDEX ON restored (account, entry_no);
CREATE TRIGGER restored_balance BEFORE INSERT OR UPDATE OR DELETE ON restored
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no');

-- The owner restoring: February's rows arrive before January's, as a
-- parallel restore may load them; every row keeps its seq and balance.
SET check_function_bodies = off;
COPY restored (account, amount, balance, entry_no, booked) FROM stdin;
1	5	35	3	2026-02-03
1	-10	25	4	2026-02-09
2	7	7	1	2026-02-10
1	10	10	1	2026-01-05
1	20	30	2	2026-01-20
\.
RESET check_function_bodies;
SELECT account, entry_no, amount, balance, booked FROM restored ORDER BY account, entry_no;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('restored');
-- The next append after the restore continues each chain.
INSERT INTO restored (account, amount, booked) VALUES (1, 1, '2026-02-20'), (2, 1, '2026-02-20');
SELECT account, entry_no, amount, balance FROM restored WHERE booked = '2026-02-20' ORDER BY account;

-- Not the owner: the setting changes nothing, supplied values are replaced.
CREATE ROLE regress_ledger_clerk;
GRANT SELECT, INSERT ON restored TO regress_ledger_clerk;
SET ROLE regress_ledger_clerk;
SET check_function_bodies = off;
INSERT INTO restored (account, amount, balance, entry_no, booked) VALUES (1, 100, 1000000, 99, '2026-02-21');
RESET check_function_bodies;
RESET ROLE;
-- The owner with the setting on: computed too.
INSERT INTO restored (account, amount, balance, entry_no, booked) VALUES (1, 100, 1000000, 99, '2026-02-22');
SELECT account, entry_no, amount, balance, booked FROM restored WHERE booked >= '2026-02-21' ORDER BY entry_no;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('restored');
-- A restored row without its seq or balance is an append like any other.
SET check_function_bodies = off;
INSERT INTO restored (account, amount, booked) VALUES (2, 3, '2026-02-23');
RESET check_function_bodies;
SELECT account, entry_no, amount, balance FROM restored WHERE booked = '2026-02-23';
DROP TABLE restored;
DROP ROLE regress_ledger_clerk;

-- A parallel restore may fire the trigger before the chain index exists:
-- the dumped rows still load as they are (the guard needs no index for
-- them); a computed append there fails until the index is restored.
CREATE TABLE early (account integer NOT NULL, amount bigint NOT NULL, balance bigint, entry_no bigint);
ALTER EVENT TRIGGER raceguard_validate_guards DISABLE;
CREATE TRIGGER early_balance BEFORE INSERT OR UPDATE OR DELETE ON early
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no');
ALTER EVENT TRIGGER raceguard_validate_guards ENABLE ALWAYS;
SET check_function_bodies = off;
COPY early (account, amount, balance, entry_no) FROM stdin;
1	4	9	2
1	5	5	1
\.
SELECT sqlstate FROM regress.error_of($$INSERT INTO early (account, amount) VALUES (1, 1)$$);
RESET check_function_bodies;
CREATE INDEX ON early (account, entry_no);
INSERT INTO early (account, amount) VALUES (1, 1);
SELECT account, entry_no, amount, balance FROM early ORDER BY entry_no;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('early');
DROP TABLE early;
