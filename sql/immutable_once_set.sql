-- raceguard.immutable_once_set(): every rule of SPEC §2 on one session.
CREATE TABLE conversations (
    id integer PRIMARY KEY,
    topic text,
    texter_id integer,
    counselor_id integer
);
CREATE TRIGGER conversation_texter_assignment_constraint
    BEFORE UPDATE ON conversations
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('texter_id');
INSERT INTO conversations (id, topic) VALUES (1, 'billing'), (2, 'shipping'), (3, 'returns');

-- NULL -> value is always allowed; keeping the value is allowed.
UPDATE conversations SET texter_id = 17 WHERE id = 1;
UPDATE conversations SET texter_id = 17, topic = 'billing!' WHERE id = 1;
UPDATE conversations SET topic = 'billing?' WHERE id = 1;
-- Changing it is a check violation named after the trigger; nothing is written.
SELECT * FROM regress.error_of($$UPDATE conversations SET texter_id = 42 WHERE id = 1$$) \gx
-- Unsetting it is too, without allow_unset.
SELECT * FROM regress.error_of($$UPDATE conversations SET texter_id = NULL WHERE id = 1$$) \gx
SELECT * FROM conversations ORDER BY id;
-- The error as the client sees it:
UPDATE conversations SET texter_id = 42 WHERE id = 1;
-- The naive "claim" that checks nothing cannot steal: one statement claiming
-- several rows fails as a whole when one of them is taken.
SELECT sqlstate FROM regress.error_of($$UPDATE conversations SET texter_id = 42$$);
UPDATE conversations SET texter_id = 42 WHERE texter_id IS NULL;
SELECT * FROM conversations ORDER BY id;

-- INSERT and DELETE are not restricted, even when the trigger lists them.
CREATE TRIGGER conversation_all_events BEFORE INSERT OR UPDATE OR DELETE ON conversations
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('counselor_id');
INSERT INTO conversations VALUES (4, 'new', 5, 6);
DELETE FROM conversations WHERE id = 4;
UPDATE conversations SET counselor_id = 1 WHERE id = 3;
SELECT sqlstate, column_name, constraint_name FROM regress.error_of($$UPDATE conversations SET counselor_id = 2 WHERE id = 3$$);
DROP TRIGGER conversation_all_events ON conversations;

-- Several columns in one trigger, each checked on its own.
CREATE TABLE tickets (id integer PRIMARY KEY, owner text, team text, state text);
CREATE TRIGGER tickets_write_once BEFORE UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner', 'team');
INSERT INTO tickets VALUES (1, NULL, NULL, 'open');
UPDATE tickets SET owner = 'ann' WHERE id = 1;
UPDATE tickets SET team = 'red', state = 'working' WHERE id = 1;
SELECT sqlstate, message, column_name FROM regress.error_of($$UPDATE tickets SET team = 'blue' WHERE id = 1$$);
SELECT sqlstate, message, column_name FROM regress.error_of($$UPDATE tickets SET owner = 'bob' WHERE id = 1$$);
UPDATE tickets SET state = 'done', owner = 'ann', team = 'red' WHERE id = 1;
SELECT * FROM tickets;

-- allow_unset=true: a set column may go back to NULL (a release), and from
-- NULL be set again; changing it directly is still refused.
CREATE TABLE claims (id integer PRIMARY KEY, agent_id integer);
CREATE TRIGGER claims_agent BEFORE UPDATE ON claims
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('agent_id', 'allow_unset=true');
INSERT INTO claims VALUES (1, 7);
SELECT sqlstate, message FROM regress.error_of($$UPDATE claims SET agent_id = 8$$);
UPDATE claims SET agent_id = NULL RETURNING *;
UPDATE claims SET agent_id = 8 RETURNING *;
-- Every spelling of a boolean, and a bad value (22023).
DROP TRIGGER claims_agent ON claims;
CREATE TRIGGER claims_agent BEFORE UPDATE ON claims
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('allow_unset=off', 'agent_id');
SELECT sqlstate FROM regress.error_of($$UPDATE claims SET agent_id = NULL$$);
DROP TRIGGER claims_agent ON claims;
CREATE TRIGGER claims_agent BEFORE UPDATE ON claims
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('agent_id', 'allow_unset=yes');
UPDATE claims SET agent_id = NULL RETURNING *;
DROP TRIGGER claims_agent ON claims;
CREATE TRIGGER claims_agent BEFORE UPDATE ON claims
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('agent_id', 'allow_unset=sometimes');
SELECT * FROM regress.error_of($$UPDATE claims SET agent_id = 9$$) \gx
SELECT * FROM claims;
DROP TRIGGER claims_agent ON claims;

