-- The source database of the dump/restore test: guards of every kind, and
-- the guards a dump used to lose at restore (broken ones, a disabled one
-- whose column was renamed since, a ledger whose trigger comes before its
-- index in a parallel restore).
CREATE EXTENSION raceguard;
CREATE SCHEMA app;

-- Guards that work.
CREATE TABLE app.orders (id integer PRIMARY KEY, texter_id integer, note text, lock_version integer NOT NULL DEFAULT 1);
CREATE TRIGGER orders_lock_version BEFORE INSERT OR UPDATE ON app.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('lock_version', 'strict=true');
CREATE TRIGGER orders_texter AFTER UPDATE ON app.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('texter_id', 'allow_unset=true');
INSERT INTO app.orders (id, texter_id) SELECT g, g FROM generate_series(1, 100) g;

CREATE TABLE app.payments (account_id integer NOT NULL, amount numeric(12,2), balance numeric(12,2), entry_no bigint);
CREATE UNIQUE INDEX payments_chain ON app.payments (account_id, entry_no);
CREATE TRIGGER payments_running_balance BEFORE INSERT OR UPDATE OR DELETE ON app.payments
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=entry_no', 'min_balance=0');
INSERT INTO app.payments (account_id, amount) SELECT g % 7, g FROM generate_series(1, 500) g;

-- A partitioned ledger: the trigger on the parent, clones on the partitions,
-- one of them disabled on its own.
CREATE TABLE app.ledger (account_id integer NOT NULL, booked date NOT NULL, amount bigint, balance bigint, n bigint)
    PARTITION BY RANGE (booked);
CREATE TABLE app.ledger_2026_01 PARTITION OF app.ledger FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE app.ledger_2026_02 PARTITION OF app.ledger FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE INDEX ledger_chain ON app.ledger (account_id, n);
CREATE TRIGGER ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON app.ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n');
INSERT INTO app.ledger (account_id, booked, amount)
    SELECT g % 3, date '2026-01-01' + (g % 50), g FROM generate_series(1, 300) g;
ALTER TABLE app.ledger_2026_02 DISABLE TRIGGER ledger_balance;

-- A status on an enum, whose states are parsed by the enum's input at the
-- restore's CREATE TRIGGER, after its type and its rows.
CREATE TYPE app.conversation_status AS ENUM ('open', 'assigned', 'closed');
CREATE TABLE app.conversations (id integer PRIMARY KEY, status app.conversation_status NOT NULL, agent text);
CREATE TRIGGER conversations_status BEFORE INSERT OR UPDATE ON app.conversations
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('status', '>open', 'open>assigned', 'assigned>closed');
INSERT INTO app.conversations SELECT g, 'open' FROM generate_series(1, 20) g;
UPDATE app.conversations SET status = 'assigned', agent = 'ann' WHERE id <= 10;

-- Enabled for replication: always, and only there.
CREATE TABLE app.cases (id integer PRIMARY KEY, owner integer, lock_version integer);
CREATE TRIGGER cases_lock_version BEFORE INSERT OR UPDATE ON app.cases
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
ALTER TABLE app.cases ENABLE ALWAYS TRIGGER cases_lock_version;
CREATE TRIGGER cases_owner BEFORE UPDATE ON app.cases
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner');
ALTER TABLE app.cases ENABLE REPLICA TRIGGER cases_owner;
CREATE TABLE app.mirror (account_id integer, amount bigint, balance bigint, n bigint);
CREATE INDEX mirror_chain ON app.mirror (account_id, n);
CREATE TRIGGER mirror_balance BEFORE INSERT OR UPDATE OR DELETE ON app.mirror
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n');
ALTER TABLE app.mirror ENABLE ALWAYS TRIGGER mirror_balance;

-- A disabled guard whose column was renamed since (disabled guards do not
-- hold DDL back).
CREATE TABLE app.tickets (id integer PRIMARY KEY, assignee integer, version integer);
CREATE TRIGGER tickets_assignee BEFORE UPDATE ON app.tickets
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('assignee');
ALTER TABLE app.tickets DISABLE TRIGGER tickets_assignee;
ALTER TABLE app.tickets RENAME COLUMN assignee TO agent;
CREATE TRIGGER tickets_version BEFORE INSERT OR UPDATE ON app.tickets
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('version');
INSERT INTO app.tickets VALUES (1, 10, 1), (2, NULL, 5);

-- Broken guards, as a migration run before raceguard was installed (or with
-- the check off) leaves them: a misspelt column, a ledger without its index,
-- and an enabled guard that breaks only with the table's later constraints.
ALTER EVENT TRIGGER raceguard_validate_guards DISABLE;
CREATE TABLE app.broken (id integer PRIMARY KEY, amount integer, balance integer, n integer, owner text);
CREATE TRIGGER broken_misspelt BEFORE UPDATE ON app.broken
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('lock_versoin');
CREATE TRIGGER broken_no_index BEFORE INSERT ON app.broken
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'owner', 'seq=n');
CREATE TABLE app.broken_child (id integer PRIMARY KEY, broken_id integer REFERENCES app.broken (id), gone integer);
CREATE TRIGGER broken_child_gone BEFORE UPDATE ON app.broken_child
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('gone');
ALTER TABLE app.broken_child DROP COLUMN gone;
CREATE TRIGGER conversations_typo BEFORE INSERT OR UPDATE ON app.conversations
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('status', '>open', 'open>asigned');
ALTER EVENT TRIGGER raceguard_validate_guards ENABLE ALWAYS;
