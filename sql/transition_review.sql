-- raceguard.transition() at the edges of its rules: what a partitioned
-- table's move recognition must not let through, and the types whose
-- equality is not their bytes. The concurrent cases are isolation specs
-- (transition_upsert, transition_*.spec).
CREATE SCHEMA transition_review;
SET search_path = transition_review, public;

-- A row an UPDATE moves between partitions is let into the other partition
-- as that UPDATE only while that very UPDATE moves it. An UPDATE whose move
-- did not happen (a BEFORE DELETE trigger on the source partition returned
-- NULL, or the statement failed and its savepoint was rolled back) leaves
-- nothing behind: a later INSERT of the same row is a new row, whose state
-- must be a start state.
CREATE TABLE orders (region text NOT NULL, id integer NOT NULL, status text NOT NULL,
                     PRIMARY KEY (region, id)) PARTITION BY LIST (region);
CREATE TABLE orders_eu PARTITION OF orders FOR VALUES IN ('eu');
CREATE TABLE orders_us PARTITION OF orders FOR VALUES IN ('us');
CREATE TRIGGER orders_status BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('status', '>cart', 'cart>paid', 'paid>shipped');
INSERT INTO orders VALUES ('eu', 1, 'cart');
CREATE FUNCTION keep_row() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE TRIGGER orders_eu_kept BEFORE DELETE ON orders_eu FOR EACH ROW EXECUTE FUNCTION keep_row();
BEGIN;
UPDATE orders SET region = 'us', status = 'paid' WHERE id = 1;  -- the move is skipped: UPDATE 0
SELECT sqlstate, table_name, detail FROM regress.error_of($$INSERT INTO orders VALUES ('us', 1, 'paid')$$);
SELECT tableoid::regclass AS partition, region, id, status FROM orders ORDER BY id;
ROLLBACK;
DROP TRIGGER orders_eu_kept ON orders_eu;
CREATE FUNCTION refuse_row() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'refused'; END$$;
CREATE TRIGGER orders_eu_refused BEFORE DELETE ON orders_eu FOR EACH ROW EXECUTE FUNCTION refuse_row();
BEGIN;
SELECT message FROM regress.error_of($$UPDATE orders SET region = 'us', status = 'paid' WHERE id = 1$$);
SELECT sqlstate, table_name, detail FROM regress.error_of($$INSERT INTO orders VALUES ('us', 1, 'paid')$$);
SELECT tableoid::regclass AS partition, region, id, status FROM orders ORDER BY id;
ROLLBACK;
DROP TRIGGER orders_eu_refused ON orders_eu;
-- The move itself still passes, and is checked as the UPDATE it is.
UPDATE orders SET region = 'us', status = 'paid' WHERE id = 1;
SELECT tableoid::regclass AS partition, region, id, status FROM orders ORDER BY id;

-- Types whose equality is not their bytes: states compare with the type's
-- = under the column's collation, as a unique index would. Under a
-- case-insensitive ICU collation 'OPEN' is the state 'open' (and '>open',
-- '>OPEN' the same edge, refused); -0 is the float state 0 and NaN its
-- own; 1.000 the numeric state 1.0; '[1,2]' the range state '[1,3)'.
CREATE COLLATION case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE labels (id integer PRIMARY KEY, state text COLLATE case_insensitive, x float8, n numeric, r int4range);
CREATE TRIGGER labels_state BEFORE INSERT OR UPDATE ON labels
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('state', '>open', 'open>done');
CREATE TRIGGER labels_x BEFORE INSERT OR UPDATE ON labels
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('x', '>0', '>NaN', '0>1');
CREATE TRIGGER labels_n BEFORE INSERT OR UPDATE ON labels
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('n', '>1.0', '1.00>2');
CREATE TRIGGER labels_r BEFORE INSERT OR UPDATE ON labels
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('r', '>"[1,3)"', '"[1,2]">empty');
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER labels_twice BEFORE INSERT OR UPDATE ON labels
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('state', '>open', '>OPEN')$$);
INSERT INTO labels VALUES (1, 'OPEN', '-0', 1.000, '[1,2]'), (2, 'Open', 'NaN', 1, '[1,3)');
UPDATE labels SET state = 'open' WHERE id = 1;                       -- the same state: kept
UPDATE labels SET state = 'Done', x = 1, n = 2.000, r = 'empty' WHERE id = 1;
SELECT sqlstate, detail FROM regress.error_of($$UPDATE labels SET x = 1 WHERE id = 2$$);
SELECT sqlstate, detail FROM regress.error_of($$UPDATE labels SET state = 'closed' WHERE id = 2$$);
SELECT id, state, x, n, r FROM labels ORDER BY id;

