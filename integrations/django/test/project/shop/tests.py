"""raceguard-django's tests, run by `manage.py test` in a test database made
from the template that holds raceguard. The races use threads, each with its
own database connection (Django's connections are per thread)."""
import json
import os
import random
import re
import threading
import time
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.db.migrations.state import ProjectState
from django.db.utils import DataError, IntegrityError, OperationalError, ProgrammingError
from django.test import TransactionTestCase

from raceguard_django import StaleObjectError, lease, complete, release, extend, claim, map_errors
from raceguard_django.exceptions import GuardDeclarationError, NotInTransactionError
from raceguard_django.operations import (
    AddImmutableOnceSetGuard,
    AddLockVersionGuard,
    AddRunningBalanceGuard,
    AddTransitionGuard,
    RemoveGuard,
)

from .models import Conversation, Entry, Job, Label, Note, Order, RushOrder, Shipment

SEED = int(os.environ.get("RACEGUARD_SEED", "1"))


def rng(name):
    return random.Random("%d-%s" % (SEED, name))


def in_threads(count, work):
    """Runs work(index) in `count` threads at once; returns their results
    (an exception counts as the result). Each thread closes its connection."""
    results = [None] * count
    # A worker that fails breaks the barrier for the others (the timeout
    # is for one that hangs), rather than leaving them waiting forever.
    barrier = threading.Barrier(count, timeout=120)

    def run(index):
        try:
            results[index] = work(index, barrier)
        except BaseException as error:  # noqa: B902 the thread's outcome is checked by the test
            results[index] = error
            barrier.abort()  # the others stop waiting for this one
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def trigger_count():
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_catalog.pg_trigger WHERE NOT tgisinternal")
        return cursor.fetchone()[0]


class VersionTests(TransactionTestCase):
    def test_saves_again_without_refresh(self):
        order = Order.objects.create(billing="Main St 1")
        self.assertEqual(order.lock_version, 1)
        for expected in (2, 3, 4):
            order.memo = "memo %d" % expected
            order.save()
            self.assertEqual(order.lock_version, expected)
        self.assertEqual(Order.objects.get(pk=order.pk).lock_version, 4)
        order.save(update_fields=["memo"])  # the version is written too: a checked write
        self.assertEqual(Order.objects.get(pk=order.pk).lock_version, 5)
        self.assertEqual(order.lock_version, 5)

    def test_inherited_version_is_checked_in_the_parents_table(self):
        rush = RushOrder.objects.create(billing="a", deadline=1)
        rush.deadline = 2
        rush.save()
        rush.billing = "b"
        rush.save()
        stored = RushOrder.objects.get(pk=rush.pk)
        self.assertEqual((stored.lock_version, stored.deadline, stored.billing), (3, 2, "b"))
        stale = RushOrder.objects.get(pk=rush.pk)
        rush.save()
        stale.deadline = 9
        with self.assertRaises(StaleObjectError):
            stale.save()
        self.assertEqual(RushOrder.objects.get(pk=rush.pk).deadline, 2)

    def test_stale_instance_raises_and_writes_nothing(self):
        order = Order.objects.create(billing="a")
        stale = Order.objects.get(pk=order.pk)
        order.billing = "b"
        order.save()
        stale.billing = "c"
        with self.assertRaises(StaleObjectError):
            stale.save()
        stored = Order.objects.get(pk=order.pk)
        self.assertEqual((stored.billing, stored.lock_version), ("b", 2))
        with self.assertRaises(StaleObjectError):
            stale.save(update_fields=["billing"])
        self.assertEqual(Order.objects.get(pk=order.pk).billing, "b")

    def test_blind_update_refused_by_strict_guard(self):
        order = Order.objects.create()
        with self.assertRaises(StaleObjectError) as caught:
            with map_errors():
                Order.objects.filter(pk=order.pk).update(memo="blind")
        self.assertIsInstance(caught.exception.__cause__, OperationalError)
        self.assertEqual(Order.objects.get(pk=order.pk).memo, "")

    def test_map_errors_as_a_decorator(self):
        conversation = Conversation.objects.create(agent=1)

        @map_errors()
        def reassign(pk, agent):
            Conversation.objects.filter(pk=pk).update(agent=agent)

        with self.assertRaises(ValidationError) as caught:
            reassign(conversation.pk, 2)
        self.assertEqual(list(caught.exception.message_dict), ["agent"])
        self.assertIsInstance(caught.exception.__cause__, IntegrityError)
        self.assertEqual(Conversation.objects.get(pk=conversation.pk).agent, 1)

    def test_stale_echo_from_trigger_maps_to_stale(self):
        order = Order.objects.create()
        with self.assertRaises(StaleObjectError) as caught:
            with map_errors():
                with map_errors():  # mapped once: the cause stays the database error
                    Order.objects.filter(pk=order.pk).update(memo="x", lock_version=7)
        self.assertIs(type(caught.exception.__cause__), OperationalError)
        # Not a guard's error: passes through unchanged.
        with self.assertRaises(IntegrityError) as caught:
            with map_errors():
                Order.objects.create(pk=order.pk)
        self.assertNotIsInstance(caught.exception, StaleObjectError)
        with self.assertRaises(ProgrammingError):
            with map_errors():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT no_such_column FROM shop_order")

    def test_two_workers_race_nothing_lost(self):
        random_ = rng("version race")
        rounds = random_.randint(5, 15)
        order = Order.objects.create()
        stale_total = 0
        for round_ in range(rounds):
            def work(index, barrier):
                mine = Order.objects.get(pk=order.pk)
                barrier.wait()  # both have read the same version
                mine.counter += 1
                try:
                    mine.save()
                    return "saved"
                except StaleObjectError:
                    mine = Order.objects.get(pk=order.pk)  # re-read and retry
                    mine.counter += 1
                    mine.save()
                    return "stale"
            results = in_threads(2, work)
            self.assertEqual(sorted(results), ["saved", "stale"], "round %d: %r" % (round_, results))
            stale_total += 1
        stored = Order.objects.get(pk=order.pk)
        self.assertEqual(stored.counter, 2 * rounds)
        self.assertEqual(stored.lock_version, 1 + 2 * rounds)
        print("version race: %d rounds, %d stale saves retried, nothing lost" % (rounds, stale_total))


