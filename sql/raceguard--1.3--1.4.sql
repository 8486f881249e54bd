-- raceguard 1.3 -> 1.4 update script: no login role can crash the server
-- or slip a row past a guard (issue 20). Each part below says what it
-- changes and why.
--
-- There is no full raceguard--1.4.sql: CREATE EXTENSION raceguard (1.4)
-- runs raceguard--1.2.sql, raceguard--1.2--1.3.sql and then this script.

\echo Use "ALTER EXTENSION raceguard UPDATE TO '1.4'" to load this file. \quit

-- Part 1: the restore path (raceguard.restoring).




-- Part 2: privileges (who may see and check which guards).

-- A role sees, checks and verifies the guards of the tables it may see: as
-- a superuser, with the privileges of the table's owner, or holding any
-- privilege on the table or on one of its columns (a role that could lock
-- the table anyway). raceguard.guards, check_guards() and
-- verify_running_balance() are for every role; the C helpers behind them
-- (guard_definition(), guard_problems(), check_guard_ddl()) return NULL for,
-- skip, and never lock or open any other table. Until 1.4 the view was
-- readable by nobody but its owner, so check_guards() failed for every
-- other role.
--
-- The view and the function change in place (CREATE OR REPLACE, as
-- PostgreSQL's security considerations for extension scripts allow for an
-- update script changing objects already known to be members): they keep
-- their OIDs, so the privileges a DBA set on them and the user's objects
-- that depend on them stay.

-- Keeping the privileges a DBA set. An update script that recreates an
-- object, or grants on an existing one, must keep what the DBA granted and
-- revoked on it, and must keep those changes out of the object's initial
-- privileges (pg_init_privs), which pg_dump compares the object's ACL with:
-- a DBA's change recorded there would be missing from every dump. But every
-- GRANT and REVOKE an extension script runs records the object's whole new
-- ACL as initial. So raceguard_keep_privileges() below sets the ACL with
-- GRANT and REVOKE (PostgreSQL keeps its role dependencies), then puts back
-- the initial privileges the extension's own statements recorded. These
-- helpers live in pg_temp only while this script runs (the same ones are in
-- every script that needs them).

-- The effective privileges of an object (proacl or relacl, the default when
-- NULL) and of its columns, or its initial ones (pg_init_privs), as a JSON
-- array of {"column", "grantor", "grantee", "privilege", "grantable"}, with
-- the object's owner written as AS_OWNER.
CREATE FUNCTION pg_temp.raceguard_privileges(class pg_catalog.regclass, object pg_catalog.oid,
                                             initial boolean, as_owner pg_catalog.oid)
    RETURNS pg_catalog.jsonb
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $function$
    WITH owned AS (
        SELECT proowner AS owner, 'f'::"char" AS kind, proacl AS acl FROM pg_proc
         WHERE class = 'pg_proc'::regclass AND oid = object
        UNION ALL
        SELECT relowner, CASE relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", relacl FROM pg_class
         WHERE class = 'pg_class'::regclass AND oid = object
    ),
    acls AS (
        SELECT NULL::name AS "column",
               coalesce(CASE WHEN initial THEN (SELECT i.initprivs FROM pg_init_privs i
                                                 WHERE i.classoid = class AND i.objoid = object AND i.objsubid = 0)
                             ELSE o.acl END,
                        acldefault(o.kind, o.owner)) AS acl
          FROM owned o
        UNION ALL
        SELECT a.attname,
               CASE WHEN initial THEN (SELECT i.initprivs FROM pg_init_privs i
                                        WHERE i.classoid = class AND i.objoid = object AND i.objsubid = a.attnum)
                    ELSE a.attacl END
          FROM pg_attribute a
         WHERE class = 'pg_class'::regclass AND a.attrelid = object AND a.attnum > 0 AND NOT a.attisdropped
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'column', a."column",
               'grantor', CASE e.grantor WHEN o.owner THEN as_owner ELSE e.grantor END,
               'grantee', CASE e.grantee WHEN o.owner THEN as_owner ELSE e.grantee END,
               'privilege', e.privilege_type,
               'grantable', e.is_grantable) ORDER BY a."column" NULLS FIRST, e.position), '[]')
      FROM owned o, acls a, aclexplode(a.acl) WITH ORDINALITY AS e(grantor, grantee, privilege_type, is_grantable, position)
