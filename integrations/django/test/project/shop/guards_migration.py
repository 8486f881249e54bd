# Copied by test/run.sh into shop/migrations/0002_guards.py, after
# makemigrations made 0001_initial: the guards of shop's models.
from django.db import migrations

from raceguard_django.operations import (
    AddImmutableOnceSetGuard,
    AddLockVersionGuard,
    AddRunningBalanceGuard,
    AddTransitionGuard,
    CreateRaceguardExtension,
)


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]

    operations = [
        CreateRaceguardExtension(),
        AddLockVersionGuard("order", field="lock_version", strict=True),
        AddImmutableOnceSetGuard("conversation", fields=["agent"], name="conversation_agent_assignment"),
        AddRunningBalanceGuard("entry", amount="amount", balance="balance", group=["account"], seq="seq",
                               min_balance=0),
        AddLockVersionGuard("job", field="version"),
        AddLockVersionGuard("note", field="version", sqlstate="23514", name="note_version_check"),
        AddTransitionGuard("conversation", field="status", start=["open"],
                           edges=[("open", "assigned"), ("assigned", "closed"), ("assigned", "open")],
                           name="conversation_status"),
        AddLockVersionGuard("shipment", field="version"),
        AddTransitionGuard("shipment", field="status", start=["pending"],
                           edges={"pending": ["sent"], "sent": ["pending", "paid"]}),
    ]
