-- Without raceguard's library (1.4): the package removed, or an upgrade of
-- it that failed half-way. The event triggers, which run for every DROP and
-- for every ALTER TABLE and CREATE TRIGGER in the database, let those
-- commands through with one WARNING each; the guards themselves fail at
-- their first row, so no row passes a guard unchecked. (Up to 1.3 every
-- DROP and ALTER TABLE failed there, on tables with no guard too.)
--
-- In a database of its own, the extension's C functions are pointed at a
-- library file that does not exist, which is what PostgreSQL finds when the
-- package is gone (pg_proc.probin; CREATE OR REPLACE would load the file).
\set regress_database :DBNAME
CREATE DATABASE regress_without_library;
\c regress_without_library
CREATE EXTENSION raceguard;
CREATE TABLE orders (id integer PRIMARY KEY, lock_version integer);
CREATE TRIGGER orders_lock_version BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO orders VALUES (1, NULL);
CREATE TABLE unrelated (id integer);
CREATE TABLE unrelated_too (id integer);
CREATE TABLE first_scratch (id integer);
CREATE TABLE second_scratch (id integer);
UPDATE pg_proc SET probin = '$libdir/raceguard_removed' WHERE probin = '$libdir/raceguard';
SELECT count(*) AS c_functions_left FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'raceguard'::regnamespace AND l.lanname = 'c' AND p.probin <> '$libdir/raceguard_removed';

-- The WARNING's DETAIL is PostgreSQL's own "could not access file" message.
\set VERBOSITY terse
-- Unrelated DDL goes through, one WARNING per command however many objects
-- it changes.
DROP TABLE unrelated;
ALTER TABLE unrelated_too ADD COLUMN note text, ADD COLUMN amount integer;
DROP TABLE first_scratch, second_scratch;
SELECT relname FROM pg_class WHERE relname IN ('unrelated', 'first_scratch', 'second_scratch');
SELECT attname FROM pg_attribute WHERE attrelid = 'unrelated_too'::regclass AND attnum > 0 ORDER BY attnum;
-- So does DDL on a guarded table, and a new guard: unchecked, with a WARNING.
ALTER TABLE orders ADD COLUMN note text;
CREATE TRIGGER orders_strict BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('strict=true');
-- But the guard refuses every row, with the library's SQLSTATE (58P01):
-- nothing is written.
DO $$
BEGIN
    INSERT INTO orders VALUES (2, NULL);
EXCEPTION WHEN undefined_file THEN
    RAISE NOTICE 'INSERT refused: %', SQLSTATE;
END
$$;
DO $$
BEGIN
    UPDATE orders SET note = 'unchecked' WHERE id = 1;
EXCEPTION WHEN undefined_file THEN
    RAISE NOTICE 'UPDATE refused: %', SQLSTATE;
END
$$;
SELECT * FROM orders;
-- The event triggers are still the extension's, enabled ALWAYS.
SELECT evtname, evtenabled, evtfoid::regprocedure FROM pg_event_trigger ORDER BY evtname;

-- With the library back, the guards work again and the new guard is checked.
UPDATE pg_proc SET probin = '$libdir/raceguard' WHERE probin = '$libdir/raceguard_removed';
\set VERBOSITY default
UPDATE orders SET note = 'checked', lock_version = lock_version + 1 WHERE id = 1;
SELECT * FROM orders;
SELECT * FROM raceguard.check_guards();

-- Without it again, the extension can still be dropped (CASCADE: the
-- guards' triggers depend on its functions).
UPDATE pg_proc SET probin = '$libdir/raceguard_removed' WHERE probin = '$libdir/raceguard';
\set VERBOSITY terse
DROP EXTENSION raceguard CASCADE;
\set VERBOSITY default
SELECT count(*) AS raceguard_triggers FROM pg_trigger WHERE tgrelid = 'orders'::regclass;

\c :regress_database
DROP DATABASE regress_without_library;