class OtherVersionModeTests(TransactionTestCase):
    """VersionField with lock_version in its default mode (Job) and with
    sqlstate=23514 (Note)."""

    def test_default_mode(self):
        job = Job.objects.create(payload="v")
        job.save()
        job.save()
        self.assertEqual((job.version, Job.objects.get(pk=job.pk).version), (3, 3))
        stale = Job.objects.get(pk=job.pk)
        job.save()
        with self.assertRaises(StaleObjectError):
            stale.save()
        # claim_lease's UPDATE leaves the version out: the guard bumps it, and
        # the leased instance holds the bumped version.
        leased = lease(Job.objects.filter(pk=job.pk))[0]
        self.assertEqual(leased.version, 5)
        leased.done_by = "worker"
        leased.save()
        self.assertEqual(Job.objects.get(pk=job.pk).version, 6)
        self.assertTrue(complete(leased, status="done"))  # a relative increment
        self.assertEqual((leased.version, Job.objects.get(pk=job.pk).version), (7, 7))

    def test_check_violation_mode(self):
        note = Note.objects.create(text="a")
        note.save()
        self.assertEqual(note.version, 2)
        with self.assertRaises(StaleObjectError) as caught:
            with map_errors():
                Note.objects.filter(pk=note.pk).update(text="b", version=7)
        self.assertIsInstance(caught.exception.__cause__, IntegrityError)
        stale = Note.objects.get(pk=note.pk)
        note.save()
        with self.assertRaises(StaleObjectError):
            stale.save()
        self.assertEqual(Note.objects.get(pk=note.pk).version, 3)


class WriteOnceTests(TransactionTestCase):
    def test_overwrite_is_a_validation_error_on_the_field(self):
        conversation = Conversation.objects.create(topic="t")
        conversation.agent = 7
        conversation.save()
        conversation.agent = 8
        with self.assertRaises(ValidationError) as caught:
            conversation.save()
        self.assertEqual(list(caught.exception.message_dict), ["agent"])
        self.assertEqual(caught.exception.error_dict["agent"][0].code, "immutable_once_set")
        self.assertEqual(caught.exception.error_dict["agent"][0].params["constraint"], "conversation_agent_assignment")
        self.assertEqual(Conversation.objects.get(pk=conversation.pk).agent, 7)

    def test_two_agents_race_exactly_one_wins(self):
        random_ = rng("write-once race")
        rounds = random_.randint(5, 15)
        for round_ in range(rounds):
            conversation = Conversation.objects.create(topic="round %d" % round_)

            def work(index, barrier):
                mine = Conversation.objects.get(pk=conversation.pk)
                barrier.wait()
                mine.agent = 100 + index
                try:
                    with transaction.atomic():
                        mine.save()
                    return ("won", mine.agent)
                except ValidationError as error:
                    return ("lost", list(error.message_dict))
            results = in_threads(2, work)
            outcomes = sorted(result[0] for result in results)
            self.assertEqual(outcomes, ["lost", "won"], "round %d: %r" % (round_, results))
            winner = [result[1] for result in results if result[0] == "won"][0]
            self.assertEqual([result[1] for result in results if result[0] == "lost"], [["agent"]])
            self.assertEqual(Conversation.objects.get(pk=conversation.pk).agent, winner)
        print("write-once race: %d rounds, one winner each" % rounds)


