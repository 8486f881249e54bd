-- raceguard 1.4 -> 1.5 update script. Each part below says what it adds or
-- changes and why.
--
-- There is no full raceguard--1.5.sql: CREATE EXTENSION raceguard (1.5)
-- runs raceguard--1.2.sql, then the update scripts to 1.3, 1.4 and 1.5.

\echo Use "ALTER EXTENSION raceguard UPDATE TO '1.5'" to load this file. \quit

-- Part 1: raceguard.transition()
--
-- A fifth guard: a status column that moves only along declared edges, and
-- never twice along the same one (docs/transition.md). A new C trigger
-- function, and the view raceguard.guards lists its triggers too. The view
-- changes in place (CREATE OR REPLACE, as for an object already known to be
-- a member): it keeps its OID, so the privileges a DBA set on it and the
-- user's objects that depend on it stay; its columns do not change.

CREATE FUNCTION raceguard.transition() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'raceguard_transition';

COMMENT ON FUNCTION raceguard.transition() IS
    'raceguard.transition() RETURNS trigger, attached as CREATE TRIGGER name BEFORE INSERT OR UPDATE ON table FOR EACH ROW EXECUTE FUNCTION raceguard.transition(''column'', ''>start'' [, ''from>to'' ...]) -- a status that moves only along declared edges: an INSERT must start in a declared state, an UPDATE that changes the column must follow a declared edge, and the loser of two concurrent writes of the same new state is refused as a duplicate transition (23514, CONSTRAINT the trigger''s name); see docs/transition.md';

CREATE OR REPLACE VIEW raceguard.guards AS
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

-- raceguard.stats counts the transition guards too: rows_checked, and two
-- columns of their own, transitions_refused (every refused row) and
-- duplicates_caught (the duplicate transitions among them). The two columns
-- come last, after stats_reset, from a function of their own, so that the
-- view changes in place (CREATE OR REPLACE VIEW may only add columns at the
-- end): its OID, the privileges a DBA set and the user's views over it
-- stay, and nothing of the user's can block the update.

CREATE FUNCTION raceguard.transition_stats(trigger_oid oid,
    OUT transitions_refused bigint, OUT duplicates_caught bigint)
    RETURNS SETOF record
    LANGUAGE c STRICT VOLATILE ROWS 1
    AS 'MODULE_PATHNAME', 'raceguard_transition_stats';

COMMENT ON FUNCTION raceguard.transition_stats(oid) IS
    'raceguard.transition_stats(trigger_oid oid) RETURNS SETOF record (transitions_refused bigint, duplicates_caught bigint) -- internal: the counters of one transition guard that raceguard.stats shows after stats_reset; no row when statistics are not collected; used by the view raceguard.stats; see docs/internals.md';

CREATE OR REPLACE VIEW raceguard.stats AS
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

COMMENT ON FUNCTION raceguard.guard_stats(oid, text) IS
    'raceguard.guard_stats(object_oid oid, guard_name text) RETURNS SETOF record (guard text, then the counters and stats_reset, the columns of raceguard.stats after trigger_name but for transitions_refused and duplicates_caught) -- internal: the counters of one trigger, or for guard_name ''claim'' of the claim functions on one table; used by the view raceguard.stats; see docs/internals.md';

-- End of Part 1.

-- Part 2: verify_running_balance() at the seq type's last value.
-- It computed the previous seq + 1 in bigint, so a group whose row at seq
-- 9223372036854775807 (written around the guard) was followed by another
-- failed with 22003 instead of reporting the row. The seqs are now compared
-- as numeric; nothing else changes.
CREATE OR REPLACE FUNCTION raceguard.verify_running_balance(ledger regclass)
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

-- End of Part 2.

-- Part 3: Citus.
-- raceguard reads Citus's catalog by name where the citus extension is
-- installed (docs/citus.md); nothing changes without it. running_balance
-- refuses (0A000) a table Citus distributes by a column that is not one of
-- its group columns, and check_guards() lists such a trigger and warns of a
-- reference-table ledger. A lease token carries the Citus node's group id,
-- so tokens are unique across the cluster. The code is in the library; the
-- comments below say so.
COMMENT ON FUNCTION raceguard.running_balance() IS
    'raceguard.running_balance() RETURNS trigger, attached as CREATE TRIGGER name BEFORE INSERT OR UPDATE OR DELETE ON ledger FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance(''amount'', ''balance'' [, ''group'' ...], ''seq=column'' [, ''min_balance=n''] [, ''initial=n'']) -- serialized running balances: each appended row gets its group''s previous balance plus its amount and the next gapless seq (a btree index on the group columns and seq is required); an UPDATE that changes the amount, balance, seq or a group column, and a DELETE, fail with 23514; on Citus the ledger must be distributed by a group column (docs/citus.md); see docs/running_balance.md';

COMMENT ON FUNCTION raceguard.check_guards() IS
    'raceguard.check_guards() RETURNS TABLE (table_name regclass, trigger_name name, problem text) -- one row per problem of a raceguard trigger on a table the current user may see (as in raceguard.guards): missing or renamed columns, wrong types, timing, level or events, bad options, missing indexes, disabled guards, risky neighbours, a ledger Citus distributes by a column that is not a group column or keeps as a reference table; no rows when all is well; see docs/guards.md';

COMMENT ON SEQUENCE raceguard.lease_token_seq IS
    'raceguard.lease_token_seq (SEQUENCE AS bigint) -- internal: the lease tokens, used by claim_lease(), which takes one per call, so a token is unique in the database (and, carrying the node''s group id, across a Citus cluster: docs/citus.md); dumped with the data, so a restored database goes on above the tokens it handed out (after pg_upgrade or a restore into another cluster run lease_tokens_after_upgrade() too); see docs/claims.md';

-- End of Part 3.
