-- Routing (running_balance.md, "Partitioned ledgers"): an append to a
-- partition reads the group's last entry only in the leaves its partition
-- keys route the group to. Which leaves an append read is seen in the index
-- scans it started on each leaf's chain index: the backend's own counts
-- (pg_stat_get_xact_numscans), taken before and after the INSERT inside one
-- transaction, where nothing else scans those indexes and no statistics are
-- flushed. Each shape also shows the answer itself: a chain that continues
-- across leaves where routing must not apply, and balances that only their
-- own leaf explains where it does.
SET client_min_messages = warning;
CREATE FUNCTION regress.chain_scans(ledger regclass) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_object_agg(i.indrelid::regclass::text, pg_stat_get_xact_numscans(i.indexrelid))
    FROM pg_index i WHERE i.indrelid IN (SELECT relid FROM pg_partition_tree(ledger) WHERE isleaf)
$$;
CREATE FUNCTION regress.leaves_read(ledger regclass, before jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(now.key, ' ' ORDER BY now.key), '(none)')
    FROM jsonb_each_text(regress.chain_scans(ledger)) AS now
    WHERE now.value::bigint > coalesce((before ->> now.key)::bigint, 0)
$$;

-- 1. HASH by the group column: each append reads its own leaf only.
CREATE TABLE rh (account integer, amount bigint, balance bigint, n bigint) PARTITION BY HASH (account);
CREATE TABLE rh_0 PARTITION OF rh FOR VALUES WITH (MODULUS 4, REMAINDER 0);
CREATE TABLE rh_1 PARTITION OF rh FOR VALUES WITH (MODULUS 4, REMAINDER 1);
CREATE TABLE rh_2 PARTITION OF rh FOR VALUES WITH (MODULUS 4, REMAINDER 2);
CREATE TABLE rh_3 PARTITION OF rh FOR VALUES WITH (MODULUS 4, REMAINDER 3);
CREATE INDEX ON rh (account, n);
CREATE TRIGGER rh_balance BEFORE INSERT OR UPDATE OR DELETE ON rh FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
INSERT INTO rh (account, amount) SELECT a, 10 * a FROM generate_series(1, 8) a;
SELECT tableoid::regclass AS leaf, account, n, balance FROM rh ORDER BY account;
BEGIN;
SELECT regress.chain_scans('rh') AS scans \gset
INSERT INTO rh (account, amount) VALUES (1, 1) RETURNING tableoid::regclass AS leaf, n, balance;
SELECT regress.leaves_read('rh', :'scans');
COMMIT;
-- Three appends to one account in one statement: one lookup, then the
-- exact answers (one part, the firing partition), and the chain is exact.
BEGIN;
SELECT regress.chain_scans('rh') AS scans \gset
INSERT INTO rh (account, amount) VALUES (3, 1), (3, 2), (3, 3), (5, 1) RETURNING tableoid::regclass AS leaf, account, n, balance;
SELECT regress.leaves_read('rh', :'scans');
-- One index scan per account (a scan over several parts would run per row).
SELECT (regress.chain_scans('rh') ->> 'rh_1')::bigint - (:'scans'::jsonb ->> 'rh_1')::bigint AS scans;
COMMIT;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('rh');

-- Straight into the right leaf: the chain continues.
INSERT INTO rh_0 (account, amount) VALUES (1, 100) RETURNING n, balance;
-- Into the wrong leaf: the partition check after the cloned BEFORE trigger
-- refuses the row, nothing is written, and the next appends are exact, in
-- the same transaction as the refused row too.
BEGIN;
INSERT INTO rh_0 (account, amount) VALUES (1, 1000) RETURNING n, balance;
SELECT sqlstate, message FROM regress.error_of('INSERT INTO rh_0 (account, amount) VALUES (2, 7)');
SELECT sqlstate, message FROM regress.error_of('INSERT INTO rh_0 (account, amount) VALUES (1, 5), (2, 7)');
INSERT INTO rh_0 (account, amount) VALUES (1, 10000) RETURNING n, balance;
INSERT INTO rh (account, amount) VALUES (2, 1), (1, 1) RETURNING account, n, balance;
COMMIT;
SELECT account, count(*), max(n), max(balance) FROM rh WHERE account IN (1, 2) GROUP BY account ORDER BY account;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('rh');