class LedgerTests(TransactionTestCase):
    def test_overdraft_and_history(self):
        entry = Entry.objects.create(account=1, amount=Decimal("10.00"))
        entry.refresh_from_db()
        self.assertEqual((entry.balance, entry.seq), (Decimal("10.00"), 1))
        with self.assertRaises(ValidationError) as caught:
            Entry.objects.create(account=1, amount=Decimal("-10.01"))
        self.assertEqual(list(caught.exception.message_dict), ["balance"])
        entry.amount = Decimal("11.00")
        with self.assertRaises(ValidationError) as caught:
            entry.save()
        self.assertEqual(caught.exception.error_dict[list(caught.exception.message_dict)[0]][0].code, "running_balance")
        self.assertEqual(Entry.objects.count(), 1)

    def test_concurrent_appends_keep_the_chain(self):
        random_ = rng("ledger")
        workers = 4
        plans = [[Decimal(random_.randint(-500, 1000)) / 100 for _ in range(random_.randint(5, 20))] for _ in range(workers)]

        def work(index, barrier):
            barrier.wait()
            refused = 0
            for amount in plans[index]:
                try:
                    Entry.objects.create(account=index % 2, amount=amount)
                except ValidationError:
                    refused += 1
            return refused

        results = in_threads(workers, work)
        for result in results:
            self.assertIsInstance(result, int, result)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM raceguard.verify_running_balance('shop_entry')")
            self.assertEqual(cursor.fetchone()[0], 0)
        for account in (0, 1):
            rows = list(Entry.objects.filter(account=account).order_by("seq"))
            self.assertEqual([row.seq for row in rows], list(range(1, len(rows) + 1)))
            self.assertTrue(all(row.balance >= 0 for row in rows))
            if rows:
                self.assertEqual(rows[-1].balance, sum(row.amount for row in rows))
        print("ledger: %d appends, %d refused (overdraft), chains verified" % (
            sum(len(plan) for plan in plans), sum(results)))


