-- The SQL each ORM sends, replayed statement by statement, for the claims of
-- docs/orms.md that one session can show. Races are in test/isolation.
-- Literals stand where the ORMs bind parameters.

------------------------------------------------------------------------
-- TypeORM @VersionColumn: save() re-reads the row, diffs the entity against
-- it and sends only the columns that differ; the version column is diffed
-- like any other. When none of them is the version, it adds
-- "version" = "version" + 1.
CREATE TABLE typeorm_orders (
    id integer PRIMARY KEY,
    billing text,
    payment text,
    version integer NOT NULL
);
CREATE TRIGGER typeorm_orders_lock_version BEFORE INSERT OR UPDATE ON typeorm_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('version');
INSERT INTO typeorm_orders (id, version) VALUES (1, 1);
-- A current entity (read at version 1, still 1): the re-read finds the same
-- version, so the diff does not hold it and TypeORM adds the increment.
SELECT "id", "billing", "payment", "version" FROM "typeorm_orders" WHERE "id" IN (1);
UPDATE "typeorm_orders" SET "billing" = 'Main St 1', "version" = "version" + 1 WHERE "id" IN (1) RETURNING "version";
-- A stale entity: read at version 2, then another writer committed version 3.
UPDATE typeorm_orders SET payment = 'card', version = 3 WHERE id = 1;
-- Its save() re-reads the row (version 3, payment 'card'); the entity still
-- holds version 2 and payment NULL, so both differ and both are sent, the
-- version as the entity's own old 2. No increment is added (the version is
-- in the SET), and the trigger rejects the old version: 40001.
SELECT "id", "billing", "payment", "version" FROM "typeorm_orders" WHERE "id" IN (1);
SELECT sqlstate, message, detail FROM regress.error_of($$
    UPDATE "typeorm_orders" SET "billing" = 'Stale St', "payment" = NULL, "version" = 2 WHERE "id" IN (1) RETURNING "version"$$) \gx
SELECT id, billing, payment, version FROM typeorm_orders;

------------------------------------------------------------------------
-- The same diff writes back every column another writer changed. With
-- allow_unset=true, a stale entity sends the NULL it read for a claim that
-- was set since, and unsets it: nothing refuses a release.
CREATE TABLE typeorm_conversations (
    id integer PRIMARY KEY,
    texter_id integer,
    note text
);
CREATE TRIGGER typeorm_conversations_texter BEFORE UPDATE ON typeorm_conversations
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('texter_id', 'allow_unset=true');
INSERT INTO typeorm_conversations (id) VALUES (1);
-- The entity was read here (texter_id NULL); then an agent claims the row.
UPDATE typeorm_conversations SET texter_id = 17 WHERE id = 1;
-- The stale entity's save(): note changed, texter_id differs from the re-read.
UPDATE "typeorm_conversations" SET "texter_id" = NULL, "note" = 'called back' WHERE "id" IN (1);
SELECT id, texter_id, note FROM typeorm_conversations;
-- With lock_version on the table and a @VersionColumn on the entity, the
-- stale save sends its old version too, and fails as a whole.
ALTER TABLE typeorm_conversations ADD COLUMN version integer NOT NULL DEFAULT 1;
CREATE TRIGGER typeorm_conversations_lock_version BEFORE INSERT OR UPDATE ON typeorm_conversations
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('version');
UPDATE typeorm_conversations SET texter_id = 17 WHERE id = 1;  -- claimed again: version 2
SELECT sqlstate, message FROM regress.error_of($$
    UPDATE "typeorm_conversations" SET "texter_id" = NULL, "note" = 'called back again', "version" = 1 WHERE "id" IN (1)$$);
SELECT id, texter_id, note, version FROM typeorm_conversations;

