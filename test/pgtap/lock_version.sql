-- raceguard.lock_version() as an application's own test suite would check it.
BEGIN;
SELECT plan(11);

CREATE TABLE invoices (id integer PRIMARY KEY, total numeric, lock_version integer);
CREATE TRIGGER invoices_lock_version BEFORE INSERT OR UPDATE ON invoices
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO invoices (id, total) VALUES (1, 10), (2, 20);

SELECT results_eq('SELECT lock_version FROM invoices ORDER BY id', ARRAY[1, 1], 'INSERT sets version 1');

SELECT lives_ok($$UPDATE invoices SET total = 11, lock_version = 1 WHERE id = 1$$, 'an echo of the current version is accepted');
SELECT results_eq('SELECT lock_version FROM invoices WHERE id = 1', ARRAY[2], 'the echo stored version + 1');
SELECT lives_ok($$UPDATE invoices SET total = 12, lock_version = 3 WHERE id = 1$$, 'a pre-bumped version is accepted');

SELECT throws_ok(
    $$UPDATE invoices SET total = 99, lock_version = 1 WHERE id = 1$$,
    '40001',
    'stale write to table "invoices": column "lock_version" is 3 in the stored row, the update sent 1',
    'a stale version is a serialization failure');
SELECT results_eq('SELECT total FROM invoices WHERE id = 1', ARRAY[12::numeric], 'the stale write wrote nothing');

-- 23514 with the trigger's name as CONSTRAINT, for ORMs that map it.
CREATE TABLE tickets (id integer PRIMARY KEY, lock_version integer);
CREATE TRIGGER tickets_version BEFORE INSERT OR UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('sqlstate=23514');
INSERT INTO tickets VALUES (1, 5);
SELECT throws_ok($$UPDATE tickets SET lock_version = 9$$, '23514', NULL, 'sqlstate=23514 reports a check violation');
SELECT is(tap_helpers.violated_constraint($$UPDATE tickets SET lock_version = 9$$), 'tickets_version',
          'the constraint name is the trigger''s name');

-- Overflow stops with 22003 instead of wrapping.
CREATE TABLE tiny (id integer PRIMARY KEY, lock_version smallint);
CREATE TRIGGER tiny_lock_version BEFORE UPDATE ON tiny
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO tiny VALUES (1, 32767);
SELECT throws_ok($$UPDATE tiny SET id = 1$$, '22003', NULL, 'a version at its maximum cannot be bumped');
SELECT results_eq('SELECT lock_version FROM tiny', ARRAY[32767::smallint], 'the version did not wrap');

-- strict=true rejects a blind write.
CREATE TABLE strict_invoices (id integer PRIMARY KEY, total numeric, lock_version integer);
CREATE TRIGGER strict_invoices_lock_version BEFORE INSERT OR UPDATE ON strict_invoices
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('strict=true');
INSERT INTO strict_invoices (id, total) VALUES (1, 10);
SELECT throws_ok($$UPDATE strict_invoices SET total = 0$$, '40001', NULL, 'strict=true rejects an UPDATE that does not set the version');

SELECT * FROM finish();
ROLLBACK;
