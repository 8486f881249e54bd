-- raceguard 1.6 install script: what raceguard--1.2.sql and the update
-- scripts to 1.6 make, written out in full.
-- Follows PostgreSQL's "Security Considerations for Extensions": no CREATE OR
-- REPLACE, everything schema-qualified, no SECURITY DEFINER.
--
-- A full script, and no temporary objects: Citus runs CREATE EXTENSION on
-- its workers in a transaction it commits with PREPARE TRANSACTION, which
-- refuses a transaction that touched pg_temp (as the helpers of the 1.3 ->
-- 1.4 update did). test/upgrade/update.sh checks that a database updated
-- from any older version to 1.6 holds exactly the objects this script makes.

\echo Use "CREATE EXTENSION raceguard" to load this file. \quit

-- The C trigger functions carry no SET search_path (a SET clause costs a GUC
-- save and restore on every row); they resolve nothing by name at run time.

CREATE FUNCTION raceguard.lock_version() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'raceguard_lock_version';
COMMENT ON FUNCTION raceguard.lock_version() IS
    'raceguard.lock_version() RETURNS trigger, attached as CREATE TRIGGER name BEFORE INSERT OR UPDATE ON table FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version([''column''] [, ''strict=true''] [, ''sqlstate=23514'']) -- optimistic locking: INSERT sets a NULL version (column lock_version by default) to 1, each accepted UPDATE adds one, a write carrying a stale version fails with 40001 (23514 with sqlstate=23514), and with strict=true so does an UPDATE that does not set the version; see docs/lock_version.md';

CREATE FUNCTION raceguard.immutable_once_set() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'raceguard_immutable_once_set';
COMMENT ON FUNCTION raceguard.immutable_once_set() IS
    'raceguard.immutable_once_set() RETURNS trigger, attached as CREATE [CONSTRAINT] TRIGGER name {BEFORE | AFTER} UPDATE ON table FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set(''column'' [, ''column'' ...] [, ''allow_unset=true'']) -- write-once columns: once a listed column holds a value, an UPDATE that changes it fails with 23514 (with allow_unset=true it may go back to NULL); see docs/immutable_once_set.md';

CREATE FUNCTION raceguard.running_balance() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'raceguard_running_balance';
COMMENT ON FUNCTION raceguard.running_balance() IS
    'raceguard.running_balance() RETURNS trigger, attached as CREATE TRIGGER name BEFORE INSERT OR UPDATE OR DELETE ON ledger FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance(''amount'', ''balance'' [, ''group'' ...], ''seq=column'' [, ''min_balance=n''] [, ''initial=n'']) -- serialized running balances: each appended row gets its group''s previous balance plus its amount and the next gapless seq (a btree index on the group columns and seq is required); an UPDATE that changes the amount, balance, seq or a group column, and a DELETE, fail with 23514; on Citus the ledger must be distributed by a group column (docs/citus.md); see docs/running_balance.md';

CREATE FUNCTION raceguard.transition() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'raceguard_transition';

COMMENT ON FUNCTION raceguard.transition() IS
    'raceguard.transition() RETURNS trigger, attached as CREATE TRIGGER name BEFORE INSERT OR UPDATE ON table FOR EACH ROW EXECUTE FUNCTION raceguard.transition(''column'', ''>start'' [, ''from>to'' ...]) -- a status that moves only along declared edges: an INSERT must start in a declared state, an UPDATE that changes the column must follow a declared edge, and the loser of two concurrent writes of the same new state is refused as a duplicate transition (23514, CONSTRAINT the trigger''s name); see docs/transition.md';

CREATE FUNCTION raceguard.verify_running_balance(ledger regclass)
    RETURNS TABLE (group_key text, seq bigint, problem text, expected numeric, stored numeric)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    guard_oids oid[];
    layout record;
    group_columns text;
    window_clause text;
BEGIN
    IF NOT pg_catalog.has_any_column_privilege(ledger, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for table %', (SELECT relname FROM pg_class WHERE oid = ledger)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'verify_running_balance() reads the ledger with your privileges: it needs SELECT on the amount, balance, seq and group columns.';
    END IF;
    SELECT pg_catalog.array_agg(t.oid) INTO guard_oids
    FROM pg_catalog.pg_trigger t
    WHERE t.tgrelid = ledger
      AND t.tgfoid = 'raceguard.running_balance()'::pg_catalog.regprocedure
      AND t.tgparentid = 0;  -- not the clones on partitions
    IF guard_oids IS NULL THEN
        RAISE EXCEPTION 'table % has no raceguard.running_balance() trigger', ledger
            USING ERRCODE = 'undefined_object',
                  HINT = 'verify_running_balance() checks a ledger through its running_balance trigger (with seq=); on a partitioned ledger, name the table the trigger was created on.';
    END IF;
    IF pg_catalog.cardinality(guard_oids) > 1 THEN
        RAISE EXCEPTION 'table % has % raceguard.running_balance() triggers; verify_running_balance() needs exactly one',
            ledger, pg_catalog.cardinality(guard_oids)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The trigger's own parser reads the arguments (as raceguard.guards shows
    -- them): columns = amount, balance, groups; options seq and initial.
    SELECT d.columns, d.options::jsonb AS options INTO layout
      FROM raceguard.guard_definition(guard_oids[1]) d;
    IF layout.columns IS NULL THEN  -- the privileges changed meanwhile
        RAISE EXCEPTION 'permission denied for table %', (SELECT relname FROM pg_class WHERE oid = ledger)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF layout.options ? 'invalid' THEN
        RAISE EXCEPTION '%', format('trigger "%s" on table "%s": %s',
                                    (SELECT tgname FROM pg_trigger WHERE oid = guard_oids[1]),
                                    (SELECT relname FROM pg_class WHERE oid = ledger),
                                    layout.options ->> 'invalid')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(g), ', ' ORDER BY o)
      INTO group_columns
      FROM pg_catalog.unnest(layout.columns[3:]) WITH ORDINALITY AS u(g, o);
    window_clause := CASE WHEN group_columns IS NULL THEN '' ELSE 'PARTITION BY ' || group_columns END
                     || ' ORDER BY ' || pg_catalog.quote_ident(layout.options ->> 'seq');

    RETURN QUERY EXECUTE pg_catalog.format($query$
        WITH entries AS (
            SELECT ROW(%1$s)::text AS group_key,
                   %2$I::bigint AS seq,
                   %3$I::numeric AS amount,
                   %4$I::numeric AS balance,
                   lag(%4$I::numeric) OVER w AS previous_balance,
                   lag(%2$I::numeric) OVER w AS previous_seq
            FROM %5$s
            WINDOW w AS (%6$s)
        )
        SELECT group_key, seq, 'balance'::text, coalesce(previous_balance, $1) + amount, balance
        FROM entries
        WHERE balance IS DISTINCT FROM coalesce(previous_balance, $1) + amount
        UNION ALL
        SELECT group_key, seq, 'seq'::text, coalesce(previous_seq, 0) + 1, seq::numeric
        FROM entries
        WHERE seq::numeric IS DISTINCT FROM coalesce(previous_seq, 0) + 1
        ORDER BY 1, 2, 3
        $query$,
        coalesce(group_columns, ''), layout.options ->> 'seq', layout.columns[1], layout.columns[2], ledger,
        window_clause)
    USING (layout.options ->> 'initial')::numeric;