class LeaseTests(TransactionTestCase):
    def test_workers_complete_each_job_once(self):
        random_ = rng("leases")
        jobs = random_.randint(20, 60)
        Job.objects.bulk_create([Job(payload="job %d" % i) for i in range(jobs)])
        workers = 4
        done = [[] for _ in range(workers)]

        def work(index, barrier):
            barrier.wait()
            batch = random_.randint(1, 5)
            while True:
                leased = lease(Job.objects.filter(status="pending").order_by("id"), batch=batch, lease="5 minutes")
                if not leased:
                    return len(done[index])
                for job in leased:
                    self.assertIsNotNone(job.claim_token)
                    if complete(job, status="done", done_by="worker %d" % index):
                        done[index].append(job.pk)

        results = in_threads(workers, work)
        for result in results:
            self.assertIsInstance(result, int, result)
        completed = sorted(pk for ids in done for pk in ids)
        self.assertEqual(completed, sorted(Job.objects.values_list("pk", flat=True)))
        self.assertEqual(Job.objects.filter(status="done", claim_token__isnull=True).count(), jobs)
        print("leases: %d jobs, %d workers, each completed once (%s)" % (jobs, workers, results))

    def test_lost_lease_completes_nothing(self):
        job = Job.objects.create(payload="slow")
        first = lease(Job.objects.filter(pk=job.pk), lease="1 minute")[0]
        self.assertEqual(lease(Job.objects.filter(pk=job.pk)), [])  # held
        with connection.cursor() as cursor:
            cursor.execute("UPDATE shop_job SET claimed_until = now() - interval '1 second' WHERE id = %s", [job.pk])
        second = lease(Job.objects.filter(pk=job.pk))[0]
        self.assertNotEqual(first.claim_token, second.claim_token)
        self.assertFalse(complete(first, status="done"))
        self.assertEqual(extend(first, "1 minute"), 0)
        self.assertEqual(release(first), 0)
        self.assertEqual(extend(second, "10 minutes"), 1)
        self.assertTrue(complete(second, status="done"))
        self.assertEqual(Job.objects.get(pk=job.pk).status, "done")

    def test_release_retry_after_and_dead_letters(self):
        job = Job.objects.create(payload="flaky")
        pending = Job.objects.filter(status="pending")
        for attempt in (1, 2):
            leased = lease(pending, attempts="attempts", max_attempts=2)
            self.assertEqual([(j.pk, j.attempts) for j in leased], [(job.pk, attempt)])
            self.assertEqual(release(leased[0]), 1)
        self.assertEqual(lease(pending, attempts="attempts", max_attempts=2), [])  # a dead letter
        other = Job.objects.create(payload="later")
        leased = lease(Job.objects.filter(pk=other.pk))
        self.assertEqual(release(leased[0], retry_after="1 hour"), 1)
        self.assertEqual(lease(Job.objects.filter(pk=other.pk)), [])

    def test_lease_does_not_depend_on_the_callers_transaction(self):
        job = Job.objects.create(payload="outside")
        try:
            with transaction.atomic():
                leased = lease(Job.objects.filter(pk=job.pk))
                self.assertEqual(len(leased), 1)
                raise RuntimeError("the caller rolls back")
        except RuntimeError:
            pass
        self.assertEqual(Job.objects.get(pk=job.pk).claim_token, leased[0].claim_token)

    def test_hostile_filter_values(self):
        random_ = rng("hostile")
        values = ["it's", "back\\slash", "\\'; DROP TABLE shop_job; --", "$$x$$", "ünï©ødé ✓", "%s %% %(x)s",
                  "E'\\x00'", "\"quoted\"", "\\", "'", "a\nb\tc"]
        random_.shuffle(values)
        for value in values:
            Job.objects.create(payload=value)
        Job.objects.create(payload=None)
        for value in values:
            leased = lease(Job.objects.filter(payload=value))
            self.assertEqual([j.payload for j in leased], [value])
            self.assertEqual(release(leased[0]), 1)
            part = value[:3]
            leased = lease(Job.objects.filter(payload__contains=part), batch=100)
            self.assertEqual(sorted(j.payload for j in leased), sorted(v for v in values if part in v), repr(part))
            self.assertEqual(release(leased[0]), len(leased))
        self.assertEqual([j.payload for j in lease(Job.objects.filter(payload__isnull=True))], [None])
        with self.assertRaises(ValueError):
            lease(Job.objects.filter(payload="nul\x00byte"))
        self.assertEqual(Job.objects.count(), len(values) + 1)
        self.assertEqual(lease(Job.objects.filter(pk__in=[])), [])

    def test_bad_lease_arguments(self):
        Job.objects.create(payload="x")
        for kwargs, error in (
            ({"batch": 0}, ValueError),
            ({"batch": "2"}, ValueError),
            ({"lease": 5}, ValueError),
            ({"max_attempts": 3}, ValueError),
            ({"attempts": "no_such_field"}, GuardDeclarationError),
            ({"token_field": "payload"}, Exception),
        ):
            with self.assertRaises(error, msg=repr(kwargs)):
                lease(Job.objects.all(), **kwargs)
        with self.assertRaises(ValueError):
            lease(Job.objects.all()[:3])
        with self.assertRaises(ValueError):
            lease(Job.objects.order_by("?"))
        self.assertEqual(Job.objects.filter(claim_token__isnull=False).count(), 0)

    def test_claim_needs_a_transaction(self):
        Job.objects.bulk_create([Job(payload=str(i)) for i in range(4)])
        with self.assertRaises(NotInTransactionError):
            claim(Job.objects.all())
        held = threading.Event()
        finish = threading.Event()

        def holder():
            try:
                with transaction.atomic():
                    mine = claim(Job.objects.filter(status="pending").order_by("id"), batch=2)
                    held.mine = [job.pk for job in mine]
                    held.set()
                    finish.wait(60)
            finally:
                connections.close_all()

        thread = threading.Thread(target=holder)
        thread.start()
        try:
            self.assertTrue(held.wait(60))
            with transaction.atomic():
                mine = [job.pk for job in claim(Job.objects.filter(status="pending").order_by("id"), batch=4)]
        finally:
            finish.set()
            thread.join()
        self.assertEqual(len(held.mine), 2)
        self.assertEqual(len(mine), 2)
        self.assertFalse(set(mine) & set(held.mine))

    def test_filter_across_a_relation_free_expression(self):
        Job.objects.create(payload="a", status="pending")
        Job.objects.create(payload="b", status="failed")
        from django.db.models import Q
        leased = lease(Job.objects.filter(Q(status="failed") | Q(payload="zzz")))
        self.assertEqual([j.payload for j in leased], ["b"])
        child = Job.objects.create(payload="child", parent=Job.objects.get(payload="a"))
        # Across a relation (a join): compiled as the primary keys it selects.
        leased = lease(Job.objects.filter(parent__payload="a", parent__status="pending"), batch=10)
        self.assertEqual([j.pk for j in leased], [child.pk])
        # No filter at all.
        self.assertEqual([j.payload for j in lease(Job.objects.all(), batch=10)], ["a"])


