-- raceguard 1.2 -> 1.3 update script: only comments change. Every member of
-- the extension is described in the database, man-page style: its signature
-- as it is called or attached, one line of purpose, and its documentation
-- page; internal helpers say so and name what uses them.
--
-- There is no full raceguard--1.3.sql: CREATE EXTENSION raceguard (1.3)
-- runs raceguard--1.2.sql and then this script. The comments are ASCII, as
-- the scripts are: the control file names no encoding, so they are read in
-- the database's encoding.

\echo Use "ALTER EXTENSION raceguard UPDATE TO '1.3'" to load this file. \quit

-- The guards (trigger functions).

COMMENT ON FUNCTION raceguard.lock_version() IS
    'raceguard.lock_version() RETURNS trigger, attached as CREATE TRIGGER name BEFORE INSERT OR UPDATE ON table FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version([''column''] [, ''strict=true''] [, ''sqlstate=23514'']) -- optimistic locking: INSERT sets a NULL version (column lock_version by default) to 1, each accepted UPDATE adds one, a write carrying a stale version fails with 40001 (23514 with sqlstate=23514), and with strict=true so does an UPDATE that does not set the version; see docs/lock_version.md';

COMMENT ON FUNCTION raceguard.immutable_once_set() IS
    'raceguard.immutable_once_set() RETURNS trigger, attached as CREATE [CONSTRAINT] TRIGGER name {BEFORE | AFTER} UPDATE ON table FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set(''column'' [, ''column'' ...] [, ''allow_unset=true'']) -- write-once columns: once a listed column holds a value, an UPDATE that changes it fails with 23514 (with allow_unset=true it may go back to NULL); see docs/immutable_once_set.md';

COMMENT ON FUNCTION raceguard.running_balance() IS
    'raceguard.running_balance() RETURNS trigger, attached as CREATE TRIGGER name BEFORE INSERT OR UPDATE OR DELETE ON ledger FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance(''amount'', ''balance'' [, ''group'' ...], ''seq=column'' [, ''min_balance=n''] [, ''initial=n'']) -- serialized running balances: each appended row gets its group''s previous balance plus its amount and the next gapless seq (a btree index on the group columns and seq is required); an UPDATE that changes the amount, balance, seq or a group column, and a DELETE, fail with 23514; see docs/running_balance.md';

COMMENT ON FUNCTION raceguard.verify_running_balance(regclass) IS
    'raceguard.verify_running_balance(ledger regclass) RETURNS TABLE (group_key text, seq bigint, problem text, expected numeric, stored numeric) -- checks a running_balance ledger: one row per entry whose balance is not the previous balance (or initial) plus its amount, and per seq that is not the previous seq + 1; no rows means consistent; see docs/running_balance.md';

-- Claiming work.

COMMENT ON FUNCTION raceguard.claim(anyelement, text, integer, text) IS
    'raceguard.claim(target anyelement, filter text DEFAULT ''true'', batch integer DEFAULT 1, order_by text DEFAULT NULL) RETURNS SETOF anyelement -- locks and returns up to batch rows of target''s table matching filter, in order_by order, skipping rows other transactions hold (FOR UPDATE SKIP LOCKED); the locks last until the transaction ends; see docs/claims.md';

COMMENT ON FUNCTION raceguard.claim_lease(anyelement, text, integer, interval, text, name, name, name, integer) IS
    'raceguard.claim_lease(target anyelement, filter text, batch integer, lease interval, order_by text DEFAULT NULL, token_column name DEFAULT ''claim_token'', until_column name DEFAULT ''claimed_until'', attempts_column name DEFAULT NULL, max_attempts integer DEFAULT NULL) RETURNS SETOF anyelement -- leases up to batch matching rows that are not leased or locked (nor at max_attempts): writes a new token, clock_timestamp() + lease and one more attempt, returns the rows as written, in order_by order; see docs/claims.md';

COMMENT ON FUNCTION raceguard.release_lease(anyelement, bigint, name, name, interval) IS
    'raceguard.release_lease(target anyelement, token bigint, token_column name DEFAULT ''claim_token'', until_column name DEFAULT ''claimed_until'', retry_after interval DEFAULT NULL) RETURNS bigint -- clears the lease of the rows that still hold token, claimable again at once or from clock_timestamp() + retry_after; returns how many; see docs/claims.md';

COMMENT ON FUNCTION raceguard.extend_lease(anyelement, bigint, interval, name, name) IS
    'raceguard.extend_lease(target anyelement, token bigint, lease interval, token_column name DEFAULT ''claim_token'', until_column name DEFAULT ''claimed_until'') RETURNS bigint -- sets the expiry of the rows that still hold token to clock_timestamp() + lease; returns how many; see docs/claims.md';

COMMENT ON SEQUENCE raceguard.lease_token_seq IS
    'raceguard.lease_token_seq (SEQUENCE AS bigint) -- internal: the lease tokens, used by claim_lease(), which takes one per call, so a token is unique in the database; dumped with the data, so a restored database never hands a token out again; see docs/claims.md';