-- A role that may write the status but not read it learns the rule, not
-- the values: the errors carry no DETAIL with states, as PostgreSQL's own
-- constraint errors do (SELECT on the column shows them again). Nothing is
-- written either way.
CREATE ROLE regress_transition_writer;
CREATE TABLE tasks (id integer PRIMARY KEY, status text NOT NULL);
CREATE TRIGGER tasks_status BEFORE INSERT OR UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('status', '>todo', 'todo>doing', 'doing>done');
INSERT INTO tasks VALUES (1, 'todo');
GRANT USAGE ON SCHEMA transition_review, regress TO regress_transition_writer;
GRANT SELECT (id), INSERT, UPDATE (status) ON tasks TO regress_transition_writer;
SET ROLE regress_transition_writer;
SELECT sqlstate, constraint_name, column_name, detail FROM regress.error_of($$UPDATE tasks SET status = 'done' WHERE id = 1$$);
SELECT sqlstate, constraint_name, column_name, detail FROM regress.error_of($$INSERT INTO tasks VALUES (2, 'done')$$);
UPDATE tasks SET status = 'doing' WHERE id = 1;
RESET ROLE;
GRANT SELECT (status) ON tasks TO regress_transition_writer;
SET ROLE regress_transition_writer;
SELECT sqlstate, detail FROM regress.error_of($$UPDATE tasks SET status = 'todo' WHERE id = 1$$);
RESET ROLE;
SELECT id, status FROM tasks ORDER BY id;
DROP TABLE tasks;
REVOKE ALL ON SCHEMA transition_review, regress FROM regress_transition_writer;
DROP ROLE regress_transition_writer;

-- The states are read the same way in every session, whatever it SET: a
-- date's DateStyle, a timestamptz's TimeZone, an interval's IntervalStyle,
-- an array's array_nulls would otherwise give the same edge other values
-- in a session that changed them (and let a row start in a state never
-- declared). They are read with DateStyle ISO, MDY, TimeZone UTC,
-- IntervalStyle postgres and array_nulls on. Each backend builds a guard's
-- states at its first row: here, after the SETs below.
CREATE TABLE deliveries (id integer PRIMARY KEY, due date, slot timestamptz, lag interval, tags text[]);
CREATE TRIGGER deliveries_due BEFORE INSERT OR UPDATE ON deliveries
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('due', '>01/02/2024', '01/02/2024>03/04/2024');
CREATE TRIGGER deliveries_slot BEFORE INSERT OR UPDATE ON deliveries
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('slot', '>2024-01-01 00:00');
CREATE TRIGGER deliveries_lag BEFORE INSERT OR UPDATE ON deliveries
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('lag', '>"-1 2:00:00"');
CREATE TRIGGER deliveries_tags BEFORE INSERT OR UPDATE ON deliveries
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('tags', '>{NULL}');
BEGIN;
SET LOCAL DateStyle = 'ISO, DMY';
SET LOCAL TimeZone = 'Pacific/Kiritimati';
SET LOCAL IntervalStyle = 'sql_standard';
SET LOCAL array_nulls = off;
-- Refused, each for the one column that differs from the declared states
-- (1 February, midnight at +14, minus a day and two hours, the text NULL).
SELECT d.n, e.sqlstate, e.column_name
FROM (VALUES (1, $$'2024-02-01', '2024-01-01 00:00+00', interval '-1 day' + interval '2 hours', ARRAY[NULL]::text[]$$),
             (2, $$'2024-01-02', '2024-01-01 00:00+14', interval '-1 day' + interval '2 hours', ARRAY[NULL]::text[]$$),
             (3, $$'2024-01-02', '2024-01-01 00:00+00', -(interval '1 day 2 hours'), ARRAY[NULL]::text[]$$),
             (4, $$'2024-01-02', '2024-01-01 00:00+00', interval '-1 day' + interval '2 hours', ARRAY['NULL']$$)) AS d(n, row_values)
CROSS JOIN LATERAL regress.error_of(format('INSERT INTO deliveries VALUES (1, %s)', d.row_values)) e
ORDER BY d.n;
-- Accepted: the states as declared.
INSERT INTO deliveries VALUES (1, '2024-01-02', '2024-01-01 00:00+00', interval '-1 day' + interval '2 hours', ARRAY[NULL]::text[]);
UPDATE deliveries SET due = '2024-03-04' WHERE id = 1;
-- The session's own settings are as it SET them.
SELECT current_setting('DateStyle') AS datestyle, current_setting('TimeZone') AS timezone,
       current_setting('IntervalStyle') AS intervalstyle, current_setting('array_nulls') AS array_nulls;
COMMIT;
SELECT id, due, slot AT TIME ZONE 'UTC' AS slot_utc, lag, tags FROM deliveries;