-- Writes around the guard (trigger disabled by the owner, or replica role)
-- land in the account's leaf: the next append builds on them.
ALTER TABLE rh DISABLE TRIGGER rh_balance;
INSERT INTO rh (account, amount, balance, n) SELECT 1, 5, balance + 5, n + 1 FROM rh WHERE account = 1 ORDER BY n DESC LIMIT 1;
ALTER TABLE rh ENABLE TRIGGER rh_balance;
INSERT INTO rh (account, amount) VALUES (1, 1) RETURNING n, balance;
BEGIN;
INSERT INTO rh (account, amount) VALUES (1, 1) RETURNING n, balance;
SET LOCAL session_replication_role = replica;
INSERT INTO rh (account, amount, balance, n) SELECT 1, 3, balance + 3, n + 1 FROM rh WHERE account = 1 ORDER BY n DESC LIMIT 1;
SET LOCAL session_replication_role = origin;
INSERT INTO rh (account, amount) VALUES (1, 1) RETURNING n, balance;
COMMIT;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('rh');

-- 2. RANGE by month, not a group column: every leaf is read, and an
-- account's chain runs across them.
CREATE TABLE rm (account integer, booked date, amount bigint, balance bigint, n bigint) PARTITION BY RANGE (booked);
CREATE TABLE rm_01 PARTITION OF rm FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE rm_02 PARTITION OF rm FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE TABLE rm_03 PARTITION OF rm FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
CREATE INDEX ON rm (account, n);
CREATE TRIGGER rm_balance BEFORE INSERT OR UPDATE OR DELETE ON rm FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
INSERT INTO rm (account, booked, amount) VALUES (1, '2026-01-05', 10), (1, '2026-03-05', 20);
BEGIN;
SELECT regress.chain_scans('rm') AS scans \gset
INSERT INTO rm (account, booked, amount) VALUES (1, '2026-02-05', 5) RETURNING tableoid::regclass AS leaf, n, balance;
SELECT regress.leaves_read('rm', :'scans');
COMMIT;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('rm');

-- 3. HASH by account, then RANGE by month: the leaves of the account's hash
-- partition are read (the chain runs across its months), no other.
CREATE TABLE rhm (account integer, booked date, amount bigint, balance bigint, n bigint) PARTITION BY HASH (account);
CREATE TABLE rhm_0 PARTITION OF rhm FOR VALUES WITH (MODULUS 2, REMAINDER 0) PARTITION BY RANGE (booked);
CREATE TABLE rhm_1 PARTITION OF rhm FOR VALUES WITH (MODULUS 2, REMAINDER 1) PARTITION BY RANGE (booked);
CREATE TABLE rhm_0_01 PARTITION OF rhm_0 FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE rhm_0_02 PARTITION OF rhm_0 FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE TABLE rhm_1_01 PARTITION OF rhm_1 FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE rhm_1_02 PARTITION OF rhm_1 FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE INDEX ON rhm (account, n);
CREATE TRIGGER rhm_balance BEFORE INSERT OR UPDATE OR DELETE ON rhm FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
INSERT INTO rhm (account, booked, amount) VALUES (1, '2026-02-05', 10), (2, '2026-02-05', 20), (1, '2026-01-05', 1);
SELECT tableoid::regclass AS leaf, account, n, balance FROM rhm ORDER BY account, n;
BEGIN;
SELECT regress.chain_scans('rhm') AS scans \gset
INSERT INTO rhm (account, booked, amount) VALUES (1, '2026-02-06', 5) RETURNING tableoid::regclass AS leaf, n, balance;
SELECT regress.leaves_read('rhm', :'scans');
COMMIT;
-- A month attached later under the account's hash partition, carrying the
-- account's latest entry: the states built before the ATTACH (the other
-- months' clones) read it.
CREATE TABLE rhm_0_03 (LIKE rhm);
INSERT INTO rhm_0_03 SELECT account, '2026-03-01', 7, balance + 7, n + 1 FROM rhm WHERE account = 1 ORDER BY n DESC LIMIT 1;
ALTER TABLE rhm_0 ATTACH PARTITION rhm_0_03 FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
INSERT INTO rhm (account, booked, amount) VALUES (1, '2026-01-07', 100) RETURNING tableoid::regclass AS leaf, n, balance;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('rhm');
-- A month detached with the account's latest entry leaves the chain: the
-- next append builds on what stays.
CREATE TABLE rhm_0_04 PARTITION OF rhm_0 FOR VALUES FROM ('2026-04-01') TO ('2026-05-01');
INSERT INTO rhm (account, booked, amount) VALUES (1, '2026-04-01', 1000) RETURNING tableoid::regclass AS leaf, n, balance;
ALTER TABLE rhm_0 DETACH PARTITION rhm_0_04;
INSERT INTO rhm (account, booked, amount) VALUES (1, '2026-02-07', 10000) RETURNING tableoid::regclass AS leaf, n, balance;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('rhm');
DROP TABLE rhm_0_04;

