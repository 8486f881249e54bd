-- Seeing and checking the guards: raceguard.guards, raceguard.check_guards()
-- and the event trigger that checks guards at migration time. (The earlier
-- suites run with the event trigger disabled, to reach each guard's own
-- first-row checks; here it is on.)
ALTER EVENT TRIGGER raceguard_validate_guards ENABLE ALWAYS;
CREATE SCHEMA shop;
CREATE TABLE shop.orders (id integer PRIMARY KEY, texter_id integer, counselor_id integer, note text, lock_version integer);
CREATE TRIGGER orders_lock_version BEFORE INSERT OR UPDATE ON shop.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
CREATE TRIGGER orders_assignment AFTER UPDATE ON shop.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('texter_id', 'counselor_id', 'allow_unset=true');
CREATE TABLE shop.ledger (account_id integer, booked date, amount numeric(12,2), balance numeric(12,2), entry_no bigint)
    PARTITION BY RANGE (booked);
CREATE TABLE shop.ledger_2026 PARTITION OF shop.ledger FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX ON shop.ledger (account_id, entry_no);
CREATE TRIGGER ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON shop.ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=entry_no', 'min_balance=-100.50');

-- The view: one row per raceguard trigger, partition clones included.
SELECT * FROM raceguard.guards WHERE table_name::text LIKE 'shop.%' ORDER BY table_name::text, trigger_name;
SELECT * FROM raceguard.check_guards() WHERE table_name::text LIKE 'shop.%';

CREATE TABLE shop.generated (id integer, lock_version integer GENERATED ALWAYS AS (1) STORED);

