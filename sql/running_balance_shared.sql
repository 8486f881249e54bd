-- The shared last entries (running_balance.md, "Partitioned ledgers"): with
-- raceguard preloaded, an append to a ledger partitioned by something other
-- than its groups reads only the leaf that holds the group's last entry, or
-- none when the transaction that appended it confirmed it as it committed
-- (14 below), and every way of writing around the guard sends the next
-- append back to reading every leaf, so that it still continues from the
-- real last entry.
-- Run only with raceguard in shared_preload_libraries (test/preloaded/run.sh).
-- Which leaves an append read is seen in this backend's own index scan
-- counts (pg_stat_get_xact_numscans) within one transaction; each new
-- session below is a new backend, so what it reads was remembered by another.
SET client_min_messages = warning;
SELECT current_setting('shared_preload_libraries') ~ 'raceguard' AS preloaded;
CREATE FUNCTION regress.chain_scans(ledger regclass) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_object_agg(leaf, scans) FROM (
        SELECT i.indrelid::regclass::text AS leaf, sum(pg_stat_get_xact_numscans(i.indexrelid)) AS scans
        FROM pg_index i WHERE i.indrelid IN (SELECT relid FROM pg_partition_tree(ledger) WHERE isleaf UNION SELECT ledger)
        GROUP BY i.indrelid) per_leaf