------------------------------------------------------------------------
-- allow_unset=true with lock_version: the stale save fails only when it
-- sends the version. A full-row write that does not name the version column
-- (an entity or model that does not map it, a hand-written UPDATE) is a
-- blind write: lock_version bumps it and the claim is unset. strict=true
-- rejects it.
CREATE TABLE conversations_lenient (
    id integer PRIMARY KEY,
    texter_id integer,
    note text,
    lock_version integer
);
CREATE TRIGGER conversations_lenient_lock_version BEFORE INSERT OR UPDATE ON conversations_lenient
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
CREATE TRIGGER conversations_lenient_texter BEFORE UPDATE ON conversations_lenient
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('texter_id', 'allow_unset=true');
CREATE TABLE conversations_strict (LIKE conversations_lenient INCLUDING ALL);
CREATE TRIGGER conversations_strict_lock_version BEFORE INSERT OR UPDATE ON conversations_strict
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('strict=true');
CREATE TRIGGER conversations_strict_texter BEFORE UPDATE ON conversations_strict
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('texter_id', 'allow_unset=true');
INSERT INTO conversations_lenient (id) VALUES (1);
INSERT INTO conversations_strict (id) VALUES (1);
-- Read at version 1 with texter_id NULL; then claimed (version 2).
UPDATE conversations_lenient SET texter_id = 17, lock_version = 1 WHERE id = 1;
UPDATE conversations_strict SET texter_id = 17, lock_version = 1 WHERE id = 1;
-- The stale full-row save that sends the version: rejected on both.
SELECT sqlstate FROM regress.error_of($$UPDATE conversations_lenient SET texter_id = NULL, note = 'x', lock_version = 1 WHERE id = 1$$);
SELECT sqlstate FROM regress.error_of($$UPDATE conversations_strict SET texter_id = NULL, note = 'x', lock_version = 1 WHERE id = 1$$);
-- The stale full-row save without the version: accepted and bumped (the
-- claim is gone) unless strict=true.
UPDATE conversations_lenient SET texter_id = NULL, note = 'x' WHERE id = 1;
SELECT sqlstate, message FROM regress.error_of($$UPDATE conversations_strict SET texter_id = NULL, note = 'x' WHERE id = 1$$);
SELECT 'lenient' AS t, id, texter_id, note, lock_version FROM conversations_lenient
UNION ALL SELECT 'strict', id, texter_id, note, lock_version FROM conversations_strict ORDER BY 1;

------------------------------------------------------------------------
-- Django save(update_fields=[...]) is a blind write: the UPDATE names only
-- those columns, the trigger bumps the version, and the instance still
-- holds the old one. Its next full save is stale.
CREATE TABLE django_orders (
    id integer PRIMARY KEY,
    billing text,
    memo text,
    lock_version integer NOT NULL
);
CREATE TRIGGER django_orders_lock_version BEFORE INSERT OR UPDATE ON django_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO django_orders (id, lock_version) VALUES (1, 1), (2, 1);
-- order.save(update_fields=["memo"]) on an instance read at version 1:
UPDATE "django_orders" SET "memo" = 'gift' WHERE "django_orders"."id" = 1;
SELECT id, lock_version FROM django_orders WHERE id = 1;
-- order.save() next, echoing the version 1 it holds: 40001.
SELECT sqlstate, message FROM regress.error_of($$
    UPDATE "django_orders" SET "billing" = 'Main St 1', "memo" = 'gift', "lock_version" = 1 WHERE "django_orders"."id" = 1$$);
-- Pre-bumping and filtering on the version it holds: no row, the stale save
-- the application reports.
UPDATE "django_orders" SET "billing" = 'Main St 1', "memo" = 'gift', "lock_version" = 2
    WHERE "django_orders"."id" = 1 AND "django_orders"."lock_version" = 1 RETURNING lock_version;
-- refresh_from_db(fields=["lock_version"]) after the update_fields save
-- makes the instance current again.
SELECT "django_orders"."lock_version" FROM "django_orders" WHERE "django_orders"."id" = 1;
UPDATE "django_orders" SET "billing" = 'Main St 1', "memo" = 'gift', "lock_version" = 2 WHERE "django_orders"."id" = 1
    RETURNING lock_version;
-- Or name the version in update_fields, pre-bumped and filtered: a checked write.
UPDATE "django_orders" SET "memo" = 'gift', "lock_version" = 2
    WHERE "django_orders"."id" = 2 AND "django_orders"."lock_version" = 1 RETURNING lock_version;

------------------------------------------------------------------------
-- running_balance: the balance and seq are written by the trigger. Django's
-- create() and bulk_create() insert every field and read back only the
-- primary key (RETURNING "id"); the instance keeps None for both, and its
-- next save() writes those NULLs back: 23514.
CREATE TABLE django_payments (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL,
    amount numeric(12,2) NOT NULL,
    running_balance numeric(12,2),
    entry_no bigint,
    memo text,
    idempotency_key text UNIQUE
);
CREATE UNIQUE INDEX django_payments_chain ON django_payments (account_id, entry_no);
CREATE TRIGGER django_payments_running_balance
    BEFORE INSERT OR UPDATE OR DELETE ON django_payments
    FOR EACH ROW EXECUTE FUNCTION
        raceguard.running_balance('amount', 'running_balance', 'account_id', 'seq=entry_no');
-- Payment.objects.create(account_id=42, amount=100):
INSERT INTO "django_payments" ("account_id", "amount", "running_balance", "entry_no", "memo", "idempotency_key")
    VALUES (42, 100.00, NULL, NULL, NULL, NULL) RETURNING "django_payments"."id";
-- Payment.objects.bulk_create([...]):
INSERT INTO "django_payments" ("account_id", "amount", "running_balance", "entry_no", "memo", "idempotency_key")
    VALUES (42, -30.00, NULL, NULL, NULL, NULL), (42, 5.00, NULL, NULL, NULL, NULL) RETURNING "django_payments"."id";
