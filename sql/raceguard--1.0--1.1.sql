-- raceguard 1.0 -> 1.1 update script: attempts and max_attempts for
-- claim_lease(), retry_after for release_lease().
-- Follows PostgreSQL's "Security Considerations for Extensions": no CREATE OR
-- REPLACE, everything schema-qualified, no SECURITY DEFINER.

\echo Use "ALTER EXTENSION raceguard UPDATE TO '1.1'" to load this file. \quit

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

-- A function's parameter list cannot change in place: the two functions are
-- created anew, exactly as raceguard--1.1.sql creates them, take over the
-- privileges a DBA set on the old ones, and the old ones are dropped. The
-- DROP fails (2BP01) if an object of the user's depends on one of them (a
-- view or a function body that calls it with SQL-standard syntax, say):
-- drop that object, update, and create it again.
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

SELECT pg_temp.raceguard_keep_privileges('pg_catalog.pg_proc',
    'raceguard.claim_lease(anyelement, text, integer, interval, text, name, name)'::pg_catalog.regprocedure,
    'raceguard.claim_lease(anyelement, text, integer, interval, text, name, name, name, integer)'::pg_catalog.regprocedure);
SELECT pg_temp.raceguard_keep_privileges('pg_catalog.pg_proc',
    'raceguard.release_lease(anyelement, bigint, name, name)'::pg_catalog.regprocedure,
    'raceguard.release_lease(anyelement, bigint, name, name, interval)'::pg_catalog.regprocedure);

DROP FUNCTION raceguard.claim_lease(anyelement, text, integer, interval, text, name, name);
DROP FUNCTION raceguard.release_lease(anyelement, bigint, name, name);

COMMENT ON FUNCTION raceguard.claim_lease(anyelement, text, integer, interval, text, name, name, name, integer) IS
    'leases up to batch matching rows that are not leased or locked (nor at max_attempts): writes a new token, clock_timestamp() + lease and one more attempt, returns the rows as written, in order_by order';
COMMENT ON FUNCTION raceguard.release_lease(anyelement, bigint, name, name, interval) IS
    'clears the lease of the rows that still hold token, claimable again at once or from clock_timestamp() + retry_after; returns how many';

DROP FUNCTION pg_temp.raceguard_keep_privileges(pg_catalog.regclass, pg_catalog.oid, pg_catalog.oid, text[]);
DROP FUNCTION pg_temp.raceguard_set_privileges(pg_catalog.regclass, pg_catalog.oid, pg_catalog.jsonb);
DROP FUNCTION pg_temp.raceguard_privileges(pg_catalog.regclass, pg_catalog.oid, boolean, pg_catalog.oid);
