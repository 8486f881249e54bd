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
