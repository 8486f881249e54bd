-- raceguard.transition(): a status that moves only along declared edges.
-- Every bad definition is refused at CREATE TRIGGER (the migration-time
-- check) with the SQLSTATE its first row would raise, and nothing is made;
-- each column type with an equality works (enum, text, integer, boolean, a
-- domain); NULL is a state only where declared; several guards share a
-- table; an ORM's full-row save that keeps the status passes. The races are
-- in test/isolation/specs/transition_*.spec.
CREATE SCHEMA transition_test;
SET search_path = transition_test, public;
CREATE TYPE ticket_status AS ENUM ('open', 'assigned', 'closed');
CREATE TABLE tickets (id integer PRIMARY KEY, status ticket_status, agent text,
                      shape point, payload json, doubled integer GENERATED ALWAYS AS (id * 2) STORED);

-- Bad definitions: each CREATE TRIGGER fails, naming the trigger, the table
-- and the argument at fault.
SELECT * FROM regress.error_of($$CREATE TRIGGER tickets_status BEFORE INSERT OR UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('status', '>open', 'open>asigned')$$) \gx
SELECT d.arguments, e.sqlstate, e.message
FROM (VALUES (1, ''),
             (2, $$'status'$$),
             (3, $$'statsu', '>open'$$),
             (4, $$'Status', '>open'$$),
             (5, $$'xmin', '>open'$$),
             (6, $$'doubled', '>2'$$),
             (7, $$'shape', '>(0,0)'$$),
             (8, $$'payload', '>{}'$$),
             (9, $$'status', 'open'$$),
             (10, $$'status', 'open>assigned>closed'$$),
             (11, $$'status', 'open>'$$),
             (12, $$'status', '>'$$),
             (13, $$'status', ''$$),
             (14, $$'status', '>opne'$$),
             (15, $$'status', 'open>Assigned'$$),
             (16, $$'status', 'open>assigned', 'open>assigned'$$),
             (17, $$'status', 'open>assigned', '"open">"assigned"'$$),
             (18, $$'status', '>open', '>open'$$),
             (19, $$'status', '"open>assigned'$$),
             (20, $$'status', '"open"x>assigned'$$),
             (21, $$'status', 'op"en>assigned'$$),
             (22, $$'status', 'open >assigned'$$),
             (23, $$'status', 'mode=fast', '>open'$$),
             (24, $$'status', '>open', 'strict=true'$$),
             (25, $$'status', 'op"e"n>assigned'$$)) AS d(n, arguments)
CROSS JOIN LATERAL regress.error_of(format(
    'CREATE TRIGGER tickets_status BEFORE INSERT OR UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION raceguard.transition(%s)',
    d.arguments)) e
ORDER BY d.n;
-- How it is fired (39P01): BEFORE, FOR EACH ROW, on INSERT and every UPDATE
-- (UPDATE OF status would miss a status another trigger changes).
SELECT d.how, e.sqlstate, e.message
FROM (VALUES (1, 'AFTER INSERT OR UPDATE', 'FOR EACH ROW'),
             (2, 'BEFORE INSERT OR UPDATE', 'FOR EACH STATEMENT'),
             (3, 'BEFORE INSERT OR UPDATE OR DELETE', 'FOR EACH ROW'),
             (4, 'BEFORE UPDATE', 'FOR EACH ROW'),
             (5, 'BEFORE INSERT', 'FOR EACH ROW'),
             (6, 'BEFORE INSERT OR UPDATE OF status', 'FOR EACH ROW')) AS d(n, how, level)
CROSS JOIN LATERAL regress.error_of(format(
    'CREATE TRIGGER tickets_status %s ON tickets %s EXECUTE FUNCTION raceguard.transition(''status'', ''>open'')',
    d.how, d.level)) e
ORDER BY d.n;
SELECT count(*) AS triggers_made FROM pg_trigger WHERE tgrelid = 'tickets'::regclass;

-- An enum: rows start open; open -> assigned -> closed, and back from
-- assigned to open.
CREATE TRIGGER tickets_status BEFORE INSERT OR UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('status', '>open', 'open>assigned', 'assigned>closed',
                                                       'assigned>open');
