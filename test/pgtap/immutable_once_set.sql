-- raceguard.immutable_once_set() as an application's own test suite would check it.
BEGIN;
SELECT plan(9);

SELECT has_function('raceguard', 'immutable_once_set', ARRAY[]::name[]);
SELECT function_returns('raceguard', 'immutable_once_set', ARRAY[]::name[], 'trigger');

CREATE TABLE conversations (id integer PRIMARY KEY, texter_id integer);
CREATE TRIGGER conversation_texter_assignment_constraint BEFORE UPDATE ON conversations
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('texter_id', 'allow_unset=true');
INSERT INTO conversations VALUES (1, NULL);

SELECT lives_ok($$UPDATE conversations SET texter_id = 7 WHERE id = 1$$, 'an unassigned conversation can be claimed');
SELECT throws_ok(
    $$UPDATE conversations SET texter_id = 8 WHERE id = 1$$,
    '23514',
    'cannot change column "texter_id" of table "conversations": it is already set, and trigger "conversation_texter_assignment_constraint" makes it write-once',
    'a claimed conversation cannot be taken over');
SELECT results_eq('SELECT texter_id FROM conversations', ARRAY[7], 'the takeover wrote nothing');

-- The constraint name reaches the client, as an ORM reads it (Ecto's
-- check_constraint, Rails' error cause).
SELECT is(tap_helpers.violated_constraint($$UPDATE conversations SET texter_id = 8 WHERE id = 1$$),
          'conversation_texter_assignment_constraint', 'CONSTRAINT_NAME is the trigger''s name');

SELECT lives_ok($$UPDATE conversations SET texter_id = NULL WHERE id = 1$$, 'allow_unset=true lets the owner release it');
SELECT lives_ok($$UPDATE conversations SET texter_id = 8 WHERE id = 1$$, 'a released conversation can be claimed again');

CREATE TABLE bad (id integer, owner text);
SELECT throws_ok($$CREATE TRIGGER bad_guard BEFORE UPDATE ON bad
                   FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('ownr')$$, '42703',
    'trigger "bad_guard" on table "bad": column "ownr" does not exist',
    'a misspelt column fails the migration, named in the error');

SELECT * FROM finish();
ROLLBACK;
