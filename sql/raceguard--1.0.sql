-- raceguard 1.0 install script.
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

-- The parsed arguments of a running_balance trigger (the trigger's own
-- parser, so there is one place that reads them).
CREATE FUNCTION raceguard.running_balance_layout(trigger_oid oid,
    OUT amount name, OUT balance name, OUT groups name[], OUT seq name, OUT initial text)
    RETURNS record
    LANGUAGE c STRICT STABLE
    AS 'MODULE_PATHNAME', 'raceguard_running_balance_layout';

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
    layout := raceguard.running_balance_layout(guard_oids[1]);

    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(g), ', ' ORDER BY o)
      INTO group_columns
      FROM pg_catalog.unnest(layout.groups) WITH ORDINALITY AS u(g, o);
    window_clause := CASE WHEN group_columns IS NULL THEN '' ELSE 'PARTITION BY ' || group_columns END
                     || ' ORDER BY ' || pg_catalog.quote_ident(layout.seq);

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
        coalesce(group_columns, ''), layout.seq, layout.amount, layout.balance, ledger, window_clause)
    USING layout.initial::numeric;
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
-- and type of their own is schema-qualified instead, so nothing planted in
-- the caller's schemas is ever called by them.
-- ---------------------------------------------------------------------------

-- Lease tokens: unique in the database, one per claim_lease() call. Dumped
-- with the data, so a restored database never hands out a token again.
CREATE SEQUENCE raceguard.lease_token_seq AS bigint;
SELECT pg_catalog.pg_extension_config_dump('raceguard.lease_token_seq', '');

-- The table whose row type target has, schema-qualified and quoted.
CREATE FUNCTION raceguard.claim_target_table(target_type regtype) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    table_oid oid;
    table_kind "char";
    qualified text;
BEGIN
    SELECT c.oid, c.relkind, format('%I.%I', n.nspname, c.relname)
      INTO table_oid, table_kind, qualified
      FROM pg_type t
      JOIN pg_class c ON c.oid = t.typrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE t.oid = target_type;
    IF table_oid IS NULL OR table_kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not the row type of a table', target_type
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Pass a NULL of the table''s row type, e.g. raceguard.claim(NULL::invoices, ...).';
    END IF;
    IF NOT has_any_column_privilege(table_oid, 'UPDATE') THEN
        RAISE EXCEPTION 'permission denied for table %: claiming a row locks it, which needs UPDATE privilege',
            table_oid::regclass
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN qualified;
END
$function$;

-- Checks the lease columns of claim_lease(), release_lease(), extend_lease().
CREATE FUNCTION raceguard.check_lease_columns(target_type regtype, token_column name, until_column name)
    RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    table_oid oid := (SELECT typrelid FROM pg_type WHERE oid = target_type);
    column_type regtype;
    wanted record;
BEGIN
    FOR wanted IN SELECT * FROM (VALUES (token_column, 'bigint'::regtype, 'token_column'),
                                        (until_column, 'timestamp with time zone'::regtype, 'until_column'))
                               AS w(column_name, column_type, parameter)
    LOOP
        IF wanted.column_name IS NULL THEN
            RAISE EXCEPTION '% must not be NULL', wanted.parameter USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT a.atttypid INTO column_type
          FROM pg_attribute a
         WHERE a.attrelid = table_oid AND a.attname = wanted.column_name AND a.attnum > 0 AND NOT a.attisdropped;
        IF column_type IS NULL THEN
            RAISE EXCEPTION 'column "%" of table % does not exist', wanted.column_name, table_oid::regclass
                USING ERRCODE = 'undefined_column',
                      HINT = format('A lease needs a %s column (%s) on the table.', wanted.column_type, wanted.parameter);
        END IF;
        IF column_type <> wanted.column_type THEN
            RAISE EXCEPTION 'column "%" of table % has type %, a lease''s % needs %',
                wanted.column_name, table_oid::regclass, column_type, wanted.parameter, wanted.column_type
                USING ERRCODE = 'datatype_mismatch';
        END IF;
    END LOOP;
END
$function$;

CREATE FUNCTION raceguard.claim(target anyelement, filter text DEFAULT 'true', batch integer DEFAULT 1,
                                order_by text DEFAULT NULL)
    RETURNS SETOF anyelement
    LANGUAGE plpgsql VOLATILE ROWS 10
AS $function$
DECLARE
    table_name pg_catalog.text := raceguard.claim_target_table(pg_catalog.pg_typeof(target));
BEGIN
    IF batch IS NULL OR batch OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'batch must be at least 1, not %', batch USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY EXECUTE pg_catalog.format(
        'SELECT * FROM %s WHERE (%s) %s LIMIT $1 FOR UPDATE SKIP LOCKED',
        table_name,
        COALESCE(filter, 'true'),
        CASE WHEN order_by IS NULL OR order_by OPERATOR(pg_catalog.=) '' THEN ''
             ELSE pg_catalog.format('ORDER BY %s', order_by) END)
    USING batch;
END
$function$;

