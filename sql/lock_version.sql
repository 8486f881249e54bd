-- raceguard.lock_version(): every rule of SPEC §1 on one session.
-- Concurrency is in test/isolation; bad definitions in lock_version_errors.
CREATE TABLE orders (
    id integer PRIMARY KEY,
    billing_address text,
    payment_method text,
    lock_version integer
);
CREATE TRIGGER orders_lock_version
    BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();

-- INSERT: a NULL version becomes 1, a given one is kept.
INSERT INTO orders (id) VALUES (1);
INSERT INTO orders (id, lock_version) VALUES (2, 7);
INSERT INTO orders (id, lock_version) VALUES (3, NULL), (4, 0) RETURNING id, lock_version;
SELECT id, lock_version FROM orders ORDER BY id;

-- UPDATE that does not assign the version: proceeds and bumps by one.
UPDATE orders SET billing_address = 'Main St 1' WHERE id = 1 RETURNING lock_version;
-- The client echoes the version it read (n = o): stored as o + 1.
UPDATE orders SET payment_method = 'card', lock_version = 2 WHERE id = 1 RETURNING lock_version;
-- The client bumped it already (n = o + 1, as Rails, Ecto, Hibernate send): kept.
UPDATE orders SET payment_method = 'iban', lock_version = 4 WHERE id = 1 RETURNING lock_version;
-- A relative increment is n = o + 1 too.
UPDATE orders SET lock_version = lock_version + 1 WHERE id = 1 RETURNING lock_version;
-- The ORM protocol: new version in SET, old one in WHERE. Current: one row.
UPDATE orders SET billing_address = 'Main St 2', lock_version = 6 WHERE id = 1 AND lock_version = 5;
-- Stale: the WHERE finds nothing, nothing fires.
UPDATE orders SET billing_address = 'Lost St', lock_version = 6 WHERE id = 1 AND lock_version = 5;

-- Stale writes: anything but o or o + 1 fails with 40001, and nothing is written.
SELECT * FROM regress.error_of($$UPDATE orders SET billing_address = 'Stale St', lock_version = 3 WHERE id = 1$$) \gx
SELECT * FROM regress.error_of($$UPDATE orders SET billing_address = 'Future St', lock_version = 9 WHERE id = 1$$) \gx
-- A client that sends NULL for a row at version 6 sent 0: stale.
SELECT * FROM regress.error_of($$UPDATE orders SET lock_version = NULL WHERE id = 1$$);
-- Retrying with the same stale version fails again: a retry loop can never
-- overwrite the other writer.
SELECT * FROM regress.error_of($$UPDATE orders SET billing_address = 'Stale St', lock_version = 3 WHERE id = 1$$);
SELECT id, billing_address, payment_method, lock_version FROM orders WHERE id = 1;
-- The same error as the client sees it:
UPDATE orders SET billing_address = 'Stale St', lock_version = 3 WHERE id = 1;

-- A multi-row UPDATE bumps every row by exactly one; one stale row fails the
-- whole statement.
UPDATE orders SET payment_method = 'cash' WHERE id IN (2, 3, 4);
SELECT id, lock_version FROM orders ORDER BY id;
SELECT sqlstate FROM regress.error_of($$UPDATE orders SET lock_version = 1$$);
SELECT id, lock_version FROM orders ORDER BY id;

-- INSERT ... ON CONFLICT DO UPDATE goes through the same UPDATE rules.
INSERT INTO orders (id, billing_address) VALUES (2, 'Upsert Ave')
    ON CONFLICT (id) DO UPDATE SET billing_address = excluded.billing_address
    RETURNING id, billing_address, lock_version;
SELECT sqlstate, message FROM regress.error_of($$
    INSERT INTO orders (id, lock_version) VALUES (2, 1)
    ON CONFLICT (id) DO UPDATE SET lock_version = excluded.lock_version$$);

-- Existing rows with a NULL version (the column was added after them) count
-- as version 0.
CREATE TABLE legacy (id integer PRIMARY KEY, note text);
INSERT INTO legacy VALUES (1, 'a'), (2, 'b'), (3, 'c');
ALTER TABLE legacy ADD COLUMN lock_version bigint;
CREATE TRIGGER legacy_lock_version BEFORE UPDATE ON legacy
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
UPDATE legacy SET note = 'a2' WHERE id = 1 RETURNING lock_version;                      -- 0 -> 1
UPDATE legacy SET note = 'b2', lock_version = NULL WHERE id = 2 RETURNING lock_version; -- echo of NULL
UPDATE legacy SET note = 'c2', lock_version = 1 WHERE id = 3 RETURNING lock_version;    -- pre-bumped from 0
SELECT sqlstate, message FROM regress.error_of($$UPDATE legacy SET lock_version = 5 WHERE id = 3$$);

