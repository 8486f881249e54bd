-- Man-page help in the database: every member of the extension (listed from
-- pg_depend, so a new object without a comment fails here) has a one-line
-- COMMENT that starts with its signature as it is called or used -- for a
-- function `raceguard.<name>(` and every input argument's name, for a view or a
-- sequence `raceguard.<name> (` and, for a view, every column name, for an
-- event trigger `<name> ON <event>` -- then ` -- ` and its purpose, and that
-- ends with its documentation page. An internal helper says what uses it.
-- The members to check. From PostgreSQL 17 on, a view's row type and its
-- array type are members too; they are part of the view, which carries the
-- comment, so they are left out.
CREATE TEMP VIEW members AS
SELECT d.classid, d.objid, pg_describe_object(d.classid, d.objid, d.objsubid) AS object,
       obj_description(d.objid, d.classid::regclass::name) AS comment
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
 WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'raceguard' AND d.deptype = 'e'
   AND NOT (d.classid = 'pg_type'::regclass
            AND EXISTS (SELECT FROM pg_type t LEFT JOIN pg_type element ON element.oid = t.typelem
                         WHERE t.oid = d.objid AND (t.typrelid <> 0 OR element.typrelid <> 0)));

-- The violations: no rows when all is well.
WITH described AS (
    SELECT m.*,
           CASE m.classid
               WHEN 'pg_proc'::regclass THEN (SELECT 'raceguard.' || proname || '(' FROM pg_proc WHERE oid = m.objid)
               WHEN 'pg_class'::regclass THEN (SELECT 'raceguard.' || relname || ' (' FROM pg_class WHERE oid = m.objid)
               WHEN 'pg_event_trigger'::regclass THEN
                   (SELECT evtname || ' ON ' || evtevent || ' ' FROM pg_event_trigger WHERE oid = m.objid)
           END AS prefix,
           -- The names the signature must show: a function's arguments, a
           -- view's columns, an event trigger's function.
           CASE m.classid
               WHEN 'pg_proc'::regclass THEN
                   (SELECT array_agg(a.name) FROM pg_proc p,
                           unnest(p.proargnames, coalesce(p.proargmodes, array_fill('i'::"char", ARRAY[coalesce(cardinality(p.proargnames), 0)])))
                           AS a(name, mode)
                     WHERE p.oid = m.objid AND a.name <> '' AND a.mode IN ('i', 'b', 'v'))
               WHEN 'pg_class'::regclass THEN
                   (SELECT array_agg(attname) FROM pg_attribute
                     WHERE attrelid = m.objid AND attnum > 0 AND NOT attisdropped
                       AND (SELECT relkind FROM pg_class WHERE oid = m.objid) = 'v')
               WHEN 'pg_event_trigger'::regclass THEN
                   (SELECT ARRAY[evtfoid::regprocedure::text] FROM pg_event_trigger WHERE oid = m.objid)
           END AS names,
           split_part(m.comment, ' -- ', 1) AS signature
      FROM members m
)
SELECT object, problem
  FROM described,
  LATERAL (VALUES
      (comment IS NULL, 'has no comment'),
      (prefix IS NULL, 'is of a kind this test does not know: teach it the signature'),
      (NOT starts_with(comment, prefix), 'comment does not start with ' || coalesce(quote_literal(prefix), 'its signature')),
      (position(' -- ' IN comment) = 0, 'comment has no '' -- '' between signature and purpose'),
      (comment !~ '; see docs/(lock_version|immutable_once_set|running_balance|transition|claims|guards|operations|internals|citus)\.md$',
       'comment does not end with its documentation page (; see docs/<page>.md)'),
      (comment ~ '[\n\r]', 'comment is not one line'),
      (comment ~ '[^\x01-\x7f]', 'comment is not ASCII'),
      (comment ~ ' -- internal: ' AND comment !~ '(used by|called by|the function of the event trigger) ',
       'internal, but does not say what uses it'),
      (EXISTS (SELECT FROM unnest(names) AS n WHERE position(n IN signature) = 0),
       'signature lacks ' || (SELECT string_agg(n, ', ') FROM unnest(names) AS n WHERE position(n IN signature) = 0))
  ) AS checks (failed, problem)
 WHERE failed IS NOT FALSE
   AND (problem = 'has no comment' OR comment IS NOT NULL)
 ORDER BY object COLLATE "C", problem COLLATE "C";

-- What was checked, so that an empty list above means something.
SELECT CASE classid WHEN 'pg_proc'::regclass THEN 'function'
                    WHEN 'pg_event_trigger'::regclass THEN 'event trigger'
                    ELSE (SELECT CASE relkind WHEN 'v' THEN 'view' WHEN 'S' THEN 'sequence' ELSE relkind::text END
                            FROM pg_class WHERE oid = objid) END AS kind,
       count(*) AS members,
       count(comment) AS commented
  FROM members
 GROUP BY 1
 ORDER BY 1;
