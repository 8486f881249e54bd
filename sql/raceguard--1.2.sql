-- raceguard 1.2 install script.
-- Follows PostgreSQL's "Security Considerations for Extensions": no CREATE OR
-- REPLACE, everything schema-qualified, no SECURITY DEFINER.

\echo Use "CREATE EXTENSION raceguard" to load this file. \quit

-- The C trigger functions carry no SET search_path (a SET clause costs a GUC
-- save and restore on every row); they resolve nothing by name at run time.

CREATE FUNCTION raceguard.lock_version() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'raceguard_lock_version';

COMMENT ON FUNCTION raceguard.lock_version() IS
    'optimistic locking: BEFORE INSERT OR UPDATE ... FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version([column] [, ''strict=true''] [, ''sqlstate=23514''])';

CREATE FUNCTION raceguard.immutable_once_set() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'raceguard_immutable_once_set';

COMMENT ON FUNCTION raceguard.immutable_once_set() IS
    'write-once columns: BEFORE or AFTER UPDATE ... FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set(column [, column ...] [, ''allow_unset=true''])';

CREATE FUNCTION raceguard.running_balance() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'raceguard_running_balance';

COMMENT ON FUNCTION raceguard.running_balance() IS
    'serialized running balances: BEFORE INSERT OR UPDATE OR DELETE ... FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance(amount, balance [, group ...], ''seq=<column>'' [, ''min_balance=<n>''] [, ''initial=<n>''])';

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
                   lag(%2$I::bigint) OVER w AS previous_seq
            FROM %5$s
            WINDOW w AS (%6$s)
        )
        SELECT group_key, seq, 'balance'::text, coalesce(previous_balance, $1) + amount, balance
        FROM entries
        WHERE balance IS DISTINCT FROM coalesce(previous_balance, $1) + amount
        UNION ALL
        SELECT group_key, seq, 'seq'::text, (coalesce(previous_seq, 0) + 1)::numeric, seq::numeric
        FROM entries
        WHERE seq IS DISTINCT FROM coalesce(previous_seq, 0) + 1
        ORDER BY 1, 2, 3
        $query$,
        coalesce(group_columns, ''), layout.options ->> 'seq', layout.columns[1], layout.columns[2], ledger,
        window_clause)
    USING (layout.options ->> 'initial')::numeric;
END
$function$;

COMMENT ON FUNCTION raceguard.verify_running_balance(regclass) IS
    'checks a running_balance ledger: one row per entry whose balance is not the previous balance (or initial) plus its amount, and per seq that is not the previous seq + 1; no rows means consistent';

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
    'locks and returns up to batch rows matching filter, skipping rows other transactions hold (FOR UPDATE SKIP LOCKED)';
COMMENT ON FUNCTION raceguard.claim_lease(anyelement, text, integer, interval, text, name, name, name, integer) IS
    'leases up to batch matching rows that are not leased or locked (nor at max_attempts): writes a new token, clock_timestamp() + lease and one more attempt, returns the rows as written, in order_by order';
COMMENT ON FUNCTION raceguard.release_lease(anyelement, bigint, name, name, interval) IS
    'clears the lease of the rows that still hold token, claimable again at once or from clock_timestamp() + retry_after; returns how many';
COMMENT ON FUNCTION raceguard.extend_lease(anyelement, bigint, interval, name, name) IS
    'sets the expiry of the rows that still hold token to clock_timestamp() + lease; returns how many';

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
                                                 'raceguard.running_balance()'::pg_catalog.regprocedure]);

COMMENT ON VIEW raceguard.guards IS
    'every raceguard trigger in the database, partition clones included (clone_of names the table of the trigger they were cloned from)';

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
    'one row per problem of any raceguard trigger: missing or renamed columns, wrong types, timing, level or events, bad options, missing indexes, disabled guards, risky neighbours; no rows when all is well';

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
BEGIN
    FOR command IN
        SELECT * FROM pg_event_trigger_ddl_commands()
        WHERE command_tag IN ('CREATE TRIGGER', 'ALTER TABLE')
          AND classid IN ('pg_catalog.pg_trigger'::regclass, 'pg_catalog.pg_class'::regclass)
    LOOP
        PERFORM raceguard.check_guard_ddl(command.objid, command.command_tag);
    END LOOP;
