-- The guards as a team's own migration tests would check them, through the
-- view raceguard.guards. The last test is the README's example: every table
-- with a lock_version column has its guard.
BEGIN;
SELECT plan(6);

SELECT has_view('raceguard', 'guards', 'the view raceguard.guards exists');
SELECT columns_are('raceguard', 'guards',
    ARRAY['table_name', 'trigger_name', 'guard', 'columns', 'options', 'timing', 'events', 'enabled', 'clone_of'],
    'raceguard.guards has the documented columns');
SELECT has_function('raceguard', 'check_guards', ARRAY[]::name[]);

CREATE SCHEMA app;
CREATE TABLE app.orders (id integer PRIMARY KEY, customer_id integer, lock_version integer);
CREATE TABLE app.conversations (id integer PRIMARY KEY, texter_id integer, lock_version integer);
CREATE TRIGGER orders_lock_version BEFORE INSERT OR UPDATE ON app.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
CREATE TRIGGER conversations_lock_version BEFORE INSERT OR UPDATE ON app.conversations
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('strict=true');
CREATE TRIGGER conversation_texter_assignment_constraint BEFORE UPDATE ON app.conversations
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('texter_id');

SELECT results_eq(
    $$SELECT table_name::text COLLATE "C", trigger_name::text COLLATE "C", guard COLLATE "C",
             columns::text[] COLLATE "C", options, timing COLLATE "C", events COLLATE "C", enabled
        FROM raceguard.guards WHERE table_name::text LIKE 'app.%' ORDER BY 1, 2$$,
    $$VALUES ('app.conversations' COLLATE "C", 'conversation_texter_assignment_constraint' COLLATE "C",
              'immutable_once_set' COLLATE "C", ARRAY['texter_id'] COLLATE "C", '{"allow_unset": false}'::jsonb,
              'BEFORE' COLLATE "C", ARRAY['UPDATE'] COLLATE "C", true),
             ('app.conversations', 'conversations_lock_version', 'lock_version',
              ARRAY['lock_version'], '{"strict": true, "sqlstate": "40001"}'::jsonb, 'BEFORE', ARRAY['INSERT', 'UPDATE'], true),
             ('app.orders', 'orders_lock_version', 'lock_version',
              ARRAY['lock_version'], '{"strict": false, "sqlstate": "40001"}'::jsonb, 'BEFORE', ARRAY['INSERT', 'UPDATE'], true)$$,
    'the schema''s guards are the ones the migrations meant');

SELECT is_empty(
    $$SELECT * FROM raceguard.check_guards() WHERE table_name::text LIKE 'app.%'$$,
    'no guard in the schema has a problem');

-- The README's example: every table with a lock_version column has an
-- enabled lock_version guard on it.
SELECT is_empty($$
    SELECT c.oid::regclass
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'lock_version' AND NOT a.attisdropped
     WHERE n.nspname = 'app' AND c.relkind IN ('r', 'p')
       AND NOT EXISTS (SELECT 1 FROM raceguard.guards g
                        WHERE g.table_name = c.oid::regclass AND g.guard = 'lock_version'
                          AND 'lock_version' = ANY (g.columns) AND g.enabled)
$$, 'every table with a lock_version column has its guard');

SELECT * FROM finish();
ROLLBACK;