END
$function$;

COMMENT ON FUNCTION raceguard.verify_running_balance(regclass) IS
    'raceguard.verify_running_balance(ledger regclass) RETURNS TABLE (group_key text, seq bigint, problem text, expected numeric, stored numeric) -- checks a running_balance ledger, read with the caller''s privileges (42501 without SELECT): one row per entry whose balance is not the previous balance (or initial) plus its amount, and per seq that is not the previous seq + 1; no rows means consistent; see docs/running_balance.md';

-- ---------------------------------------------------------------------------
-- Claiming work: FOR UPDATE SKIP LOCKED claims, and leases.
--
-- SECURITY INVOKER: the caller's privileges and row-level security apply.
-- The caller's filter and order_by are SQL text evaluated with the caller's
-- own search_path (so status = 'pending'::job_status works), which is why
-- these four functions have no pinned search_path; every function, operator
-- and type the SQL they build uses of its own is schema-qualified instead,
-- so nothing planted in the caller's schemas is ever called by them.
-- ---------------------------------------------------------------------------

-- Lease tokens: unique in the database, one per claim_lease() call. Dumped
-- with the data, so a restored database never hands out a token again.
CREATE SEQUENCE raceguard.lease_token_seq AS bigint;
SELECT pg_catalog.pg_extension_config_dump('raceguard.lease_token_seq', '');

-- The four functions are C: each call shape (table, filter, order, lease
-- columns) is planned once per session and the plan kept (src/claim.cpp).
CREATE FUNCTION raceguard.claim(target anyelement, filter text DEFAULT 'true', batch integer DEFAULT 1,
                                order_by text DEFAULT NULL)
    RETURNS SETOF anyelement
    LANGUAGE c VOLATILE ROWS 10
    AS 'MODULE_PATHNAME', 'raceguard_claim';

CREATE FUNCTION raceguard.claim_lease(target anyelement, filter text, batch integer, lease interval,
                                      order_by text DEFAULT NULL,
                                      token_column name DEFAULT 'claim_token',
                                      until_column name DEFAULT 'claimed_until',
                                      attempts_column name DEFAULT NULL,
                                      max_attempts integer DEFAULT NULL)
    RETURNS SETOF anyelement
    LANGUAGE c VOLATILE ROWS 10
    AS 'MODULE_PATHNAME', 'raceguard_claim_lease';

CREATE FUNCTION raceguard.release_lease(target anyelement, token bigint,
                                        token_column name DEFAULT 'claim_token',
                                        until_column name DEFAULT 'claimed_until',
                                        retry_after interval DEFAULT NULL)
    RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'raceguard_release_lease';

CREATE FUNCTION raceguard.extend_lease(target anyelement, token bigint, lease interval,
                                       token_column name DEFAULT 'claim_token',
                                       until_column name DEFAULT 'claimed_until')
    RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'raceguard_extend_lease';

COMMENT ON FUNCTION raceguard.claim(anyelement, text, integer, text) IS
    'raceguard.claim(target anyelement, filter text DEFAULT ''true'', batch integer DEFAULT 1, order_by text DEFAULT NULL) RETURNS SETOF anyelement -- locks and returns up to batch rows of target''s table matching filter, in order_by order, skipping rows other transactions hold (FOR UPDATE SKIP LOCKED); the locks last until the transaction ends; see docs/claims.md';
COMMENT ON FUNCTION raceguard.claim_lease(anyelement, text, integer, interval, text, name, name, name, integer) IS
    'raceguard.claim_lease(target anyelement, filter text, batch integer, lease interval, order_by text DEFAULT NULL, token_column name DEFAULT ''claim_token'', until_column name DEFAULT ''claimed_until'', attempts_column name DEFAULT NULL, max_attempts integer DEFAULT NULL) RETURNS SETOF anyelement -- leases up to batch matching rows that are not leased or locked (nor at max_attempts): writes a new token, clock_timestamp() + lease and one more attempt, returns the rows as written, in order_by order; see docs/claims.md';
COMMENT ON FUNCTION raceguard.release_lease(anyelement, bigint, name, name, interval) IS
    'raceguard.release_lease(target anyelement, token bigint, token_column name DEFAULT ''claim_token'', until_column name DEFAULT ''claimed_until'', retry_after interval DEFAULT NULL) RETURNS bigint -- clears the lease of the rows that still hold token, claimable again at once or from clock_timestamp() + retry_after; returns how many; see docs/claims.md';
COMMENT ON FUNCTION raceguard.extend_lease(anyelement, bigint, interval, name, name) IS
    'raceguard.extend_lease(target anyelement, token bigint, lease interval, token_column name DEFAULT ''claim_token'', until_column name DEFAULT ''claimed_until'') RETURNS bigint -- sets the expiry of the rows that still hold token to clock_timestamp() + lease; returns how many; see docs/claims.md';
COMMENT ON SEQUENCE raceguard.lease_token_seq IS
    'raceguard.lease_token_seq (SEQUENCE AS bigint) -- internal: the lease tokens, used by claim_lease(), which takes one per call, so a token is unique in the database (and, carrying the node''s group id, across a Citus cluster: docs/citus.md); dumped with the data, so a restored database goes on above the tokens it handed out (after pg_upgrade or a restore into another cluster run lease_tokens_after_upgrade() too); see docs/claims.md';

-- Anyone may use the guards in CREATE TRIGGER and call the helpers (which
-- run with the caller's own privileges); a claim_lease() caller takes tokens.
GRANT USAGE ON SCHEMA raceguard TO PUBLIC;
GRANT USAGE ON SEQUENCE raceguard.lease_token_seq TO PUBLIC;

-- ---------------------------------------------------------------------------
-- Seeing and checking the guards.
-- ---------------------------------------------------------------------------

-- A raceguard trigger's guard, columns and options (every option with its
-- effective value). The guard's own parser reads the arguments.
CREATE FUNCTION raceguard.guard_definition(trigger_oid oid,
    OUT guard text, OUT columns name[], OUT options text)
    RETURNS record
    LANGUAGE c STRICT STABLE
    AS 'MODULE_PATHNAME', 'raceguard_guard_definition';