-- Another column, and every supported type. smallint stops at its maximum
-- with 22003 instead of wrapping; nothing is written.
CREATE TABLE small_counter (id integer PRIMARY KEY, "Row Version" smallint);
CREATE TRIGGER small_counter_version BEFORE INSERT OR UPDATE ON small_counter
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('Row Version');
INSERT INTO small_counter VALUES (1, 32766), (2, NULL);
UPDATE small_counter SET id = id WHERE id = 1 RETURNING "Row Version";
SELECT * FROM regress.error_of($$UPDATE small_counter SET id = id WHERE id = 1$$) \gx
SELECT * FROM small_counter ORDER BY id;
CREATE TABLE big_counter (id integer PRIMARY KEY, version bigint);
CREATE TRIGGER big_counter_version BEFORE INSERT OR UPDATE ON big_counter
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('version');
INSERT INTO big_counter VALUES (1, 9223372036854775806);
UPDATE big_counter SET version = version + 1 RETURNING version;
SELECT sqlstate, message FROM regress.error_of($$UPDATE big_counter SET id = 1$$);
SELECT sqlstate FROM regress.error_of($$UPDATE big_counter SET version = -9223372036854775808$$);

-- strict=true: an UPDATE that does not assign the version (a blind write,
-- which cannot have checked anything) is a stale write.
CREATE TABLE strict_orders (id integer PRIMARY KEY, note text, lock_version integer);
CREATE TRIGGER strict_orders_lock_version BEFORE INSERT OR UPDATE ON strict_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('strict=true');
INSERT INTO strict_orders (id, note) VALUES (1, 'a');
SELECT * FROM regress.error_of($$UPDATE strict_orders SET note = 'blind'$$) \gx
UPDATE strict_orders SET note = 'echo', lock_version = 1 RETURNING note, lock_version;
UPDATE strict_orders SET note = 'relative', lock_version = lock_version + 1 RETURNING note, lock_version;
-- Assigning the version to itself names it, so strict accepts it as an echo.
UPDATE strict_orders SET note = 'self', lock_version = lock_version RETURNING note, lock_version;
SELECT * FROM strict_orders;

-- sqlstate=23514: stale writes are check violations named after the trigger,
-- for ORMs that map named constraints to validation errors.
CREATE TABLE checked_orders (id integer PRIMARY KEY, note text, lock_version integer);
CREATE TRIGGER checked_orders_version BEFORE INSERT OR UPDATE ON checked_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('lock_version', 'sqlstate=23514', 'strict=false');
INSERT INTO checked_orders (id, note) VALUES (1, 'a');
SELECT * FROM regress.error_of($$UPDATE checked_orders SET note = 'stale', lock_version = 7$$) \gx
SELECT * FROM checked_orders;

-- Versions appear in the message only for users who may SELECT the column,
-- as in PostgreSQL's own constraint errors.
CREATE ROLE regress_lock_version_writer;
GRANT USAGE ON SCHEMA regress TO regress_lock_version_writer;
GRANT UPDATE ON orders TO regress_lock_version_writer;
SET ROLE regress_lock_version_writer;
SELECT * FROM regress.error_of($$UPDATE orders SET lock_version = 1$$) \gx
RESET ROLE;
GRANT SELECT (lock_version) ON orders TO regress_lock_version_writer;
SET ROLE regress_lock_version_writer;
SELECT message FROM regress.error_of($$UPDATE orders SET lock_version = 1$$);
RESET ROLE;
REVOKE ALL ON orders FROM regress_lock_version_writer;
REVOKE ALL ON SCHEMA regress FROM regress_lock_version_writer;
DROP ROLE regress_lock_version_writer;

-- A partitioned table: the trigger on the parent is cloned to each partition.
CREATE TABLE events (id integer, month date, note text, lock_version integer) PARTITION BY RANGE (month);
CREATE TABLE events_2026_10 PARTITION OF events FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
CREATE TABLE events_2026_11 PARTITION OF events FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
CREATE TRIGGER events_lock_version BEFORE INSERT OR UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO events (id, month) VALUES (1, '2026-10-05'), (2, '2026-11-05');
UPDATE events SET note = 'seen' RETURNING id, lock_version;
SELECT sqlstate FROM regress.error_of($$UPDATE events SET lock_version = 1 WHERE id = 2$$);
-- A row moving to another partition is a DELETE plus an INSERT: the INSERT
-- keeps the version the UPDATE computed.
UPDATE events SET month = '2026-11-20' WHERE id = 1 RETURNING tableoid::regclass, lock_version;