class MigrationInputTests(TransactionTestCase):
    def apply(self, operation):
        state = ProjectState.from_apps(__import__("django.apps", fromlist=["apps"]).apps)
        with connection.schema_editor() as editor:
            operation.database_forwards("shop", editor, state, state)

    def test_bad_options_refused_when_declared(self):
        for make in (
            lambda: AddLockVersionGuard("order", strict="yes"),
            lambda: AddLockVersionGuard("order", sqlstate="40002"),
            lambda: AddLockVersionGuard("order", field=""),
            lambda: AddImmutableOnceSetGuard("conversation", fields="agent"),
            lambda: AddImmutableOnceSetGuard("conversation", fields=[]),
            lambda: AddImmutableOnceSetGuard("conversation", fields=["agent"], allow_unset=1),
            lambda: AddImmutableOnceSetGuard("conversation", fields=["agent"], timing="INSTEAD OF"),
            lambda: AddRunningBalanceGuard("entry", amount="amount", balance="balance", seq="seq", min_balance="lots"),
            lambda: AddRunningBalanceGuard("entry", amount="amount", balance="balance", seq="seq", initial=float("nan")),
            lambda: AddRunningBalanceGuard("entry", amount="amount", balance="balance", seq="seq", initial="NaN"),
            lambda: AddLockVersionGuard("order", name="x" * 64),
            lambda: RemoveGuard("shop_order_lock_version"),
        ):
            with self.assertRaises(GuardDeclarationError):
                make()

    def test_unknown_names_refused_at_migration_time_with_nothing_created(self):
        before = trigger_count()
        for operation in (
            AddLockVersionGuard("order", field="version"),
            AddLockVersionGuard("nosuchmodel"),
            AddImmutableOnceSetGuard("conversation", fields=["agent", "agent_ref"]),
            AddRunningBalanceGuard("entry", amount="amount", balance="balance", group=["acount"], seq="seq"),
            AddRunningBalanceGuard("entry", amount="amount", balance="balance", seq="sequence"),
        ):
            with self.assertRaises(GuardDeclarationError) as caught:
                self.apply(operation)
            print("refused: %s" % caught.exception)
        self.assertEqual(trigger_count(), before)

    def test_guard_the_database_refuses_creates_nothing(self):
        before = trigger_count()
        # A text column as the version: raceguard's migration-time check (42804).
        with self.assertRaises(ProgrammingError) as caught:
            self.apply(AddLockVersionGuard("order", field="memo", name="order_memo_version"))
        cause = caught.exception.__cause__
        self.assertEqual(getattr(cause, "pgcode", None) or getattr(cause, "sqlstate", None), "42804")
        # A ledger without its (group..., seq) index.
        with self.assertRaises(Exception):
            self.apply(AddRunningBalanceGuard("entry", amount="amount", balance="balance", seq="seq", name="entry_no_index"))
        self.assertEqual(trigger_count(), before)

    def test_each_operation_reverses_exactly_its_trigger(self):
        import importlib
        from django.apps import apps

        def triggers():
            with connection.cursor() as cursor:
                cursor.execute("SELECT tgrelid::regclass::text, tgname FROM pg_catalog.pg_trigger WHERE NOT tgisinternal")
                return set(cursor.fetchall())

        operations = importlib.import_module("shop.migrations.0002_guards").Migration.operations
        state = ProjectState.from_apps(apps)
        reversed_ = 0
        for operation in operations:
            if not hasattr(operation, "trigger_name"):
                continue  # CreateRaceguardExtension: backwards it does nothing
            model = state.apps.get_model("shop", operation.model_name)
            expected = (model._meta.db_table, operation.trigger_name(model))
            before = triggers()
            self.assertIn(expected, before)
            with connection.schema_editor() as editor:
                operation.database_backwards("shop", editor, state, state)
            self.assertEqual(before - triggers(), {expected})
            self.assertEqual(triggers() - before, set())
            with connection.schema_editor() as editor:
                operation.database_forwards("shop", editor, state, state)
            self.assertEqual(triggers(), before)
            reversed_ += 1
        self.assertEqual(reversed_, 8)

    def test_percent_in_a_guards_message(self):
        operation = AddImmutableOnceSetGuard("conversation", fields=["topic"], name="topic 100%s once")
        self.apply(operation)
        try:
            conversation = Conversation.objects.create(topic="set")
            conversation.topic = "changed"
            with self.assertRaises(ValidationError) as caught:
                conversation.save()
            self.assertIn('trigger "topic 100%s once"', caught.exception.message_dict["topic"][0])
        finally:
            state = ProjectState.from_apps(__import__("django.apps", fromlist=["apps"]).apps)
            with connection.schema_editor() as editor:
                operation.database_backwards("shop", editor, state, state)

    def test_quoted_names(self):
        operation = AddImmutableOnceSetGuard("conversation", fields=["agent"], name='odd "name" \'here\'')
        before = trigger_count()
        self.apply(operation)
        with connection.cursor() as cursor:
            cursor.execute("SELECT columns::text[] FROM raceguard.guards WHERE trigger_name = %s", ['odd "name" \'here\''])
            self.assertEqual(cursor.fetchone()[0], ["agent_ref"])
        state = ProjectState.from_apps(__import__("django.apps", fromlist=["apps"]).apps)
        with connection.schema_editor() as editor:
            operation.database_backwards("shop", editor, state, state)
        self.assertEqual(trigger_count(), before)


