-- raceguard.running_balance() and verify_running_balance() as an
-- application's own test suite would check them.
BEGIN;
SELECT plan(12);

SELECT has_function('raceguard', 'running_balance', ARRAY[]::name[]);
SELECT function_returns('raceguard', 'running_balance', ARRAY[]::name[], 'trigger');
SELECT has_function('raceguard', 'verify_running_balance', ARRAY['regclass']);
SELECT function_returns('raceguard', 'verify_running_balance', ARRAY['regclass'], 'setof record');
SELECT is(
    (SELECT pg_get_function_result('raceguard.verify_running_balance(regclass)'::regprocedure)),
    'TABLE(group_key text, seq bigint, problem text, expected numeric, stored numeric)',
    'verify_running_balance returns the documented columns');

CREATE TABLE payments (account_id integer, amount bigint, running_balance bigint, entry_no bigint);
CREATE UNIQUE INDEX ON payments (account_id, entry_no);
CREATE TRIGGER payments_running_balance BEFORE INSERT OR UPDATE OR DELETE ON payments
    FOR EACH ROW EXECUTE FUNCTION
        raceguard.running_balance('amount', 'running_balance', 'account_id', 'seq=entry_no', 'min_balance=0');
INSERT INTO payments (account_id, amount) VALUES (1, 100), (2, 10), (1, -40), (1, 5), (2, 1);

SELECT results_eq(
    'SELECT account_id, entry_no, running_balance FROM payments ORDER BY account_id, entry_no',
    $$VALUES (1, 1::bigint, 100::bigint), (1, 2, 60), (1, 3, 65), (2, 1, 10), (2, 2, 11)$$,
    'each account has its own chain');
SELECT is_empty('SELECT * FROM raceguard.verify_running_balance(''payments'')', 'the ledger verifies');

SELECT throws_ok($$INSERT INTO payments (account_id, amount) VALUES (2, -12)$$, '23514',
    'append to table "payments" would take the balance below min_balance', 'min_balance refuses an overdraft');
SELECT throws_ok($$INSERT INTO payments (account_id, amount) VALUES (2, NULL)$$, '23502', NULL, 'an amount is required');
SELECT throws_ok($$UPDATE payments SET amount = 1$$, '23514', NULL, 'ledger entries cannot be changed');
SELECT throws_ok($$DELETE FROM payments$$, '23514', NULL, 'ledger entries cannot be deleted');

-- A ledger corrupted behind the guard's back is caught.
ALTER TABLE payments DISABLE TRIGGER payments_running_balance;
UPDATE payments SET running_balance = 0 WHERE account_id = 1 AND entry_no = 2;
ALTER TABLE payments ENABLE TRIGGER payments_running_balance;
SELECT results_eq(
    'SELECT group_key, seq, problem, expected, stored FROM raceguard.verify_running_balance(''payments'')',
    $$VALUES ('(1)', 2::bigint, 'balance', 60::numeric, 0::numeric), ('(1)', 3, 'balance', 5, 65)$$,
    'verify_running_balance reports the broken links');

SELECT * FROM finish();
ROLLBACK;