-- What is wrong with a raceguard trigger now: the checks its first row would
-- make, plus the problems no single row sees. Empty when all is well.
CREATE FUNCTION raceguard.guard_problems(trigger_oid oid) RETURNS text[]
    LANGUAGE c STRICT STABLE
    AS 'MODULE_PATHNAME', 'raceguard_guard_problems';

-- Raises the error a guard's first row would raise, for the event trigger.
CREATE FUNCTION raceguard.check_guard_ddl(object_oid oid, command_tag text) RETURNS void
    LANGUAGE c STRICT VOLATILE
    AS 'MODULE_PATHNAME', 'raceguard_check_guard_ddl';

COMMENT ON FUNCTION raceguard.guard_definition(oid) IS
    'raceguard.guard_definition(trigger_oid oid, OUT guard text, OUT columns name[], OUT options text) RETURNS record -- internal: a raceguard trigger''s guard, columns and options (JSON, every option with its effective value) as the guard''s own parser reads its arguments, NULL for a table the current user may not see (not opened then); used by the view raceguard.guards and by verify_running_balance(); see docs/internals.md';
COMMENT ON FUNCTION raceguard.guard_problems(oid) IS
    'raceguard.guard_problems(trigger_oid oid) RETURNS text[] -- internal: what is wrong with a raceguard trigger now (the checks its first row would make, plus the problems no single row sees), empty when all is well, NULL for a table the current user may not see (not opened then); used by check_guards(); see docs/internals.md';
COMMENT ON FUNCTION raceguard.check_guard_ddl(oid, text) IS
    'raceguard.check_guard_ddl(object_oid oid, command_tag text) RETURNS void -- internal: raises the error a created guard''s first row would raise, or the error for an ALTER TABLE that left a guard unable to work, on the tables the current user may see (others are not opened); called by validate_guards_at_ddl(); see docs/internals.md';

CREATE VIEW raceguard.guards AS
SELECT t.tgrelid::pg_catalog.regclass AS table_name,
       t.tgname AS trigger_name,
       d.guard,
       d.columns,
       d.options::pg_catalog.jsonb AS options,
       CASE WHEN (t.tgtype::integer OPERATOR(pg_catalog.&) 2) OPERATOR(pg_catalog.<>) 0 THEN 'BEFORE'
            WHEN (t.tgtype::integer OPERATOR(pg_catalog.&) 64) OPERATOR(pg_catalog.<>) 0 THEN 'INSTEAD OF'
            ELSE 'AFTER' END AS timing,
       ARRAY(SELECT e.event FROM (VALUES (4, 'INSERT', 1), (16, 'UPDATE', 2), (8, 'DELETE', 3), (32, 'TRUNCATE', 4))
                                  AS e(bit, event, position)
             WHERE (t.tgtype::integer OPERATOR(pg_catalog.&) e.bit) OPERATOR(pg_catalog.<>) 0
             ORDER BY e.position) AS events,
       t.tgenabled OPERATOR(pg_catalog.=) ANY (ARRAY['O', 'A']::"char"[]) AS enabled,
       (SELECT p.tgrelid::pg_catalog.regclass FROM pg_catalog.pg_trigger p
         WHERE p.oid OPERATOR(pg_catalog.=) t.tgparentid) AS clone_of
FROM pg_catalog.pg_trigger t
CROSS JOIN LATERAL raceguard.guard_definition(t.oid) d
WHERE t.tgfoid OPERATOR(pg_catalog.=) ANY (ARRAY['raceguard.lock_version()'::pg_catalog.regprocedure,
                                                 'raceguard.immutable_once_set()'::pg_catalog.regprocedure,
                                                 'raceguard.running_balance()'::pg_catalog.regprocedure,
                                                 'raceguard.transition()'::pg_catalog.regprocedure])
  AND d.guard IS NOT NULL;  -- NULL: a table the current user may not see

COMMENT ON VIEW raceguard.guards IS
    'raceguard.guards (table_name regclass, trigger_name name, guard text, columns name[], options jsonb, timing text, events text[], enabled boolean, clone_of regclass) -- every raceguard trigger (lock_version, immutable_once_set, running_balance, transition) on a table the current user may see (owns, or holds a privilege on; superusers see all) with its columns and every option''s effective value (a transition guard''s edges under "edges"), partition clones included (clone_of names the table of the trigger they were cloned from); readable by every role; see docs/guards.md';

GRANT SELECT ON raceguard.guards TO PUBLIC;