-- The per-trigger cache follows the table: drop the column and the next row
-- reports it missing; add it back (at a new position) and the guard works on it.
ALTER TABLE strict_orders DROP COLUMN lock_version;
SELECT sqlstate, message FROM regress.error_of($$UPDATE strict_orders SET note = 'x'$$);
ALTER TABLE strict_orders ADD COLUMN lock_version integer DEFAULT 10;
UPDATE strict_orders SET note = 'back', lock_version = 10 RETURNING note, lock_version;
-- Recreated with other arguments in the same session: the new ones apply.
ALTER TABLE strict_orders ADD COLUMN revision smallint DEFAULT 0;
DROP TRIGGER strict_orders_lock_version ON strict_orders;
CREATE TRIGGER strict_orders_lock_version BEFORE INSERT OR UPDATE ON strict_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('revision');
UPDATE strict_orders SET note = 'no longer strict' RETURNING note, lock_version, revision;
-- A renamed column is a missing one until the trigger is recreated.
ALTER TABLE strict_orders RENAME COLUMN revision TO rev;
SELECT sqlstate, message FROM regress.error_of($$UPDATE strict_orders SET note = 'y'$$);
-- Retyping the column to another supported type keeps the guard working.
ALTER TABLE strict_orders RENAME COLUMN rev TO revision;
ALTER TABLE strict_orders ALTER COLUMN revision TYPE bigint;
UPDATE strict_orders SET note = 'bigint now' RETURNING note, revision;

-- Disabled triggers are bypassed (by design of PostgreSQL).
ALTER TABLE orders DISABLE TRIGGER orders_lock_version;
UPDATE orders SET lock_version = 1 WHERE id = 1 RETURNING lock_version;
ALTER TABLE orders ENABLE TRIGGER orders_lock_version;
UPDATE orders SET lock_version = 1 WHERE id = 1 RETURNING lock_version;

-- Rows written before ALTER TABLE ... ADD COLUMN lock_version ... DEFAULT 1
-- (the README's migration) are stored without the new column: its value
-- lives in the table's descriptor. A BEFORE trigger that fires earlier and
-- returns OLD hands the guard such a short row as the new one; the bump must
-- land all the same (it used to be written past the end of the row, and
-- lost). An earlier trigger that returns a modified NEW, and new rows, too.
CREATE TABLE tickets (id integer PRIMARY KEY, frozen boolean NOT NULL, priority integer NOT NULL);
INSERT INTO tickets SELECT g, g % 2 = 0, 0 FROM generate_series(1, 2000) g;
ALTER TABLE tickets ADD COLUMN lock_version integer NOT NULL DEFAULT 1;
CREATE FUNCTION regress.keep_frozen_tickets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.frozen THEN
        RETURN OLD;  -- frozen tickets keep their content
    END IF;
    NEW.priority := least(NEW.priority, 10);
    RETURN NEW;
END
$$;
CREATE TRIGGER a_keep_frozen BEFORE INSERT OR UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION regress.keep_frozen_tickets();
CREATE TRIGGER tickets_lock_version BEFORE INSERT OR UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO tickets (id, frozen, priority) VALUES (2001, false, 50), (2002, true, 0);
INSERT INTO tickets (id, frozen, priority, lock_version) VALUES (2003, true, 0, 7) RETURNING lock_version;
UPDATE tickets SET priority = priority + 20;
SELECT frozen, id > 2000 AS added_later, priority, lock_version, count(*)
  FROM tickets GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4;
-- Echoes and pre-bumps on short rows, then every row once more.
UPDATE tickets SET lock_version = 2 WHERE id IN (1, 2) RETURNING id, priority, lock_version;
UPDATE tickets SET lock_version = 3 WHERE id IN (3, 4) RETURNING id, priority, lock_version;
SELECT sqlstate FROM regress.error_of($$UPDATE tickets SET lock_version = 1 WHERE id = 5$$);
UPDATE tickets SET priority = priority + 1;
SELECT count(*) AS wrong_versions FROM tickets
 WHERE lock_version <> CASE WHEN id <= 4 THEN 4 WHEN id = 2003 THEN 9 ELSE 3 END;
DROP TABLE tickets;
DROP FUNCTION regress.keep_frozen_tickets();
