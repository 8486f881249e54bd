-- Shared helpers for the regression tests that follow (they run in order, in
-- one database). error_of() runs a statement and shows the error it raised,
-- field by field, as a client would read them; the statement's writes are
-- rolled back with it, so a following SELECT shows that nothing was written.
CREATE SCHEMA regress;
CREATE TYPE regress.error_report AS (
    sqlstate text, message text, detail text, hint text,
    schema_name text, table_name text, column_name text, constraint_name text);
CREATE FUNCTION regress.error_of(statement text) RETURNS SETOF regress.error_report
LANGUAGE plpgsql AS $$
DECLARE
    state text; msg text; det text; hnt text; sch text; tbl text; col text; con text;
BEGIN
    EXECUTE statement;
    RETURN NEXT ROW('none', 'the statement succeeded', NULL, NULL, NULL, NULL, NULL, NULL)::regress.error_report;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS
        state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
        hnt = PG_EXCEPTION_HINT, sch = SCHEMA_NAME, tbl = TABLE_NAME,
        col = COLUMN_NAME, con = CONSTRAINT_NAME;
    RETURN NEXT ROW(state, msg, nullif(det, ''), nullif(hnt, ''), nullif(sch, ''),
                    nullif(tbl, ''), nullif(col, ''), nullif(con, ''))::regress.error_report;
END
$$;
-- The suites before guards.sql test each guard's own checks at its first row,
-- so they create broken triggers on purpose: the event trigger that refuses
-- those at CREATE TRIGGER time (tested in guards.sql) is off until then.
ALTER EVENT TRIGGER raceguard_validate_guards DISABLE;
SELECT extname, extversion, nspname AS schema
FROM pg_extension JOIN pg_namespace ON pg_namespace.oid = extnamespace
WHERE extname = 'raceguard';