$function$;

-- Turns the privileges of an object and its columns into TARGET (as
-- raceguard_privileges() writes them) with GRANT and REVOKE, one statement
-- at a time: revokes first, a grant that depends on another's grant option
-- after it; each as its grantor (SET ROLE when the grantor is not the owner).
CREATE FUNCTION pg_temp.raceguard_set_privileges(class pg_catalog.regclass, object pg_catalog.oid,
                                                 target pg_catalog.jsonb)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    owner oid;
    on_object text;
    updater text := quote_ident(current_user);
    change record;
    statements integer := 0;
BEGIN
    IF class = 'pg_proc'::regclass THEN
        SELECT proowner, 'FUNCTION ' || oid::regprocedure INTO owner, on_object FROM pg_proc WHERE oid = object;
    ELSE
        SELECT relowner, CASE relkind WHEN 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || oid::regclass
          INTO owner, on_object FROM pg_class WHERE oid = object;
    END IF;
    LOOP
        SELECT * INTO change FROM (
            WITH now AS (
                SELECT * FROM jsonb_to_recordset(pg_temp.raceguard_privileges(class, object, false, owner))
                    AS i("column" name, grantor oid, grantee oid, privilege text, grantable boolean)),
            goal AS (
                SELECT * FROM ROWS FROM (jsonb_to_recordset(target)
                    AS ("column" name, grantor oid, grantee oid, privilege text, grantable boolean))
                    WITH ORDINALITY AS g("column", grantor, grantee, privilege, grantable, position)),
            -- Nobody holds the privilege through this grantee's grant option.
            leaf AS (
                SELECT n.* FROM now n
                 WHERE NOT EXISTS (SELECT FROM now d WHERE d.grantor = n.grantee AND d.privilege = n.privilege
                                      AND d."column" IS NOT DISTINCT FROM n."column"))
            SELECT 1 AS step, 0::bigint AS position, l.grantor,
                   format('REVOKE %s%s ON %s FROM %s',
                          CASE WHEN g.grantee IS NOT NULL THEN 'GRANT OPTION FOR ' ELSE '' END,
                          l.privilege || coalesce(' (' || quote_ident(l."column") || ')', ''), on_object,
                          CASE l.grantee WHEN 0 THEN 'PUBLIC' ELSE l.grantee::regrole::text END) AS statement
              FROM leaf l
              LEFT JOIN goal g ON (g."column", g.grantor, g.grantee, g.privilege)
                                  IS NOT DISTINCT FROM (l."column", l.grantor, l.grantee, l.privilege)
             WHERE g.grantee IS NULL OR (l.grantable AND NOT g.grantable)
            UNION ALL
            SELECT 2, g.position, g.grantor,
                   format('GRANT %s ON %s TO %s%s',
                          g.privilege || coalesce(' (' || quote_ident(g."column") || ')', ''), on_object,
                          CASE g.grantee WHEN 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END,
                          CASE WHEN g.grantable THEN ' WITH GRANT OPTION' ELSE '' END)
              FROM goal g
              LEFT JOIN now n ON (n."column", n.grantor, n.grantee, n.privilege)
                                 IS NOT DISTINCT FROM (g."column", g.grantor, g.grantee, g.privilege)
             WHERE (n.grantee IS NULL OR (g.grantable AND NOT n.grantable))
               AND (g.grantor = owner
                    OR EXISTS (SELECT FROM now h WHERE h.grantee = g.grantor AND h.privilege = g.privilege
                                  AND h.grantable AND (h."column" IS NULL OR h."column" = g."column")))
            ORDER BY 1, 2
            LIMIT 1) AS next;
        EXIT WHEN NOT FOUND;
        statements := statements + 1;
        IF statements > 1000 THEN
            RAISE EXCEPTION 'raceguard: cannot set the privileges of % (last tried: %)', on_object, change.statement;
        END IF;
        IF change.grantor = owner THEN
            EXECUTE change.statement;  -- a superuser grants as the owner
        ELSE
            EXECUTE 'SET ROLE ' || change.grantor::regrole::text;
            EXECUTE change.statement;
            EXECUTE 'SET ROLE ' || updater;
        END IF;
    END LOOP;
    IF (SELECT count(*) FROM jsonb_array_elements(target)) <>
       (SELECT count(*) FROM jsonb_array_elements(pg_temp.raceguard_privileges(class, object, false, owner)))
       OR EXISTS (SELECT jsonb_array_elements(target) EXCEPT
                  SELECT jsonb_array_elements(pg_temp.raceguard_privileges(class, object, false, owner))) THEN
        RAISE EXCEPTION 'raceguard: cannot set the privileges of % to %', on_object, target;
    END IF;
