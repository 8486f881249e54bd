-- The database dumped on one PostgreSQL major and restored into the later
-- ones (test/dump/across_majors.sh): a guard of every kind, all working, a
-- ledger partitioned by month, and jobs holding leases.
CREATE EXTENSION raceguard;
CREATE SCHEMA app;

CREATE TABLE app.orders (id integer PRIMARY KEY, texter_id integer, note text, lock_version integer NOT NULL DEFAULT 1);
CREATE TRIGGER orders_lock_version BEFORE INSERT OR UPDATE ON app.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('lock_version', 'strict=true');
CREATE TRIGGER orders_texter AFTER UPDATE ON app.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('texter_id');
INSERT INTO app.orders (id) SELECT g FROM generate_series(1, 100) g;
UPDATE app.orders SET texter_id = id, lock_version = lock_version WHERE id % 2 = 0;

CREATE TABLE app.payments (account_id integer NOT NULL, amount numeric(12,2), balance numeric(12,2), entry_no bigint);
CREATE UNIQUE INDEX payments_chain ON app.payments (account_id, entry_no);
CREATE TRIGGER payments_running_balance BEFORE INSERT OR UPDATE OR DELETE ON app.payments
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=entry_no', 'min_balance=0');
INSERT INTO app.payments (account_id, amount) SELECT g % 7, g FROM generate_series(1, 500) g;
INSERT INTO app.payments (account_id, amount) SELECT g % 7, -g / 4.0 FROM generate_series(1, 100) g;

CREATE TABLE app.ledger (account_id integer NOT NULL, booked date NOT NULL, amount bigint, balance bigint, n bigint)
    PARTITION BY RANGE (booked);
CREATE TABLE app.ledger_2026_01 PARTITION OF app.ledger FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE app.ledger_2026_02 PARTITION OF app.ledger FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE INDEX ledger_chain ON app.ledger (account_id, n);
CREATE TRIGGER ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON app.ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n');
INSERT INTO app.ledger (account_id, booked, amount)
    SELECT g % 3, date '2026-01-01' + (g % 50), g - 100 FROM generate_series(1, 300) g;

CREATE TABLE app.jobs (id integer PRIMARY KEY, status text NOT NULL DEFAULT 'pending',
                       claim_token bigint, claimed_until timestamptz);
INSERT INTO app.jobs (id) SELECT g FROM generate_series(1, 60) g;
SELECT count(*) FROM raceguard.claim_lease(NULL::app.jobs, 'status = ''pending''', 10, '1 hour');
SELECT count(*) FROM raceguard.claim_lease(NULL::app.jobs, 'status = ''pending''', 10, '1 hour');
SELECT count(*) FROM raceguard.claim_lease(NULL::app.jobs, 'status = ''pending''', 5, '1 hour');