INSERT INTO tickets (id, status) VALUES (1, 'open'), (2, 'open'), (3, 'open');
SELECT * FROM regress.error_of($$INSERT INTO tickets (id, status) VALUES (4, 'closed')$$) \gx
SELECT sqlstate, message, detail FROM regress.error_of($$INSERT INTO tickets (id) VALUES (4)$$);
UPDATE tickets SET status = 'assigned', agent = 'ann' WHERE id = 1;
SELECT * FROM regress.error_of($$UPDATE tickets SET status = 'closed' WHERE id = 2$$) \gx
-- One bad row refuses the whole statement: nothing is written.
SELECT sqlstate, detail FROM regress.error_of($$UPDATE tickets SET status = 'closed'$$);
UPDATE tickets SET status = 'closed' WHERE id = 1;
SELECT sqlstate, detail FROM regress.error_of($$UPDATE tickets SET status = 'open' WHERE id = 1$$);
-- A write that keeps the status is not a transition: an ORM's full-row save
-- (every column in the SET list), and an UPDATE of other columns.
UPDATE tickets SET id = id, status = 'closed', agent = 'ann', shape = NULL, payload = NULL WHERE id = 1;
UPDATE tickets SET status = status, agent = 'bob' WHERE id IN (2, 3);
UPDATE tickets SET agent = 'cy' WHERE id = 3;
-- A bulk move along a declared edge, and back.
UPDATE tickets SET status = 'assigned' WHERE status = 'open';
UPDATE tickets SET status = 'open' WHERE id = 3;
SELECT id, status, agent FROM tickets ORDER BY id;
-- INSERT ... ON CONFLICT: the proposed row must start in a declared state,
-- and the update it turns into must follow an edge.
INSERT INTO tickets (id, status) VALUES (3, 'open') ON CONFLICT (id) DO UPDATE SET status = 'assigned';
SELECT sqlstate, detail FROM regress.error_of($$INSERT INTO tickets (id, status) VALUES (3, 'open')
                                                ON CONFLICT (id) DO UPDATE SET status = 'open'$$);
SELECT sqlstate, detail FROM regress.error_of($$INSERT INTO tickets (id, status) VALUES (3, 'closed')
                                                ON CONFLICT (id) DO UPDATE SET status = 'closed'$$);
SELECT id, status FROM tickets ORDER BY id;
SELECT guard, columns, options, timing, events FROM raceguard.guards WHERE table_name = 'tickets'::regclass;

-- Text, with states holding >, = and ", and NULL: an unquoted NULL (any
-- case) is the NULL state, "NULL" the four letters.
CREATE TABLE notes (id integer PRIMARY KEY, state text);
CREATE TRIGGER notes_state BEFORE INSERT OR UPDATE ON notes
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('state', '>null', 'NULL>"a>b"', '"a>b">x=y', 'x=y>"NULL"',
                                                       '"NULL">"say ""hi"""', '"say ""hi""">NULL');
SELECT options FROM raceguard.guards WHERE table_name = 'notes'::regclass;
INSERT INTO notes VALUES (1, NULL);
SELECT sqlstate, detail FROM regress.error_of($$INSERT INTO notes VALUES (2, 'a>b')$$);
UPDATE notes SET state = 'a>b';
UPDATE notes SET state = 'x=y';
UPDATE notes SET state = 'NULL';
SELECT sqlstate, detail FROM regress.error_of($$UPDATE notes SET state = NULL$$);
UPDATE notes SET state = 'say "hi"';
UPDATE notes SET state = NULL;
SELECT id, state, state IS NULL AS is_null FROM notes;
-- Text compares with the column's collation and =: 'A>B' is another state.
SELECT sqlstate, detail FROM regress.error_of($$UPDATE notes SET state = 'A>B'$$);

-- Integer and boolean: states in their text forms, compared as values
-- ('01' is 1, 'f' is false: a repeated edge).
CREATE TABLE steps (id integer PRIMARY KEY, step integer NOT NULL, done boolean NOT NULL);
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER steps_step BEFORE INSERT OR UPDATE ON steps
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('step', '>0', '0>1', '00>01')$$);
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER steps_step BEFORE INSERT OR UPDATE ON steps
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('step', '>0', '0>one')$$);
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER steps_done BEFORE INSERT OR UPDATE ON steps
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('done', '>false', 'false>true', 'f>t')$$);
CREATE TRIGGER steps_step BEFORE INSERT OR UPDATE ON steps
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('step', '>0', '0>1', '1>2', '+2>0');
-- A second guard on the same table, on another column.
CREATE TRIGGER steps_done BEFORE INSERT OR UPDATE ON steps
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('done', '>false', 'false>true');
INSERT INTO steps SELECT g, 0, false FROM generate_series(1, 4) g;
UPDATE steps SET step = step + 1;
UPDATE steps SET step = 2, done = true WHERE id <= 2;
UPDATE steps SET step = 0 WHERE id = 1;
SELECT sqlstate, constraint_name, detail FROM regress.error_of($$UPDATE steps SET step = 0 WHERE id = 3$$);
SELECT sqlstate, constraint_name, detail FROM regress.error_of($$UPDATE steps SET done = false WHERE id = 2$$);
SELECT sqlstate, constraint_name, detail FROM regress.error_of($$INSERT INTO steps VALUES (5, 1, false)$$);
SELECT sqlstate, constraint_name, detail FROM regress.error_of($$INSERT INTO steps VALUES (5, 0, true)$$);
SELECT * FROM steps ORDER BY id;

-- A domain: states go through its input, constraints included (a state the
-- domain's CHECK refuses fails with the domain's SQLSTATE, 23514).
CREATE DOMAIN level AS integer CHECK (VALUE BETWEEN 1 AND 5);
CREATE TABLE levels (id integer PRIMARY KEY, level level);
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER levels_level BEFORE INSERT OR UPDATE ON levels
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('level', '>1', '1>9')$$);
CREATE TRIGGER levels_level BEFORE INSERT OR UPDATE ON levels
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('level', '>1', '1>2', '2>3');
INSERT INTO levels VALUES (1, 1);
UPDATE levels SET level = 2;
SELECT sqlstate, detail FROM regress.error_of($$UPDATE levels SET level = 1$$);
SELECT sqlstate, detail FROM regress.error_of($$UPDATE levels SET level = NULL$$);
SELECT * FROM levels;

