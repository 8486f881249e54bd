-- raceguard 1.0 -> 1.1 update script: attempts and max_attempts for
-- claim_lease(), retry_after for release_lease().
-- Follows PostgreSQL's "Security Considerations for Extensions": no CREATE OR
-- REPLACE, everything schema-qualified, no SECURITY DEFINER.

\echo Use "ALTER EXTENSION raceguard UPDATE TO '1.1'" to load this file. \quit

-- A function's parameter list cannot change in place: the two functions are
-- dropped and created anew, exactly as raceguard--1.1.sql creates them. The
-- DROP fails (2BP01) if an object of the user's depends on one of them (a
-- view or a function body that calls it with SQL-standard syntax, say):
-- drop that object, update, and create it again.
DROP FUNCTION raceguard.claim_lease(anyelement, text, integer, interval, text, name, name);
DROP FUNCTION raceguard.release_lease(anyelement, bigint, name, name);

CREATE FUNCTION raceguard.claim_lease(target anyelement, filter text, batch integer, lease interval,
                                      order_by text DEFAULT NULL,
                                      token_column name DEFAULT 'claim_token',
                                      until_column name DEFAULT 'claimed_until',
                                      attempts_column name DEFAULT NULL,
                                      max_attempts integer DEFAULT NULL)
    RETURNS SETOF anyelement
    LANGUAGE c VOLATILE ROWS 10
    AS 'MODULE_PATHNAME', 'raceguard_claim_lease';

CREATE FUNCTION raceguard.release_lease(target anyelement, token bigint,
                                        token_column name DEFAULT 'claim_token',
                                        until_column name DEFAULT 'claimed_until',
                                        retry_after interval DEFAULT NULL)
    RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'raceguard_release_lease';

COMMENT ON FUNCTION raceguard.claim_lease(anyelement, text, integer, interval, text, name, name, name, integer) IS
    'leases up to batch matching rows that are not leased or locked (nor at max_attempts): writes a new token, clock_timestamp() + lease and one more attempt, returns the rows as written, in order_by order';
COMMENT ON FUNCTION raceguard.release_lease(anyelement, bigint, name, name, interval) IS
    'clears the lease of the rows that still hold token, claimable again at once or from clock_timestamp() + retry_after; returns how many';