END
$function$;

-- Carries the privileges a DBA set on OLD_OBJECT, as changes from its
-- initial privileges, over to NEW_OBJECT: the object itself, or the one this
-- script made to replace it. STATEMENTS are the extension's own privilege
-- statements for the new version of the object: they run on the object's
-- initial privileges, and what they record stays its initial privileges.
CREATE FUNCTION pg_temp.raceguard_keep_privileges(class pg_catalog.regclass, old_object pg_catalog.oid,
                                                  new_object pg_catalog.oid,
                                                  statements text[] DEFAULT '{}')
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    new_owner oid := CASE class WHEN 'pg_proc'::regclass THEN (SELECT proowner FROM pg_proc WHERE oid = new_object)
                                ELSE (SELECT relowner FROM pg_class WHERE oid = new_object) END;
    old_privileges jsonb := pg_temp.raceguard_privileges(class, old_object, false, new_owner);
    old_initial jsonb := pg_temp.raceguard_privileges(class, old_object, true, new_owner);
    added jsonb;
    removed jsonb;
    extension_privileges jsonb;
    statement text;
    this_database oid := (SELECT oid FROM pg_database WHERE datname = current_database());
    initial_rows jsonb;
    initial_dependencies jsonb;
BEGIN
    -- What the DBA changed: granted beyond the initial privileges, and
    -- revoked from them.
    SELECT coalesce(jsonb_agg(p ORDER BY n), '[]') INTO added
      FROM jsonb_array_elements(old_privileges) WITH ORDINALITY AS e(p, n)
     WHERE NOT old_initial @> jsonb_build_array(p);
    SELECT coalesce(jsonb_agg(p ORDER BY n), '[]') INTO removed
      FROM jsonb_array_elements(old_initial) WITH ORDINALITY AS e(p, n)
     WHERE NOT old_privileges @> jsonb_build_array(p);
    -- The extension's initial privileges for the object (with, from
    -- PostgreSQL 17 on, the shared dependencies of those records on roles):
    -- those of the new object as made, or what the extension's statements
    -- record when they run on the privileges it set itself.
    IF old_object = new_object AND cardinality(statements) > 0 THEN
        PERFORM pg_temp.raceguard_set_privileges(class, new_object, old_initial);
    END IF;
    FOREACH statement IN ARRAY statements LOOP
        EXECUTE statement;
    END LOOP;
    SELECT coalesce(jsonb_agg(to_jsonb(i)), '[]') INTO initial_rows
      FROM pg_init_privs i WHERE i.classoid = class AND i.objoid = new_object;
    SELECT coalesce(jsonb_agg(to_jsonb(d)), '[]') INTO initial_dependencies
      FROM pg_shdepend d
     WHERE d.dbid = this_database AND d.classid = class AND d.objid = new_object AND d.deptype = 'i';
    -- The DBA's changes, on top of the extension's privileges.
    extension_privileges := pg_temp.raceguard_privileges(class, new_object, false, new_owner);
    PERFORM pg_temp.raceguard_set_privileges(class, new_object,
        (SELECT coalesce(jsonb_agg(p ORDER BY source, n), '[]')
           FROM (SELECT p, 1 AS source, n FROM jsonb_array_elements(extension_privileges) WITH ORDINALITY AS e(p, n)
                  WHERE NOT removed @> jsonb_build_array(p)
                 UNION ALL
                 SELECT p, 2, n FROM jsonb_array_elements(added) WITH ORDINALITY AS e(p, n)
                  WHERE NOT extension_privileges @> jsonb_build_array(p)) AS target));
    -- Their GRANTs and REVOKEs recorded the DBA's privileges as initial:
    -- the extension's are put back.
    DELETE FROM pg_init_privs i WHERE i.classoid = class AND i.objoid = new_object;
    INSERT INTO pg_init_privs SELECT * FROM jsonb_populate_recordset(NULL::pg_init_privs, initial_rows);
    DELETE FROM pg_shdepend d
     WHERE d.dbid = this_database AND d.classid = class AND d.objid = new_object AND d.deptype = 'i';
    INSERT INTO pg_shdepend SELECT * FROM jsonb_populate_recordset(NULL::pg_shdepend, initial_dependencies);