$$;
CREATE FUNCTION regress.leaves_read(ledger regclass, before jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT CASE count(*) WHEN 0 THEN '(none)'
                         WHEN (SELECT count(*) FROM pg_partition_tree(ledger) WHERE isleaf) THEN 'every leaf'
                         ELSE string_agg(now.key, ' ' ORDER BY now.key) END
    FROM jsonb_each_text(regress.chain_scans(ledger)) AS now
    WHERE now.value::bigint > coalesce((before ->> now.key)::bigint, 0)
$$;
-- One append, in a transaction of its own: its entry and the leaves it read.
CREATE FUNCTION regress.append(ledger regclass, account integer, amount bigint, booked date DEFAULT '2026-06-15')
RETURNS TABLE (leaf text, n bigint, balance bigint, read text) LANGUAGE plpgsql AS $$
DECLARE
    before jsonb := regress.chain_scans(ledger);
BEGIN
    EXECUTE format('INSERT INTO %s (account, amount, booked) VALUES ($1, $2, $3) RETURNING tableoid::regclass::text, n, balance', ledger)
        INTO leaf, n, balance USING account, amount, booked;
    read := regress.leaves_read(ledger, before);
    RETURN NEXT;
END
$$;

-- Six monthly leaves, history in every one of them.
CREATE TABLE sm (account integer NOT NULL, booked date NOT NULL, amount bigint NOT NULL, balance bigint, n bigint)
    PARTITION BY RANGE (booked);
SELECT format('CREATE TABLE sm_%s PARTITION OF sm FOR VALUES FROM (%L) TO (%L)', m,
              date '2026-01-01' + make_interval(months => m - 1), date '2026-01-01' + make_interval(months => m))
FROM generate_series(1, 6) m \gexec
CREATE INDEX ON sm (account, n);
CREATE TRIGGER sm_balance BEFORE INSERT OR UPDATE OR DELETE ON sm FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
INSERT INTO sm (account, booked, amount)
SELECT a, date '2026-01-10' + 30 * m, 1 FROM generate_series(0, 5) m, generate_series(1, 3) a;
SELECT account, max(n), max(balance) FROM sm GROUP BY account ORDER BY account;

-- 1. Another backend's append reads the one leaf that holds the entry.
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sm', 1, 10);
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sm', 1, 10);
-- A backdated entry: the next append finds it in its old month.
SELECT * FROM regress.append('sm', 1, 100, '2026-02-02');
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sm', 1, 10);

-- 2. The guard disabled, a row written with a later seq, and enabled again,
-- in one transaction: the next append reads every leaf and continues from it.
BEGIN;
ALTER TABLE sm DISABLE TRIGGER sm_balance;
INSERT INTO sm VALUES (1, '2026-03-03', 5, 1000, 50);
ALTER TABLE sm ENABLE TRIGGER sm_balance;
COMMIT;
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sm', 1, 1);
SELECT * FROM regress.append('sm', 1, 1);

-- 3. session_replication_role = replica (a superuser's bypass; a
-- subscription's apply worker): set, a write, reset, then commit.
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO sm VALUES (1, '2026-01-20', 5, 2000, 60);
SET LOCAL session_replication_role = origin;
COMMIT;
SELECT * FROM regress.append('sm', 1, 1);
-- Written around the guard and appended to in the same transaction: the
-- append sees the transaction's own row.
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO sm VALUES (1, '2026-03-21', 5, 2500, 65);
SET LOCAL session_replication_role = origin;
SELECT * FROM regress.append('sm', 1, 1);
COMMIT;
-- The same with COPY.
SET session_replication_role = replica;
COPY sm FROM stdin;
1	2026-04-04	5	3000	70
\.
RESET session_replication_role;
SELECT * FROM regress.append('sm', 1, 1);

-- 4. One leaf's clone disabled by its own transaction, written to, enabled
-- by another: no append trusts an entry while that leaf is unguarded.
ALTER TABLE sm_2 DISABLE TRIGGER sm_balance;
SELECT * FROM regress.append('sm', 1, 1);
INSERT INTO sm VALUES (1, '2026-02-20', 5, 4000, 80);
ALTER TABLE sm_2 ENABLE TRIGGER sm_balance;
SELECT * FROM regress.append('sm', 1, 1);
-- ENABLE REPLICA on one leaf: ordinary sessions skip it there.
ALTER TABLE sm_3 ENABLE REPLICA TRIGGER sm_balance;
SELECT * FROM regress.append('sm', 1, 1);
ALTER TABLE sm_3 ENABLE TRIGGER sm_balance;
SELECT * FROM regress.append('sm', 1, 1);
SELECT * FROM regress.append('sm', 1, 1);

-- 5. A leaf detached, written to while detached, attached again: it has a
-- new clone, so what was remembered before is not trusted.
ALTER TABLE sm DETACH PARTITION sm_5;
INSERT INTO sm_5 VALUES (1, '2026-05-05', 5, 5000, 90);
ALTER TABLE sm ATTACH PARTITION sm_5 FOR VALUES FROM ('2026-05-01') TO ('2026-06-01');
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sm', 1, 1);
SELECT * FROM regress.append('sm', 1, 1);

-- 6. The leaf holding the last entry truncated: the chain continues from
-- the last entry left, wherever it is.
SELECT * FROM regress.append('sm', 2, 7, '2026-04-10');
TRUNCATE sm_4;
SELECT * FROM regress.append('sm', 2, 1);

-- 7. Rolled back and skipped appends leave a remembered entry that is not
-- there: the next append reads every leaf and reuses the seq.
BEGIN;
SAVEPOINT s;
INSERT INTO sm (account, booked, amount) VALUES (3, '2026-01-05', 1000) RETURNING n, balance;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT * FROM regress.append('sm', 3, 1);
-- An idempotency key on the newest leaf: the repeated append is skipped.
CREATE UNIQUE INDEX sm_idem ON sm_6 (account, amount) WHERE amount >= 500;
INSERT INTO sm (account, booked, amount) VALUES (3, '2026-06-15', 500) ON CONFLICT DO NOTHING RETURNING n;
INSERT INTO sm (account, booked, amount) VALUES (3, '2026-06-15', 500) ON CONFLICT DO NOTHING RETURNING n;
SELECT * FROM regress.append('sm', 3, 2);
DROP INDEX sm_idem;

-- 8. A restore that keeps a dumped row (raceguard.restoring) writes
-- around the lookup: the next append reads every leaf.
SET raceguard.restoring = on;
INSERT INTO sm VALUES (3, '2026-01-30', 5, 6000, 100);
RESET raceguard.restoring;
SELECT * FROM regress.append('sm', 3, 1);

-- 9. A prepared transaction that wrote around the guard: until it is
-- committed its row is not seen; after, the next append continues from it.
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO sm VALUES (2, '2026-01-31', 5, 7000, 200);
PREPARE TRANSACTION 'sm_bypass';
SELECT * FROM regress.append('sm', 2, 1);
SELECT * FROM regress.append('sm', 2, 1);
COMMIT PREPARED 'sm_bypass';
SELECT * FROM regress.append('sm', 2, 1);
SELECT * FROM regress.append('sm', 2, 1);

-- The chains: each bypass left its mark (a jump in seq and balance), and
-- every append after it continued from the bypassed row.
SELECT group_key, seq, problem, expected, stored FROM raceguard.verify_running_balance('sm') ORDER BY 1, 2, 3;
SELECT account, n, balance, amount FROM sm WHERE (account, n) IN (SELECT account, max(n) FROM sm GROUP BY account) ORDER BY 1;

-- 10. Groups that compare equal with different images: a domain over
-- float8, where -0 = 0. The append of one takes the other's entry slot, so
-- the other's next append reads every leaf and continues from it.
CREATE DOMAIN regress.f8 AS float8;
CREATE TABLE sf (account regress.f8 NOT NULL, booked date NOT NULL, amount bigint NOT NULL, balance bigint, n bigint)
    PARTITION BY RANGE (booked);
CREATE TABLE sf_1 PARTITION OF sf FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE sf_2 PARTITION OF sf FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE INDEX ON sf (account, n);
CREATE TRIGGER sf_balance BEFORE INSERT OR UPDATE OR DELETE ON sf FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
INSERT INTO sf (account, booked, amount) VALUES (0.0, '2026-01-05', 1);
\c
SET client_min_messages = warning;
INSERT INTO sf (account, booked, amount) VALUES ('-0'::float8, '2026-02-05', 1) RETURNING n, balance;
\c
SET client_min_messages = warning;
INSERT INTO sf (account, booked, amount) VALUES (0.0, '2026-01-06', 1) RETURNING n, balance;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('sf');

-- 11. session_replication_role set to replica and back inside one
-- statement (set_config in a CTE), with a row written in between: counted.
WITH on_replica AS (SELECT set_config('session_replication_role', 'replica', true)),
     written AS (INSERT INTO sm SELECT 1, '2026-01-20', 5, 9000, 300 FROM on_replica RETURNING n)
SELECT n, set_config('session_replication_role', 'origin', true) AS role_after FROM written;
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sm', 1, 1);

-- 12. A BEFORE INSERT trigger that fires after the guard (its name sorts
-- later) and changes the group: the guard never trusts an entry there.
CREATE FUNCTION regress.fold_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.account := abs(NEW.account); RETURN NEW; END $$;
CREATE TRIGGER sm_zz_fold BEFORE INSERT ON sm FOR EACH ROW EXECUTE FUNCTION regress.fold_account();
SELECT * FROM regress.append('sm', 2, 1);
INSERT INTO sm (account, booked, amount) VALUES (-2, '2026-02-05', 100) RETURNING account, n, balance;
SELECT * FROM regress.append('sm', 2, 1);
DROP TRIGGER sm_zz_fold ON sm;

-- 13. Without UPDATE and DELETE guarded, an entry's seq can be changed
-- unseen: such a guard never trusts a remembered entry.
CREATE TABLE si (account integer NOT NULL, booked date NOT NULL, amount bigint NOT NULL, balance bigint, n bigint)
    PARTITION BY RANGE (booked);
CREATE TABLE si_1 PARTITION OF si FOR VALUES FROM ('2026-01-01') TO ('2026-04-01');
CREATE TABLE si_2 PARTITION OF si FOR VALUES FROM ('2026-04-01') TO ('2026-07-01');
CREATE INDEX ON si (account, n);
CREATE TRIGGER si_balance BEFORE INSERT ON si FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
INSERT INTO si (account, booked, amount) VALUES (1, '2026-01-05', 1), (1, '2026-06-05', 1);
SELECT * FROM regress.append('si', 1, 1);
UPDATE si SET n = 10 WHERE booked = '2026-01-05';
SELECT * FROM regress.append('si', 1, 1);

-- 14. Confirmed entries, here on an unpartitioned ledger: an append's
-- transaction that commits with its row in the ledger confirms its entry
-- (balance and seq) as it commits, and the next append, in any backend,
-- reads no index at all ((none)). Every way an append can fail to leave
-- its row, and every write around the guard, sends the next append back to
-- the index (read: sf1), which it reads for the true last entry.
CREATE TABLE sf1 (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, account integer NOT NULL,
                  booked date NOT NULL, amount bigint NOT NULL, balance bigint, n bigint);
CREATE INDEX ON sf1 (account, n);
CREATE UNIQUE INDEX sf1_idem ON sf1 (account, amount) WHERE amount >= 500;
CREATE TRIGGER sf1_balance BEFORE INSERT OR UPDATE OR DELETE ON sf1 FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
INSERT INTO sf1 (account, booked, amount) VALUES (1, '2026-06-01', 1), (1, '2026-06-01', 1);
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sf1', 1, 1);
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sf1', 1, 1);
-- Skipped by ON CONFLICT (the second of two equal idempotent appends).
INSERT INTO sf1 (account, booked, amount) VALUES (1, '2026-06-15', 500) ON CONFLICT DO NOTHING RETURNING n;
INSERT INTO sf1 (account, booked, amount) VALUES (1, '2026-06-15', 500) ON CONFLICT DO NOTHING RETURNING n;
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sf1', 1, 1);
-- Skipped, then another group's row inserted by the same statement: one
-- insert was counted after the skipped append, but it came after the next
-- append began, so the skipped one is not taken for inserted.
INSERT INTO sf1 (account, booked, amount) VALUES (1, '2026-06-15', 500), (3, '2026-06-15', 1)
    ON CONFLICT DO NOTHING RETURNING account, n;
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sf1', 1, 1);
-- Rolled back to a savepoint, in a transaction that commits other rows.
BEGIN;
SAVEPOINT s;
INSERT INTO sf1 (account, booked, amount) VALUES (1, '2026-06-15', 1000) RETURNING n;
ROLLBACK TO SAVEPOINT s;
INSERT INTO sf1 (account, booked, amount) VALUES (2, '2026-06-15', 1) RETURNING n;
COMMIT;
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sf1', 1, 1);
-- Rolled back.
BEGIN;
INSERT INTO sf1 (account, booked, amount) VALUES (1, '2026-06-15', 1000) RETURNING n;
ROLLBACK;
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sf1', 1, 1);
SELECT * FROM regress.append('sf1', 1, 1);
-- Written around the guard by a superuser (session_replication_role).
SET session_replication_role = replica;
INSERT INTO sf1 (account, booked, amount, balance, n) VALUES (1, '2026-06-15', 5, 1000, 50);
RESET session_replication_role;
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sf1', 1, 1);
-- Truncated: the chain starts again.
SELECT * FROM regress.append('sf1', 1, 1);
TRUNCATE sf1;
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sf1', 1, 7);
SELECT account, n, balance FROM sf1 ORDER BY id;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('sf1');

-- 15. What a confirmed entry must not outlive, or take for its row.
-- A CHECK constraint's function appends to the same table after a row's
-- guard fired and before the row is inserted, and ON CONFLICT skips that
-- inner append: the outer row's insert, counted after the inner append
-- began, is not taken for the inner one's (which would confirm a seq and
-- balance that no row has).
INSERT INTO sf1 (account, booked, amount) VALUES (1, '2026-06-01', 500);
CREATE FUNCTION regress.sf1_side_append(account integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF account = 2 THEN
        INSERT INTO sf1 (account, booked, amount) VALUES (1, '2026-06-01', 500) ON CONFLICT DO NOTHING;
    END IF;
    RETURN true;
END
$$;
ALTER TABLE sf1 ADD CONSTRAINT sf1_side CHECK (regress.sf1_side_append(account));
INSERT INTO sf1 (account, booked, amount) VALUES (2, '2026-06-01', 1);
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sf1', 1, 1);
ALTER TABLE sf1 DROP CONSTRAINT sf1_side;
-- ALTER COLUMN ... TYPE ... USING rewrites the entries without a row
-- trigger: it counts as a write around the guards.
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sf1', 1, 1);
ALTER TABLE sf1 ALTER COLUMN amount TYPE bigint USING amount * 10, ALTER COLUMN balance TYPE bigint USING balance * 10;
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sf1', 1, 10);
-- A BEFORE UPDATE trigger that fires after the guard can change an entry's
-- balance behind the UPDATE the guard allowed (check_guards() reports it):
-- the guard then takes no confirmed entry, and the next append continues
-- from the row as the index has it.
CREATE FUNCTION regress.sf1_touch_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.balance := NEW.balance + 100;
    RETURN NEW;
END
$$;
CREATE TRIGGER sf1_touch BEFORE UPDATE ON sf1 FOR EACH ROW EXECUTE FUNCTION regress.sf1_touch_balance();
SELECT trigger_name, problem FROM raceguard.check_guards() WHERE table_name = 'sf1'::regclass;
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sf1', 1, 10);
UPDATE sf1 SET booked = '2026-06-30' WHERE account = 1 AND n = 6;
\c
SET client_min_messages = warning;
SELECT * FROM regress.append('sf1', 1, 10);
DROP TRIGGER sf1_touch ON sf1;
DROP FUNCTION regress.sf1_touch_balance();
SELECT account, n, balance FROM sf1 ORDER BY id;
SELECT group_key, seq, problem, expected, stored FROM raceguard.verify_running_balance('sf1') ORDER BY 1, 2, 3;
-- A TEMP ledger ON COMMIT DELETE ROWS is emptied at every commit, after its
-- entries would be confirmed: it never confirms one.
CREATE TEMP TABLE sf3 (account integer NOT NULL, booked date NOT NULL, amount bigint NOT NULL, balance bigint,
                       n bigint) ON COMMIT DELETE ROWS;
CREATE INDEX ON sf3 (account, n);
CREATE TRIGGER sf3_balance BEFORE INSERT OR UPDATE OR DELETE ON sf3 FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
SELECT * FROM regress.append('sf3', 1, 1);
SELECT * FROM regress.append('sf3', 1, 1);
DROP TABLE sf3;

DROP TABLE sm, si, sf, sf1;
DROP FUNCTION regress.sf1_side_append(integer);
DROP DOMAIN regress.f8;
DROP FUNCTION regress.fold_account();
DROP FUNCTION regress.append(regclass, integer, bigint, date);
DROP FUNCTION regress.leaves_read(regclass, jsonb);
DROP FUNCTION regress.chain_scans(regclass);