-- "Unchanged" means the same stored image: numeric 1.0 -> 1.00, float -0 -> 0
-- and a changed array lower bound are changes; json (which has no =) works,
-- and an unchanged TOASTed value passes without being compared byte by byte.
CREATE TABLE images (id integer PRIMARY KEY, amount numeric, ratio float8, tags int[], doc json, big text);
CREATE TRIGGER images_write_once BEFORE UPDATE ON images
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('amount', 'ratio', 'tags', 'doc', 'big');
ALTER TABLE images ALTER COLUMN big SET STORAGE EXTERNAL;  -- out of line, uncompressed
INSERT INTO images VALUES (1, 1.0, '-0', '{1,2}', '{"a": 1}', repeat(md5('x'), 10000));
SELECT sqlstate, column_name, detail FROM regress.error_of($$UPDATE images SET amount = 1.00$$);
SELECT sqlstate, column_name, detail FROM regress.error_of($$UPDATE images SET ratio = 0.0$$);
SELECT sqlstate, column_name, detail FROM regress.error_of($$UPDATE images SET tags = '[0:1]={1,2}'$$);
SELECT sqlstate, column_name, detail FROM regress.error_of($$UPDATE images SET doc = '{"a":1}'$$);
SELECT sqlstate, column_name FROM regress.error_of($$UPDATE images SET big = big || '!'$$);
UPDATE images SET amount = 1.0, ratio = '-0', tags = '{1,2}', doc = '{"a": 1}', big = repeat(md5('x'), 10000);
UPDATE images SET id = 1;  -- the TOAST pointer is carried over unchanged
-- 320000 bytes uncompressed cannot be inline: it is in the TOAST table.
SELECT pg_column_size(big) = 320000 AS big_is_out_of_line FROM images;
SELECT id, amount, ratio, tags, doc, length(big) FROM images;

-- Values appear in DETAIL only for users who may SELECT the column.
CREATE ROLE regress_once_writer;
GRANT USAGE ON SCHEMA regress TO regress_once_writer;
GRANT UPDATE ON conversations TO regress_once_writer;
SET ROLE regress_once_writer;
SELECT sqlstate, message, detail FROM regress.error_of($$UPDATE conversations SET texter_id = 1$$);
RESET ROLE;
GRANT SELECT (texter_id) ON conversations TO regress_once_writer;
SET ROLE regress_once_writer;
SELECT sqlstate, detail FROM regress.error_of($$UPDATE conversations SET texter_id = 1$$);
RESET ROLE;
REVOKE ALL ON conversations FROM regress_once_writer;
REVOKE ALL ON SCHEMA regress FROM regress_once_writer;
DROP ROLE regress_once_writer;

-- AFTER: sees the final row, after every BEFORE trigger has run. Here a
-- BEFORE trigger rewrites the value; only the AFTER guard sees it.
CREATE TABLE assignments (id integer PRIMARY KEY, owner text);
CREATE FUNCTION regress.shout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.owner := upper(NEW.owner); RETURN NEW; END $$;
CREATE TRIGGER assignments_shout BEFORE UPDATE ON assignments
    FOR EACH ROW EXECUTE FUNCTION regress.shout();