END
$function$;

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
                                                 'raceguard.running_balance()'::pg_catalog.regprocedure])
  AND d.guard IS NOT NULL;  -- NULL: a table the current user may not see

SELECT pg_temp.raceguard_keep_privileges('pg_catalog.pg_class',
    'raceguard.guards'::pg_catalog.regclass, 'raceguard.guards'::pg_catalog.regclass,
    ARRAY['GRANT SELECT ON raceguard.guards TO PUBLIC']);

-- check_guards() is unchanged: it reads the view, and guard_problems()
-- checks only the triggers the view shows.

-- verify_running_balance() reads the ledger with the caller's privileges, as
-- before; it now refuses first (42501) a ledger the caller may SELECT no
-- column of, before raceguard reads its guard's definition or locks it.
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

COMMENT ON VIEW raceguard.guards IS
    'raceguard.guards (table_name regclass, trigger_name name, guard text, columns name[], options jsonb, timing text, events text[], enabled boolean, clone_of regclass) -- every raceguard trigger on a table the current user may see (owns, or holds a privilege on; superusers see all) with its columns and every option''s effective value, partition clones included (clone_of names the table of the trigger they were cloned from); readable by every role; see docs/guards.md';

COMMENT ON FUNCTION raceguard.check_guards() IS
    'raceguard.check_guards() RETURNS TABLE (table_name regclass, trigger_name name, problem text) -- one row per problem of a raceguard trigger on a table the current user may see (as in raceguard.guards): missing or renamed columns, wrong types, timing, level or events, bad options, missing indexes, disabled guards, risky neighbours; no rows when all is well; see docs/guards.md';

COMMENT ON FUNCTION raceguard.verify_running_balance(regclass) IS
    'raceguard.verify_running_balance(ledger regclass) RETURNS TABLE (group_key text, seq bigint, problem text, expected numeric, stored numeric) -- checks a running_balance ledger, read with the caller''s privileges (42501 without SELECT): one row per entry whose balance is not the previous balance (or initial) plus its amount, and per seq that is not the previous seq + 1; no rows means consistent; see docs/running_balance.md';

COMMENT ON FUNCTION raceguard.guard_definition(oid) IS
    'raceguard.guard_definition(trigger_oid oid, OUT guard text, OUT columns name[], OUT options text) RETURNS record -- internal: a raceguard trigger''s guard, columns and options (JSON, every option with its effective value) as the guard''s own parser reads its arguments, NULL for a table the current user may not see (not opened then); used by the view raceguard.guards and by verify_running_balance(); see docs/internals.md';