def race_for_row(read, write):
    """Two workers each read() their object, then write(obj) in a
    transaction at the same time. The one whose statement takes the row
    lock first holds it until the other's statement waits for that lock,
    so both statements began before either committed: the race the guards
    decide, not one of two writes that happen one after the other. Returns
    each worker's ("won" | error, whether it saw the other wait)."""
    pids = [None, None]
    finished = [False, False]

    def wait_for_other(index):
        deadline = time.monotonic() + 60
        with connection.cursor() as cursor:
            while not finished[1 - index]:
                cursor.execute("SELECT %s = ANY(pg_catalog.pg_blocking_pids(%s))", [pids[index], pids[1 - index]])
                if cursor.fetchone()[0]:
                    return True
                if time.monotonic() > deadline:
                    raise AssertionError("the other worker neither finished nor waited for this one's row lock")
                time.sleep(0.005)
        return False

    def work(index, barrier):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pids[index] = cursor.fetchone()[0]
        mine = read()
        barrier.wait()
        try:
            with transaction.atomic():
                write(index, mine)
                saw_wait = wait_for_other(index)
            return ("won", saw_wait)
        except (ValidationError, StaleObjectError) as error:
            return (error, False)
        finally:
            finished[index] = True

    return in_threads(2, work)


class TransitionTests(TransactionTestCase):
    """raceguard.transition() through the ORM: Conversation.status (choices,
    db_column) and Shipment.status (with a VersionField)."""

    def status_error(self, caught):
        self.assertEqual(list(caught.exception.message_dict), ["status"])
        return caught.exception.error_dict["status"][0]

    def test_undeclared_edge_and_start_state(self):
        conversation = Conversation.objects.create(topic="t")
        conversation.status = Conversation.Status.CLOSED
        with self.assertRaises(ValidationError) as caught:
            conversation.save()
        error = self.status_error(caught)
        self.assertEqual(error.code, "transition")
        self.assertEqual((error.params["from"], error.params["to"], error.params["constraint"]),
                         ("open", "closed", "conversation_status"))
        self.assertIn("from 'open' to 'closed'", error.message)
        self.assertIsInstance(caught.exception.__cause__, IntegrityError)
        self.assertEqual(Conversation.objects.get(pk=conversation.pk).status, "open")
        with self.assertRaises(ValidationError) as caught:
            Conversation.objects.create(status=Conversation.Status.ASSIGNED)
        error = self.status_error(caught)
        self.assertEqual((error.code, error.params["from"], error.params["to"]), ("start_state", None, "assigned"))
        self.assertEqual(Conversation.objects.count(), 1)
        for status in ("assigned", "closed"):
            conversation.status = status
            conversation.save()
        with self.assertRaises(ValidationError) as caught:
            with map_errors():
                Conversation.objects.filter(pk=conversation.pk).update(status="assigned")
        self.assertEqual(self.status_error(caught).params["from"], "closed")
        self.assertEqual(Conversation.objects.get(pk=conversation.pk).status, "closed")

    def test_stale_object_with_a_version(self):
        shipment = Shipment.objects.create()
        stale = Shipment.objects.get(pk=shipment.pk)
        shipment.status = "sent"
        shipment.save()
        stale.memo = "gift"  # still "pending": sent -> pending is a declared edge, the version is not current
        with self.assertRaises(StaleObjectError):
            stale.save()
        self.assertEqual(Shipment.objects.get(pk=shipment.pk).status, "sent")
        shipment.status = "paid"
        shipment.save()
        shipment.status = "pending"
        with self.assertRaises(ValidationError) as caught:
            shipment.save()
        self.assertEqual(self.status_error(caught).params["constraint"], "shop_shipment_status_transition")
        self.assertEqual(Shipment.objects.get(pk=shipment.pk).version, 3)

    def test_two_workers_take_the_same_row(self):
        random_ = rng("transition race")
        Status = Conversation.Status

        def save_conversation(index, mine):
            mine.status, mine.topic = Status.ASSIGNED, "taken by %d" % index
            mine.save()

        def update_conversation(index, mine):
            with map_errors():
                Conversation.objects.filter(pk=mine.pk).update(status=Status.ASSIGNED, topic="taken by %d" % index)

        def save_shipment(index, mine):
            mine.status, mine.memo = "sent", "sent by %d" % index
            mine.save()

        def update_shipment(index, mine):
            with map_errors():
                Shipment.objects.filter(pk=mine.pk).update(status="sent", memo="sent by %d" % index)

        # (model, write, the loser's error, its code, the state taken)
        modes = [
            (Conversation, save_conversation, ValidationError, "duplicate_transition", ("open", "assigned")),
            (Conversation, update_conversation, ValidationError, "duplicate_transition", ("open", "assigned")),
            (Shipment, save_shipment, StaleObjectError, None, None),  # the version in the WHERE fails first
            (Shipment, update_shipment, ValidationError, "duplicate_transition", ("pending", "sent")),
        ]
        plan = [mode for mode in modes for _ in range(random_.randint(2, 4))]
        random_.shuffle(plan)
        for round_, (model, write, error_class, code, edge) in enumerate(plan):
            row = model.objects.create()
            results = race_for_row(lambda: model.objects.get(pk=row.pk), write)
            won = [i for i, (result, _) in enumerate(results) if result == "won"]
            self.assertEqual(len(won), 1, "round %d (%s): %r" % (round_, write.__name__, results))
            self.assertEqual([saw for _, saw in results], [i == won[0] for i in range(2)], results)
            error = results[1 - won[0]][0]
            self.assertIs(type(error), error_class, "round %d (%s): %r" % (round_, write.__name__, error))
            if code:
                detail = error.error_dict["status"][0]
                self.assertEqual((detail.code, detail.params["from"], detail.params["to"]), (code,) + edge)
            stored = model.objects.get(pk=row.pk)
            text = stored.topic if model is Conversation else stored.memo
            self.assertEqual(text.split()[-1], str(won[0]))  # the winner's write, nothing of the loser's
        print("transition race: %d rounds, one winner each (%s)" % (
            len(plan), ", ".join("%s %d" % (m[1].__name__, plan.count(m)) for m in modes)))

    def test_saves_of_other_fields_both_go_through(self):
        rounds = rng("transition other fields").randint(2, 5)
        for round_ in range(rounds):
            conversation = Conversation.objects.create(status="open")

            def save_topic(index, mine):
                mine.topic = "topic %d" % index
                mine.save()  # every column, the status unchanged

            results = race_for_row(lambda: Conversation.objects.get(pk=conversation.pk), save_topic)
            self.assertEqual(sorted(results), [("won", False), ("won", True)], "round %d: %r" % (round_, results))
            self.assertEqual(Conversation.objects.get(pk=conversation.pk).status, "open")
        print("transition, saves of other fields: %d rounds, both saved" % rounds)

    def test_hostile_states_are_the_states_written(self):
        random_ = rng("hostile states")
        states = ['on "hold"', "it's > done", "a=b", " lead", "trail ", "ünï ✓", "NULL", "null", "",
                  "back\\slash", "100%s", "tab\tin", "x>y>z", '""', "E'x'", "a\nb"]
        random_.shuffle(states)
        edges = list(zip(states, states[1:])) + [(states[-1], None)]
        operation = AddTransitionGuard("label", field="text", start=[states[0], None], edges=edges,
                                       name="label_text_hostile")
        before = trigger_count()
        state = ProjectState.from_apps(__import__("django.apps", fromlist=["apps"]).apps)
        with connection.schema_editor() as editor:
            operation.database_forwards("shop", editor, state, state)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT (options -> 'edges')::text FROM raceguard.guards"
                               " WHERE trigger_name = 'label_text_hostile'")
                self.assertEqual(json.loads(cursor.fetchone()[0]), operation.spec.texts)
            label = Label.objects.create(text=states[0])
            for current, following in zip(states, states[1:] + [None]):
                # A neighbour of the next state (a blank more, or a NULL for
                # the text NULL) is not a declared edge.
                nears = (following + " ", None if following in ("NULL", "null") else "NULL") if following is not None else ("",)
                for near in [near for near in nears if near != current]:
                    with self.assertRaises(ValidationError, msg=repr((current, near))) as caught:
                        with map_errors(model=Label):
                            Label.objects.filter(pk=label.pk).update(text=near)
                    error = caught.exception.error_dict["text"][0]
                    self.assertEqual((error.code, error.params["from"], error.params["to"]), ("transition", current, near))
                label.text = following
                label.save()
                self.assertEqual(Label.objects.get(pk=label.pk).text, following)
            Label.objects.create(text=None)
            with self.assertRaises(ValidationError) as caught:
                with map_errors(model=Label):
                    Label.objects.create(text=states[1])
            self.assertEqual(caught.exception.error_dict["text"][0].params["to"], states[1])
        finally:
            with connection.schema_editor() as editor:
                RemoveGuard(operation).database_forwards("shop", editor, state, state)
        self.assertEqual(trigger_count(), before)
        print("hostile states: %d states along one chain, each parsed as written" % len(states))

    def test_bad_transition_guards_create_nothing(self):
        for make in (
            lambda: AddTransitionGuard("conversation", field="status"),
            lambda: AddTransitionGuard("conversation", field="status", edges=[], start=[]),
            lambda: AddTransitionGuard("conversation", field="status", edges="open>assigned"),
            lambda: AddTransitionGuard("conversation", field="status", edges=[("open", "assigned", "closed")]),
            lambda: AddTransitionGuard("conversation", field="status", edges=[("open", "a"), ("open", "a")]),
            lambda: AddTransitionGuard("conversation", field="status", edges={"open": "assigned"}),
            lambda: AddTransitionGuard("conversation", field="status", start="open"),
            lambda: AddTransitionGuard("conversation", field="status", start=[1.5]),
            lambda: AddTransitionGuard("conversation", field="status", start=["nul\x00"]),
            lambda: AddTransitionGuard("conversation", field="", start=["open"]),
        ):
            with self.assertRaises(GuardDeclarationError):
                make()
        before = trigger_count()
        state = ProjectState.from_apps(__import__("django.apps", fromlist=["apps"]).apps)
        for operation in (
            AddTransitionGuard("conversation", field="state", start=["open"], name="c1"),
            AddTransitionGuard("conversation", field="status", start=["open"], edges=[("open", "asigned")], name="c2"),
            AddTransitionGuard("conversation", field="status_code", start=["open"], name="c3"),  # a column, not a field
        ):
            with self.assertRaises(GuardDeclarationError) as caught:
                with connection.schema_editor() as editor:
                    operation.database_forwards("shop", editor, state, state)
            print("refused: %s" % caught.exception)
        # What only the column's type can tell: the database refuses it (22P02).
        with self.assertRaises(DataError) as caught:
            with connection.schema_editor() as editor:
                AddTransitionGuard("label", field="number", start=[1], edges=[(1, "two")], name="l1").database_forwards(
                    "shop", editor, state, state)
        cause = caught.exception.__cause__
        self.assertEqual(getattr(cause, "pgcode", None) or getattr(cause, "sqlstate", None), "22P02")
        self.assertEqual(trigger_count(), before)

    def test_deconstructs_for_migration_files(self):
        operation = AddTransitionGuard("shipment", field="status", start=["pending"],
                                       edges={"pending": ["sent"]}, name="s")
        name, args, kwargs = operation.deconstruct()
        self.assertEqual((name, args), ("AddTransitionGuard", ["shipment"]))
        self.assertEqual(AddTransitionGuard(*args, **kwargs).spec.texts, operation.spec.texts)


class DocsExampleTests(TransactionTestCase):
    """docs/django.md's examples: ```python fences run in page order in one
    namespace; ```py fences show the project's own code and must match it."""

    def test_docs_examples(self):
        path = os.environ.get("RACEGUARD_DOCS")
        if not path:
            self.skipTest("RACEGUARD_DOCS not set")
        text = open(path, encoding="utf-8").read()
        fences = re.findall(r"^```(\S*)\n(.*?)^```$", text, re.S | re.M)
        self.assertTrue(fences)
        namespace = {}
        ran = shown = 0
        project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for info, body in fences:
            if info == "python":
                exec(compile(body, "%s (example %d)" % (path, ran + 1), "exec"), namespace)
                ran += 1
            elif info == "py":
                first = body.splitlines()[0]
                match = re.match(r"# (\S+)", first)
                self.assertTrue(match, "a py fence must start with '# <project file>': %r" % first)
                source = open(os.path.join(project, match.group(1)), encoding="utf-8").read()
                for line in body.splitlines()[1:]:
                    if line.strip() and line.strip() != "...":
                        self.assertIn(line.strip(), source, "%s: %r" % (match.group(1), line))
                shown += 1
        print("docs/django.md: %d examples run, %d shown excerpts match the project" % (ran, shown))