CREATE FUNCTION raceguard.check_guards()
    RETURNS TABLE (table_name regclass, trigger_name name, problem text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT g.table_name, g.trigger_name, p.problem
    FROM raceguard.guards g
    JOIN pg_trigger t ON t.tgrelid = g.table_name AND t.tgname = g.trigger_name
    CROSS JOIN LATERAL unnest(raceguard.guard_problems(t.oid)) AS p(problem)
    ORDER BY g.table_name::text, g.trigger_name, p.problem
$function$;

COMMENT ON FUNCTION raceguard.check_guards() IS
    'raceguard.check_guards() RETURNS TABLE (table_name regclass, trigger_name name, problem text) -- one row per problem of a raceguard trigger on a table the current user may see (as in raceguard.guards): missing or renamed columns, wrong types, timing, level or events, bad options, missing indexes, disabled guards, risky neighbours, a ledger Citus distributes by a column that is not a group column or keeps as a reference table; no rows when all is well; see docs/guards.md';

-- At migration time: a CREATE TRIGGER of a guard that would fail at its
-- first row fails now, with the same SQLSTATE; an ALTER TABLE that leaves a
-- guard unable to work (a guarded column dropped, renamed or retyped to a
-- type the guard cannot serve) fails with a HINT to drop or recreate the
-- trigger first. Enabled ALWAYS: it runs under session_replication_role =
-- replica too.
CREATE FUNCTION raceguard.validate_guards_at_ddl() RETURNS event_trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    command record;
    message text;
BEGIN
    FOR command IN SELECT * FROM pg_event_trigger_ddl_commands()
                   WHERE command_tag IN ('CREATE TRIGGER', 'ALTER TABLE')
                     AND classid IN ('pg_catalog.pg_trigger'::regclass, 'pg_catalog.pg_class'::regclass) LOOP
        BEGIN
            PERFORM raceguard.check_guard_ddl(command.objid, command.command_tag);
        EXCEPTION WHEN undefined_file THEN
            GET STACKED DIAGNOSTICS message = MESSAGE_TEXT;
            IF strpos(message, (SELECT regexp_replace(probin, '^.*/', '') FROM pg_proc
                                 WHERE oid = 'raceguard.check_guard_ddl(oid, text)'::regprocedure)) = 0 THEN
                RAISE;
            END IF;
            RAISE WARNING 'raceguard''s library cannot be loaded: this % was not checked against the raceguard guards it touches', tg_tag
                USING ERRCODE = 'undefined_file', DETAIL = message,
                      HINT = 'Install raceguard''s package again (until then every raceguard guard fails at its first row), or DROP EXTENSION raceguard if it is no longer used.';
            RETURN;  -- one WARNING for the command, however many objects it changed
        END;
    END LOOP;
END
$function$;

COMMENT ON FUNCTION raceguard.validate_guards_at_ddl() IS
    'raceguard.validate_guards_at_ddl() RETURNS event_trigger -- internal: the function of the event trigger raceguard_validate_guards; passes each CREATE TRIGGER and ALTER TABLE of the command to check_guard_ddl(), and lets the command through with a WARNING when raceguard''s library cannot be loaded; see docs/internals.md';

CREATE EVENT TRIGGER raceguard_validate_guards ON ddl_command_end
    WHEN TAG IN ('CREATE TRIGGER', 'ALTER TABLE')
    EXECUTE FUNCTION raceguard.validate_guards_at_ddl();
ALTER EVENT TRIGGER raceguard_validate_guards ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER raceguard_validate_guards IS
    'raceguard_validate_guards ON ddl_command_end WHEN TAG IN (''CREATE TRIGGER'', ''ALTER TABLE'') EXECUTE FUNCTION raceguard.validate_guards_at_ddl(), ENABLE ALWAYS -- migration-time checks: a CREATE TRIGGER of a guard that would fail at its first row fails now with the same SQLSTATE, an ALTER TABLE that leaves a guard unable to work fails with a HINT; see docs/guards.md';

-- ---------------------------------------------------------------------------
-- Statistics per guard: how often each guard fires and rejects, since
-- the last reset, like PostgreSQL's pg_stat_* views. Counted in each backend
-- and added to shared memory at transaction end; lost on a crash or restart.
-- Before PostgreSQL 17 they need shared_preload_libraries = 'raceguard'
-- (without it raceguard.stats is empty and says so with a NOTICE).
-- ---------------------------------------------------------------------------

-- The counters of one trigger (or, for guard 'claim', of the claim
-- functions on one table): one row, zeros when nothing was counted since
-- tracking began (stats_reset NULL then); no row when statistics are not
-- collected. Counters that do not apply to the guard are NULL.
CREATE FUNCTION raceguard.guard_stats(object_oid oid, guard_name text,
    OUT guard text,
    OUT rows_checked bigint, OUT versions_bumped bigint, OUT stale_writes bigint, OUT blind_writes bigint,
    OUT overflows bigint,
    OUT violations bigint,
    OUT appends bigint, OUT appends_waited bigint, OUT total_wait_time double precision,
    OUT max_wait_time double precision, OUT serialization_failures bigint, OUT min_balance_rejections bigint,
    OUT updates_refused bigint, OUT deletes_refused bigint, OUT entries_restored bigint,
    OUT calls bigint, OUT rows_claimed bigint, OUT leases_taken bigint, OUT releases bigint,
    OUT releases_fenced bigint, OUT extends bigint, OUT extends_fenced bigint,
    OUT stats_reset timestamptz)
    RETURNS SETOF record
    LANGUAGE c STRICT VOLATILE ROWS 1
    AS 'MODULE_PATHNAME', 'raceguard_guard_stats';

COMMENT ON FUNCTION raceguard.guard_stats(oid, text) IS
    'raceguard.guard_stats(object_oid oid, guard_name text) RETURNS SETOF record (guard text, then the counters and stats_reset, the columns of raceguard.stats after trigger_name but for transitions_refused and duplicates_caught) -- internal: the counters of one trigger, or for guard_name ''claim'' of the claim functions on one table; used by the view raceguard.stats; see docs/internals.md';

-- What the statistics hold for this database: triggers and tables claimed
-- from. A NOTICE says so when statistics are not collected.
CREATE FUNCTION raceguard.tracked_objects(OUT object_oid oid, OUT guard text)
    RETURNS SETOF record
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'raceguard_tracked_objects';

COMMENT ON FUNCTION raceguard.tracked_objects() IS
    'raceguard.tracked_objects(OUT object_oid oid, OUT guard text) RETURNS SETOF record -- internal: the triggers and tables the statistics hold for this database (a NOTICE when statistics are not collected); used by the view raceguard.stats; see docs/internals.md';

CREATE FUNCTION raceguard.transition_stats(trigger_oid oid,
    OUT transitions_refused bigint, OUT duplicates_caught bigint)
    RETURNS SETOF record
    LANGUAGE c STRICT VOLATILE ROWS 1
    AS 'MODULE_PATHNAME', 'raceguard_transition_stats';

COMMENT ON FUNCTION raceguard.transition_stats(oid) IS
    'raceguard.transition_stats(trigger_oid oid) RETURNS SETOF record (transitions_refused bigint, duplicates_caught bigint) -- internal: the counters of one transition guard that raceguard.stats shows after stats_reset; no row when statistics are not collected; used by the view raceguard.stats; see docs/internals.md';

CREATE VIEW raceguard.stats AS
SELECT t.tgrelid::pg_catalog.regclass AS table_name,
       t.tgname AS trigger_name,
       s.*,
       x.transitions_refused,
       x.duplicates_caught
FROM pg_catalog.pg_trigger t
CROSS JOIN LATERAL raceguard.guard_stats(
    t.oid,
    CASE t.tgfoid WHEN 'raceguard.lock_version()'::pg_catalog.regprocedure THEN 'lock_version'
                  WHEN 'raceguard.immutable_once_set()'::pg_catalog.regprocedure THEN 'immutable_once_set'
                  WHEN 'raceguard.transition()'::pg_catalog.regprocedure THEN 'transition'
                  ELSE 'running_balance' END) s
LEFT JOIN LATERAL (SELECT r.transitions_refused, r.duplicates_caught
                     FROM raceguard.transition_stats(t.oid) r
                    WHERE t.tgfoid OPERATOR(pg_catalog.=) 'raceguard.transition()'::pg_catalog.regprocedure) x
       ON true
WHERE t.tgfoid OPERATOR(pg_catalog.=) ANY (ARRAY['raceguard.lock_version()'::pg_catalog.regprocedure,
                                                 'raceguard.immutable_once_set()'::pg_catalog.regprocedure,
                                                 'raceguard.running_balance()'::pg_catalog.regprocedure,
                                                 'raceguard.transition()'::pg_catalog.regprocedure])
UNION ALL
SELECT o.object_oid::pg_catalog.regclass,
       NULL::pg_catalog.name,
       s.*,
       NULL::bigint,
       NULL::bigint
FROM raceguard.tracked_objects() o
CROSS JOIN LATERAL raceguard.guard_stats(o.object_oid, 'claim') s
WHERE o.guard OPERATOR(pg_catalog.=) 'claim'
  AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) o.object_oid);