-- A partitioned table: the guard on the parent is cloned onto each
-- partition. An UPDATE that moves a row to another partition is checked
-- once, as the UPDATE it is (PostgreSQL deletes it from its partition and
-- inserts it into the other: the INSERT of that same row into another
-- partition is not taken for a new row's start). Any other INSERT is one.
CREATE TABLE orders (region text NOT NULL, id integer NOT NULL, status text NOT NULL, note text,
                     PRIMARY KEY (region, id)) PARTITION BY LIST (region);
CREATE TABLE orders_eu PARTITION OF orders FOR VALUES IN ('eu');
CREATE TABLE orders_us (note text, id integer NOT NULL, status text NOT NULL, region text NOT NULL, dropped integer);
ALTER TABLE orders_us DROP COLUMN dropped;  -- another column order than the parent's
ALTER TABLE orders ATTACH PARTITION orders_us FOR VALUES IN ('us');
CREATE TRIGGER orders_status BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('status', '>cart', 'cart>paid', 'paid>shipped');
INSERT INTO orders VALUES ('eu', 1, 'cart', NULL), ('eu', 2, 'cart', NULL), ('eu', 3, 'cart', NULL);
UPDATE orders SET region = 'us', status = 'paid' WHERE id = 1;          -- moved along cart>paid
UPDATE orders SET status = 'paid' WHERE id = 2;
UPDATE orders SET region = 'us', note = 'moved' WHERE id = 2;           -- moved, status kept
SELECT sqlstate, table_name, detail FROM regress.error_of($$UPDATE orders SET region = 'us', status = 'shipped' WHERE id = 3$$);
UPDATE orders SET region = 'eu', status = 'shipped' WHERE id = 1;      -- and back, along paid>shipped
-- An INSERT in the same command as an UPDATE that moved no row is a new
-- row, and so is an INSERT of a row like one moved before.
SELECT sqlstate, table_name, detail FROM regress.error_of($$
    WITH u AS (UPDATE orders SET note = 'kept' WHERE id = 2 RETURNING *)
    INSERT INTO orders SELECT 'eu', 4, status, note FROM u$$);
SELECT sqlstate, table_name, detail FROM regress.error_of($$INSERT INTO orders VALUES ('us', 5, 'paid', 'moved')$$);
SELECT tableoid::regclass AS partition, region, id, status, note FROM orders ORDER BY id;

-- The checks of raceguard.check_guards(): a declared state no edge from a
-- start state reaches, no start state at all, and a table without a primary
-- key or replica identity index (the race's lookup cannot find the version
-- a statement read there: see docs/transition.md).
CREATE TABLE loose (status text);
CREATE TRIGGER loose_status BEFORE INSERT OR UPDATE ON loose
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('status', '>new', 'new>done', 'lost>done', 'done>archived');
CREATE TRIGGER loose_no_start BEFORE INSERT OR UPDATE ON loose
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('status', 'new>done');
-- A BEFORE trigger that fires after a guard (names sort later) could change
-- the status after the guard checked it; raceguard's own guards do not.
CREATE FUNCTION loose_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER loose_touch BEFORE UPDATE ON loose FOR EACH ROW EXECUTE FUNCTION loose_touch();
-- One that fires before it (names sort earlier) could set the status of an
-- UPDATE that does not name the column, which hides a duplicate transition
-- from the guard: said too. (BEFORE INSERT only: nothing to say.)
CREATE TRIGGER loose_assign BEFORE UPDATE ON loose FOR EACH ROW EXECUTE FUNCTION loose_touch();
CREATE TRIGGER loose_filled BEFORE INSERT ON loose FOR EACH ROW EXECUTE FUNCTION loose_touch();
SELECT trigger_name, problem FROM raceguard.check_guards() WHERE table_name = 'loose'::regclass;
SELECT count(*) AS problems FROM raceguard.check_guards()
WHERE table_name IN ('tickets'::regclass, 'notes'::regclass, 'steps'::regclass, 'levels'::regclass);

-- ALTER TABLE: dropping or retyping the column to one the states do not
-- parse in is refused; retyping to text, where they do, is allowed.
SELECT sqlstate, message, hint FROM regress.error_of($$ALTER TABLE tickets DROP COLUMN status$$);
SELECT sqlstate, message FROM regress.error_of($$ALTER TABLE steps ALTER COLUMN step TYPE boolean USING step > 0$$);
ALTER TABLE tickets ALTER COLUMN status TYPE text;
SELECT sqlstate, detail FROM regress.error_of($$UPDATE tickets SET status = 'closed' WHERE id = 2$$);
SELECT sqlstate, detail FROM regress.error_of($$UPDATE tickets SET status = 'closed' WHERE id = 3$$);
SELECT id, status FROM tickets ORDER BY id;

RESET search_path;
DROP SCHEMA transition_test CASCADE;
