-- Claims and the names of the user's objects: nothing a user names may meet
-- a name the helpers use internally and change what they do. The helpers'
-- statements introduce no output column a user column can be named like;
-- their one name of their own (claim_lease's CTE) differs from the table's
-- name and is not visible to the filter; filter and order_by stay in their
-- clauses and cannot refer to the helpers' parameters.
CREATE SCHEMA names;
SET search_path = names, public;

-- Tables named like anything a helper's statement used or uses: as the
-- target, and as tables the filter reads.
CREATE TABLE claimable (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz);
CREATE TABLE claimed (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz);
CREATE TABLE claimed_rows (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz);
CREATE TABLE token (value bigint);
INSERT INTO claimable (id) SELECT generate_series(1, 4);
INSERT INTO claimed (id) SELECT generate_series(1, 4);
INSERT INTO claimed_rows (id) SELECT generate_series(1, 4);
INSERT INTO token VALUES (2), (3);

-- A target named like an internal name (claimable was 42712, "table name
-- specified more than once"; claimed and claimed_rows are the alias's two
-- choices).
SELECT id, claim_token IS NOT NULL AS leased FROM raceguard.claim_lease(NULL::claimable, 'id = 1', 5, '1 minute');
SELECT id, claim_token IS NOT NULL AS leased FROM raceguard.claim_lease(NULL::claimed, 'id = 1', 5, '1 minute');
SELECT id, claim_token IS NOT NULL AS leased FROM raceguard.claim_lease(NULL::claimed_rows, 'id = 1', 5, '1 minute');
BEGIN;
SELECT id FROM raceguard.claim(NULL::claimable, 'id > 1', 5, 'id');
SELECT id FROM raceguard.claim(NULL::claimed, 'id > 1', 5, 'id');
COMMIT;

-- A filter that reads the user's own tables named token, claimable and
-- claimed sees those tables: rows 2 and 3 (token holds 2 and 3).
SELECT id FROM raceguard.claim_lease(NULL::claimed_rows, 'id IN (SELECT value FROM token) AND id IN (SELECT id FROM claimed)',
                                     5, '1 minute') ORDER BY id;
SELECT id FROM raceguard.claim_lease(NULL::claimable, 'id IN (SELECT value FROM token) AND id IN (SELECT id FROM claimed)',
                                     5, '1 minute') ORDER BY id;
SELECT id FROM raceguard.claim_lease(NULL::claimed, 'id IN (SELECT value FROM token) AND id IN (SELECT id FROM claimable)',
                                     5, '1 minute') ORDER BY id;
-- What was leased: the rows named above and no other.
SELECT 'claimable' AS tab, array_agg(id ORDER BY id) AS leased FROM claimable WHERE claim_token IS NOT NULL
UNION ALL SELECT 'claimed', array_agg(id ORDER BY id) FROM claimed WHERE claim_token IS NOT NULL
UNION ALL SELECT 'claimed_rows', array_agg(id ORDER BY id) FROM claimed_rows WHERE claim_token IS NOT NULL;

-- order_by names the table's columns in claim_lease as in claim, even a
-- column named like an output of the helper's old statement (claimed_row,
-- claimed_table); a position counts the table's columns.
CREATE TABLE queue (id integer PRIMARY KEY, claimed_row integer, claimed_table integer,
                    claim_token bigint, claimed_until timestamptz);
INSERT INTO queue (id, claimed_row, claimed_table) VALUES (1, 30, 1), (2, 10, 3), (3, 20, 2);
BEGIN;
SELECT id FROM raceguard.claim(NULL::queue, 'true', 1, 'claimed_row');
SELECT id FROM raceguard.claim(NULL::queue, 'true', 1, '3 DESC');
ROLLBACK;
SELECT id FROM raceguard.claim_lease(NULL::queue, 'true', 1, '1 minute', 'claimed_row');   -- 2: lowest claimed_row
SELECT id FROM raceguard.claim_lease(NULL::queue, 'true', 1, '1 minute', 'claimed_table DESC');  -- 3
SELECT id FROM raceguard.claim_lease(NULL::queue, 'true', 1, '1 minute', '1 DESC');  -- 1: the only one left
UPDATE queue SET claim_token = NULL, claimed_until = NULL;
SELECT id FROM raceguard.claim_lease(NULL::queue, 'true', 1, '1 minute', '1 DESC');  -- 3: highest id
-- ctid and tableoid, which no user column can be named, are the table's own.
SELECT id FROM raceguard.claim_lease(NULL::queue, 'claim_token IS NULL', 1, '1 minute', 'ctid DESC, id');
-- A position past the table's columns is an error, as in claim().
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::queue, 'true', 1, '1 minute', '6')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::queue, 'true', 1, '6')$$);

-- The helpers' parameters (token, expiry, time) are theirs: a $n in filter
-- or order_by is an error, not a reference to them.
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::queue, 'claim_token = $1 OR true', 5, '1 minute')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::queue, 'true', 5, '1 minute', '$2')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::queue, '$1 IS NULL')$$);

-- filter and order_by stay in their clauses. A trailing comment ends where
-- they end.
UPDATE queue SET claim_token = NULL, claimed_until = NULL;
BEGIN;
SELECT id FROM raceguard.claim(NULL::queue, 'id > 1 -- not the first', 5, 'id -- in order');
ROLLBACK;
SELECT id FROM raceguard.claim_lease(NULL::queue, 'id = 2 -- just one', 5, '1 minute', 'id -- in order');
-- A filter that closes its parenthesis and opens another stays one
-- condition: (id = 2) OR (id = 1) and not leased, so leased row 2 is not
-- leased again.
SELECT id FROM raceguard.claim_lease(NULL::queue, 'id = 2) OR (id = 1', 5, '1 minute');
-- One that adds clauses or statements is refused.
SELECT * FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::queue, 'true) OFFSET (1')$$) \gx
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::queue, 'true) UNION SELECT * FROM queue WHERE (true')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::queue, 'true) LIMIT 1; DELETE FROM queue; SELECT * FROM queue WHERE (true')$$);
SELECT * FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::queue, 'true', 1, 'id LIMIT 3')$$) \gx
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::queue, 'true', 1, 'id FOR SHARE')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::queue, 'true', 1, '1 minute', 'id; UPDATE queue SET claim_token = 0')$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim(NULL::queue, 'true /* unterminated')$$);
-- Nothing was written by the refused calls: rows 1 and 2 are leased, all rows are there.
SELECT id, claim_token IS NOT NULL AS leased FROM queue ORDER BY id;

RESET search_path;
DROP SCHEMA names CASCADE;