COMMENT ON FUNCTION raceguard.guard_problems(oid) IS
    'raceguard.guard_problems(trigger_oid oid) RETURNS text[] -- internal: what is wrong with a raceguard trigger now (the checks its first row would make, plus the problems no single row sees), empty when all is well, NULL for a table the current user may not see (not opened then); used by check_guards(); see docs/internals.md';

COMMENT ON FUNCTION raceguard.check_guard_ddl(oid, text) IS
    'raceguard.check_guard_ddl(object_oid oid, command_tag text) RETURNS void -- internal: raises the error a created guard''s first row would raise, or the error for an ALTER TABLE that left a guard unable to work, on the tables the current user may see (others are not opened); called by validate_guards_at_ddl(); see docs/internals.md';




-- Part 3: statistics.
--
-- raceguard.stats gains entries_restored (after deletes_refused): the
-- entries running_balance's restore path kept as loaded. The column comes
-- from raceguard.guard_stats(), whose result grows a column, so the view
-- and the function are made again, as they were plus that column, with
-- their comments and the privileges the DBA set on the old ones (Part 2's
-- helpers): the new ones are made under names of their own, take over the
-- old ones' privileges, the old ones are dropped and the new ones renamed.
-- A view of the user's over raceguard.stats blocks the drop with 2BP01
-- (nothing is dropped with CASCADE): see docs/operations.md. Until this
-- runs, the 1.4 library serves the 1.3 declaration of guard_stats()
-- without the new column.

CREATE FUNCTION raceguard.guard_stats_1_4(object_oid oid, guard_name text,
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

SELECT pg_temp.raceguard_keep_privileges('pg_catalog.pg_proc',
    'raceguard.guard_stats(oid, text)'::pg_catalog.regprocedure,
    'raceguard.guard_stats_1_4(oid, text)'::pg_catalog.regprocedure);

CREATE VIEW raceguard.stats_1_4 AS
SELECT t.tgrelid::pg_catalog.regclass AS table_name,
       t.tgname AS trigger_name,
       s.*
FROM pg_catalog.pg_trigger t
CROSS JOIN LATERAL raceguard.guard_stats_1_4(
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
CROSS JOIN LATERAL raceguard.guard_stats_1_4(o.object_oid, 'claim') s
WHERE o.guard OPERATOR(pg_catalog.=) 'claim'
  AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) o.object_oid);

SELECT pg_temp.raceguard_keep_privileges('pg_catalog.pg_class',
    'raceguard.stats'::pg_catalog.regclass, 'raceguard.stats_1_4'::pg_catalog.regclass,
    ARRAY['GRANT SELECT ON raceguard.stats_1_4 TO PUBLIC']);

DROP VIEW raceguard.stats;
DROP FUNCTION raceguard.guard_stats(oid, text);
ALTER FUNCTION raceguard.guard_stats_1_4(oid, text) RENAME TO guard_stats;
ALTER VIEW raceguard.stats_1_4 RENAME TO stats;

DROP FUNCTION pg_temp.raceguard_keep_privileges(pg_catalog.regclass, pg_catalog.oid, pg_catalog.oid, text[]);
DROP FUNCTION pg_temp.raceguard_set_privileges(pg_catalog.regclass, pg_catalog.oid, pg_catalog.jsonb);
DROP FUNCTION pg_temp.raceguard_privileges(pg_catalog.regclass, pg_catalog.oid, boolean, pg_catalog.oid);

COMMENT ON VIEW raceguard.stats IS
    'raceguard.stats (table_name, trigger_name, guard, rows_checked, versions_bumped, stale_writes, blind_writes, overflows, violations, appends, appends_waited, total_wait_time, max_wait_time, serialization_failures, min_balance_rejections, updates_refused, deletes_refused, entries_restored, calls, rows_claimed, leases_taken, releases, releases_fenced, extends, extends_fenced, stats_reset) -- cumulative statistics per guard trigger, and per table claimed from, since stats_reset (before PostgreSQL 17 with shared_preload_libraries = ''raceguard''); see docs/operations.md';

