-- Many groups in one statement. Within a statement the guard answers from
-- what it computed itself (its hint table) instead of reading the index;
-- here more groups than the table holds share its buckets and evict each
-- other, in orders that revisit them, across a savepoint rolled back and
-- with a memo update in between. Every entry must still carry the
-- insertion-order number and running sum of its group: `id` records the
-- order rows went in, so each expected value is computed independently of
-- the guard.
CREATE TABLE many_groups (
    id bigint GENERATED ALWAYS AS IDENTITY,
    account integer NOT NULL,
    amount bigint NOT NULL,
    balance bigint,
    entry_no bigint,
    memo text
);
CREATE UNIQUE INDEX ON many_groups (account, entry_no);
CREATE TRIGGER ledger BEFORE INSERT OR UPDATE OR DELETE ON many_groups FOR EACH ROW
    EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no');
CREATE VIEW many_groups_wrong AS
    SELECT count(*) AS wrong_entries FROM (
        SELECT balance, entry_no,
               sum(amount) OVER w AS expected_balance, row_number() OVER w AS expected_entry_no
          FROM many_groups WINDOW w AS (PARTITION BY account ORDER BY id)) entries
     WHERE balance IS DISTINCT FROM expected_balance OR entry_no IS DISTINCT FROM expected_entry_no;

-- 3,000 groups, each revisited ten times.
INSERT INTO many_groups (account, amount) SELECT g % 3000, g FROM generate_series(1, 30000) g;
-- 5,000 groups in a scattered order: more than four share many a bucket
-- before the table reaches its largest size. (Each group takes a lock until
-- the transaction ends, so one transaction's groups are bounded by the lock
-- table: max_locks_per_transaction.)
INSERT INTO many_groups (account, amount) SELECT (g * 7919) % 5000, g % 7 - 3 FROM generate_series(1, 40000) g;
BEGIN;
INSERT INTO many_groups (account, amount) SELECT g % 5000, 2 FROM generate_series(1, 10000) g;
SAVEPOINT undone;
INSERT INTO many_groups (account, amount, memo) SELECT g % 5000, 1000, 'undone' FROM generate_series(1, 10000) g;
ROLLBACK TO SAVEPOINT undone;
UPDATE many_groups SET memo = 'seen' WHERE account % 100 = 0;
INSERT INTO many_groups (account, amount) SELECT (g * 31) % 5000, -1 FROM generate_series(1, 10000) g;
COMMIT;
SELECT count(*) AS entries, count(DISTINCT account) AS groups FROM many_groups;
SELECT * FROM many_groups_wrong;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('many_groups');
-- Nothing of the rolled-back statement is left.
SELECT count(*) AS undone_entries FROM many_groups WHERE memo = 'undone';
DROP TABLE many_groups CASCADE;