-- 4. RANGE by month, then HASH by account: the first level is not a group
-- column, so every leaf is read.
CREATE TABLE rmh (account integer, booked date, amount bigint, balance bigint, n bigint) PARTITION BY RANGE (booked);
CREATE TABLE rmh_01 PARTITION OF rmh FOR VALUES FROM ('2026-01-01') TO ('2026-02-01') PARTITION BY HASH (account);
CREATE TABLE rmh_02 PARTITION OF rmh FOR VALUES FROM ('2026-02-01') TO ('2026-03-01') PARTITION BY HASH (account);
CREATE TABLE rmh_01_0 PARTITION OF rmh_01 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE rmh_01_1 PARTITION OF rmh_01 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE rmh_02_0 PARTITION OF rmh_02 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE rmh_02_1 PARTITION OF rmh_02 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE INDEX ON rmh (account, n);
CREATE TRIGGER rmh_balance BEFORE INSERT OR UPDATE OR DELETE ON rmh FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
INSERT INTO rmh (account, booked, amount) VALUES (1, '2026-01-05', 10), (2, '2026-02-05', 20);
BEGIN;
SELECT regress.chain_scans('rmh') AS scans \gset
INSERT INTO rmh (account, booked, amount) VALUES (1, '2026-02-06', 5) RETURNING tableoid::regclass AS leaf, n, balance;
SELECT regress.leaves_read('rmh', :'scans');
COMMIT;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('rmh');

-- 5. LIST by account with a DEFAULT partition, the key's columns in another
-- order than the root's (a dropped column, a partition made apart): matched
-- by name. Accounts 1 and 2 have a partition, the others share the default.
CREATE TABLE rl (account integer, amount bigint, balance bigint, n bigint) PARTITION BY LIST (account);
CREATE TABLE rl_1 (dropped text, n bigint, balance bigint, amount bigint, account integer);
ALTER TABLE rl_1 DROP COLUMN dropped;
ALTER TABLE rl ATTACH PARTITION rl_1 FOR VALUES IN (1);
CREATE TABLE rl_2 PARTITION OF rl FOR VALUES IN (2);
CREATE TABLE rl_other PARTITION OF rl DEFAULT;
CREATE INDEX ON rl (account, n);
CREATE TRIGGER rl_balance BEFORE INSERT OR UPDATE OR DELETE ON rl FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
INSERT INTO rl (account, amount) VALUES (1, 10), (2, 20), (3, 30), (4, 40);
BEGIN;
SELECT regress.chain_scans('rl') AS scans \gset
INSERT INTO rl (account, amount) VALUES (1, 1) RETURNING tableoid::regclass AS leaf, n, balance;
SELECT regress.leaves_read('rl', :'scans');
COMMIT;
BEGIN;
SELECT regress.chain_scans('rl') AS scans \gset
INSERT INTO rl (account, amount) VALUES (3, 1) RETURNING tableoid::regclass AS leaf, n, balance;
SELECT regress.leaves_read('rl', :'scans');
COMMIT;
-- A partition for account 5 attached while the states are cached (the
-- default holds no row of it, as ATTACH checks): its appends route there.
CREATE TABLE rl_5 PARTITION OF rl FOR VALUES IN (5);
INSERT INTO rl (account, amount) VALUES (5, 50), (3, 2), (5, 1) RETURNING tableoid::regclass AS leaf, account, n, balance;
-- An account's partition cannot be attached while the default holds its rows.
CREATE TABLE rl_3 (LIKE rl);
SELECT sqlstate, message FROM regress.error_of('ALTER TABLE rl ATTACH PARTITION rl_3 FOR VALUES IN (3)');
DROP TABLE rl_3;
-- Account 2's partition dropped: its entries leave the ledger, and its next
-- append starts a chain in the default partition.
DROP TABLE rl_2;
INSERT INTO rl (account, amount) VALUES (2, 2), (1, 2) RETURNING tableoid::regclass AS leaf, account, n, balance;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('rl');

