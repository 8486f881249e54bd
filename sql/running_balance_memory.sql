-- A backend's memory stays bounded by the guards in use: states of dropped
-- guards are freed, a ledger's state grows with the groups it sees (not a
-- fixed megabyte), and a partitioned ledger costs little more than one
-- table. Measured with pg_backend_memory_contexts, against bounds far
-- below what each defect cost (about 1.1 MB per dropped guard, 116 MB for
-- one INSERT ... SELECT into 100 partitions).
--
-- pg_backend_memory_contexts arrived in PostgreSQL 14. On 13 the guards' own
-- contexts cannot be read from SQL, so there the backend's whole private
-- data (VmData in /proc/self/status: what it allocated, touched or not) is
-- measured instead, against bounds that still lie far below the defects'
-- cost; the checks on the guards' contexts alone (guard_memory_small,
-- freed_after_drop) need 14 (expected/running_balance_memory_1.out).
SELECT to_regclass('pg_catalog.pg_backend_memory_contexts') IS NOT NULL AS has_memory_contexts \gset
\if :has_memory_contexts
CREATE FUNCTION regress.guard_memory() RETURNS bigint LANGUAGE sql AS $$
    SELECT coalesce(sum(total_bytes), 0)::bigint FROM pg_backend_memory_contexts WHERE name LIKE 'raceguard%'
$$;
CREATE FUNCTION regress.backend_memory() RETURNS bigint LANGUAGE sql AS $$
    SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts
$$;
\else
CREATE FUNCTION regress.backend_memory() RETURNS bigint LANGUAGE sql AS $$
    SELECT (regexp_match(pg_read_file('/proc/self/status', 0, 65536), 'VmData:\s+(\d+) kB'))[1]::bigint * 1024
$$;
\endif
CREATE PROCEDURE regress.ledger_cycles(cycles integer) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..cycles LOOP
        CREATE TEMP TABLE cycle_ledger (account integer NOT NULL, amount bigint, balance bigint, entry_no bigint);
        CREATE INDEX ON cycle_ledger (account, entry_no);
        CREATE TRIGGER cycle_ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON cycle_ledger
            FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no');
        INSERT INTO cycle_ledger (account, amount) SELECT g % 50, 1 FROM generate_series(1, 200) g;
        DROP TABLE cycle_ledger;
        COMMIT;
    END LOOP;
END $$;

-- 100 create/append/drop cycles, each its own transaction: the memory the
-- guards hold does not grow with the cycles.
CALL regress.ledger_cycles(10);
\if :has_memory_contexts
SELECT regress.guard_memory() AS after_10 \gset
CALL regress.ledger_cycles(100);
SELECT regress.guard_memory() - :after_10 < 64 * 1024 AS guard_memory_flat,
       regress.guard_memory() < 256 * 1024 AS guard_memory_small;
\else
SELECT regress.backend_memory() AS after_10 \gset
CALL regress.ledger_cycles(100);
SELECT regress.backend_memory() - :after_10 < 16 * 1024 * 1024 AS backend_memory_flat;
\endif

-- One INSERT ... SELECT into a 100-partition ledger over 1,000 accounts,
-- against the same into the same table without the guard.
CREATE TABLE part_ledger (account integer NOT NULL, amount bigint, balance bigint, entry_no bigint)
    PARTITION BY HASH (account);
CREATE TABLE plain_copy (LIKE part_ledger) PARTITION BY HASH (account);
DO $$ BEGIN
    FOR r IN 0..99 LOOP
        EXECUTE format('CREATE TABLE part_ledger_%s PARTITION OF part_ledger FOR VALUES WITH (MODULUS 100, REMAINDER %s)', r, r);
        EXECUTE format('CREATE TABLE plain_copy_%s PARTITION OF plain_copy FOR VALUES WITH (MODULUS 100, REMAINDER %s)', r, r);
    END LOOP;
END $$;
CREATE INDEX ON part_ledger (account, entry_no);
CREATE INDEX ON plain_copy (account, entry_no);
\c -
SELECT regress.backend_memory() AS before_plain \gset
INSERT INTO plain_copy (account, amount, entry_no) SELECT g % 1000, 1, g FROM generate_series(1, 20000) g;
SELECT regress.backend_memory() - :before_plain AS plain_growth \gset
CREATE TRIGGER part_ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON part_ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account', 'seq=entry_no');
\c -
SELECT regress.backend_memory() AS before_guarded \gset
INSERT INTO part_ledger (account, amount) SELECT g % 1000, 1 FROM generate_series(1, 20000) g;
\if :has_memory_contexts
SELECT regress.backend_memory() - :before_guarded - :plain_growth < 4 * 1024 * 1024 AS partitioned_costs_little_more,
       regress.guard_memory() < 2 * 1024 * 1024 AS guard_memory_small;
\else
SELECT regress.backend_memory() - :before_guarded - :plain_growth < 16 * 1024 * 1024 AS partitioned_costs_little_more;
\endif
SELECT count(*) AS entries, count(DISTINCT account) AS accounts, max(entry_no) AS last_seq FROM part_ledger;
SELECT count(*) AS problems FROM raceguard.verify_running_balance('part_ledger');
-- Dropping the ledger frees its 101 states at the end of the transaction.
DROP TABLE part_ledger, plain_copy;
\if :has_memory_contexts
SELECT regress.guard_memory() < 64 * 1024 AS freed_after_drop;
\endif
