from django.db import models

import raceguard_django


class Order(raceguard_django.GuardedModel):
    billing = models.TextField(default="")
    memo = models.TextField(default="")
    counter = models.IntegerField(default=0)
    lock_version = raceguard_django.VersionField()


class RushOrder(Order):
    """Multi-table inheritance: the version lives in the parent's table."""

    deadline = models.IntegerField(null=True)


class Conversation(raceguard_django.GuardedModel):
    class Status(models.TextChoices):
        OPEN = "open"
        ASSIGNED = "assigned"
        CLOSED = "closed"

    topic = models.TextField(default="")
    agent = models.IntegerField(null=True, db_column="agent_ref")
    status = models.TextField(choices=Status.choices, default=Status.OPEN, db_column="status_code")


class Entry(raceguard_django.GuardedModel):
    account = models.IntegerField()
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    balance = models.DecimalField(max_digits=12, decimal_places=2, null=True)
    seq = models.BigIntegerField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "seq"], name="shop_entry_chain")]


class Job(models.Model):
    payload = models.TextField(null=True)
    status = models.TextField(default="pending")
    done_by = models.TextField(null=True)
    claim_token = models.BigIntegerField(null=True)
    claimed_until = models.DateTimeField(null=True)
    attempts = models.IntegerField(default=0)
    parent = models.ForeignKey("self", null=True, on_delete=models.CASCADE, related_name="children")
    version = raceguard_django.VersionField()  # lock_version in its default mode


class Note(models.Model):
    text = models.TextField(default="")
    version = raceguard_django.VersionField()  # lock_version with sqlstate=23514


class Shipment(raceguard_django.GuardedModel):
    """A status guarded by raceguard.transition() and a VersionField."""

    status = models.TextField(default="pending")
    memo = models.TextField(default="")
    version = raceguard_django.VersionField()


class Label(models.Model):
    """For guards the tests attach and drop (hostile states, bad types)."""

    text = models.TextField(null=True)
    number = models.IntegerField(null=True)