-- payment.memo = "refund"; payment.save():
SELECT sqlstate, message, column_name, constraint_name FROM regress.error_of($$
    UPDATE "django_payments" SET "account_id" = 42, "amount" = 100.00, "running_balance" = NULL, "entry_no" = NULL,
        "memo" = 'refund', "idempotency_key" = NULL WHERE "django_payments"."id" = 1$$) \gx
-- After payment.refresh_from_db() the save writes the stored values: allowed.
SELECT "django_payments"."id", "django_payments"."account_id", "django_payments"."amount",
       "django_payments"."running_balance", "django_payments"."entry_no", "django_payments"."memo",
       "django_payments"."idempotency_key"
FROM "django_payments" WHERE "django_payments"."id" = 1;
UPDATE "django_payments" SET "account_id" = 42, "amount" = 100.00, "running_balance" = 100.00, "entry_no" = 1,
    "memo" = 'refund', "idempotency_key" = NULL WHERE "django_payments"."id" = 1;
-- So is save(update_fields=["memo"]), which names only the memo.
UPDATE "django_payments" SET "memo" = 'reviewed' WHERE "django_payments"."id" = 2;

-- TypeORM's save() of a new entity: an undefined property is sent as
-- DEFAULT, a null one as NULL; RETURNING brings back only the generated
-- columns. An entity whose ledger properties hold null keeps them, and its
-- next save() diffs them against the row and sends them: 23514.
CREATE TABLE typeorm_payments (LIKE django_payments INCLUDING INDEXES);
ALTER TABLE typeorm_payments ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY;
CREATE TRIGGER typeorm_payments_running_balance
    BEFORE INSERT OR UPDATE OR DELETE ON typeorm_payments
    FOR EACH ROW EXECUTE FUNCTION
        raceguard.running_balance('amount', 'running_balance', 'account_id', 'seq=entry_no');
INSERT INTO "typeorm_payments"("id", "account_id", "amount", "running_balance", "entry_no", "memo", "idempotency_key")
    VALUES (DEFAULT, 42, 100.00, NULL, NULL, DEFAULT, DEFAULT) RETURNING "id";
SELECT "id", "account_id", "amount", "running_balance", "entry_no", "memo", "idempotency_key"
FROM "typeorm_payments" WHERE "id" IN (1);
SELECT sqlstate, constraint_name FROM regress.error_of($$
    UPDATE "typeorm_payments" SET "running_balance" = NULL, "entry_no" = NULL, "memo" = 'refund' WHERE "id" IN (1)$$);
-- With { insert: false, update: false } on both columns TypeORM never
-- writes them: the INSERT leaves them out, and so does every UPDATE.
INSERT INTO "typeorm_payments"("id", "account_id", "amount", "memo", "idempotency_key")
    VALUES (DEFAULT, 42, -30.00, DEFAULT, DEFAULT) RETURNING "id";
UPDATE "typeorm_payments" SET "memo" = 'refund' WHERE "id" IN (2);
SELECT id, amount, running_balance, entry_no, memo FROM typeorm_payments ORDER BY id;

------------------------------------------------------------------------
-- Upserts on the idempotency key. A retried append whose DO UPDATE SET
-- leaves the ledger columns as they are leaves no trace. A SET that copies
-- the trigger-computed balance or seq from excluded (the proposed row, whose
-- balance the BEFORE INSERT trigger computed as if it were appended) changes
-- them: 23514.
INSERT INTO django_payments (account_id, amount, idempotency_key) VALUES (7, 25.00, 'charge-1');
-- Rails upsert_all / Sequelize bulkCreate(updateOnDuplicate: ["amount"]):
-- the same amount again is no change.
INSERT INTO "django_payments" ("account_id","amount","idempotency_key") VALUES (7, 25.00, 'charge-1')
    ON CONFLICT ("idempotency_key") DO UPDATE SET "account_id"=excluded."account_id","amount"=excluded."amount"
    RETURNING "id", "running_balance", "entry_no";
INSERT INTO django_payments (account_id, amount, memo, idempotency_key) VALUES (7, 25.00, 'retried', 'charge-1')
    ON CONFLICT (idempotency_key) DO UPDATE SET memo = excluded.memo
    RETURNING id, running_balance, entry_no, memo;
SELECT sqlstate, message, constraint_name FROM regress.error_of($$
    INSERT INTO django_payments (account_id, amount, idempotency_key) VALUES (7, 25.00, 'charge-1')
    ON CONFLICT (idempotency_key) DO UPDATE SET running_balance = excluded.running_balance$$) \gx
SELECT sqlstate FROM regress.error_of($$
    INSERT INTO django_payments (account_id, amount, idempotency_key) VALUES (7, 25.00, 'charge-1')
    ON CONFLICT (idempotency_key) DO UPDATE SET entry_no = excluded.entry_no$$);
