-- raceguard 1.5 -> 1.6 update script. Each part below says what it adds or
-- changes and why.
--
-- 1.6 has a full install script, raceguard--1.6.sql, which CREATE EXTENSION
-- runs; this script brings an older installation to the same objects
-- (test/upgrade/update.sh compares them). Like the full script it makes no
-- temporary objects, so that Citus can run it on its workers.

\echo Use "ALTER EXTENSION raceguard UPDATE TO '1.6'" to load this file. \quit

-- Part 1: the whole cluster at once.
--
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

-- End of Part 1.