CREATE FUNCTION raceguard.claim_lease(target anyelement, filter text, batch integer, lease interval,
                                      order_by text DEFAULT NULL,
                                      token_column name DEFAULT 'claim_token',
                                      until_column name DEFAULT 'claimed_until')
    RETURNS SETOF anyelement
    LANGUAGE plpgsql VOLATILE ROWS 10
AS $function$
DECLARE
    table_name pg_catalog.text := raceguard.claim_target_table(pg_catalog.pg_typeof(target));
BEGIN
    PERFORM raceguard.check_lease_columns(pg_catalog.pg_typeof(target), token_column, until_column);
    IF batch IS NULL OR batch OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'batch must be at least 1, not %', batch USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lease IS NULL OR lease OPERATOR(pg_catalog.<=) '0'::pg_catalog.interval THEN
        RAISE EXCEPTION 'lease must be a positive interval, not %', lease USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Lock what is claimable (not leased, or the lease ran out; not locked),
    -- then write one new token and the expiry into exactly those rows.
    RETURN QUERY EXECUTE pg_catalog.format(
        'WITH claimable AS ('
        '    SELECT tableoid AS claimed_table, ctid AS claimed_row FROM %1$s'
        '    WHERE (%4$s) AND (%3$I IS NULL OR %3$I OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp())'
        '    %5$s LIMIT $3 FOR UPDATE SKIP LOCKED)'
        ' UPDATE %1$s SET %2$I = $1, %3$I = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) $2'
        ' FROM claimable'
        ' WHERE %1$s.tableoid OPERATOR(pg_catalog.=) claimable.claimed_table'
        '   AND %1$s.ctid OPERATOR(pg_catalog.=) claimable.claimed_row'
        ' RETURNING %1$s.*',
        table_name, token_column, until_column,
        COALESCE(filter, 'true'),
        CASE WHEN order_by IS NULL OR order_by OPERATOR(pg_catalog.=) '' THEN ''
             ELSE pg_catalog.format('ORDER BY %s', order_by) END)
    USING pg_catalog.nextval('raceguard.lease_token_seq'::pg_catalog.regclass), lease, batch;
END
$function$;

CREATE FUNCTION raceguard.release_lease(target anyelement, token bigint,
                                        token_column name DEFAULT 'claim_token',
                                        until_column name DEFAULT 'claimed_until')
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
AS $function$
DECLARE
    table_name pg_catalog.text := raceguard.claim_target_table(pg_catalog.pg_typeof(target));
    released pg_catalog.int8;
BEGIN
    PERFORM raceguard.check_lease_columns(pg_catalog.pg_typeof(target), token_column, until_column);
    IF token IS NULL THEN
        RAISE EXCEPTION 'token must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Fencing: only rows that still hold this token.
    EXECUTE pg_catalog.format('UPDATE %1$s SET %2$I = NULL, %3$I = NULL WHERE %2$I OPERATOR(pg_catalog.=) $1',
                              table_name, token_column, until_column)
    USING token;
    GET DIAGNOSTICS released = ROW_COUNT;
    RETURN released;
END
$function$;

CREATE FUNCTION raceguard.extend_lease(target anyelement, token bigint, lease interval,
                                       token_column name DEFAULT 'claim_token',
                                       until_column name DEFAULT 'claimed_until')
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
AS $function$
DECLARE
    table_name pg_catalog.text := raceguard.claim_target_table(pg_catalog.pg_typeof(target));
    extended pg_catalog.int8;
BEGIN
    PERFORM raceguard.check_lease_columns(pg_catalog.pg_typeof(target), token_column, until_column);
    IF token IS NULL THEN
        RAISE EXCEPTION 'token must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lease IS NULL OR lease OPERATOR(pg_catalog.<=) '0'::pg_catalog.interval THEN
        RAISE EXCEPTION 'lease must be a positive interval, not %', lease USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE pg_catalog.format(
        'UPDATE %1$s SET %3$I = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) $2 WHERE %2$I OPERATOR(pg_catalog.=) $1',
        table_name, token_column, until_column)
    USING token, lease;
    GET DIAGNOSTICS extended = ROW_COUNT;
    RETURN extended;
END
$function$;

COMMENT ON FUNCTION raceguard.claim(anyelement, text, integer, text) IS
    'locks and returns up to batch rows matching filter, skipping rows other transactions hold (FOR UPDATE SKIP LOCKED)';
COMMENT ON FUNCTION raceguard.claim_lease(anyelement, text, integer, interval, text, name, name) IS
    'leases up to batch matching rows that are not leased or locked: writes a new token and clock_timestamp() + lease, returns the rows as written';
COMMENT ON FUNCTION raceguard.release_lease(anyelement, bigint, name, name) IS
    'clears the lease of the rows that still hold token; returns how many';
COMMENT ON FUNCTION raceguard.extend_lease(anyelement, bigint, interval, name, name) IS
    'sets the expiry of the rows that still hold token to clock_timestamp() + lease; returns how many';

-- Anyone may use the guards in CREATE TRIGGER and call the helpers (which
-- run with the caller's own privileges); a claim_lease() caller takes tokens.
GRANT USAGE ON SCHEMA raceguard TO PUBLIC;
GRANT USAGE ON SEQUENCE raceguard.lease_token_seq TO PUBLIC;