-- Seeing and checking the guards.

COMMENT ON VIEW raceguard.guards IS
    'raceguard.guards (table_name regclass, trigger_name name, guard text, columns name[], options jsonb, timing text, events text[], enabled boolean, clone_of regclass) -- every raceguard trigger in the database with its columns and every option''s effective value, partition clones included (clone_of names the table of the trigger they were cloned from); see docs/guards.md';

COMMENT ON FUNCTION raceguard.check_guards() IS
    'raceguard.check_guards() RETURNS TABLE (table_name regclass, trigger_name name, problem text) -- one row per problem of any raceguard trigger: missing or renamed columns, wrong types, timing, level or events, bad options, missing indexes, disabled guards, risky neighbours; no rows when all is well; see docs/guards.md';

COMMENT ON FUNCTION raceguard.guard_definition(oid) IS
    'raceguard.guard_definition(trigger_oid oid, OUT guard text, OUT columns name[], OUT options text) RETURNS record -- internal: a raceguard trigger''s guard, columns and options (JSON, every option with its effective value) as the guard''s own parser reads its arguments; used by the view raceguard.guards and by verify_running_balance(); see docs/internals.md';

COMMENT ON FUNCTION raceguard.guard_problems(oid) IS
    'raceguard.guard_problems(trigger_oid oid) RETURNS text[] -- internal: what is wrong with a raceguard trigger now (the checks its first row would make, plus the problems no single row sees), empty when all is well; used by check_guards(); see docs/internals.md';

COMMENT ON FUNCTION raceguard.check_guard_ddl(oid, text) IS
    'raceguard.check_guard_ddl(object_oid oid, command_tag text) RETURNS void -- internal: raises the error a created guard''s first row would raise, or the error for an ALTER TABLE that left a guard unable to work; called by validate_guards_at_ddl(); see docs/internals.md';

COMMENT ON FUNCTION raceguard.validate_guards_at_ddl() IS
    'raceguard.validate_guards_at_ddl() RETURNS event_trigger -- internal: the function of the event trigger raceguard_validate_guards; passes each CREATE TRIGGER and ALTER TABLE of the command to check_guard_ddl(); see docs/internals.md';

COMMENT ON EVENT TRIGGER raceguard_validate_guards IS
    'raceguard_validate_guards ON ddl_command_end WHEN TAG IN (''CREATE TRIGGER'', ''ALTER TABLE'') EXECUTE FUNCTION raceguard.validate_guards_at_ddl(), ENABLE ALWAYS -- migration-time checks: a CREATE TRIGGER of a guard that would fail at its first row fails now with the same SQLSTATE, an ALTER TABLE that leaves a guard unable to work fails with a HINT; see docs/guards.md';

-- Statistics per guard.

COMMENT ON VIEW raceguard.stats IS
    'raceguard.stats (table_name, trigger_name, guard, rows_checked, versions_bumped, stale_writes, blind_writes, overflows, violations, appends, appends_waited, total_wait_time, max_wait_time, serialization_failures, min_balance_rejections, updates_refused, deletes_refused, calls, rows_claimed, leases_taken, releases, releases_fenced, extends, extends_fenced, stats_reset) -- cumulative statistics per guard trigger, and per table claimed from, since stats_reset (before PostgreSQL 17 with shared_preload_libraries = ''raceguard''); see docs/operations.md';

COMMENT ON FUNCTION raceguard.stats_reset() IS
    'raceguard.stats_reset() RETURNS void -- resets the counters of raceguard.stats for the current database (superuser, or a role granted EXECUTE); see docs/operations.md';

COMMENT ON FUNCTION raceguard.guard_stats(oid, text) IS
    'raceguard.guard_stats(object_oid oid, guard_name text) RETURNS SETOF record (guard text, then the counters and stats_reset, the columns of raceguard.stats after trigger_name) -- internal: the counters of one trigger, or for guard_name ''claim'' of the claim functions on one table; used by the view raceguard.stats; see docs/internals.md';

COMMENT ON FUNCTION raceguard.tracked_objects() IS
    'raceguard.tracked_objects(OUT object_oid oid, OUT guard text) RETURNS SETOF record -- internal: the triggers and tables the statistics hold for this database (a NOTICE when statistics are not collected); used by the view raceguard.stats; see docs/internals.md';

COMMENT ON FUNCTION raceguard.forget_dropped_stats() IS
    'raceguard.forget_dropped_stats() RETURNS event_trigger -- internal: the function of the event trigger raceguard_forget_dropped_stats; forgets the statistics of dropped triggers and tables when their DROP commits; see docs/internals.md';

COMMENT ON EVENT TRIGGER raceguard_forget_dropped_stats IS
    'raceguard_forget_dropped_stats ON sql_drop EXECUTE FUNCTION raceguard.forget_dropped_stats(), ENABLE ALWAYS -- the statistics of dropped triggers and tables go when their DROP commits; see docs/operations.md';
