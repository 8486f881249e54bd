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
