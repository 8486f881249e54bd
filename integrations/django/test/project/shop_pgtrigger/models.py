from django.db import models

import raceguard_django
from raceguard_django.triggers import ImmutableOnceSet, LockVersion, RunningBalance, Transition


class Invoice(raceguard_django.GuardedModel):
    memo = models.TextField(default="")
    counter = models.IntegerField(default=0)
    version = raceguard_django.VersionField()

    class Meta:
        triggers = [LockVersion(name="invoice_version", field="version", strict=True)]


class Ticket(raceguard_django.GuardedModel):
    assignee = models.IntegerField(null=True, db_column="assignee_ref")

    class Meta:
        triggers = [ImmutableOnceSet(name="ticket_assignment", fields=["assignee"])]


class Payment(raceguard_django.GuardedModel):
    account = models.IntegerField()
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    balance = models.DecimalField(max_digits=12, decimal_places=2, null=True)
    entry_no = models.BigIntegerField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "entry_no"], name="payment_chain")]
        triggers = [
            RunningBalance(name="payment_balance", amount="amount", balance="balance", group=["account"],
                           seq="entry_no", min_balance=0),
        ]


class Case(raceguard_django.GuardedModel):
    """Hostile states: quotes, > and =, blanks, Unicode, the text NULL and
    a NULL state, as pgtrigger.FSM-like (from, to) pairs."""

    state = models.TextField(null=True, db_column="state_text")
    note = models.TextField(default="")

    class Meta:
        triggers = [
            Transition(
                name="case_state",
                field="state",
                start=[None, "new"],
                transitions=[
                    ("new", 'on "hold"'),
                    ("new", "100% {done} %(x)s"),
                    ('on "hold"', "it's > done = ok"),
                    ("it's > done = ok", " ünï ✓ "),
                    (" ünï ✓ ", "NULL"),
                    ("NULL", None),
                    (None, "new"),
                ],
            )
        ]