COMMENT ON VIEW raceguard.stats IS
    'raceguard.stats (table_name, trigger_name, guard, rows_checked, versions_bumped, stale_writes, blind_writes, overflows, violations, appends, appends_waited, total_wait_time, max_wait_time, serialization_failures, min_balance_rejections, updates_refused, deletes_refused, entries_restored, calls, rows_claimed, leases_taken, releases, releases_fenced, extends, extends_fenced, stats_reset, transitions_refused, duplicates_caught) -- cumulative statistics per guard trigger, and per table claimed from, since stats_reset (before PostgreSQL 17 with shared_preload_libraries = ''raceguard''); see docs/operations.md';

-- Counters, like pg_stat_user_tables', are readable by everyone.
GRANT SELECT ON raceguard.stats TO PUBLIC;

-- Every counter of this database's guards back to zero. Superusers, and
-- roles granted EXECUTE on it.
CREATE FUNCTION raceguard.stats_reset() RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'raceguard_stats_reset';
REVOKE ALL ON FUNCTION raceguard.stats_reset() FROM PUBLIC;

COMMENT ON FUNCTION raceguard.stats_reset() IS
    'raceguard.stats_reset() RETURNS void -- resets the counters of raceguard.stats for the current database (superuser, or a role granted EXECUTE); see docs/operations.md';

-- The statistics of dropped triggers and tables go when their DROP commits.
CREATE FUNCTION raceguard.forget_stats_of_dropped_objects() RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'raceguard_forget_dropped_stats';

COMMENT ON FUNCTION raceguard.forget_stats_of_dropped_objects() IS
    'raceguard.forget_stats_of_dropped_objects() RETURNS void -- internal: in a sql_drop event, forgets the statistics of the dropped triggers and tables when the DROP commits; called by forget_dropped_stats(); see docs/internals.md';

CREATE FUNCTION raceguard.forget_dropped_stats() RETURNS event_trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    message text;
BEGIN
    PERFORM raceguard.forget_stats_of_dropped_objects();
EXCEPTION WHEN undefined_file THEN
    GET STACKED DIAGNOSTICS message = MESSAGE_TEXT;
    IF strpos(message, (SELECT regexp_replace(probin, '^.*/', '') FROM pg_proc
                         WHERE oid = 'raceguard.forget_stats_of_dropped_objects()'::regprocedure)) = 0 THEN
        RAISE;
    END IF;
    RAISE WARNING 'raceguard''s library cannot be loaded: this % did not forget the statistics of the triggers and tables it dropped', tg_tag
        USING ERRCODE = 'undefined_file', DETAIL = message,
              HINT = 'Install raceguard''s package again (until then every raceguard guard fails at its first row), or DROP EXTENSION raceguard if it is no longer used.';
END
$function$;

COMMENT ON FUNCTION raceguard.forget_dropped_stats() IS
    'raceguard.forget_dropped_stats() RETURNS event_trigger -- internal: the function of the event trigger raceguard_forget_dropped_stats; forgets the statistics of dropped triggers and tables when their DROP commits (through forget_stats_of_dropped_objects()), and lets the DROP through with a WARNING when raceguard''s library cannot be loaded; see docs/internals.md';

CREATE EVENT TRIGGER raceguard_forget_dropped_stats ON sql_drop
    EXECUTE FUNCTION raceguard.forget_dropped_stats();
ALTER EVENT TRIGGER raceguard_forget_dropped_stats ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER raceguard_forget_dropped_stats IS
    'raceguard_forget_dropped_stats ON sql_drop EXECUTE FUNCTION raceguard.forget_dropped_stats(), ENABLE ALWAYS -- the statistics of dropped triggers and tables go when their DROP commits; see docs/operations.md';

-- ---------------------------------------------------------------------------
-- Lease tokens after pg_upgrade.
-- ---------------------------------------------------------------------------
--
-- A lease token is the WAL timeline times 2^48 plus the next value of
-- raceguard.lease_token_seq; the timeline keeps a promoted standby's tokens
-- apart from those the old primary handed out after the standby's last WAL.
-- pg_upgrade (and a restore into a new cluster) starts on timeline 1 again,
-- so the timeline no longer tells those apart: a server abandoned at a
-- failover may have handed out any value of the sequence's block on its
-- timeline, values this database never saw. lease_tokens_after_upgrade()
-- moves the sequence up by as many blocks of 2^48 as the old cluster's
-- timeline, so that every token from then on is above every token any
-- earlier timeline can have handed out, and bounds it to its new block
-- (MAXVALUE), as claim_lease() requires past the first block.

CREATE FUNCTION raceguard.lease_tokens_after_upgrade(old_timeline integer)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    block_size constant bigint := 281474976710656;  -- 2^48 values of the sequence
    high_limit constant bigint := 32768;             -- timeline + block: tokens stay positive
    next_value bigint;
    new_block bigint;
BEGIN
    IF old_timeline IS NULL OR old_timeline < 1 OR old_timeline >= high_limit THEN
        RAISE EXCEPTION 'old_timeline must be the old cluster''s WAL timeline, from 1 to %, not %',
                        high_limit - 1, coalesce(old_timeline::text, '<NULL>')
              USING ERRCODE = '22023',
                    HINT = 'Read it from pg_controldata on the old data directory (Latest checkpoint''s TimeLineID); see docs/operations.md.';
    END IF;
    -- ALTER SEQUENCE locks the sequence against nextval() until this
    -- transaction ends: a lease taking a token meanwhile waits, and one
    -- that took a token before has committed by now, so the value read
    -- next is the sequence's last.
    ALTER SEQUENCE raceguard.lease_token_seq NO CYCLE;
    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
      INTO next_value FROM raceguard.lease_token_seq;
    new_block := next_value / block_size + old_timeline;
    IF new_block + 1 >= high_limit THEN
        RAISE EXCEPTION 'lease tokens are exhausted: the sequence''s block % plus old_timeline % leaves no timeline for new tokens',
                        next_value / block_size, old_timeline
              USING ERRCODE = '2200H';
    END IF;
    EXECUTE pg_catalog.format('ALTER SEQUENCE raceguard.lease_token_seq MAXVALUE %s RESTART WITH %s',
                              (new_block + 1) * block_size - 1, next_value + old_timeline * block_size);
    -- The move must survive a crash right after the commit: commit it
    -- synchronously, whatever the caller's synchronous_commit.
    PERFORM pg_catalog.set_config('synchronous_commit', 'on', true);
    -- Every earlier token is below this, every token from now on at least this.
    RETURN (new_block + 1) * block_size;
