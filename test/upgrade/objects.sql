-- Every object of the raceguard extension, as the catalogs describe it: one
-- line per object (from pg_depend's extension memberships, named by
-- pg_describe_object), with its full definition, owner, privileges, initial
-- privileges and comment, and the extension's own row (version, schema,
-- configuration tables). test/upgrade/update.sh compares this listing of an
-- updated database with that of a fresh install of the same version.
WITH extension AS (SELECT * FROM pg_extension WHERE extname = 'raceguard'),
members AS (
    SELECT d.classid, d.objid, d.objsubid, pg_describe_object(d.classid, d.objid, d.objsubid) AS object
      FROM pg_depend d, extension e
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid AND d.deptype = 'e'
)
SELECT * FROM (
SELECT m.object,
       CASE m.classid
           WHEN 'pg_proc'::regclass THEN
               format('owner %s acl %s', (SELECT proowner::regrole FROM pg_proc WHERE oid = m.objid),
                      (SELECT proacl FROM pg_proc WHERE oid = m.objid)) || E'\n' || pg_get_functiondef(m.objid)
           WHEN 'pg_class'::regclass THEN
               (SELECT format('kind %s owner %s acl %s columns %s', c.relkind, c.relowner::regrole, c.relacl,
                              (SELECT string_agg(format('%s %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
                                 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped))
                  FROM pg_class c WHERE c.oid = m.objid)
               || coalesce(E'\n' || CASE WHEN (SELECT relkind FROM pg_class WHERE oid = m.objid) = 'v' THEN pg_get_viewdef(m.objid) END, '')
               || coalesce((SELECT format(E'\nsequence %s start %s increment %s min %s max %s cache %s cycle %s',
                                          s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle)
                              FROM pg_sequence s WHERE s.seqrelid = m.objid), '')
           WHEN 'pg_namespace'::regclass THEN
               (SELECT format('owner %s acl %s', nspowner::regrole, nspacl) FROM pg_namespace WHERE oid = m.objid)
           WHEN 'pg_event_trigger'::regclass THEN
               (SELECT format('event %s enabled %s tags %s function %s owner %s', evtevent, evtenabled, evttags,
                              evtfoid::regprocedure, evtowner::regrole)
                  FROM pg_event_trigger WHERE oid = m.objid)
           WHEN 'pg_type'::regclass THEN
               (SELECT format('type %s owner %s acl %s', typtype, typowner::regrole, typacl) FROM pg_type WHERE oid = m.objid)
           ELSE 'an object of a kind this listing does not describe yet: describe it here'
       END AS definition,
       (SELECT format('%s %s', privtype, initprivs) FROM pg_init_privs i
         WHERE i.classoid = m.classid AND i.objoid = m.objid AND i.objsubid = m.objsubid) AS initial_privileges,
       (SELECT description FROM pg_description c
         WHERE c.classoid = m.classid AND c.objoid = m.objid AND c.objsubid = m.objsubid) AS comment
  FROM members m
UNION ALL
SELECT 'extension raceguard',
       format('version %s schema %s relocatable %s owner %s config %s conditions %s', e.extversion,
              e.extnamespace::regnamespace, e.extrelocatable, e.extowner::regrole,
              (SELECT array_agg(c::regclass ORDER BY c::regclass::text) FROM unnest(e.extconfig) c), e.extcondition),
       NULL, obj_description(e.oid, 'pg_extension')
  FROM extension e
UNION ALL
-- The schema (made by CREATE EXTENSION, not a member) and its privileges.
SELECT 'schema raceguard', format('owner %s acl %s', n.nspowner::regrole, n.nspacl), NULL, obj_description(n.oid, 'pg_namespace')
  FROM pg_namespace n WHERE n.nspname = 'raceguard'
UNION ALL
-- The schema's own objects that are not the extension's (there should be none).
SELECT 'not a member: ' || pg_describe_object('pg_class'::regclass, c.oid, 0), NULL, NULL, NULL
  FROM pg_class c
 WHERE c.relnamespace = 'raceguard'::regnamespace AND c.relkind IN ('r', 'v', 'S', 'm', 'f', 'p')
   AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
UNION ALL
SELECT 'not a member: ' || pg_describe_object('pg_proc'::regclass, p.oid, 0), NULL, NULL, NULL
  FROM pg_proc p
 WHERE p.pronamespace = 'raceguard'::regnamespace
   AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
) AS listing (object, definition, initial_privileges, comment)
ORDER BY object COLLATE "C", definition COLLATE "C";