END
$function$;

CREATE EVENT TRIGGER raceguard_validate_guards ON ddl_command_end
    WHEN TAG IN ('CREATE TRIGGER', 'ALTER TABLE')
    EXECUTE FUNCTION raceguard.validate_guards_at_ddl();
ALTER EVENT TRIGGER raceguard_validate_guards ENABLE ALWAYS;

-- ---------------------------------------------------------------------------
-- Statistics per guard (1.2): how often each guard fires and rejects, since
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
    OUT updates_refused bigint, OUT deletes_refused bigint,
    OUT calls bigint, OUT rows_claimed bigint, OUT leases_taken bigint, OUT releases bigint,
    OUT releases_fenced bigint, OUT extends bigint, OUT extends_fenced bigint,
    OUT stats_reset timestamptz)
    RETURNS SETOF record
    LANGUAGE c STRICT VOLATILE ROWS 1
    AS 'MODULE_PATHNAME', 'raceguard_guard_stats';

-- What the statistics hold for this database: triggers and tables claimed
-- from. A NOTICE says so when statistics are not collected.
CREATE FUNCTION raceguard.tracked_objects(OUT object_oid oid, OUT guard text)
    RETURNS SETOF record
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'raceguard_tracked_objects';

CREATE VIEW raceguard.stats AS
SELECT t.tgrelid::pg_catalog.regclass AS table_name,
       t.tgname AS trigger_name,
       s.*
FROM pg_catalog.pg_trigger t
CROSS JOIN LATERAL raceguard.guard_stats(
    t.oid,
    CASE t.tgfoid WHEN 'raceguard.lock_version()'::pg_catalog.regprocedure THEN 'lock_version'
                  WHEN 'raceguard.immutable_once_set()'::pg_catalog.regprocedure THEN 'immutable_once_set'
                  ELSE 'running_balance' END) s
WHERE t.tgfoid OPERATOR(pg_catalog.=) ANY (ARRAY['raceguard.lock_version()'::pg_catalog.regprocedure,
                                                 'raceguard.immutable_once_set()'::pg_catalog.regprocedure,
                                                 'raceguard.running_balance()'::pg_catalog.regprocedure])
UNION ALL
SELECT o.object_oid::pg_catalog.regclass,
       NULL::pg_catalog.name,
       s.*
FROM raceguard.tracked_objects() o
CROSS JOIN LATERAL raceguard.guard_stats(o.object_oid, 'claim') s
WHERE o.guard OPERATOR(pg_catalog.=) 'claim'
  AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) o.object_oid);

COMMENT ON VIEW raceguard.stats IS
    'cumulative statistics per guard trigger, and per table claimed from, since stats_reset: rows checked, stale writes, violations, appends and lock waits, claims and fenced-off releases';

-- Counters, like pg_stat_user_tables', are readable by everyone.
GRANT SELECT ON raceguard.stats TO PUBLIC;

-- Every counter of this database's guards back to zero. Superusers, and
-- roles granted EXECUTE on it.
CREATE FUNCTION raceguard.stats_reset() RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'raceguard_stats_reset';
REVOKE ALL ON FUNCTION raceguard.stats_reset() FROM PUBLIC;

COMMENT ON FUNCTION raceguard.stats_reset() IS
    'resets the counters of raceguard.stats for the current database (superuser, or a role granted EXECUTE)';

-- The statistics of dropped triggers and tables go when their DROP commits.
CREATE FUNCTION raceguard.forget_dropped_stats() RETURNS event_trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'raceguard_forget_dropped_stats';

CREATE EVENT TRIGGER raceguard_forget_dropped_stats ON sql_drop
    EXECUTE FUNCTION raceguard.forget_dropped_stats();
ALTER EVENT TRIGGER raceguard_forget_dropped_stats ENABLE ALWAYS;