END
$function$;

REVOKE ALL ON FUNCTION raceguard.lease_tokens_after_upgrade(integer) FROM PUBLIC;

COMMENT ON FUNCTION raceguard.lease_tokens_after_upgrade(integer) IS
    'raceguard.lease_tokens_after_upgrade(old_timeline integer) RETURNS bigint -- run once after pg_upgrade, or after restoring a dump into another cluster, before any lease, with the WAL timeline the old cluster was on: moves raceguard.lease_token_seq above every token handed out on any earlier timeline (pg_upgrade restarts at timeline 1) and bounds it there; returns the value that separates them: every earlier token is below it, every later one at least it; see docs/operations.md';

-- ---------------------------------------------------------------------------
-- The whole cluster at once.
-- ---------------------------------------------------------------------------

-- Cluster-wide views of the guards (docs/citus.md, "The whole cluster at
-- once"). raceguard.guards, check_guards() and raceguard.stats show one
-- node: on a Citus worker its copies of the tables (Citus's shell tables)
-- and its shards, under the shards' names. cluster_guards(),
-- check_cluster_guards() and cluster_stats() gather every node's rows of
-- the same view, as the calling role (each node applies its own privilege
-- checks, as its view does), and fold them into the tables and triggers the
-- user created: a shard's rows are named after its table and trigger (from
-- Citus's catalog, pg_dist_shard), the copies of one guard are listed once,
-- and the statistics of its copies are added up. Without Citus they show
-- this database's rows, with the same columns. Citus is read by name at run
-- time (dynamic SQL over its catalog, and its master_run_on_worker() to
-- reach the other nodes): no dependency on it when installed.

-- This node's rows of raceguard.guards (kind 'guards'), check_guards()
-- ('problems') or raceguard.stats ('stats'), as a JSON array, each table
-- given by schema and name: what every node sends to cluster_rows().
CREATE FUNCTION raceguard.node_guard_rows(kind text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    found jsonb;
BEGIN
    IF kind = 'guards' THEN
        SELECT jsonb_agg(jsonb_build_object('schema_name', n.nspname, 'relation_name', c.relname,
                                            'trigger_name', g.trigger_name, 'guard', g.guard, 'columns', g.columns,
                                            'options', g.options, 'timing', g.timing, 'events', g.events,
                                            'enabled', g.enabled, 'clone_of_schema', pn.nspname,
                                            'clone_of_relation', p.relname))
          INTO found
          FROM raceguard.guards g
          JOIN pg_class c ON c.oid = g.table_name
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_class p ON p.oid = g.clone_of
          LEFT JOIN pg_namespace pn ON pn.oid = p.relnamespace;
    ELSIF kind = 'problems' THEN
        SELECT jsonb_agg(jsonb_build_object('schema_name', n.nspname, 'relation_name', c.relname,
                                            'trigger_name', g.trigger_name, 'problem', g.problem))
          INTO found
          FROM raceguard.check_guards() g
          JOIN pg_class c ON c.oid = g.table_name
          JOIN pg_namespace n ON n.oid = c.relnamespace;
    ELSIF kind = 'stats' THEN
        SELECT jsonb_agg(to_jsonb(s) - 'table_name' || jsonb_build_object('schema_name', n.nspname, 'relation_name', c.relname))
          INTO found
          FROM raceguard.stats s
          JOIN pg_class c ON c.oid = s.table_name
          JOIN pg_namespace n ON n.oid = c.relnamespace;
    ELSE
        RAISE EXCEPTION 'kind must be guards, problems or stats, not %', coalesce(quote_literal(kind), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN coalesce(found, '[]');
END
$function$;

COMMENT ON FUNCTION raceguard.node_guard_rows(text) IS
    'raceguard.node_guard_rows(kind text) RETURNS jsonb -- internal: this node''s rows of raceguard.guards (kind ''guards''), check_guards() (''problems'') or raceguard.stats (''stats'') as a JSON array, each table given by schema_name and relation_name, as the calling role sees them; called by cluster_rows() on every node; see docs/internals.md';

-- Whether Citus names the copy of object (a table or a trigger) on shard
-- shard_id shard_object: "<object>_<shard id>", or, when that does not fit
-- in a name, the object's name cut short, "_", 8 hex digits of a hash and
-- "_<shard id>".
CREATE FUNCTION raceguard.citus_shard_named(shard_object text, object text, shard_id bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT
    SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT shard_object = object || '_' || shard_id
        OR (octet_length(object || '_' || shard_id) >= 64
            AND shard_object LIKE '%\_' || shard_id
            AND substring(shard_object FROM '^(.*)_[0-9a-f]{8}_' || shard_id || '$') <> ''
            AND starts_with(object, substring(shard_object FROM '^(.*)_[0-9a-f]{8}_' || shard_id || '$')))
$function$;

COMMENT ON FUNCTION raceguard.citus_shard_named(text, text, bigint) IS
    'raceguard.citus_shard_named(shard_object text, object text, shard_id bigint) RETURNS boolean -- internal: whether Citus names the copy of object (a table or a trigger) on shard shard_id shard_object (object_<shard id>, or a name too long for that cut short and hashed); used by cluster_rows(); see docs/internals.md';

-- Every node's rows of one kind, each with the node's Citus group id and
-- named after the table and trigger the user created: schema_name,
-- relation_name and trigger_name are the logical table's and trigger's for
-- a shard's row (shard_id then says which shard), and the node's own for
-- any other; citus_table says how Citus places the table ('distributed',
-- 'reference', 'single shard', NULL for a table Citus does not manage).
-- Without Citus: this node's rows, node_group NULL.
CREATE FUNCTION raceguard.cluster_rows(kind text,
    OUT node_group integer, OUT shard_id bigint, OUT schema_name name, OUT relation_name name,
    OUT trigger_name name, OUT citus_table text, OUT item jsonb)
    RETURNS SETOF record
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    local_group integer;
    gathered jsonb;
    node_names text[];
    node_ports integer[];
    node_groups integer[];
    answer record;
BEGIN
    gathered := raceguard.node_guard_rows(kind);  -- checks kind
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RETURN QUERY
            SELECT NULL::integer, NULL::bigint, (e ->> 'schema_name')::name, (e ->> 'relation_name')::name,
                   (e ->> 'trigger_name')::name, NULL::text, e
              FROM jsonb_array_elements(gathered) e;
        RETURN;
    END IF;
    EXECUTE 'SELECT groupid FROM pg_catalog.pg_dist_local_group' INTO local_group;
    SELECT jsonb_agg(e || jsonb_build_object('node_group', local_group)) INTO gathered
      FROM jsonb_array_elements(gathered) e;
    gathered := coalesce(gathered, '[]');
    -- The primary of every other group, asked in parallel, each in a
    -- connection of its own as the calling role.
    EXECUTE 'SELECT array_agg(nodename ORDER BY groupid), array_agg(nodeport ORDER BY groupid),
                    array_agg(groupid ORDER BY groupid)
               FROM pg_catalog.pg_dist_node
              WHERE noderole OPERATOR(pg_catalog.=) ''primary'' AND isactive AND groupid OPERATOR(pg_catalog.<>) $1'
       INTO node_names, node_ports, node_groups USING local_group;
    IF node_names IS NOT NULL THEN
        FOR answer IN
            EXECUTE 'SELECT node_name, node_port, success, result
                       FROM pg_catalog.master_run_on_worker($1, $2, $3, true)'
              USING node_names, node_ports,
                    array_fill(format('SELECT raceguard.node_guard_rows(%L)', kind), ARRAY[cardinality(node_names)])
        LOOP
            IF NOT answer.success THEN
                RAISE EXCEPTION 'node %:% did not send its raceguard % rows: %', answer.node_name, answer.node_port, kind,
                                answer.result
                    USING ERRCODE = CASE WHEN answer.result LIKE 'failed to connect%' THEN 'connection_failure'
                                         ELSE 'external_routine_exception' END,
                          HINT = 'Every node must be reachable as this role and have raceguard at the coordinator''s version (1.6 or later); see docs/citus.md.';
            END IF;
            SELECT gathered || coalesce(jsonb_agg(e || jsonb_build_object('node_group', g.groupid)), '[]')
              INTO gathered
              FROM jsonb_array_elements(answer.result::jsonb) e,
                   (SELECT node_groups[i] AS groupid FROM generate_subscripts(node_names, 1) i
                     WHERE node_names[i] = answer.node_name AND node_ports[i] = answer.node_port LIMIT 1) g;
        END LOOP;
    END IF;
    -- A shard is "<table>_<shard id>" in its table's schema, and its
    -- triggers "<trigger>_<shard id>" (raceguard.citus_shard_named()).
    RETURN QUERY EXECUTE $query$
        WITH named AS (
            SELECT e AS item, (e ->> 'node_group')::integer AS node_group, e ->> 'schema_name' AS schema_name,
                   e ->> 'relation_name' AS relation_name, e ->> 'trigger_name' AS trigger_name,
                   e ->> 'clone_of_schema' AS clone_schema, e ->> 'clone_of_relation' AS clone_relation
              FROM pg_catalog.jsonb_array_elements($1) e
        ),
        shards AS (
            SELECT s.shardid, s.logicalrelid, c.relname, n.nspname
              FROM pg_catalog.pg_dist_shard s
              JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.logicalrelid
              JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        )
        SELECT r.node_group, shard.shardid, coalesce(shard.nspname, r.schema_name)::pg_catalog.name,
               coalesce(shard.relname, r.relation_name)::pg_catalog.name,
               coalesce(logical_trigger.tgname, r.trigger_name)::pg_catalog.name,
               CASE WHEN p.partmethod OPERATOR(pg_catalog.=) ANY (ARRAY['h', 'r', 'a']::"char"[]) THEN 'distributed'
                    WHEN p.repmodel OPERATOR(pg_catalog.=) 't' THEN 'reference'
                    WHEN p.logicalrelid IS NOT NULL THEN 'single shard' END,
               CASE WHEN clone_shard.relname IS NULL THEN r.item
                    ELSE r.item OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('clone_of_relation', clone_shard.relname)
               END
          FROM named r
          LEFT JOIN shards shard
            ON shard.shardid OPERATOR(pg_catalog.=) pg_catalog.substring(r.relation_name, '_([0-9]{1,19})$')::numeric
           AND shard.nspname OPERATOR(pg_catalog.=) r.schema_name
           AND raceguard.citus_shard_named(r.relation_name, shard.relname, shard.shardid)
          LEFT JOIN LATERAL (
                SELECT t.tgname FROM pg_catalog.pg_trigger t
                 WHERE t.tgrelid OPERATOR(pg_catalog.=) shard.logicalrelid
                   AND raceguard.citus_shard_named(r.trigger_name, t.tgname, shard.shardid)
                 ORDER BY t.tgname || '_' || shard.shardid = r.trigger_name DESC, t.tgname LIMIT 1) logical_trigger
            ON true
          LEFT JOIN shards clone_shard
            ON clone_shard.shardid OPERATOR(pg_catalog.=) pg_catalog.substring(r.clone_relation, '_([0-9]{1,19})$')::numeric
           AND clone_shard.nspname OPERATOR(pg_catalog.=) r.clone_schema
           AND raceguard.citus_shard_named(r.clone_relation, clone_shard.relname, clone_shard.shardid)
          LEFT JOIN pg_catalog.pg_dist_partition p
            ON p.logicalrelid OPERATOR(pg_catalog.=) coalesce(shard.logicalrelid,
                   pg_catalog.to_regclass(pg_catalog.format('%I.%I', r.schema_name, r.relation_name)))
    $query$ USING gathered;
END
$function$;

COMMENT ON FUNCTION raceguard.cluster_rows(text) IS
    'raceguard.cluster_rows(kind text, OUT node_group integer, OUT shard_id bigint, OUT schema_name name, OUT relation_name name, OUT trigger_name name, OUT citus_table text, OUT item jsonb) RETURNS SETOF record -- internal: every Citus node''s node_guard_rows(kind), asked as the calling role, with a shard''s rows named after its table and trigger; this database''s rows without Citus; used by cluster_guards(), check_cluster_guards() and cluster_stats(); see docs/internals.md';

CREATE FUNCTION raceguard.cluster_guards()
    RETURNS TABLE (table_name text, trigger_name name, guard text, columns name[], options jsonb, timing text,
                   events text[], enabled boolean, clone_of text, citus_table text, nodes integer[], shards bigint)
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT format('%I.%I', r.schema_name, r.relation_name),
           r.trigger_name,
           r.item ->> 'guard',
           ARRAY(SELECT jsonb_array_elements_text(r.item -> 'columns'))::name[],
           r.item -> 'options',
           r.item ->> 'timing',
           ARRAY(SELECT jsonb_array_elements_text(r.item -> 'events')),
           bool_and((r.item ->> 'enabled')::boolean),
           CASE WHEN r.item ? 'clone_of_relation' AND r.item ->> 'clone_of_relation' IS NOT NULL
                THEN format('%I.%I', r.item ->> 'clone_of_schema', r.item ->> 'clone_of_relation') END,
           r.citus_table,
           array_agg(DISTINCT r.node_group ORDER BY r.node_group) FILTER (WHERE r.node_group IS NOT NULL),
           count(DISTINCT r.shard_id)
      FROM raceguard.cluster_rows('guards') r
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 9, 10, CASE WHEN r.citus_table IS NULL THEN r.node_group END
     ORDER BY 1, 2, 11
$function$;

COMMENT ON FUNCTION raceguard.cluster_guards() IS
    'raceguard.cluster_guards() RETURNS TABLE (table_name text, trigger_name name, guard text, columns name[], options jsonb, timing text, events text[], enabled boolean, clone_of text, citus_table text, nodes integer[], shards bigint) -- raceguard.guards of every Citus node folded into the tables and triggers the user created: one row per guard (its copies on shell tables and shards listed once, enabled only if every copy is, nodes the Citus groups holding a copy, shards how many shards), each node showing what the calling role may see there; this database''s guards without Citus; see docs/citus.md';

CREATE FUNCTION raceguard.check_cluster_guards()
    RETURNS TABLE (table_name text, trigger_name name, problem text, nodes integer[], shards bigint[])
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT format('%I.%I', r.schema_name, r.relation_name),
           r.trigger_name,
           CASE WHEN r.shard_id IS NULL THEN r.item ->> 'problem'
                ELSE replace(replace(r.item ->> 'problem',
                                     format('"%s"', r.item ->> 'relation_name'), format('"%s"', r.relation_name)),
                             format('"%s"', r.item ->> 'trigger_name'), format('"%s"', r.trigger_name)) END,
           array_agg(DISTINCT r.node_group ORDER BY r.node_group) FILTER (WHERE r.node_group IS NOT NULL),
           array_agg(DISTINCT r.shard_id ORDER BY r.shard_id) FILTER (WHERE r.shard_id IS NOT NULL)
      FROM raceguard.cluster_rows('problems') r
     GROUP BY 1, 2, 3, CASE WHEN r.citus_table IS NULL THEN r.node_group END
     ORDER BY 1, 2, 3, 4
$function$;

COMMENT ON FUNCTION raceguard.check_cluster_guards() IS
    'raceguard.check_cluster_guards() RETURNS TABLE (table_name text, trigger_name name, problem text, nodes integer[], shards bigint[]) -- check_guards() on every Citus node, folded into the tables and triggers the user created: one row per problem, with the Citus groups and the shards that report it (a shard''s problem in its table''s and trigger''s names); each node checks what the calling role may see there; this database''s check_guards() without Citus; no rows when all is well; see docs/citus.md';

CREATE FUNCTION raceguard.cluster_stats()
    RETURNS TABLE (table_name text, trigger_name name, guard text,
                   rows_checked bigint, versions_bumped bigint, stale_writes bigint, blind_writes bigint,
                   overflows bigint, violations bigint, appends bigint, appends_waited bigint,
                   total_wait_time double precision, max_wait_time double precision, serialization_failures bigint,
                   min_balance_rejections bigint, updates_refused bigint, deletes_refused bigint,
                   entries_restored bigint, calls bigint, rows_claimed bigint, leases_taken bigint, releases bigint,
                   releases_fenced bigint, extends bigint, extends_fenced bigint, stats_reset timestamptz,
                   transitions_refused bigint, duplicates_caught bigint, nodes integer[])
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT format('%I.%I', r.schema_name, r.relation_name), r.trigger_name, r.item ->> 'guard',
           sum((r.item ->> 'rows_checked')::bigint)::bigint, sum((r.item ->> 'versions_bumped')::bigint)::bigint,
           sum((r.item ->> 'stale_writes')::bigint)::bigint, sum((r.item ->> 'blind_writes')::bigint)::bigint,
           sum((r.item ->> 'overflows')::bigint)::bigint, sum((r.item ->> 'violations')::bigint)::bigint,
           sum((r.item ->> 'appends')::bigint)::bigint, sum((r.item ->> 'appends_waited')::bigint)::bigint,
           sum((r.item ->> 'total_wait_time')::double precision), max((r.item ->> 'max_wait_time')::double precision),
           sum((r.item ->> 'serialization_failures')::bigint)::bigint,
           sum((r.item ->> 'min_balance_rejections')::bigint)::bigint,
           sum((r.item ->> 'updates_refused')::bigint)::bigint, sum((r.item ->> 'deletes_refused')::bigint)::bigint,
           sum((r.item ->> 'entries_restored')::bigint)::bigint, sum((r.item ->> 'calls')::bigint)::bigint,
           sum((r.item ->> 'rows_claimed')::bigint)::bigint, sum((r.item ->> 'leases_taken')::bigint)::bigint,
           sum((r.item ->> 'releases')::bigint)::bigint, sum((r.item ->> 'releases_fenced')::bigint)::bigint,
           sum((r.item ->> 'extends')::bigint)::bigint, sum((r.item ->> 'extends_fenced')::bigint)::bigint,
           max((r.item ->> 'stats_reset')::timestamptz),
           sum((r.item ->> 'transitions_refused')::bigint)::bigint, sum((r.item ->> 'duplicates_caught')::bigint)::bigint,
           array_agg(DISTINCT r.node_group ORDER BY r.node_group) FILTER (WHERE r.node_group IS NOT NULL)
      FROM raceguard.cluster_rows('stats') r
     GROUP BY 1, 2, 3, CASE WHEN r.citus_table IS NULL THEN r.node_group END
     ORDER BY 1, 2 NULLS FIRST, 29
$function$;

COMMENT ON FUNCTION raceguard.cluster_stats() IS
    'raceguard.cluster_stats() RETURNS TABLE (table_name text, trigger_name name, guard text, rows_checked, versions_bumped, stale_writes, blind_writes, overflows, violations, appends, appends_waited, total_wait_time, max_wait_time, serialization_failures, min_balance_rejections, updates_refused, deletes_refused, entries_restored, calls, rows_claimed, leases_taken, releases, releases_fenced, extends, extends_fenced, stats_reset, transitions_refused, duplicates_caught, nodes integer[]) -- raceguard.stats of every Citus node added up per table and trigger the user created (shards and shell tables folded in; max_wait_time the largest, stats_reset the latest reset of any node); this database''s raceguard.stats without Citus; see docs/citus.md';