-- 6. Equal groups must route alike. The default operator classes do, even
-- for values that are equal but not identical: -0 and 0, 1.0 and 1.00, and
-- text equal under a nondeterministic collation when the key uses it.
CREATE TABLE rf (account float8, amount bigint, balance bigint, n bigint) PARTITION BY HASH (account);
CREATE TABLE rf_0 PARTITION OF rf FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE rf_1 PARTITION OF rf FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE INDEX ON rf (account, n);
CREATE TRIGGER rf_balance BEFORE INSERT OR UPDATE OR DELETE ON rf FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
INSERT INTO rf (account, amount) VALUES ('0', 1), ('-0', 10), ('0', 100) RETURNING tableoid::regclass AS leaf, account, n, balance;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('rf');
CREATE TABLE rn (account numeric, amount bigint, balance bigint, n bigint) PARTITION BY LIST (account);
CREATE TABLE rn_1 PARTITION OF rn FOR VALUES IN (1);
CREATE TABLE rn_other PARTITION OF rn DEFAULT;
CREATE INDEX ON rn (account, n);
CREATE TRIGGER rn_balance BEFORE INSERT OR UPDATE OR DELETE ON rn FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
INSERT INTO rn (account, amount) VALUES (1.0, 1), (1.00, 10), (1, 100), (2.0, 1000) RETURNING tableoid::regclass AS leaf, account, n, balance;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('rn');
CREATE COLLATION regress.case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE rc (name text COLLATE regress.case_insensitive, amount bigint, balance bigint, n bigint)
    PARTITION BY HASH (name);
CREATE TABLE rc_0 PARTITION OF rc FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE rc_1 PARTITION OF rc FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE INDEX ON rc (name, n);
CREATE TRIGGER rc_balance BEFORE INSERT OR UPDATE OR DELETE ON rc FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'name', 'seq=n');
INSERT INTO rc (name, amount) VALUES ('Ann', 1), ('ANN', 10), ('ann', 100), ('Bob', 1000);
BEGIN;
SELECT regress.chain_scans('rc') AS scans \gset
-- Which of the two leaves holds the group depends on the ICU version's
-- sort keys; what matters is that the append goes to, and reads, only it.
SELECT DISTINCT tableoid::regclass::text AS group_leaf FROM rc WHERE name = 'ann' \gset
INSERT INTO rc (name, amount) VALUES ('aNN', 5) RETURNING tableoid::regclass::text = :'group_leaf' AS in_its_group_leaf, n, balance;
SELECT regress.leaves_read('rc', :'scans') = :'group_leaf' AS read_only_its_group_leaf;
COMMIT;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('rc');

-- 7. A key that compares otherwise than the group does not route, and the
-- chain then runs across leaves. Another collation: 'Ann' and 'ann' are one
-- group but go to different partitions under "C".
CREATE TABLE rcc (name text COLLATE regress.case_insensitive, amount bigint, balance bigint, n bigint)
    PARTITION BY LIST (name COLLATE "C");
CREATE TABLE rcc_upper PARTITION OF rcc FOR VALUES IN ('Ann');
CREATE TABLE rcc_lower PARTITION OF rcc FOR VALUES IN ('ann');
CREATE INDEX ON rcc (name, n);
CREATE TRIGGER rcc_balance BEFORE INSERT OR UPDATE OR DELETE ON rcc FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'name', 'seq=n');
INSERT INTO rcc (name, amount) VALUES ('Ann', 1);
BEGIN;
SELECT regress.chain_scans('rcc') AS scans \gset
INSERT INTO rcc (name, amount) VALUES ('ann', 10) RETURNING tableoid::regclass AS leaf, n, balance;
SELECT regress.leaves_read('rcc', :'scans');
COMMIT;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('rcc');
-- A non-default operator class: numeric hashed by its text, so 1.0 and
-- 1.00 (one group) go to different partitions.
CREATE FUNCTION regress.numeric_text_eq(numeric, numeric) RETURNS boolean LANGUAGE sql IMMUTABLE
    AS 'SELECT $1::text = $2::text';
CREATE OPERATOR regress.=== (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = regress.numeric_text_eq);
CREATE FUNCTION regress.numeric_text_hash(numeric, bigint) RETURNS bigint LANGUAGE sql IMMUTABLE
    AS 'SELECT hashtextextended($1::text, $2)';
