-- A DBA's privilege changes on the extension's members, generated from a
-- seed (psql variable seed) so that a run replays: one line of GRANT and
-- REVOKE statements per member that has an ACL (function, view,
-- sequence), for the members not in the psql variable covered (a text[]).
-- Each member gets at least one change, drawn from: its PUBLIC privilege
-- revoked (when PUBLIC holds it), granted to a role, granted WITH GRANT
-- OPTION to a role that grants it on to another, and for a view SELECT on
-- one column. test/upgrade/privileges.sh runs the lines.
WITH extension_members AS (
    SELECT d.classid, d.objid
      FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
     WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'raceguard' AND d.deptype = 'e'
),
members AS (
    SELECT p.proname AS name, 'function' AS kind,
           'FUNCTION ' || CASE WHEN count(*) OVER (PARTITION BY p.proname) > 1 THEN p.oid::regprocedure::text
                               ELSE 'raceguard.' || quote_ident(p.proname) END AS target,
           coalesce(p.proacl, acldefault('f', p.proowner)) AS acl, NULL::name AS first_column
      FROM extension_members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
    UNION ALL
    SELECT c.relname, CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'view' END,
           CASE c.relkind WHEN 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || 'raceguard.' || quote_ident(c.relname),
           coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner)),
           (SELECT attname FROM pg_attribute WHERE attrelid = c.oid AND attnum = 1)
      FROM extension_members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
     WHERE c.relkind IN ('v', 'S')
),
drawn AS (
    SELECT m.*, h,
           CASE m.kind WHEN 'function' THEN 'EXECUTE' WHEN 'view' THEN 'SELECT'
                       ELSE (ARRAY['USAGE', 'SELECT', 'UPDATE'])[1 + get_byte(h, 1) % 3] END AS privilege
      FROM members m, LATERAL decode(md5(:'seed' || '/' || m.name), 'hex') AS h
     WHERE NOT m.name = ANY (:'covered'::text[])
),
chosen AS (
    SELECT d.*,
           get_byte(h, 0) & 1 <> 0 AND p.public_holds AS revoke_public,
           get_byte(h, 0) & 2 <> 0 AS grant_reader,
           get_byte(h, 0) & 4 <> 0 AS grant_delegate,
           get_byte(h, 0) & 8 <> 0 AND kind = 'view' AS grant_column
      FROM drawn d,
           LATERAL (SELECT EXISTS (SELECT FROM aclexplode(d.acl) e
                                    WHERE e.grantee = 0 AND e.privilege_type = d.privilege)) AS p(public_holds)
)
SELECT concat_ws(' ',
           CASE WHEN revoke_public THEN format('REVOKE %s ON %s FROM PUBLIC;', privilege, target) END,
           CASE WHEN grant_reader OR NOT (revoke_public OR grant_delegate OR grant_column) THEN format('GRANT %s ON %s TO raceguard_upgrade_reader;', privilege, target) END,
           CASE WHEN grant_delegate THEN
               format('GRANT %s ON %s TO raceguard_upgrade_delegate WITH GRANT OPTION; SET ROLE raceguard_upgrade_delegate; '
                      'GRANT %s ON %s TO raceguard_upgrade_delegated; RESET ROLE;', privilege, target, privilege, target) END,
           CASE WHEN grant_column THEN
               format('GRANT SELECT (%I) ON %s TO raceguard_upgrade_column_reader;', first_column, target) END)
  FROM chosen
 ORDER BY name COLLATE "C";