INSERT INTO django_payments (account_id, amount) VALUES (7, 1.00) RETURNING running_balance, entry_no;
SELECT * FROM raceguard.verify_running_balance('django_payments');
SELECT * FROM raceguard.verify_running_balance('typeorm_payments');

------------------------------------------------------------------------
-- lock_version: the shapes each ORM sends, one after another on one row.
CREATE TABLE shapes_orders (
    id integer PRIMARY KEY,
    billing text,
    hits integer NOT NULL DEFAULT 0,
    lock_version integer NOT NULL DEFAULT 0
);
CREATE TRIGGER shapes_orders_lock_version BEFORE INSERT OR UPDATE ON shapes_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO shapes_orders (id) VALUES (1) RETURNING lock_version;
-- Rails save / Ecto optimistic_lock / Hibernate @Version / SQLAlchemy
-- version_id_col / Sequelize version: true: read v, send v + 1, WHERE v.
UPDATE "shapes_orders" SET "billing" = 'Main St 1', "lock_version" = 1 WHERE "shapes_orders"."id" = 1 AND "shapes_orders"."lock_version" = 0
    RETURNING lock_version;
-- Rails increment_counter / update_counters: a relative increment.
UPDATE "shapes_orders" SET "hits" = COALESCE("hits", 0) + 1, "lock_version" = COALESCE("lock_version", 0) + 1 WHERE "shapes_orders"."id" = 1
    RETURNING lock_version;
-- Ecto update_all(inc: [lock_version: 1]) / Sequelize increment() /
-- SQLAlchemy and Django F() expressions: relative increments.
UPDATE "shapes_orders" AS s0 SET "lock_version" = s0."lock_version" + 1 WHERE (s0."id" = 1) RETURNING lock_version;
-- Rails update_all / update_columns, Ecto update_all(set: ...), Django
-- QuerySet.update(), JPQL bulk UPDATE without the version: blind writes,
-- bumped.
UPDATE "shapes_orders" SET "billing" = 'Main St 2' WHERE "shapes_orders"."id" = 1 RETURNING lock_version;
-- SQLAlchemy version_id_generator=False: the version only in WHERE, read
-- back with RETURNING; the trigger bumps it.
UPDATE shapes_orders SET billing = 'Main St 3' WHERE shapes_orders.id = 1 AND shapes_orders.lock_version = 4
    RETURNING shapes_orders.lock_version;
-- ... which strict=true refuses, as it names no version in SET.
DROP TRIGGER shapes_orders_lock_version ON shapes_orders;
CREATE TRIGGER shapes_orders_lock_version BEFORE INSERT OR UPDATE ON shapes_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('strict=true');
SELECT sqlstate, message FROM regress.error_of($$
    UPDATE shapes_orders SET billing = 'Main St 4' WHERE shapes_orders.id = 1 AND shapes_orders.lock_version = 5$$);
-- A stale save with sqlstate=23514: a check violation named after the
-- trigger, which Ecto's check_constraint and the drivers' constraint field
-- map by name.
DROP TRIGGER shapes_orders_lock_version ON shapes_orders;
CREATE TRIGGER shapes_orders_lock_version BEFORE INSERT OR UPDATE ON shapes_orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('sqlstate=23514');
SELECT sqlstate, table_name, column_name, constraint_name FROM regress.error_of($$
    UPDATE "shapes_orders" SET "billing" = 'Stale St', "lock_version" = 3 WHERE "shapes_orders"."id" = 1$$);
SELECT id, billing, hits, lock_version FROM shapes_orders;

------------------------------------------------------------------------
-- Leases on a table with a lock_version guard: claim_lease and
-- release_lease do not set the version, so they are blind writes, bumped
-- (an object read before the lease is stale afterwards); strict=true
-- refuses them.
CREATE TABLE leased_jobs (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz, lock_version integer);
CREATE TRIGGER leased_jobs_lock_version BEFORE INSERT OR UPDATE ON leased_jobs
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO leased_jobs (id) VALUES (1), (2);
SELECT id, lock_version FROM raceguard.claim_lease(NULL::leased_jobs, 'id = 1', 1, '1 minute');
SELECT raceguard.release_lease(NULL::leased_jobs, (SELECT claim_token FROM leased_jobs WHERE id = 1));
SELECT id, lock_version FROM leased_jobs ORDER BY id;
DROP TRIGGER leased_jobs_lock_version ON leased_jobs;
CREATE TRIGGER leased_jobs_lock_version BEFORE INSERT OR UPDATE ON leased_jobs
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('strict=true');
SELECT sqlstate, message FROM regress.error_of($$SELECT * FROM raceguard.claim_lease(NULL::leased_jobs, 'id = 2', 1, '1 minute')$$);
