-- The privileges of every member of the extension that has an ACL, one line
-- per member and column: its privileges and its initial privileges
-- (pg_init_privs, "none" without a record), each as a sorted list of
-- grantee=privilege[*]/grantor (* with grant option; a NULL ACL written as
-- the default it stands for). test/upgrade/privileges.sh compares this
-- listing of an updated database with a fresh install's given the same
-- GRANTs and REVOKEs.
WITH extension_members AS (
    SELECT d.classid, d.objid
      FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
     WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'raceguard' AND d.deptype = 'e'
),
acls AS (
    SELECT pg_describe_object(m.classid, m.objid, 0) AS object, m.classid, m.objid, 0 AS objsubid,
           coalesce(p.proacl, acldefault('f', p.proowner)) AS acl
      FROM extension_members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
    UNION ALL
    SELECT pg_describe_object(m.classid, m.objid, 0), m.classid, m.objid, 0,
           coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))
      FROM extension_members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
    UNION ALL
    SELECT pg_describe_object(m.classid, m.objid, a.attnum), m.classid, m.objid, a.attnum, a.attacl
      FROM extension_members m JOIN pg_attribute a ON m.classid = 'pg_class'::regclass AND a.attrelid = m.objid
     WHERE a.attnum > 0 AND NOT a.attisdropped
),
items AS (
    SELECT a.object, a.classid, a.objid, a.objsubid, a.acl,
           (SELECT i.initprivs FROM pg_init_privs i
             WHERE i.classoid = a.classid AND i.objoid = a.objid AND i.objsubid = a.objsubid) AS initprivs,
           EXISTS (SELECT FROM pg_init_privs i
                    WHERE i.classoid = a.classid AND i.objoid = a.objid AND i.objsubid = a.objsubid) AS has_initial
      FROM acls a
),
described AS (
    SELECT i.object, i.has_initial,
           (SELECT string_agg(item, ' ' ORDER BY item COLLATE "C") FROM (
                SELECT format('%s=%s%s/%s', coalesce(grantee.rolname, 'PUBLIC'), e.privilege_type,
                              CASE WHEN e.is_grantable THEN '*' ELSE '' END, grantor.rolname) AS item
                  FROM aclexplode(i.acl) e
                  LEFT JOIN pg_roles grantee ON grantee.oid = e.grantee
                  LEFT JOIN pg_roles grantor ON grantor.oid = e.grantor) AS p) AS privileges,
           (SELECT string_agg(item, ' ' ORDER BY item COLLATE "C") FROM (
                SELECT format('%s=%s%s/%s', coalesce(grantee.rolname, 'PUBLIC'), e.privilege_type,
                              CASE WHEN e.is_grantable THEN '*' ELSE '' END, grantor.rolname) AS item
                  FROM aclexplode(i.initprivs) e
                  LEFT JOIN pg_roles grantee ON grantee.oid = e.grantee
                  LEFT JOIN pg_roles grantor ON grantor.oid = e.grantor) AS p) AS initial
      FROM items i
)
SELECT format('%s: %s; initial: %s', object, coalesce(privileges, ''),
              CASE WHEN has_initial THEN coalesce(initial, '') ELSE 'none' END)
  FROM described
 WHERE privileges IS NOT NULL OR has_initial
 ORDER BY object COLLATE "C";
