-- Attempts, max_attempts and retry_after (1.1): each lease counts one
-- attempt in attempts_column (NULL counts as 0) in the statement that
-- writes the token and expiry; a row at max_attempts is a dead letter,
-- never leased again; release_lease(..., retry_after) makes released rows
-- claimable only from clock_timestamp() + retry_after. claim_lease returns
-- its rows in order_by order.
CREATE TABLE attempted (id integer PRIMARY KEY, priority integer NOT NULL, attempts integer,
                        claim_token bigint, claimed_until timestamptz, note text);
INSERT INTO attempted (id, priority) SELECT i, (i * 7) % 10 FROM generate_series(1, 10) AS i;

-- Rows come back in order_by order (ascending, descending, by position).
SELECT array_agg(id) AS by_priority FROM raceguard.claim_lease(NULL::attempted, 'true', 10, '1 hour', 'priority, id');
UPDATE attempted SET claim_token = NULL, claimed_until = NULL;
SELECT array_agg(id) AS by_id_desc FROM raceguard.claim_lease(NULL::attempted, 'true', 4, '1 hour', 'id DESC');
SELECT array_agg(id) AS by_second_column FROM raceguard.claim_lease(NULL::attempted, 'true', 3, '1 hour', '2 DESC, 1');
UPDATE attempted SET claim_token = NULL, claimed_until = NULL;

-- Without attempts_column nothing is counted.
SELECT count(*) FILTER (WHERE attempts IS NOT NULL) AS counted FROM attempted;

-- Each lease adds 1 (NULL counts as 0), and the returned rows show it.
UPDATE attempted SET attempts = 5 WHERE id = 2;
SELECT id, attempts FROM raceguard.claim_lease(NULL::attempted, 'id IN (1, 2)', 2, '1 hour', 'id',
                                               attempts_column => 'attempts');
SELECT id, attempts, claim_token IS NOT NULL AS leased FROM attempted WHERE id IN (1, 2) ORDER BY id;

-- max_attempts: a row whose attempts reached it is never leased again, even
-- with its lease run out; it stays, with its last token and expiry.
UPDATE attempted SET claim_token = NULL, claimed_until = NULL, attempts = NULL;
CREATE TEMP TABLE leases (round integer, id integer, attempts integer, token bigint);
DO $$
BEGIN
    FOR round IN 1..4 LOOP
        INSERT INTO leases SELECT round, id, attempts, claim_token
          FROM raceguard.claim_lease(NULL::attempted, 'id = 3', 1, '1 hour', NULL, 'claim_token', 'claimed_until',
                                     'attempts', 2);
        -- The worker died: its lease runs out.
        UPDATE attempted SET claimed_until = clock_timestamp() - interval '1 second' WHERE id = 3;
    END LOOP;
END $$;
SELECT round, id, attempts FROM leases ORDER BY round;
SELECT id, attempts, claim_token = (SELECT max(token) FROM leases) AS last_token_kept, claimed_until IS NOT NULL AS expiry_kept
  FROM attempted WHERE id = 3;
-- The dead-letter query, and a requeue by resetting the column.
SELECT id FROM attempted WHERE attempts >= 2 ORDER BY id;
UPDATE attempted SET attempts = 0 WHERE id = 3;
SELECT id, attempts FROM raceguard.claim_lease(NULL::attempted, 'id = 3', 1, '1 hour', NULL, 'claim_token',
                                               'claimed_until', 'attempts', 2);

-- max_attempts 1: leased once only. smallint and bigint columns count too.
ALTER TABLE attempted ADD COLUMN small_attempts smallint, ADD COLUMN big_attempts bigint;
UPDATE attempted SET claim_token = NULL, claimed_until = NULL;
SELECT id, small_attempts FROM raceguard.claim_lease(NULL::attempted, 'id = 4', 1, '1 hour', NULL, 'claim_token',
                                                     'claimed_until', 'small_attempts', 1);
UPDATE attempted SET claimed_until = NULL WHERE id = 4;
SELECT count(*) AS leased_again FROM raceguard.claim_lease(NULL::attempted, 'id = 4', 1, '1 hour', NULL,
                                                           'claim_token', 'claimed_until', 'small_attempts', 1);