CREATE TRIGGER assignments_owner AFTER UPDATE ON assignments
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner');
INSERT INTO assignments VALUES (1, 'ANN');
UPDATE assignments SET owner = 'ann';
SELECT sqlstate, detail, constraint_name FROM regress.error_of($$UPDATE assignments SET owner = 'bob'$$);
SELECT * FROM assignments;

-- A deferred constraint trigger checks each UPDATE at COMMIT, or when the
-- constraint is set IMMEDIATE: the UPDATE itself succeeds, the transaction
-- does not.
CREATE TABLE handovers (id integer PRIMARY KEY, owner text);
CREATE CONSTRAINT TRIGGER handovers_owner AFTER UPDATE ON handovers
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner');
INSERT INTO handovers VALUES (1, 'ann');
BEGIN;
UPDATE handovers SET owner = 'bob';
SELECT owner FROM handovers;
COMMIT;
SELECT * FROM handovers;
BEGIN;
UPDATE handovers SET owner = 'bob';
SET CONSTRAINTS handovers_owner IMMEDIATE;
ROLLBACK;
SELECT * FROM handovers;

-- Bad definitions (each at its first row; nothing written).
CREATE TABLE guarded (id integer PRIMARY KEY, owner text);
INSERT INTO guarded VALUES (1, 'ann');
CREATE TRIGGER guarded_no_column BEFORE UPDATE ON guarded
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set();
SELECT * FROM regress.error_of($$UPDATE guarded SET owner = 'bob'$$) \gx
DROP TRIGGER guarded_no_column ON guarded;
CREATE TRIGGER guarded_only_option BEFORE UPDATE ON guarded
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('allow_unset=true');
SELECT sqlstate, message FROM regress.error_of($$UPDATE guarded SET owner = 'bob'$$);
DROP TRIGGER guarded_only_option ON guarded;
CREATE TRIGGER guarded_missing BEFORE UPDATE ON guarded
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner', 'ownr');
SELECT sqlstate, message FROM regress.error_of($$UPDATE guarded SET owner = 'bob'$$);
DROP TRIGGER guarded_missing ON guarded;
CREATE TRIGGER guarded_system BEFORE UPDATE ON guarded
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('ctid');
SELECT sqlstate, message FROM regress.error_of($$UPDATE guarded SET owner = 'bob'$$);
DROP TRIGGER guarded_system ON guarded;
CREATE TRIGGER guarded_twice BEFORE UPDATE ON guarded
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner', 'owner');
SELECT sqlstate, message FROM regress.error_of($$UPDATE guarded SET owner = 'bob'$$);
DROP TRIGGER guarded_twice ON guarded;
CREATE TRIGGER guarded_unknown BEFORE UPDATE ON guarded
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner', 'allow_null=true');
SELECT sqlstate, message FROM regress.error_of($$UPDATE guarded SET owner = 'bob'$$);
DROP TRIGGER guarded_unknown ON guarded;
CREATE TRIGGER guarded_statement BEFORE UPDATE ON guarded
    FOR EACH STATEMENT EXECUTE FUNCTION raceguard.immutable_once_set('owner');
SELECT sqlstate, message FROM regress.error_of($$UPDATE guarded SET owner = 'bob'$$);
DROP TRIGGER guarded_statement ON guarded;
-- A dropped column.
ALTER TABLE guarded ADD COLUMN reviewer text;
CREATE TRIGGER guarded_reviewer BEFORE UPDATE ON guarded
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('reviewer');
UPDATE guarded SET reviewer = 'cy';
ALTER TABLE guarded DROP COLUMN reviewer;
SELECT sqlstate, message FROM regress.error_of($$UPDATE guarded SET owner = 'bob'$$);
DROP TRIGGER guarded_reviewer ON guarded;
CREATE VIEW guarded_view AS SELECT * FROM guarded;
CREATE TRIGGER guarded_view_once INSTEAD OF UPDATE ON guarded_view
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner');
SELECT sqlstate, message FROM regress.error_of($$UPDATE guarded_view SET owner = 'bob'$$);
SELECT * FROM guarded;