-- CREATE TRIGGER with a bad definition fails at once, with the SQLSTATE the
-- trigger's first row would raise (nothing is created).
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER t BEFORE UPDATE ON shop.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('lock_versoin')$$);
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER t BEFORE UPDATE ON shop.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('note')$$);
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER t AFTER UPDATE ON shop.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version()$$);
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER t BEFORE UPDATE ON shop.orders
    FOR EACH STATEMENT EXECUTE FUNCTION raceguard.immutable_once_set('texter_id')$$);
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER t BEFORE DELETE ON shop.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version()$$);
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER t BEFORE UPDATE ON shop.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('texter_id', 'allow_unset=perhaps')$$);
SELECT sqlstate, message FROM regress.error_of($$CREATE TRIGGER t BEFORE INSERT ON shop.ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'booked', 'seq=entry_no')$$);
SELECT * FROM regress.error_of($$CREATE TRIGGER t BEFORE UPDATE ON shop.generated
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version()$$) \gx
-- A WHEN condition or an UPDATE OF column list would let rows past a guard
-- that looks installed, so every guard refuses both.
SELECT d.how, e.sqlstate, e.message
  FROM (VALUES ('lock_version', $$BEFORE UPDATE ON shop.orders FOR EACH ROW WHEN (OLD.note IS NOT NULL)
                  EXECUTE FUNCTION raceguard.lock_version()$$),
               ('lock_version', $$BEFORE UPDATE OF note ON shop.orders FOR EACH ROW
                  EXECUTE FUNCTION raceguard.lock_version()$$),
               ('immutable_once_set', $$BEFORE UPDATE ON shop.orders FOR EACH ROW WHEN (NEW.note <> 'x')
                  EXECUTE FUNCTION raceguard.immutable_once_set('texter_id')$$),
               ('immutable_once_set', $$BEFORE UPDATE OF note ON shop.orders FOR EACH ROW
                  EXECUTE FUNCTION raceguard.immutable_once_set('texter_id')$$),
               ('running_balance', $$BEFORE INSERT ON shop.ledger FOR EACH ROW WHEN (NEW.amount <> 0)
                  EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=entry_no')$$),
               ('running_balance', $$BEFORE INSERT OR UPDATE OF amount ON shop.ledger FOR EACH ROW
                  EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=entry_no')$$))
       AS d (how, definition),
       LATERAL regress.error_of('CREATE TRIGGER t ' || d.definition) e;
SELECT count(*) AS created FROM pg_trigger WHERE tgname = 't';

-- ALTER TABLE that breaks a guard fails with a HINT; nothing changes.
SELECT * FROM regress.error_of($$ALTER TABLE shop.orders DROP COLUMN lock_version$$) \gx
SELECT sqlstate, message FROM regress.error_of($$ALTER TABLE shop.orders RENAME COLUMN texter_id TO agent_id$$);
SELECT sqlstate, message FROM regress.error_of($$ALTER TABLE shop.orders ALTER COLUMN lock_version TYPE text$$);
SELECT sqlstate, message FROM regress.error_of($$ALTER TABLE shop.ledger ALTER COLUMN amount TYPE bigint$$);
SELECT sqlstate, message FROM regress.error_of($$ALTER TABLE shop.ledger RENAME COLUMN entry_no TO n$$);
-- Replacing the version column by a generated one breaks the guard like a
-- retype does (PostgreSQL would overwrite every version the guard writes).
SELECT * FROM regress.error_of($$ALTER TABLE shop.orders DROP COLUMN lock_version,
    ADD COLUMN lock_version integer GENERATED ALWAYS AS (1) STORED$$) \gx
SELECT attname, attgenerated FROM pg_attribute WHERE attrelid = 'shop.orders'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
-- A disabled guard does not hold DDL back: a broken one can be switched
-- off, the table altered, and the guard recreated.
ALTER TABLE shop.orders DISABLE TRIGGER orders_assignment;
ALTER TABLE shop.orders RENAME COLUMN counselor_id TO helper_id;
ALTER TABLE shop.orders RENAME COLUMN helper_id TO counselor_id;
ALTER TABLE shop.orders ENABLE TRIGGER orders_assignment;
-- Retypes the guard still serves, and changes to other columns, pass.
ALTER TABLE shop.orders ALTER COLUMN lock_version TYPE bigint;
ALTER TABLE shop.orders ALTER COLUMN texter_id TYPE bigint;
ALTER TABLE shop.orders RENAME COLUMN note TO remark;
ALTER TABLE shop.ledger ALTER COLUMN amount TYPE numeric(14,2), ALTER COLUMN balance TYPE numeric(14,2);
-- A write-once generated column: a BEFORE trigger sees it before PostgreSQL
-- computes it (a change would pass unchecked), so only AFTER is accepted.
CREATE TABLE shop.claims (id integer PRIMARY KEY, agent integer, agent_key text GENERATED ALWAYS AS ('agent-' || agent) STORED);
INSERT INTO shop.claims (id, agent) VALUES (1, 7);
SELECT * FROM regress.error_of($$CREATE TRIGGER claims_agent_key BEFORE UPDATE ON shop.claims
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('agent_key')$$) \gx
CREATE TRIGGER claims_agent_key AFTER UPDATE ON shop.claims
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('agent_key');
SELECT sqlstate, message FROM regress.error_of($$UPDATE shop.claims SET agent = 8$$);
SELECT * FROM shop.claims;
DROP TABLE shop.claims;
-- An identity column is only a default: the version the guard writes is
-- stored, so ADD GENERATED ... AS IDENTITY passes and the guard keeps counting.
CREATE TABLE shop.tickets (id integer PRIMARY KEY, note text, lock_version integer NOT NULL);
CREATE TRIGGER tickets_lock_version BEFORE INSERT OR UPDATE ON shop.tickets
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
ALTER TABLE shop.tickets ALTER COLUMN lock_version ADD GENERATED BY DEFAULT AS IDENTITY (START WITH 1);
INSERT INTO shop.tickets (id) VALUES (1);
UPDATE shop.tickets SET note = 'seen' RETURNING lock_version;
UPDATE shop.tickets SET note = 'seen again', lock_version = 3 RETURNING lock_version;
DROP TABLE shop.tickets;
-- The documented way: drop the trigger, change the table, recreate it.
BEGIN;
DROP TRIGGER orders_lock_version ON shop.orders;
ALTER TABLE shop.orders RENAME COLUMN lock_version TO version;
CREATE TRIGGER orders_lock_version BEFORE INSERT OR UPDATE ON shop.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('version');
COMMIT;
SELECT table_name, trigger_name, columns FROM raceguard.guards WHERE table_name = 'shop.orders'::regclass ORDER BY 2;

-- check_guards() reports every kind of problem, each on its own row.
-- (Broken guards are made here with the event trigger off, as a migration
-- from before raceguard was installed would have left them.)
ALTER EVENT TRIGGER raceguard_validate_guards DISABLE;
CREATE TABLE shop.broken (id integer, amount integer, balance integer, n integer, owner text, label text, v text, gone_soon integer);
CREATE TRIGGER a_missing_column BEFORE UPDATE ON shop.broken FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('gone');
CREATE TRIGGER b_wrong_type BEFORE UPDATE ON shop.broken FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('label');
CREATE TRIGGER c_wrong_timing AFTER UPDATE ON shop.broken FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('id');
CREATE TRIGGER d_wrong_level BEFORE UPDATE ON shop.broken FOR EACH STATEMENT EXECUTE FUNCTION raceguard.immutable_once_set('owner');
CREATE TRIGGER e_wrong_events BEFORE DELETE ON shop.broken FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('id');
CREATE TRIGGER f_bad_option BEFORE UPDATE ON shop.broken FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner', 'allow_unset=often');
CREATE TRIGGER g_disabled BEFORE UPDATE ON shop.broken FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner');
ALTER TABLE shop.broken DISABLE TRIGGER g_disabled;
CREATE TRIGGER h_replica_only BEFORE UPDATE ON shop.broken FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner');
ALTER TABLE shop.broken ENABLE REPLICA TRIGGER h_replica_only;
CREATE TRIGGER i_balance BEFORE INSERT ON shop.broken FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'seq=n');
CREATE TRIGGER j_renamed BEFORE UPDATE ON shop.broken FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('v');
ALTER TABLE shop.broken RENAME COLUMN v TO w;
CREATE TRIGGER k_no_index BEFORE INSERT ON shop.broken FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'owner', 'seq=n');
CREATE TRIGGER l_dropped BEFORE UPDATE ON shop.broken FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('gone_soon');
CREATE TRIGGER m_generated BEFORE UPDATE ON shop.generated FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
CREATE TRIGGER n_when BEFORE UPDATE ON shop.broken FOR EACH ROW WHEN (OLD.owner IS NULL) EXECUTE FUNCTION raceguard.immutable_once_set('owner');
CREATE TRIGGER o_update_of BEFORE UPDATE OF label ON shop.broken FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('id');
ALTER TABLE shop.broken DROP COLUMN gone_soon;
CREATE UNIQUE INDEX ON shop.broken (n);
CREATE FUNCTION shop.round_amount() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER z_rounds_the_amount BEFORE INSERT ON shop.broken FOR EACH ROW EXECUTE FUNCTION shop.round_amount();
ALTER EVENT TRIGGER raceguard_validate_guards ENABLE ALWAYS;
SELECT trigger_name, problem FROM raceguard.check_guards() WHERE table_name::text LIKE 'shop.%' ORDER BY 1, 2;
SELECT trigger_name, guard, columns, options, timing, events, enabled
  FROM raceguard.guards WHERE table_name = 'shop.broken'::regclass ORDER BY 1;
-- allow_unset=true without a lock_version guard on the table is a warning.
DROP TRIGGER orders_lock_version ON shop.orders;
SELECT trigger_name, problem FROM raceguard.check_guards() WHERE table_name = 'shop.orders'::regclass;

-- An AFTER write-once guard on a partitioned table is warned about: a row
-- moving to another partition fires no AFTER UPDATE row trigger.
CREATE TABLE shop.cases (id integer, region text, owner integer) PARTITION BY LIST (region);
CREATE TABLE shop.cases_eu PARTITION OF shop.cases FOR VALUES IN ('eu');
CREATE TRIGGER cases_owner AFTER UPDATE ON shop.cases
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner');
SELECT table_name, trigger_name, problem FROM raceguard.check_guards() WHERE table_name::text LIKE 'shop.cases%';

-- Logical replication: a running_balance guard enabled ALWAYS or REPLICA
-- runs on the rows a subscription applies, recomputing the publisher's
-- balances, and stops replication at the first replicated UPDATE:
-- check_guards() warns. lock_version enabled ALWAYS gives a row whose
-- version is NULL on the publisher a version, so that copy counts one ahead:
-- a warning too. immutable_once_set enabled ALWAYS accepts every change the
-- publisher's own guard accepted: nothing to say.
CREATE TABLE shop.mirror (account_id integer, amount bigint, balance bigint, n bigint);
CREATE INDEX ON shop.mirror (account_id, n);
CREATE TRIGGER mirror_balance BEFORE INSERT OR UPDATE OR DELETE ON shop.mirror
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n');
CREATE TABLE shop.mirror_cases (id integer, owner integer, lock_version integer);
CREATE TRIGGER mirror_cases_lock_version BEFORE INSERT OR UPDATE ON shop.mirror_cases
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
CREATE TRIGGER mirror_cases_owner BEFORE UPDATE ON shop.mirror_cases
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('owner');
ALTER TABLE shop.mirror ENABLE ALWAYS TRIGGER mirror_balance;
ALTER TABLE shop.mirror_cases ENABLE ALWAYS TRIGGER mirror_cases_lock_version;
ALTER TABLE shop.mirror_cases ENABLE ALWAYS TRIGGER mirror_cases_owner;
SELECT table_name, trigger_name, problem FROM raceguard.check_guards() WHERE table_name::text LIKE 'shop.mirror%';
ALTER TABLE shop.mirror ENABLE REPLICA TRIGGER mirror_balance;
SELECT table_name, trigger_name, problem FROM raceguard.check_guards() WHERE table_name::text LIKE 'shop.mirror%';
-- As created (fires in normal sessions, not for replicated rows): all is
-- well; the write-once guard stays enabled ALWAYS.
ALTER TABLE shop.mirror ENABLE TRIGGER mirror_balance;
ALTER TABLE shop.mirror_cases ENABLE TRIGGER mirror_cases_lock_version;
SELECT count(*) AS problems FROM raceguard.check_guards() WHERE table_name::text LIKE 'shop.mirror%';

-- The check runs under session_replication_role = replica too.
SET session_replication_role = replica;
SELECT sqlstate FROM regress.error_of($$CREATE TRIGGER t BEFORE UPDATE ON shop.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('nope')$$);
RESET session_replication_role;

-- With check_function_bodies off, as pg_dump and pg_restore set it, the
-- migration-time check warns instead of refusing: a restore recreates every
-- trigger it dumped, broken ones included, and check_guards() reports them.
SET check_function_bodies = off;
CREATE TRIGGER restored_broken BEFORE UPDATE ON shop.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('no_such_column');
ALTER TABLE shop.orders ADD CONSTRAINT orders_texter_positive CHECK (texter_id > 0);
RESET check_function_bodies;
SELECT trigger_name, problem FROM raceguard.check_guards() WHERE trigger_name = 'restored_broken';
SELECT sqlstate, message FROM regress.error_of($$ALTER TABLE shop.orders ADD COLUMN extra integer$$);
DROP TRIGGER restored_broken ON shop.orders;
DROP SCHEMA shop CASCADE;