SELECT id, big_attempts FROM raceguard.claim_lease(NULL::attempted, 'id = 5', 1, '1 hour', NULL, 'claim_token',
                                                   'claimed_until', 'big_attempts', 3);
-- A smallint column at its limit cannot count another attempt: the row is
-- left alone (a dead letter), nothing written to it.
UPDATE attempted SET small_attempts = 32767, claimed_until = NULL, claim_token = NULL WHERE id = 6;
SELECT count(*) AS leased FROM raceguard.claim_lease(NULL::attempted, 'id = 6', 1, '1 hour', NULL, 'claim_token', 'claimed_until', 'small_attempts');
SELECT small_attempts, claim_token IS NULL AS not_leased FROM attempted WHERE id = 6;

-- Such a row stops no queue: the rows behind it in order_by order are
-- leased, batch after batch, whatever the column's type (smallint, integer,
-- bigint), with or without max_attempts. A row one below the maximum is
-- leased once more, up to the maximum, and then left alone too.
CREATE TABLE counted (id integer PRIMARY KEY, small smallint, medium integer, big bigint,
                      claim_token bigint, claimed_until timestamptz);
INSERT INTO counted (id) SELECT generate_series(1, 4);
UPDATE counted SET small = 32767, medium = 2147483647, big = 9223372036854775807 WHERE id = 1;
UPDATE counted SET small = 32766, medium = 2147483646, big = 9223372036854775806 WHERE id = 2;
SELECT id, small FROM raceguard.claim_lease(NULL::counted, 'true', 1, '1 hour', 'id', attempts_column => 'small');
SELECT id, small FROM raceguard.claim_lease(NULL::counted, 'true', 4, '1 hour', 'id', attempts_column => 'small');
UPDATE counted SET claim_token = NULL, claimed_until = NULL;
SELECT array_agg(id) AS ids, array_agg(small) AS small
  FROM raceguard.claim_lease(NULL::counted, 'true', 4, '1 hour', 'id', attempts_column => 'small', max_attempts => 32767);
UPDATE counted SET claim_token = NULL, claimed_until = NULL;
SELECT id, medium FROM raceguard.claim_lease(NULL::counted, 'true', 4, '1 hour', 'id', attempts_column => 'medium');
UPDATE counted SET claim_token = NULL, claimed_until = NULL;
SELECT array_agg(id) AS ids, array_agg(medium) AS medium
  FROM raceguard.claim_lease(NULL::counted, 'true', 4, '1 hour', 'id', attempts_column => 'medium', max_attempts => 2147483647);
UPDATE counted SET claim_token = NULL, claimed_until = NULL;
SELECT id, big FROM raceguard.claim_lease(NULL::counted, 'true', 4, '1 hour', 'id', attempts_column => 'big');
UPDATE counted SET claim_token = NULL, claimed_until = NULL;
SELECT array_agg(id) AS ids, array_agg(big) AS big
  FROM raceguard.claim_lease(NULL::counted, 'true', 4, '1 hour', 'id', attempts_column => 'big');
SELECT id, small, medium, big FROM counted ORDER BY id;

-- A max_attempts the column can never reach (above its type's maximum) is
-- refused before anything is written, naming the column, its type and its
-- maximum; the type's maximum itself is accepted (above).
-- (No token is taken either: the sequence, which no rollback moves back,
-- stays where it was.)
UPDATE counted SET claim_token = NULL, claimed_until = NULL, small = NULL WHERE id > 1;
CREATE TEMP TABLE token_before AS SELECT last_value FROM raceguard.lease_token_seq;
SELECT * FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::counted, 'true', 4, '1 hour', 'id', attempts_column => 'small', max_attempts => 40000)$$) \gx
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::counted, 'true', 4, '1 hour', 'id', attempts_column => 'small', max_attempts => 32768)$$);
SELECT count(*) FILTER (WHERE claim_token IS NOT NULL) AS leased, count(small) AS counted,
       (SELECT last_value FROM raceguard.lease_token_seq) = (SELECT last_value FROM token_before) AS no_token_taken
  FROM counted;
DROP TABLE counted, token_before;

