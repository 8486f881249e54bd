-- raceguard.stats for transition guards: rows_checked (every INSERT and
-- UPDATE row checked), transitions_refused (every refused row, a refused
-- start state included) and duplicates_caught (the duplicate transitions
-- among them, which need two sessions: test/isolation/specs/
-- transition_stats.spec). Both columns are NULL for other guards.
-- Without statistics (the alternative output transition_stats_1.out) the
-- view is empty and says so with a NOTICE.
SELECT current_setting('server_version_num')::integer >= 170000
       OR 'raceguard' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
       AS collects;
CREATE SCHEMA transition_stats_test;
SET search_path = transition_stats_test, public;
SELECT raceguard.stats_reset();
CREATE TABLE orders (id integer PRIMARY KEY, status text NOT NULL, lock_version integer);
CREATE TRIGGER orders_lock_version BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
CREATE TRIGGER orders_status BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('status', '>cart', 'cart>paid', 'paid>shipped');
CREATE VIEW counters AS
SELECT trigger_name, guard, rows_checked, transitions_refused, duplicates_caught, stats_reset IS NOT NULL AS counting
FROM raceguard.stats WHERE table_name = 'orders'::regclass ORDER BY trigger_name;
INSERT INTO orders SELECT g, 'cart' FROM generate_series(1, 5) g;           -- 5 checked
UPDATE orders SET status = 'paid' WHERE id <= 3;                           -- 3 checked
UPDATE orders SET lock_version = lock_version WHERE id = 4;                -- 1 checked, unchanged
SELECT sqlstate FROM regress.error_of($$INSERT INTO orders VALUES (6, 'paid')$$);        -- 1 checked, refused
SELECT sqlstate FROM regress.error_of($$UPDATE orders SET status = 'shipped' WHERE id = 5$$);  -- 1, refused
SELECT * FROM counters;
SELECT raceguard.stats_reset();
SELECT * FROM counters;
RESET search_path;
DROP SCHEMA transition_stats_test CASCADE;