COMMENT ON FUNCTION raceguard.guard_stats(oid, text) IS
    'raceguard.guard_stats(object_oid oid, guard_name text) RETURNS SETOF record (guard text, then the counters and stats_reset, the columns of raceguard.stats after trigger_name) -- internal: the counters of one trigger, or for guard_name ''claim'' of the claim functions on one table; used by the view raceguard.stats; see docs/internals.md';


-- Part 4: event triggers that stay harmless without the library.

-- Since 1.2 every DROP in the database ran raceguard's C code (the function
-- of the sql_drop event trigger was C), and every ALTER TABLE and CREATE
-- TRIGGER called it through validate_guards_at_ddl(): with the library gone
-- (the package removed, or an upgrade of it that failed half-way) those
-- commands failed, on tables with no guard too. Both event trigger
-- functions are now PL/pgSQL (changed in place: the event triggers, ENABLE
-- ALWAYS, and their comments stay). They call the C code and, when its
-- library file cannot be found (could not access file, SQLSTATE 58P01
-- undefined_file, naming raceguard's library), let the command through with
-- one WARNING. Nothing else is caught: the checks' own errors are what the
-- event trigger is for; a library that is there but cannot be loaded (built
-- for another PostgreSQL, a missing symbol) or cannot be read is a broken
-- installation that must be seen, not a removed one; and a 58P01 about any
-- other file is not raceguard's to hide. The guards themselves fail at their
-- first row without the library, as they must: no row passes a guard
-- unchecked.

-- The C half of forget_dropped_stats() (the same C function, which 1.2 and
-- 1.3 ran as the event trigger function itself).
CREATE FUNCTION raceguard.forget_stats_of_dropped_objects() RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'raceguard_forget_dropped_stats';

CREATE OR REPLACE FUNCTION raceguard.forget_dropped_stats() RETURNS event_trigger
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

-- PERFORM stays on line 10 of the body, where the errors' CONTEXT lines
-- have always shown it.
CREATE OR REPLACE FUNCTION raceguard.validate_guards_at_ddl() RETURNS event_trigger
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

COMMENT ON FUNCTION raceguard.forget_stats_of_dropped_objects() IS
    'raceguard.forget_stats_of_dropped_objects() RETURNS void -- internal: in a sql_drop event, forgets the statistics of the dropped triggers and tables when the DROP commits; called by forget_dropped_stats(); see docs/internals.md';

COMMENT ON FUNCTION raceguard.forget_dropped_stats() IS
    'raceguard.forget_dropped_stats() RETURNS event_trigger -- internal: the function of the event trigger raceguard_forget_dropped_stats; forgets the statistics of dropped triggers and tables when their DROP commits (through forget_stats_of_dropped_objects()), and lets the DROP through with a WARNING when raceguard''s library cannot be loaded; see docs/internals.md';

COMMENT ON FUNCTION raceguard.validate_guards_at_ddl() IS
    'raceguard.validate_guards_at_ddl() RETURNS event_trigger -- internal: the function of the event trigger raceguard_validate_guards; passes each CREATE TRIGGER and ALTER TABLE of the command to check_guard_ddl(), and lets the command through with a WARNING when raceguard''s library cannot be loaded; see docs/internals.md';



-- Part 5: lease tokens after pg_upgrade.
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

COMMENT ON SEQUENCE raceguard.lease_token_seq IS
    'raceguard.lease_token_seq (SEQUENCE AS bigint) -- internal: the lease tokens, used by claim_lease(), which takes one per call, so a token is unique in the database; dumped with the data, so a restored database goes on above the tokens it handed out (after pg_upgrade or a restore into another cluster run lease_tokens_after_upgrade() too); see docs/claims.md';

-- End of the update script.