-- Bad attempts_column and max_attempts: refused, nothing leased or counted.
UPDATE attempted SET claim_token = NULL, claimed_until = NULL, attempts = NULL;
SELECT * FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::attempted, 'true', 10, '1 hour', attempts_column => 'note')$$) \gx
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::attempted, 'true', 10, '1 hour', attempts_column => 'claimed_until')$$);
SELECT * FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::attempted, 'true', 10, '1 hour', attempts_column => 'tries')$$) \gx
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::attempted, 'true', 10, '1 hour', attempts_column => 'xmin')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::attempted, 'true', 10, '1 hour', attempts_column => 'claim_token')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::attempted, 'true', 10, '1 hour', attempts_column => 'attempts', max_attempts => 0)$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::attempted, 'true', 10, '1 hour', attempts_column => 'attempts', max_attempts => -3)$$);
SELECT * FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::attempted, 'true', 10, '1 hour', max_attempts => 3)$$) \gx
SELECT count(*) FILTER (WHERE claim_token IS NOT NULL) AS leased,
       count(*) FILTER (WHERE attempts IS NOT NULL) AS counted FROM attempted;

-- release_lease with retry_after: the token is cleared and the row is
-- claimable from clock_timestamp() + retry_after, not before.
CREATE TEMP TABLE held AS
    SELECT id, claim_token FROM raceguard.claim_lease(NULL::attempted, 'id IN (7, 8)', 2, '1 hour', 'id');
CREATE TEMP TABLE clock (label text, at timestamptz);
INSERT INTO clock VALUES ('before', clock_timestamp());
SELECT raceguard.release_lease(NULL::attempted, (SELECT min(claim_token) FROM held), retry_after => '10 minutes') AS released;
INSERT INTO clock VALUES ('after', clock_timestamp());
SELECT id, claim_token IS NULL AS token_cleared,
       claimed_until BETWEEN (SELECT at FROM clock WHERE label = 'before') + interval '10 minutes'
                         AND (SELECT at FROM clock WHERE label = 'after') + interval '10 minutes' AS retry_at
  FROM attempted WHERE id IN (7, 8) ORDER BY id;
SELECT count(*) AS claimable_before_retry FROM raceguard.claim_lease(NULL::attempted, 'id IN (7, 8)', 2, '1 hour');
-- Once that time has passed (simulated), claimable again.
UPDATE attempted SET claimed_until = clock_timestamp() - interval '1 second' WHERE id IN (7, 8);
SELECT array_agg(id) AS claimable_after_retry FROM raceguard.claim_lease(NULL::attempted, 'id IN (7, 8)', 2, '1 hour', 'id');

-- retry_after NULL (the default) releases as 1.0 did: claimable at once;
-- zero likewise (claimable from now); negative is refused, nothing released.
CREATE TEMP TABLE again AS SELECT id, claim_token FROM attempted WHERE id IN (7, 8);
SELECT raceguard.release_lease(NULL::attempted, (SELECT min(claim_token) FROM again), retry_after => NULL) AS released_null;
SELECT claim_token, claimed_until FROM attempted WHERE id IN (7, 8);
SELECT array_agg(id) AS leased FROM raceguard.claim_lease(NULL::attempted, 'id IN (7, 8)', 2, '1 hour', 'id');
TRUNCATE again;
INSERT INTO again SELECT id, claim_token FROM attempted WHERE id IN (7, 8);
SELECT raceguard.release_lease(NULL::attempted, (SELECT min(claim_token) FROM again), retry_after => '0') AS released_zero;
SELECT claim_token IS NULL AS token_cleared, claimed_until <= clock_timestamp() AS claimable_now FROM attempted WHERE id IN (7, 8);
SELECT array_agg(id) AS leased FROM raceguard.claim_lease(NULL::attempted, 'id IN (7, 8)', 2, '1 hour', 'id');
TRUNCATE again;
INSERT INTO again SELECT id, claim_token FROM attempted WHERE id IN (7, 8);
SELECT * FROM regress.error_of($$SELECT raceguard.release_lease(NULL::attempted, (SELECT min(claim_token) FROM again), retry_after => '-1 second')$$) \gx
SELECT sqlstate, message FROM regress.error_of($$SELECT raceguard.release_lease(NULL::attempted, (SELECT min(claim_token) FROM again), retry_after => '1 month -32 days')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT raceguard.release_lease(NULL::attempted, NULL, retry_after => '-1 second')$$);
SELECT count(*) AS still_held FROM attempted a JOIN again USING (id) WHERE a.claim_token = again.claim_token;

