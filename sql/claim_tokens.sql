-- Lease tokens: the WAL timeline times 2^48 plus a value of
-- raceguard.lease_token_seq. pg_upgrade (and a restore into a new cluster)
-- starts on timeline 1 again; raceguard.lease_tokens_after_upgrade(old
-- timeline) then moves the sequence up by as many blocks of 2^48 values as
-- the old timeline, above every token any earlier timeline can have handed
-- out, and bounds it to its new block (MAXVALUE); claim_lease uses a value
-- past the first block only within such a bound. Each part runs in a
-- transaction rolled back at its end that begins with ALTER SEQUENCE ...
-- RESTART: that gives the sequence new storage in the transaction, so all
-- that follows, setval() included (which no rollback undoes otherwise),
-- rolls back with it.
CREATE TABLE tokened (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz);
INSERT INTO tokened (id) SELECT generate_series(1, 10);
-- A token's parts: the timeline plus the sequence's block, and the value.
CREATE FUNCTION pg_temp.high(token bigint) RETURNS bigint LANGUAGE sql AS $$ SELECT token >> 48 $$;
CREATE FUNCTION pg_temp.low(token bigint) RETURNS bigint LANGUAGE sql AS $$ SELECT token & ((1::bigint << 48) - 1) $$;

-- As it comes: the timeline in the high bits, the sequence value below.
SELECT pg_temp.high(claim_token) = (SELECT timeline_id FROM pg_control_checkpoint()) AS timeline_high,
       pg_temp.low(claim_token) = (SELECT last_value FROM raceguard.lease_token_seq) AS sequence_low
  FROM raceguard.claim_lease(NULL::tokened, 'id = 1', 1, '1 hour');
CREATE TEMP TABLE sequence_before AS
    SELECT last_value, is_called, (SELECT seqmax FROM pg_sequence WHERE seqrelid = 'raceguard.lease_token_seq'::regclass) AS max_value
      FROM raceguard.lease_token_seq;
CREATE FUNCTION pg_temp.sequence_as_before() RETURNS boolean LANGUAGE sql AS $$
    SELECT s.last_value = b.last_value AND s.is_called = b.is_called
           AND (SELECT seqmax FROM pg_sequence WHERE seqrelid = 'raceguard.lease_token_seq'::regclass) = b.max_value
      FROM raceguard.lease_token_seq s, sequence_before b $$;

-- After pg_upgrade from a cluster on timeline 3: the sequence moves up 3
-- blocks (its value below 2^48 kept), bounded to the end of block 3, so a
-- token on timeline 1 has 1 + 3 in its high bits: above every token of
-- timelines 1 to 3 in block 0 (all below 4 * 2^48, the value returned).
-- The move is committed synchronously even where the caller's
-- synchronous_commit is off.
BEGIN;
ALTER SEQUENCE raceguard.lease_token_seq RESTART;
SELECT setval('raceguard.lease_token_seq', last_value, is_called) IS NOT NULL AS where_it_was FROM sequence_before;
SET LOCAL synchronous_commit = off;
CREATE TEMP TABLE next_before AS SELECT last_value + 1 AS next_value FROM raceguard.lease_token_seq;
SELECT raceguard.lease_tokens_after_upgrade(3) AS boundary, 4 * (1::bigint << 48) AS four_blocks,
       current_setting('synchronous_commit') AS synchronous_commit;
SELECT last_value = (SELECT next_value FROM next_before) + 3 * (1::bigint << 48) AS moved_three_blocks, is_called,
       (SELECT seqmax FROM pg_sequence WHERE seqrelid = 'raceguard.lease_token_seq'::regclass) = 4 * (1::bigint << 48) - 1 AS bounded
  FROM raceguard.lease_token_seq;
SELECT pg_temp.high(claim_token) AS high, claim_token >= 4 * (1::bigint << 48) AS above_boundary,
       claim_token > (SELECT max(claim_token) FROM tokened WHERE id <> 2) AS above_earlier_token
  FROM raceguard.claim_lease(NULL::tokened, 'id = 2', 1, '1 hour');
-- A second pg_upgrade, from timeline 2: two blocks more.
SELECT raceguard.lease_tokens_after_upgrade(2) = 6 * (1::bigint << 48) AS boundary_six_blocks;
SELECT pg_temp.high(claim_token) AS high FROM raceguard.claim_lease(NULL::tokened, 'id = 3', 1, '1 hour');
ROLLBACK;
SELECT pg_temp.sequence_as_before() AS sequence_as_before;

