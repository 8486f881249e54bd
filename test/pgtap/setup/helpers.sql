-- Helpers for the pgTAP suite, loaded once into its database before pg_prove
-- runs (test/suites.sh).
CREATE SCHEMA tap_helpers;

-- The CONSTRAINT_NAME a statement's check violation carries, as an ORM reads
-- it (Ecto's check_constraint, Rails' error cause); NULL when it succeeds.
CREATE FUNCTION tap_helpers.violated_constraint(statement text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    name text;
BEGIN
    EXECUTE statement;
    RETURN NULL;
EXCEPTION WHEN check_violation THEN
    GET STACKED DIAGNOSTICS name = CONSTRAINT_NAME;
    RETURN name;
END
$$;
