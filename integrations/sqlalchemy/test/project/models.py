"""The test application's models. RACEGUARD_TEST_STAGE picks the schema
the migrations move through: 1 is the first release, 2 renames the
write-once column, widens the order version and guards invoices too."""
import os
from decimal import Decimal

from sqlalchemy import BigInteger, Column, Date, DateTime, Index, Integer, MetaData, Numeric, String, Table, Text

import raceguard_sqlalchemy as rg

STAGE = int(os.environ.get("RACEGUARD_TEST_STAGE", "1"))

metadata = MetaData()

orders = Table(
    "orders", metadata,
    Column("id", Integer, primary_key=True),
    Column("total", Integer, nullable=False, server_default="0"),
    Column("version", BigInteger if STAGE >= 2 else Integer, nullable=False),
)
rg.lock_version_guard(orders, column="version", strict=True)

# Two write-once columns; one quoted, upper-case name, to see it matched exactly.
assignee = "agent_id" if STAGE >= 2 else "texter_id"
conversations = Table(
    "conversations", metadata,
    Column("id", Integer, primary_key=True),
    Column(assignee, Integer),
    Column("Topic", Text),
)
rg.immutable_once_set_guard(conversations, [assignee], name="conversation_assignment_constraint")

payments = Table(
    "payments", metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, nullable=False),
    Column("amount", Numeric(12, 2), nullable=False),
    Column("balance", Numeric(12, 2)),
    Column("entry_no", Integer),
    Index("payments_chain", "account_id", "entry_no"),
)
rg.running_balance_guard(payments, "amount", "balance", seq="entry_no", group=["account_id"],
                         min_balance=0, initial=Decimal("0.00"))

invoices = Table(
    "invoices", metadata,
    Column("id", Integer, primary_key=True),
    Column("customer", Text, nullable=False),
    Column("status", String(20), nullable=False, server_default="pending"),
    Column("due_at", Date, nullable=False),
    Column("claim_token", BigInteger),
    Column("claimed_until", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("lock_version", Integer),
)
if STAGE >= 2:
    rg.lock_version_guard(invoices)