-- Fencing is unchanged: a token whose rows were leased again (the attempt
-- counted again) releases nothing, with or without retry_after.
UPDATE attempted SET claim_token = NULL, claimed_until = NULL, attempts = NULL;
CREATE TEMP TABLE first_lease AS SELECT id, claim_token FROM raceguard.claim_lease(NULL::attempted, 'id = 9', 1, '1 hour', NULL, 'claim_token', 'claimed_until', 'attempts', 5);
UPDATE attempted SET claimed_until = clock_timestamp() - interval '1 second' WHERE id = 9;
SELECT id, attempts FROM raceguard.claim_lease(NULL::attempted, 'id = 9', 1, '1 hour', NULL, 'claim_token', 'claimed_until', 'attempts', 5);
SELECT raceguard.release_lease(NULL::attempted, (SELECT claim_token FROM first_lease), retry_after => '1 minute') AS stale_release,
       raceguard.extend_lease(NULL::attempted, (SELECT claim_token FROM first_lease), '1 minute') AS stale_extend;
SELECT attempts, claim_token <> (SELECT claim_token FROM first_lease) AS held_by_second, claimed_until > clock_timestamp() + interval '59 minutes' AS hour_kept
  FROM attempted WHERE id = 9;
DROP TABLE attempted;

-- The statement's own names (the CTEs claimed and claimed_order) never meet
-- a table's: tables of those names lease in order, with attempts, and a
-- filter naming the other table reads that table.
CREATE TABLE claimed_order (id integer PRIMARY KEY, tries smallint, claim_token bigint, claimed_until timestamptz);
CREATE TABLE claimed (id integer PRIMARY KEY, tries bigint, claim_token bigint, claimed_until timestamptz);
INSERT INTO claimed_order (id) SELECT generate_series(1, 5);
INSERT INTO claimed (id) SELECT generate_series(1, 5);
SELECT array_agg(id) AS ids, array_agg(tries) AS tries
  FROM raceguard.claim_lease(NULL::claimed_order, 'id IN (SELECT id FROM claimed WHERE id > 1)', 3, '1 hour', 'id DESC',
                             attempts_column => 'tries', max_attempts => 1);
SELECT array_agg(id) AS ids, array_agg(tries) AS tries
  FROM raceguard.claim_lease(NULL::claimed, 'id IN (SELECT id FROM claimed_order WHERE claim_token IS NULL)', 5, '1 hour', 'id',
                             attempts_column => 'tries', max_attempts => 1);
DROP TABLE claimed_order, claimed;

-- A BEFORE UPDATE trigger that skips a row (returns NULL) leaves it
-- unleased: claim_lease returns the rows it did update, in order_by order,
-- and the skipped rows keep no token and count no attempt.
CREATE TABLE skipping (id integer PRIMARY KEY, attempts integer, claim_token bigint, claimed_until timestamptz);
INSERT INTO skipping (id) SELECT generate_series(1, 10);
CREATE FUNCTION skip_multiples_of_three() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id % 3 = 0 THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER skip_multiples_of_three BEFORE UPDATE ON skipping
    FOR EACH ROW EXECUTE FUNCTION skip_multiples_of_three();
SELECT array_agg(id) AS ids, array_agg(attempts) AS attempts
  FROM raceguard.claim_lease(NULL::skipping, 'true', 5, '1 hour', 'id DESC', attempts_column => 'attempts');
SELECT array_agg(id) AS ids, array_agg(attempts) AS attempts
  FROM raceguard.claim_lease(NULL::skipping, 'true', 10, '1 hour', '1', attempts_column => 'attempts');
SELECT count(*) AS all_skipped FROM raceguard.claim_lease(NULL::skipping, 'id % 3 = 0', 10, '1 hour', 'id');
SELECT id, attempts, claim_token IS NOT NULL AS leased FROM skipping ORDER BY id;
DROP TABLE skipping;
DROP FUNCTION skip_multiples_of_three();
