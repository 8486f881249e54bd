"""The django-pgtrigger guard classes (where Debian has django-pgtrigger)."""
import contextlib
import io
import json
import os
import random
from decimal import Decimal

import pgtrigger
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.test import TransactionTestCase

from raceguard_django import StaleObjectError
from raceguard_django.exceptions import GuardDeclarationError
from raceguard_django.triggers import GuardIgnoreError, ImmutableOnceSet, LockVersion, RunningBalance, Transition

from shop.tests import in_threads

from .models import Case, Invoice, Payment, Ticket

SEED = int(os.environ.get("RACEGUARD_SEED", "1"))


class PgtriggerGuardTests(TransactionTestCase):
    def test_guards_named_as_declared(self):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT trigger_name, guard FROM raceguard.guards"
                " WHERE table_name::text LIKE 'shop_pgtrigger%' ORDER BY 1"
            )
            self.assertEqual(cursor.fetchall(), [
                ("case_state", "transition"),
                ("invoice_version", "lock_version"),
                ("payment_balance", "running_balance"),
                ("ticket_assignment", "immutable_once_set"),
            ])
            cursor.execute("SELECT count(*) FROM pg_catalog.pg_proc WHERE proname IN"
                           " ('invoice_version', 'payment_balance', 'ticket_assignment', 'case_state')")
            self.assertEqual(cursor.fetchone()[0], 0)  # no PL/pgSQL function of pgtrigger's

    def test_pgtrigger_ls_shows_them_installed(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):  # pgtrigger ls print()s
            call_command("pgtrigger", "ls", stdout=out)
        listing = out.getvalue()
        for uri in ("shop_pgtrigger.Case:case_state", "shop_pgtrigger.Invoice:invoice_version", "shop_pgtrigger.Ticket:ticket_assignment",
                    "shop_pgtrigger.Payment:payment_balance"):
            line = [line for line in listing.splitlines() if uri in line]
            self.assertEqual(len(line), 1, listing)
            self.assertIn("INSTALLED", line[0])
            self.assertNotIn("UNINSTALLED", line[0])
            self.assertNotIn("OUTDATED", line[0])

    def test_version_race(self):
        rounds = random.Random("%d-pgtrigger" % SEED).randint(3, 10)
        invoice = Invoice.objects.create()
        for _ in range(rounds):
            def work(index, barrier):
                mine = Invoice.objects.get(pk=invoice.pk)
                barrier.wait()
                mine.counter += 1
                try:
                    mine.save()
                    return "saved"
                except StaleObjectError:
                    return "stale"
            self.assertEqual(sorted(in_threads(2, work)), ["saved", "stale"])
        self.assertEqual(Invoice.objects.get(pk=invoice.pk).counter, rounds)
        with self.assertRaises(StaleObjectError):
            from raceguard_django import map_errors
            with map_errors():
                Invoice.objects.filter(pk=invoice.pk).update(memo="blind")

    def test_write_once_and_ledger_errors(self):
        ticket = Ticket.objects.create()
        ticket.assignee = 1
        ticket.save()
        ticket.assignee = 2
        with self.assertRaises(ValidationError) as caught:
            ticket.save()
        self.assertEqual(list(caught.exception.message_dict), ["assignee"])
        self.assertEqual(caught.exception.error_dict["assignee"][0].params["constraint"], "ticket_assignment")
        Payment.objects.create(account=1, amount=Decimal("5"))
        with self.assertRaises(ValidationError) as caught:
            Payment.objects.create(account=1, amount=Decimal("-6"))
        self.assertEqual(list(caught.exception.message_dict), ["balance"])

    def test_ignore_refuses_guards_and_they_still_fire(self):
        with self.assertRaises(GuardIgnoreError):
            with pgtrigger.ignore("shop_pgtrigger.Ticket:ticket_assignment"):
                pass
        with self.assertRaises(GuardIgnoreError):
            with pgtrigger.ignore():
                pass
        ticket = Ticket.objects.create(assignee=1)
        # Even with the ignore list set by hand, the guard runs.
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('pgtrigger.ignore', '{ticket_assignment}', false)")
        ticket.assignee = 2
        with self.assertRaises(ValidationError):
            ticket.save()
        with connection.cursor() as cursor:
            cursor.execute("RESET pgtrigger.ignore")

    def test_bad_declarations(self):
        for make in (
            lambda: LockVersion(name="Bad-Name"),
            lambda: LockVersion(name="v", strict="yes"),
            lambda: LockVersion(name="v", sqlstate="P0001"),
            lambda: ImmutableOnceSet(name="w", fields="assignee"),
            lambda: ImmutableOnceSet(name="w", fields=[]),
            lambda: RunningBalance(name="r", amount="a", balance="b", seq="s", min_balance="x"),
            lambda: Transition(name="t", field="state"),
            lambda: Transition(name="t", field="state", transitions=[("a", "b", "c")]),
            lambda: Transition(name="t", field="state", transitions=[("a", "b")], start="a"),
        ):
            with self.assertRaises((GuardDeclarationError, ValueError)):
                make()
        with self.assertRaises(GuardDeclarationError):
            LockVersion(name="v", field="nope").compile(Invoice)
        with self.assertRaises(GuardDeclarationError):
            Transition(name="t", field="nope", start=["new"]).compile(Case)

    def test_transition_along_hostile_states(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT columns::text[], (options -> 'edges')::text FROM raceguard.guards"
                           " WHERE trigger_name = 'case_state'")
            columns, edges = cursor.fetchone()
        edges = json.loads(edges)  # json as text: Django's drivers leave it undecoded
        self.assertEqual(columns, ["state_text"])
        self.assertEqual(edges, [">NULL", ">new", 'new>"on ""hold"""', "new>100% {done} %(x)s",
                                 '"on ""hold""">"it\'s > done = ok"', '"it\'s > done = ok">" ünï ✓ "',
                                 '" ünï ✓ ">"NULL"', '"NULL">NULL', "NULL>new"])
        case = Case.objects.create()  # starts NULL
        path = ["new", 'on "hold"', "it's > done = ok", " ünï ✓ ", "NULL", None]
        for state in path:
            case.state = state
            case.save()
            self.assertEqual(Case.objects.get(pk=case.pk).state, state)
        for bad in ("NULL", "ünï ✓", "bogus"):  # the text NULL, a state without its blanks: no start states
            with self.assertRaises(ValidationError) as caught:
                Case.objects.create(state=bad)
            error = caught.exception.error_dict["state"][0]
            self.assertEqual((error.code, error.params["to"], error.params["constraint"]), ("start_state", bad, "case_state"))
        case.state = 'on "hold"'
        with self.assertRaises(ValidationError) as caught:
            case.save()
        error = caught.exception.error_dict["state"][0]
        self.assertEqual((error.code, error.params["from"], error.params["to"]), ("transition", None, 'on "hold"'))
        # "%" and braces pass pgtrigger's SQL templates and the driver as they are.
        other = Case.objects.create(state="new")
        other.state = "100% {done} %(x)s"
        other.save()
        self.assertEqual(Case.objects.get(pk=other.pk).state, "100% {done} %(x)s")
        self.assertEqual(Case.objects.count(), 2)
