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
