-- Run in a database restored from test/dump/majors_source.sql's dump (on
-- another major): one row per check, `check|ok|detail`. Variable:
-- :source_token, the largest lease token at dump time.
CREATE FUNCTION pg_temp.sqlstate_of(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

SELECT 'check_guards() is empty', count(*) = 0, coalesce(string_agg(format('%s %s: %s', table_name, trigger_name, problem), '; '), '')
  FROM raceguard.check_guards();
SELECT 'the guards are all there, enabled', count(*) FILTER (WHERE clone_of IS NULL) = 4 AND count(*) = 6 AND bool_and(enabled),
       string_agg(format('%s %s %s', table_name, trigger_name, guard), '; ' ORDER BY table_name::text, trigger_name)
  FROM raceguard.guards;
SELECT 'verify_running_balance(app.payments) is empty', count(*) = 0, coalesce(string_agg(format('%s %s %s', group_key, seq, problem), '; '), '')
  FROM raceguard.verify_running_balance('app.payments');
SELECT 'verify_running_balance(app.ledger) is empty', count(*) = 0, coalesce(string_agg(format('%s %s %s', group_key, seq, problem), '; '), '')
  FROM raceguard.verify_running_balance('app.ledger');

-- The lease token sequence did not go backwards: the leases kept their
-- tokens, and a new lease's token is past every token handed out before the
-- dump (:source_token, the largest).
SELECT 'leases: the 25 leased jobs kept their tokens', count(*) = 25 AND max(claim_token) = :source_token,
       format('%s leased, largest token %s, at dump %s', count(*), max(claim_token), :source_token)
  FROM app.jobs WHERE claim_token IS NOT NULL;
SELECT 'leases: a new token is past every dumped one', min(claim_token) > :source_token AND count(*) = 3,
       format('%s rows leased with token %s, largest at dump %s', count(*), min(claim_token), :source_token)
  FROM raceguard.claim_lease(NULL::app.jobs, 'status = ''pending''', 3, '1 hour');

-- Every guard still fires.
SELECT 'lock_version: a stale version fails with 40001', s = '40001', s
  FROM pg_temp.sqlstate_of('UPDATE app.orders SET note = ''x'', lock_version = lock_version - 1 WHERE id = 1') s;
SELECT 'lock_version: strict=true refuses a blind write', s = '40001', s
  FROM pg_temp.sqlstate_of('UPDATE app.orders SET note = ''x'' WHERE id = 1') s;
WITH before AS (SELECT lock_version FROM app.orders WHERE id = 3),
     written AS (UPDATE app.orders SET note = 'y', lock_version = lock_version WHERE id = 3 RETURNING lock_version)
SELECT 'lock_version: an update bumps the version by one', w.lock_version = b.lock_version + 1,
       format('%s -> %s', b.lock_version, w.lock_version)
  FROM before b, written w;
SELECT 'immutable_once_set: a set column cannot change (23514)', s = '23514', s
  FROM pg_temp.sqlstate_of('UPDATE app.orders SET texter_id = 999, lock_version = lock_version WHERE id = 2') s;
WITH written AS (UPDATE app.orders SET texter_id = 77, lock_version = lock_version WHERE id = 1 RETURNING texter_id)
SELECT 'immutable_once_set: a NULL column can be set once', count(*) = 1, format('%s rows', count(*)) FROM written;

WITH last AS (SELECT balance, entry_no FROM app.payments WHERE account_id = 3 ORDER BY entry_no DESC LIMIT 1),
     appended AS (INSERT INTO app.payments (account_id, amount) VALUES (3, 12.50) RETURNING balance, entry_no)
SELECT 'running_balance: an append continues the chain', a.balance = l.balance + 12.50 AND a.entry_no = l.entry_no + 1,
       format('(%s, %s) after (%s, %s)', a.balance, a.entry_no, l.balance, l.entry_no)
  FROM last l, appended a;
SELECT 'running_balance: min_balance refuses an overdraft (23514)', s = '23514', s
  FROM pg_temp.sqlstate_of('INSERT INTO app.payments (account_id, amount) VALUES (3, -1000000)') s;
SELECT 'running_balance: ledger rows cannot change (23514)', s = '23514', s
  FROM pg_temp.sqlstate_of('UPDATE app.payments SET amount = amount + 1 WHERE account_id = 3 AND entry_no = 1') s;
SELECT 'running_balance: ledger rows cannot be deleted (23514)', s = '23514', s
  FROM pg_temp.sqlstate_of('DELETE FROM app.payments WHERE account_id = 4') s;
WITH last AS (SELECT balance, n FROM app.ledger WHERE account_id = 1 ORDER BY n DESC LIMIT 1),
     appended AS (INSERT INTO app.ledger (account_id, booked, amount) VALUES (1, '2026-02-20', 40) RETURNING balance, n)
SELECT 'running_balance: a partitioned ledger keeps one chain across partitions', a.balance = l.balance + 40 AND a.n = l.n + 1,
       format('(%s, %s) after (%s, %s)', a.balance, a.n, l.balance, l.n)
  FROM last l, appended a;
SELECT 'the migration-time check refuses a misspelt column (42703)', s = '42703', s
  FROM pg_temp.sqlstate_of('CREATE TRIGGER misspelt BEFORE UPDATE ON app.orders FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version(''lock_versoin'')') s;
SELECT 'after the appends, both ledgers verify', count(*) = 0, format('%s problems', count(*))
  FROM (SELECT * FROM raceguard.verify_running_balance('app.payments')
        UNION ALL SELECT * FROM raceguard.verify_running_balance('app.ledger')) problems;