CREATE OPERATOR CLASS regress.numeric_text_ops FOR TYPE numeric USING hash AS
    OPERATOR 1 regress.===, FUNCTION 2 regress.numeric_text_hash(numeric, bigint);
CREATE TABLE ro (account numeric, amount bigint, balance bigint, n bigint)
    PARTITION BY HASH (account regress.numeric_text_ops);
CREATE TABLE ro_0 PARTITION OF ro FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE ro_1 PARTITION OF ro FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE INDEX ON ro (account, n);
CREATE TRIGGER ro_balance BEFORE INSERT OR UPDATE OR DELETE ON ro FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
INSERT INTO ro (account, amount) VALUES (1.0, 1);
BEGIN;
SELECT regress.chain_scans('ro') AS scans \gset
INSERT INTO ro (account, amount) VALUES (1.00, 10) RETURNING tableoid::regclass AS leaf, n, balance;
SELECT regress.leaves_read('ro', :'scans');
COMMIT;
SELECT tableoid::regclass AS leaf, account, n, balance FROM ro ORDER BY n;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('ro');
-- An expression key (even of a group column) does not route either.
CREATE TABLE re (account integer, amount bigint, balance bigint, n bigint) PARTITION BY LIST ((account % 2));
CREATE TABLE re_0 PARTITION OF re FOR VALUES IN (0);
CREATE TABLE re_1 PARTITION OF re FOR VALUES IN (1);
CREATE INDEX ON re (account, n);
CREATE TRIGGER re_balance BEFORE INSERT OR UPDATE OR DELETE ON re FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
INSERT INTO re (account, amount) VALUES (1, 1), (2, 2);
BEGIN;
SELECT regress.chain_scans('re') AS scans \gset
INSERT INTO re (account, amount) VALUES (1, 10) RETURNING tableoid::regclass AS leaf, n, balance;
SELECT regress.leaves_read('re', :'scans');
COMMIT;

-- 8. Two group columns, LIST by one, then HASH by the other in a partition
-- made apart (its columns in another order, one dropped): routed down to
-- the leaf, each level's key matched by name.
CREATE TABLE r2 (account integer, currency text, amount bigint, balance bigint, n bigint) PARTITION BY LIST (currency);
CREATE TABLE r2_eur PARTITION OF r2 FOR VALUES IN ('EUR');
CREATE TABLE r2_usd (dropped text, n bigint, balance bigint, amount bigint, currency text, account integer)
    PARTITION BY HASH (account);
ALTER TABLE r2_usd DROP COLUMN dropped;
CREATE TABLE r2_usd_0 PARTITION OF r2_usd FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE r2_usd_1 PARTITION OF r2_usd FOR VALUES WITH (MODULUS 2, REMAINDER 1);
ALTER TABLE r2 ATTACH PARTITION r2_usd FOR VALUES IN ('USD');
CREATE INDEX ON r2 (account, currency, n);
CREATE TRIGGER r2_balance BEFORE INSERT OR UPDATE OR DELETE ON r2 FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'currency', 'seq=n');
INSERT INTO r2 (account, currency, amount) VALUES (1, 'EUR', 1), (1, 'USD', 10), (2, 'USD', 20);
SELECT tableoid::regclass AS leaf, account, currency, n, balance FROM r2 ORDER BY account, currency;
BEGIN;
SELECT regress.chain_scans('r2') AS scans \gset
INSERT INTO r2 (account, currency, amount) VALUES (1, 'USD', 100) RETURNING tableoid::regclass AS leaf, n, balance;
SELECT regress.leaves_read('r2', :'scans');
COMMIT;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('r2');

DROP TABLE rh, rm, rhm, rmh, rl, rf, rn, rc, rcc, ro, re, r2;
DROP OPERATOR CLASS regress.numeric_text_ops USING hash;
DROP OPERATOR FAMILY regress.numeric_text_ops USING hash;
DROP OPERATOR regress.=== (numeric, numeric);
DROP FUNCTION regress.numeric_text_eq(numeric, numeric), regress.numeric_text_hash(numeric, bigint);
DROP COLLATION regress.case_insensitive;
DROP FUNCTION regress.leaves_read(regclass, jsonb), regress.chain_scans(regclass);
RESET client_min_messages;
