-- raceguard.running_balance(): bad definitions fail at the first row with an
-- error naming the trigger, the table and the argument; nothing is written.
CREATE TABLE ledger (account_id integer, amount bigint, balance bigint, entry_no bigint,
                     label text, price numeric, n integer);
CREATE INDEX ON ledger (account_id, entry_no);
CREATE FUNCTION regress.try_running_balance(VARIADIC arguments text[]) RETURNS SETOF regress.error_report
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'DROP TRIGGER IF EXISTS ledger_balance ON ledger';
    EXECUTE format('CREATE TRIGGER ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON ledger '
                   'FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance(%s)',
                   (SELECT string_agg(quote_literal(a), ', ') FROM unnest(arguments) a));
    RETURN QUERY SELECT * FROM regress.error_of($i$INSERT INTO ledger (account_id, amount) VALUES (1, 1)$i$);
END $$;

SELECT sqlstate, message, hint FROM regress.try_running_balance('amount');
SELECT sqlstate, message, hint FROM regress.try_running_balance('amount', 'balance', 'account_id');
SELECT sqlstate, message FROM regress.try_running_balance('amount', 'balanse', 'account_id', 'seq=entry_no');
SELECT sqlstate, message FROM regress.try_running_balance('label', 'balance', 'account_id', 'seq=entry_no');
SELECT sqlstate, message FROM regress.try_running_balance('amount', 'price', 'account_id', 'seq=entry_no');
SELECT sqlstate, message FROM regress.try_running_balance('amount', 'balance', 'account_id', 'seq=label');
SELECT sqlstate, message FROM regress.try_running_balance('amount', 'balance', 'account_id', 'seq=balance');
SELECT sqlstate, message FROM regress.try_running_balance('amount', 'balance', 'amount', 'seq=entry_no');
SELECT sqlstate, message FROM regress.try_running_balance('amount', 'balance', 'account_id', 'account_id', 'seq=entry_no');
SELECT sqlstate, message FROM regress.try_running_balance('amount', 'balance', 'account_id', 'seq=entry_no', 'initial=ten');
SELECT sqlstate, message FROM regress.try_running_balance('amount', 'balance', 'account_id', 'seq=entry_no', 'initial=1.5');
SELECT sqlstate, message FROM regress.try_running_balance('amount', 'balance', 'account_id', 'seq=entry_no', 'min_balance=99999999999999999999');
SELECT sqlstate, message FROM regress.try_running_balance('amount', 'balance', 'account_id', 'seq=entry_no', 'min_balance=');
SELECT sqlstate, message FROM regress.try_running_balance('amount', 'balance', 'account_id', 'seq=entry_no', 'overdraft=0');
SELECT sqlstate, message FROM regress.try_running_balance('amount', 'balance', 'account_id', 'seq=entry_no', 'xmin');
-- The index that finds a group's last entry is required (55000).
SELECT * FROM regress.try_running_balance('amount', 'balance', 'label', 'seq=entry_no') \gx
SELECT sqlstate, message FROM regress.try_running_balance('amount', 'balance', 'seq=n');
DROP TRIGGER ledger_balance ON ledger;
SELECT count(*) AS written FROM ledger;

-- Fired the wrong way (39P01).
CREATE TRIGGER ledger_statement BEFORE INSERT ON ledger FOR EACH STATEMENT EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account_id', 'seq=entry_no');
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO ledger (account_id, amount) VALUES (1, 1)$$);
DROP TRIGGER ledger_statement ON ledger;
CREATE TRIGGER ledger_after AFTER INSERT ON ledger FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account_id', 'seq=entry_no');
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO ledger (account_id, amount) VALUES (1, 1)$$);
DROP TRIGGER ledger_after ON ledger;
CREATE TRIGGER ledger_update_only BEFORE UPDATE ON ledger FOR EACH ROW EXECUTE FUNCTION
    raceguard.running_balance('amount', 'balance', 'account_id', 'seq=entry_no');
INSERT INTO ledger (account_id, amount) VALUES (1, 1);
SELECT sqlstate, message FROM regress.error_of($$UPDATE ledger SET label = 'x'$$);
DROP TRIGGER ledger_update_only ON ledger;
SELECT account_id, amount, balance, entry_no, label FROM ledger;