-- The bound: the last value of the block is used, the next one is refused
-- by the sequence itself, and nothing is leased.
BEGIN;
ALTER SEQUENCE raceguard.lease_token_seq RESTART;
SELECT raceguard.lease_tokens_after_upgrade(1) = 2 * (1::bigint << 48) AS boundary_two_blocks;
SELECT setval('raceguard.lease_token_seq', 2 * (1::bigint << 48) - 1, false) IS NOT NULL AS at_block_end;
SELECT pg_temp.high(claim_token) AS high, pg_temp.low(claim_token) = (1::bigint << 48) - 1 AS last_of_block
  FROM raceguard.claim_lease(NULL::tokened, 'id = 4', 1, '1 hour');
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::tokened, 'id = 5', 1, '1 hour')$$);
SELECT count(*) AS leased FROM tokened WHERE id = 5 AND claim_token IS NOT NULL;
ROLLBACK;

-- A value past 2^48 without that bound (a sequence restored from a dump
-- keeps its value, not its MAXVALUE) is refused, and so is a sequence that
-- ran out of its first 2^48 values; the last of those is still used.
BEGIN;
ALTER SEQUENCE raceguard.lease_token_seq RESTART;
SELECT setval('raceguard.lease_token_seq', (1::bigint << 48) + 5) IS NOT NULL AS restored_past_first_block;
SELECT * FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::tokened, 'id = 6', 1, '1 hour')$$) \gx
SELECT count(*) AS leased FROM tokened WHERE id = 6 AND claim_token IS NOT NULL;
-- The function moves such a sequence and bounds it: leases work again.
SELECT raceguard.lease_tokens_after_upgrade(1) = 3 * (1::bigint << 48) AS boundary_three_blocks;
SELECT pg_temp.high(claim_token) AS high FROM raceguard.claim_lease(NULL::tokened, 'id = 6', 1, '1 hour');
ROLLBACK;
BEGIN;
ALTER SEQUENCE raceguard.lease_token_seq RESTART;
SELECT setval('raceguard.lease_token_seq', (1::bigint << 48) - 1, false) IS NOT NULL AS at_first_block_end;
SELECT pg_temp.high(claim_token) AS high FROM raceguard.claim_lease(NULL::tokened, 'id = 7', 1, '1 hour');
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::tokened, 'id = 8', 1, '1 hour')$$);
ROLLBACK;

-- The highest blocks: after a move to block 32766 a token on timeline 1
-- still fits (high bits 32767); a move that leaves no timeline is refused.
BEGIN;
ALTER SEQUENCE raceguard.lease_token_seq RESTART;
SELECT raceguard.lease_tokens_after_upgrade(32766) = 32767 * (1::bigint << 48) AS boundary_last_block;
SELECT pg_temp.high(claim_token) AS high, claim_token > 0 AS positive
  FROM raceguard.claim_lease(NULL::tokened, 'id = 9', 1, '1 hour');
SELECT sqlstate, message FROM regress.error_of($$SELECT raceguard.lease_tokens_after_upgrade(1)$$);
ROLLBACK;
SELECT pg_temp.sequence_as_before() AS sequence_as_before;

-- Bad old_timeline: refused (32767 leaves no timeline above it), the
-- sequence unchanged. It needs the sequence's owner (the superuser who
-- created the extension): PUBLIC may not run it, and a role allowed to
-- cannot move the sequence (SECURITY INVOKER).
SELECT * FROM regress.error_of($$SELECT raceguard.lease_tokens_after_upgrade(0)$$) \gx
SELECT sqlstate, message FROM regress.error_of($$SELECT raceguard.lease_tokens_after_upgrade(-1)$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT raceguard.lease_tokens_after_upgrade(NULL)$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT raceguard.lease_tokens_after_upgrade(32767)$$);
SELECT sqlstate, message FROM regress.error_of($$SELECT raceguard.lease_tokens_after_upgrade(32768)$$);
CREATE ROLE regress_token_worker;
GRANT USAGE ON SCHEMA regress TO regress_token_worker;
SET ROLE regress_token_worker;
SELECT sqlstate, message FROM regress.error_of($$SELECT raceguard.lease_tokens_after_upgrade(2)$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION raceguard.lease_tokens_after_upgrade(integer) TO regress_token_worker;
SET ROLE regress_token_worker;
SELECT sqlstate, message FROM regress.error_of($$SELECT raceguard.lease_tokens_after_upgrade(2)$$);
RESET ROLE;
REVOKE ALL ON FUNCTION raceguard.lease_tokens_after_upgrade(integer) FROM regress_token_worker;
REVOKE ALL ON SCHEMA regress FROM regress_token_worker;
DROP ROLE regress_token_worker;
SELECT pg_temp.sequence_as_before() AS sequence_as_before;
DROP TABLE tokened;
