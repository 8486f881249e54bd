-- A lease's expiry: clock_timestamp() + lease, computed once per call, and
-- accepted only when it is later than clock_timestamp(). An interval that
-- compares greater than zero is not enough: interval comparison counts a
-- month as 30 days and a day as 24 hours, while adding one to a time counts
-- calendar months and days.
CREATE TABLE expiring (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz);
INSERT INTO expiring (id) SELECT generate_series(1, 4);

-- Never later than now, from any date, although "positive" as an interval
-- (a year back is 365 or 366 days): refused, nothing leased or extended.
SELECT interval '-1 year 361 days' > interval '0' AS compares_positive;
SELECT * FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::expiring, 'true', 4, '-1 year 361 days')$$) \gx
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::expiring, 'true', 4, '1 month -31 days')$$);
SELECT count(*) AS leased FROM expiring WHERE claim_token IS NOT NULL;
CREATE TEMP TABLE taken AS SELECT id, claim_token FROM raceguard.claim_lease(NULL::expiring, 'id = 1', 1, '1 hour');
SELECT * FROM regress.error_of($$SELECT raceguard.extend_lease(NULL::expiring, (SELECT claim_token FROM taken), '-1 year 361 days')$$) \gx
SELECT sqlstate, message FROM regress.error_of($$SELECT raceguard.extend_lease(NULL::expiring, (SELECT claim_token FROM taken), '1 month -31 days')$$);
-- Row 1 still holds its hour, so it is not claimable.
SELECT claimed_until > clock_timestamp() + interval '59 minutes' AS still_an_hour FROM expiring WHERE id = 1;
SELECT count(*) AS claimable_again FROM raceguard.claim_lease(NULL::expiring, 'id = 1', 1, '1 hour');

-- Leases whose effect depends on today's date (and, for days, on the
-- session's time zone): each is accepted exactly when SQL's own
-- clock_timestamp() + lease > clock_timestamp() holds now.
CREATE FUNCTION pg_temp.accepted_as_sql_says(lease interval) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := clock_timestamp();
    expected boolean := now_ + lease > now_;
    accepted boolean;
BEGIN
    BEGIN
        PERFORM raceguard.claim_lease(NULL::expiring, 'id = 4', 1, lease);
        accepted := true;
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'undo';  -- rolls the lease back
    EXCEPTION
        WHEN invalid_parameter_value THEN accepted := false;
        WHEN raise_exception THEN NULL;
    END;
    RETURN accepted IS NOT DISTINCT FROM expected;
END $$;
SELECT lease, pg_temp.accepted_as_sql_says(lease) AS agrees
  FROM unnest(ARRAY['1 month -29 days', '1 month -30 days', '1 month -28 days -1 second', '-1 month 31 days',
                    '1 day -23 hours -59 minutes', '1 year -365 days', '2 months -59 days']::interval[]) AS lease;

-- The expiry is now + lease, the same for every row of a call, between the
-- times before and after the call plus the lease; extend_lease likewise.
UPDATE expiring SET claim_token = NULL, claimed_until = NULL;
CREATE TEMP TABLE clock (label text, at timestamptz);
INSERT INTO clock VALUES ('before', clock_timestamp());
CREATE TEMP TABLE month_lease AS SELECT * FROM raceguard.claim_lease(NULL::expiring, 'true', 4, '1 month 1 second');
INSERT INTO clock VALUES ('after', clock_timestamp());
SELECT count(*) AS rows, count(DISTINCT claimed_until) AS expiries,
       bool_and(claimed_until BETWEEN (SELECT at FROM clock WHERE label = 'before') + interval '1 month 1 second'
                                  AND (SELECT at FROM clock WHERE label = 'after') + interval '1 month 1 second') AS now_plus_lease
  FROM month_lease;
TRUNCATE clock;
INSERT INTO clock VALUES ('before', clock_timestamp());
SELECT raceguard.extend_lease(NULL::expiring, (SELECT min(claim_token) FROM month_lease), '3 days') AS extended;
INSERT INTO clock VALUES ('after', clock_timestamp());
SELECT count(DISTINCT claimed_until) AS expiries,
       bool_and(claimed_until BETWEEN (SELECT at FROM clock WHERE label = 'before') + interval '3 days'
                                  AND (SELECT at FROM clock WHERE label = 'after') + interval '3 days') AS now_plus_lease
  FROM expiring;

-- A lease past the end of time is an error of its own.
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::expiring, 'true', 1, '170000000 years')$$);
SELECT count(*) AS lease_changed FROM expiring e JOIN month_lease m USING (id) WHERE e.claim_token IS DISTINCT FROM m.claim_token;
DROP TABLE expiring;
