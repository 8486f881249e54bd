"""raceguard demonstration: application races, without and with raceguard.

Every race is played twice on real concurrent sessions (one connection and one
thread per actor): first on a table without the guard, to show the damage,
then with the raceguard trigger installed, to show the database refusing the
racy write. The demo checks itself: it exits 1 when a race does not end as
expected.

Run it through demo/run.sh, or against any database that has raceguard
installed (connection parameters from the PG* environment variables):

    python3 demo/races.py                  # every race
    python3 demo/races.py "lost update"    # only the named races

Adding a race: subclass Race, fill in name, story, guard, tables and schema,
implement run() and check(), and decorate the class with @register.
"""

import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors
import psycopg2.extensions

# Safety nets: no lock wait, statement or open transaction can outlive these,
# so the demo cannot hang on a race that goes wrong.
SESSION_OPTIONS = (
    "-c lock_timeout=10s -c statement_timeout=15s "
    "-c idle_in_transaction_session_timeout=60s"
)
CONNECT_TIMEOUT = 10  # seconds
BLOCKED_TIMEOUT = 5.0  # seconds to see a session wait for a lock
STEP_TIMEOUT = 20.0  # seconds for a background step (> statement_timeout)
MAX_ATTEMPTS = 5  # of an application's retry loop


# ---------------------------------------------------------------------------
# Sessions: one connection per actor, with a background thread for the steps
# that block.
# ---------------------------------------------------------------------------


def connect(application_name, autocommit):
    conn = psycopg2.connect(
        "",
        application_name=application_name,
        connect_timeout=CONNECT_TIMEOUT,
        options=SESSION_OPTIONS,
    )
    conn.set_session(
        isolation_level=psycopg2.extensions.ISOLATION_LEVEL_READ_COMMITTED,
        autocommit=autocommit,
    )
    return conn


class Session:
    """One actor of a race: its own connection, READ COMMITTED, autocommit
    off (every statement runs in a transaction until commit or rollback)."""

    def __init__(self, label):
        self.label = label
        self.conn = connect(f"raceguard demo: {label}", autocommit=False)
        self.pid = self.conn.get_backend_pid()
        self._thread = None
        self._result = None
        self._error = None

    def fetch_one(self, sql, args=()):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()

    def execute(self, sql, args=()):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.rowcount

    def start(self, step):
        """Runs step() in a background thread, for a statement that blocks."""
        assert self._thread is None, f"{self.label} is already busy"

        def body():
            try:
                self._result = step()
            except BaseException as error:  # handed to finish()
                self._error = error

        self._thread = threading.Thread(target=body, name=self.label, daemon=True)
        self._thread.start()

    @property
    def busy(self):
        return self._thread is not None and self._thread.is_alive()

    def finish(self, timeout=STEP_TIMEOUT):
        """Waits for the background step; returns its result or raises its
        exception. Cancels the running statement if it takes too long."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.conn.cancel()
            self._thread.join(5)
            raise TimeoutError(f"{self.label} did not finish within {timeout:.0f}s")
        self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self._result

    def close(self):
        if self.busy:
            self.conn.cancel()
            self._thread.join(5)
        self.conn.close()


class Observer:
    """A third connection that watches the actors through pg_stat_activity."""

    def __init__(self):
        self.conn = connect("raceguard demo: observer", autocommit=True)

    def wait_until_blocked(self, waiter, holder, timeout=BLOCKED_TIMEOUT):
        """Polls until waiter's statement waits for a lock that holder holds.
        Returns the wait event (e.g. 'transactionid'), or None when that did
        not happen within timeout or waiter's step ended first."""
        deadline = time.monotonic() + timeout
        with self.conn.cursor() as cur:
            while time.monotonic() < deadline and waiter.busy:
                cur.execute(
                    "SELECT wait_event FROM pg_stat_activity"
                    " WHERE pid = %s AND wait_event_type = 'Lock'"
                    " AND %s = ANY (pg_blocking_pids(pid))",
                    (waiter.pid, holder.pid),
                )
                row = cur.fetchone()
                if row is not None:
                    return row[0]
                time.sleep(0.02)
        return None

    def fetch_one(self, sql, args=()):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()

    def close(self):
        self.conn.close()


def sql_value(value):
    """A value as psql would let you type it: NULL, 42 or 'text'."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def describe_error(error):
    """SQLSTATE, message and hint of a server error, one line each."""
    lines = [f'ERROR {error.pgcode}: {error.diag.message_primary}']
    if error.diag.message_hint:
        lines.append(f"HINT: {error.diag.message_hint}")
    return lines


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------


@dataclass
class Outcome:
    result: str  # a few words for the summary table
    details: list = field(default_factory=list)  # lines printed under the race
    facts: dict = field(default_factory=dict)  # what check() looks at


class Race:
    name = ""  # short, unique; also the command-line name
    title = ""  # what races, in a few words
    story = ""  # one sentence: who races whom over what
    guard = ""  # the SQL that installs the guard

    tables = ()  # what setup() drops first
    schema = ()  # the statements that (re)create them, with their rows
    guard_is_ddl = True  # guard is SQL to run when guarded (False: it is the race's own query)

    def setup(self, conn, guarded):
        """(Re)creates the race's tables on conn (autocommit), with the
        raceguard trigger when guarded."""
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS " + ", ".join(self.tables))
            for statement in self.schema:
                cur.execute(statement)
            if guarded and self.guard_is_ddl:
                cur.execute(self.guard)

    def run(self, guarded):
        """Plays the race on fresh sessions; returns an Outcome."""
        raise NotImplementedError

    def check(self, outcome, guarded):
        """True when the outcome is the expected one: the damage without
        raceguard, no damage with it."""
        raise NotImplementedError


RACES = []


def register(cls):
    RACES.append(cls())
    return cls


# ---------------------------------------------------------------------------
# Race 1: lost update (raceguard.lock_version)
# ---------------------------------------------------------------------------


@register
class LostUpdate(Race):
    name = "lost update"
    title = "two consumers save the same order"
    story = (
        "Order-event consumers A (billing-address event) and B (payment-method"
        " event) read order 1, change one field each and save the whole row,"
        " as an ORM does."
    )
    guard = (
        "CREATE TRIGGER orders_lock_version BEFORE INSERT OR UPDATE ON orders"
        " FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version()"
    )

    READ = (
        "SELECT customer, billing_address, payment_method, lock_version"
        " FROM orders WHERE id = %s"
    )
    SAVE = (
        "UPDATE orders SET customer = %s, billing_address = %s,"
        " payment_method = %s, lock_version = %s WHERE id = %s"
    )
    COLUMNS = ("customer", "billing_address", "payment_method", "lock_version")

    tables = ("orders",)
    schema = (
        "CREATE TABLE orders (id int PRIMARY KEY, customer text,"
        " billing_address text, payment_method text, lock_version int)",
        "INSERT INTO orders VALUES (1, 'Ada Lovelace', NULL, NULL, 1)",
    )

    # The consumers' code: what an ORM does for order.save().

    def read(self, session, order_id=1):
        return dict(zip(self.COLUMNS, session.fetch_one(self.READ, (order_id,))))

    def save(self, session, order, order_id=1):
        """Writes every column back, echoing the version that was read."""
        session.execute(
            self.SAVE,
            (
                order["customer"],
                order["billing_address"],
                order["payment_method"],
                order["lock_version"],
                order_id,
            ),
        )

    def save_with_retry(self, session, order, change, errors):
        """Applies change to order and saves it; on a stale write (40001),
        rolls back, re-reads and tries again. Returns the attempt that
        saved."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if attempt > 1:
                order = self.read(session)
            change(order)
            try:
                self.save(session, order)
                session.conn.commit()
                return attempt
            except psycopg2.errors.SerializationFailure as error:
                session.conn.rollback()
                errors.append(error)
        raise RuntimeError(f"{session.label}: no save in {MAX_ATTEMPTS} attempts")

    def run(self, guarded):
        details = []
        errors = []
        observer = Observer()
        a = Session("consumer A")
        b = Session("consumer B")
        try:
            # 1. Both consumers read the whole order.
            order_a = self.read(a)
            order_b = self.read(b)
            details.append(
                f"A and B read order 1 at lock_version={order_a['lock_version']}"
            )

            # 2. A applies the billing-address event and saves, not committed.
            order_a["billing_address"] = "Main St 1"
            self.save(a, order_a)

            # 3. B applies the payment-method event to its stale copy and
            #    saves: the UPDATE has to wait for A's row lock.
            def set_payment_method(order):
                order["payment_method"] = "card"

            b.start(lambda: self.save_with_retry(b, order_b, set_payment_method, errors))
            wait_event = observer.wait_until_blocked(b, a)
            if wait_event:
                details.append(
                    f"A saved (not committed); B's save waits for A's row lock"
                    f" (wait_event={wait_event})"
                )
            else:
                details.append("B's save did NOT wait for A's row lock")

            # 4. A commits; B's UPDATE proceeds.
            a.conn.commit()
            attempt = b.finish()

            if errors:
                details.append("A committed; B's save failed:")
                details.extend("  " + line for line in describe_error(errors[0]))
                details.append(
                    f"B rolled back, re-read and retried: attempt {attempt} saved"
                )
            else:
                details.append(f"A committed; B's save went through (attempt {attempt})")

            final = self.read(observer)
        finally:
            a.close()
            b.close()
            observer.close()

        lost = final["billing_address"] != "Main St 1"
        verdict = "billing address LOST" if lost else "nothing lost"
        details.append(
            "final row: "
            + " ".join(f"{c}={sql_value(final[c])}" for c in self.COLUMNS[1:])
            + f"  -> {verdict}"
        )
        if errors:
            result = f"B got {errors[0].pgcode}, retried, {verdict}"
        else:
            result = verdict
        return Outcome(
            result=result,
            details=details,
            facts={
                "b_waited": wait_event is not None,
                "final": final,
                "sqlstates": [e.pgcode for e in errors],
                "attempt": attempt,
            },
        )

    def check(self, outcome, guarded):
        facts = outcome.facts
        final = facts["final"]
        if not facts["b_waited"] or final["payment_method"] != "card":
            return False
        if not guarded:
            # The damage: B's stale copy overwrote A's billing address.
            return final["billing_address"] is None and facts["sqlstates"] == []
        # B was refused once, then saved from a fresh read: nothing lost.
        return (
            final["billing_address"] == "Main St 1"
            and facts["sqlstates"] == ["40001"]
            and facts["attempt"] == 2
        )


# ---------------------------------------------------------------------------
# Race 2: stolen claim (raceguard.immutable_once_set)
# ---------------------------------------------------------------------------


@register
class StolenClaim(Race):
    name = "stolen claim"
    title = "two agents claim the same conversation"
    story = (
        "Support agents A and B both see conversation 1 unassigned and both"
        " click 'take it': each checks that texter_id is NULL, then sets it."
    )
    guard = (
        "CREATE TRIGGER conversation_texter_assignment_constraint BEFORE UPDATE"
        " ON conversations FOR EACH ROW EXECUTE FUNCTION"
        " raceguard.immutable_once_set('texter_id')"
    )
    AGENTS = {"agent A": 101, "agent B": 202}

    tables = ("conversations",)
    schema = (
        "CREATE TABLE conversations (id int PRIMARY KEY, topic text, texter_id int)",
        "INSERT INTO conversations VALUES (1, 'refund request', NULL)",
    )

    # The agents' code: check, then claim.

    def is_unassigned(self, session):
        return session.fetch_one("SELECT texter_id IS NULL FROM conversations WHERE id = 1")[0]

    def claim(self, session):
        """Sets texter_id and commits; returns None on success, or the
        server's error (the claim was refused)."""
        try:
            session.execute(
                "UPDATE conversations SET texter_id = %s WHERE id = 1",
                (self.AGENTS[session.label],),
            )
            session.conn.commit()
            return None
        except psycopg2.errors.CheckViolation as error:
            session.conn.rollback()
            return error

    def run(self, guarded):
        details = []
        observer = Observer()
        a = Session("agent A")
        b = Session("agent B")
        try:
            # 1. Both agents check: unassigned.
            both_saw_free = self.is_unassigned(a) and self.is_unassigned(b)
            details.append(
                "A and B both see conversation 1 unassigned"
                if both_saw_free
                else "the conversation was not unassigned for both"
            )
            # 2. A claims (its UPDATE holds the row lock until A commits);
            #    B claims too and has to wait.
            a.execute("UPDATE conversations SET texter_id = %s WHERE id = 1", (self.AGENTS["agent A"],))
            b.start(lambda: self.claim(b))
            wait_event = observer.wait_until_blocked(b, a)
            details.append(
                "A's claim is in flight; B's claim waits for A's row lock"
                if wait_event
                else "B's claim did NOT wait for A's row lock"
            )
            # 3. A commits: A got the conversation. B's UPDATE proceeds.
            a.conn.commit()
            b_error = b.finish()
            winners = ["A"] + ([] if b_error else ["B"])
            if b_error:
                details.append("A committed; B's claim was refused:")
                details.extend("  " + line for line in describe_error(b_error))
                details.append(f"  CONSTRAINT: {b_error.diag.constraint_name}")
            else:
                details.append("A committed; B's claim went through too: both agents were told they won")
            owner = observer.fetch_one("SELECT texter_id FROM conversations WHERE id = 1")[0]
        finally:
            a.close()
            b.close()
            observer.close()

        owner_label = {v: k for k, v in self.AGENTS.items()}.get(owner, str(owner))
        stolen = len(winners) > 1
        verdict = "A's claim STOLEN by B" if stolen else "exactly one winner"
        details.append(f"final owner: {owner_label} (texter_id={owner}); {len(winners)} agent(s) won -> {verdict}")
        return Outcome(
            result=(f"both won, {verdict}" if stolen else f"B got {b_error.pgcode}, {verdict}"),
            details=details,
            facts={
                "both_saw_free": both_saw_free,
                "b_waited": wait_event is not None,
                "winners": winners,
                "owner": owner,
                "b_sqlstate": b_error.pgcode if b_error else None,
                "b_constraint": b_error.diag.constraint_name if b_error else None,
            },
        )

    def check(self, outcome, guarded):
        facts = outcome.facts
        if not facts["both_saw_free"] or not facts["b_waited"]:
            return False
        if not guarded:
            # The damage: both won, and B silently took A's conversation.
            return facts["winners"] == ["A", "B"] and facts["owner"] == self.AGENTS["agent B"]
        return (
            facts["winners"] == ["A"]
            and facts["owner"] == self.AGENTS["agent A"]
            and facts["b_sqlstate"] == "23514"
            and facts["b_constraint"] == "conversation_texter_assignment_constraint"
        )


# ---------------------------------------------------------------------------
# Race 3: wrong running balance (raceguard.running_balance)
# ---------------------------------------------------------------------------


@register
class WrongBalance(Race):
    name = "running balance"
    title = "two payments read the same previous balance"
    story = (
        "Payment services A and B book a payment of 10 and one of 5 on account 1"
        " (balance 100) at the same time: each reads the last balance, adds its"
        " amount and inserts the new ledger row."
    )
    guard = (
        "CREATE TRIGGER payments_running_balance BEFORE INSERT OR UPDATE OR DELETE"
        " ON payments FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance("
        "'amount', 'running_balance', 'account_id', 'seq=entry_no')"
    )
    AMOUNTS = {"service A": 10, "service B": 5}

    tables = ("payments",)
    schema = (
        "CREATE TABLE payments (account_id int NOT NULL, amount bigint,"
        " running_balance bigint, entry_no bigint)",
        "CREATE INDEX ON payments (account_id, entry_no)",
        "INSERT INTO payments VALUES (1, 100, 100, 1)",
    )

    # The services' code: read the last balance, add, insert.

    def read_last(self, session):
        return session.fetch_one(
            "SELECT running_balance, entry_no FROM payments WHERE account_id = 1"
            " ORDER BY entry_no DESC LIMIT 1"
        )

    def book(self, session, last):
        balance, entry_no = last
        amount = self.AMOUNTS[session.label]
        session.execute(
            "INSERT INTO payments VALUES (1, %s, %s, %s)",
            (amount, balance + amount, entry_no + 1),
        )

    def run(self, guarded):
        details = []
        observer = Observer()
        a = Session("service A")
        b = Session("service B")
        try:
            last_a = self.read_last(a)
            last_b = self.read_last(b)
            details.append(f"A and B both read balance {last_a[0]} (entry {last_a[1]})")
            self.book(a, last_a)
            b.start(lambda: (self.book(b, last_b), b.conn.commit()))
            wait_event = observer.wait_until_blocked(b, a)
            if wait_event:
                details.append("A booked +10 (not committed); B's insert waits for A's account lock")
            else:
                details.append("A booked +10 (not committed); B booked +5 at once, no waiting")
            a.conn.commit()
            b.finish()
            rows = []
            with observer.conn.cursor() as cur:
                cur.execute(
                    "SELECT entry_no, amount, running_balance FROM payments"
                    " WHERE account_id = 1 ORDER BY entry_no, running_balance"
                )
                rows = cur.fetchall()
            chain_ok = all(
                rows[i][2] == rows[i - 1][2] + rows[i][1] and rows[i][0] == rows[i - 1][0] + 1
                for i in range(1, len(rows))
            )
        finally:
            a.close()
            b.close()
            observer.close()

        expected = 100 + sum(self.AMOUNTS.values())
        final = rows[-1][2]
        details.append(
            "ledger: " + ", ".join(f"#{n} {amount:+d} -> {balance}" for n, amount, balance in rows)
        )
        verdict = "balance exact" if final == expected and chain_ok else "balance WRONG"
        details.append(f"final balance {final}, expected {expected} -> {verdict}")
        return Outcome(
            result=f"final {final}, expected {expected}",
            details=details,
            facts={
                "b_waited": wait_event is not None,
                "final": final,
                "expected": expected,
                "chain_ok": chain_ok,
            },
        )

    def check(self, outcome, guarded):
        facts = outcome.facts
        if not guarded:
            # The damage: one payment vanished from the balance.
            return not facts["b_waited"] and facts["final"] != facts["expected"]
        return facts["b_waited"] and facts["final"] == facts["expected"] and facts["chain_ok"]


# ---------------------------------------------------------------------------
# Race 4: double processing (raceguard.claim)
# ---------------------------------------------------------------------------


@register
class DoubleInvoice(Race):
    name = "double invoice"
    title = "two servers run the same billing job"
    story = (
        "Servers A and B both run the 'send pending invoices' job at 09:00:"
        " each picks pending invoices in batches of 3, sends them, marks them"
        " sent and commits."
    )
    CLAIM = "SELECT id FROM raceguard.claim(NULL::invoices, $$status = 'pending'$$, 3, 'id')"
    guard = CLAIM + "  -- instead of a plain SELECT"
    INVOICES = 6

    guard_is_ddl = False
    tables = ("invoices", "sent_emails")
    schema = (
        "CREATE TABLE invoices (id int PRIMARY KEY, customer text, status text NOT NULL)",
        f"INSERT INTO invoices SELECT g, 'customer ' || g, 'pending' FROM generate_series(1, {INVOICES}) g",
        "CREATE TABLE sent_emails (invoice_id int, server text)",
    )

    # The servers' job: pick a batch, send, mark sent, commit.

    def pick(self, session, guarded):
        sql = (
            self.CLAIM
            if guarded
            else "SELECT id FROM invoices WHERE status = 'pending' ORDER BY id LIMIT 3"
        )
        with session.conn.cursor() as cur:
            cur.execute(sql)
            return [row[0] for row in cur.fetchall()]

    def send_and_mark(self, session, ids):
        for invoice_id in ids:  # the e-mail goes out here
            session.execute(
                "INSERT INTO sent_emails VALUES (%s, %s)", (invoice_id, session.label)
            )
        session.execute("UPDATE invoices SET status = 'sent' WHERE id = ANY(%s)", (ids,))
        session.conn.commit()

    def run(self, guarded):
        details = []
        errors = []
        a = Session("server A")
        b = Session("server B")
        observer = Observer()
        try:
            # Both servers pick before either one commits, as when both
            # cron jobs fire at the same minute.
            for _round in range(2):
                batch_a = self.pick(a, guarded)
                batch_b = self.pick(b, guarded)
                details.append(f"A picked {batch_a or 'nothing'}, B picked {batch_b or 'nothing'}")
                for session, batch in ((a, batch_a), (b, batch_b)):
                    try:
                        self.send_and_mark(session, batch)
                    except psycopg2.Error as error:
                        session.conn.rollback()
                        errors.append(error)
            emails, invoices, pending = observer.fetch_one(
                "SELECT count(*), count(DISTINCT invoice_id),"
                " (SELECT count(*) FROM invoices WHERE status = 'pending')"
                " FROM sent_emails"
            )
        finally:
            a.close()
            b.close()
            observer.close()
        twice = emails - invoices
        verdict = f"{twice} invoices SENT TWICE" if twice else "each invoice sent once"
        details.append(
            f"{emails} e-mails for {invoices} invoices, {pending} still pending,"
            f" {len(errors)} errors -> {verdict}"
        )
        return Outcome(
            result=verdict,
            details=details,
            facts={"emails": emails, "invoices": invoices, "pending": pending, "errors": len(errors)},
        )

    def check(self, outcome, guarded):
        facts = outcome.facts
        if facts["errors"] or facts["pending"] or facts["invoices"] != self.INVOICES:
            return False
        if not guarded:
            return facts["emails"] > facts["invoices"]
        return facts["emails"] == facts["invoices"]


# ---------------------------------------------------------------------------
# Races 5 and 6: a status changed twice along the same edge
# (raceguard.transition)
# ---------------------------------------------------------------------------


class DuplicateTransition(Race):
    """Two workers read a row in state FROM, act on it (the action's record
    is written in the same transaction) and move it to TO. Each checked the
    status first, in its own statement, as application code does."""

    table = ""
    FROM = ""
    TO = ""
    actors = ("A", "B")
    action_table = ""  # one row per action taken (an e-mail, a notification)
    edges = ()  # the guard's declared edges

    @property
    def guard(self):
        edges = ", ".join("'" + edge + "'" for edge in self.edges)
        return (
            f"CREATE TRIGGER {self.table}_status BEFORE INSERT OR UPDATE ON {self.table}"
            f" FOR EACH ROW EXECUTE FUNCTION raceguard.transition('status', {edges})"
        )

    def act(self, session):
        """The side effect, recorded in the worker's transaction."""
        raise NotImplementedError

    def move(self, session):
        """The worker's UPDATE to TO; returns the rows it changed."""
        raise NotImplementedError

    def run(self, guarded):
        details = []
        errors = []
        observer = Observer()
        a = Session(self.actors[0])
        b = Session(self.actors[1])
        try:
            # 1. Both read the row and see FROM, so both go on.
            seen_a = a.fetch_one(f"SELECT status FROM {self.table} WHERE id = 7")[0]
            seen_b = b.fetch_one(f"SELECT status FROM {self.table} WHERE id = 7")[0]
            details.append(f"{a.label} and {b.label} read row 7: status {seen_a!r} and {seen_b!r}")
            # 2. A acts and moves the row (not committed yet).
            self.act(a)
            self.move(a)
            # 3. B does the same: its UPDATE waits for A's row lock.
            self.act(b)
            b.start(lambda: self.move(b))
            wait_event = observer.wait_until_blocked(b, a)
            details.append(
                f"{a.label} moved it to {self.TO!r} (not committed); {b.label}'s UPDATE waits"
                f" (wait_event={wait_event})" if wait_event else f"{b.label}'s UPDATE did NOT wait"
            )
            # 4. A commits; B's UPDATE goes on against A's row.
            a.conn.commit()
            try:
                b.finish()
                b.conn.commit()
                details.append(f"{b.label}'s UPDATE went through against the row {a.label} moved")
            except psycopg2.Error as error:
                b.conn.rollback()
                errors.append(error)
                details.append(f"{b.label}'s UPDATE was refused; it rolled back its work:")
                details.extend("  " + line for line in describe_error(error))
            actions, status = observer.fetch_one(
                f"SELECT (SELECT count(*) FROM {self.action_table}),"
                f" (SELECT status FROM {self.table} WHERE id = 7)"
            )
        finally:
            a.close()
            b.close()
            observer.close()
        verdict = self.verdict(actions)
        details.append(f"{actions} {self.action_table} rows, status now {status!r} -> {verdict}")
        return Outcome(
            result=verdict,
            details=details,
            facts={"actions": actions, "status": status, "errors": [e.pgcode for e in errors]},
        )

    def check(self, outcome, guarded):
        facts = outcome.facts
        if facts["status"] != self.TO:
            return False
        if not guarded:
            return facts["actions"] == 2 and not facts["errors"]
        return facts["actions"] == 1 and facts["errors"] == ["23514"]


@register
class DoubleSend(DuplicateTransition):
    name = "double send"
    title = "two servers send the same invoice"
    story = (
        "Servers A and B both pick up invoice 7: each checks that it is still"
        " 'pending', e-mails it, and sets it to 'sent' (the e-mail is recorded"
        " in the same transaction)."
    )
    table = "invoices_outbox"
    FROM, TO = "pending", "sent"
    actors = ("server A", "server B")
    action_table = "invoice_emails"
    edges = (">pending", "pending>sent", "sent>paid")
    tables = ("invoices_outbox", "invoice_emails")
    schema = (
        "CREATE TABLE invoices_outbox (id int PRIMARY KEY, status text NOT NULL)",
        "INSERT INTO invoices_outbox VALUES (7, 'pending')",
        "CREATE TABLE invoice_emails (invoice_id int, server text)",
    )

    def act(self, session):
        session.execute("INSERT INTO invoice_emails VALUES (7, %s)", (session.label,))

    def move(self, session):
        return session.execute("UPDATE invoices_outbox SET status = 'sent' WHERE id = 7")

    def verdict(self, emails):
        return "invoice e-mailed TWICE" if emails > 1 else "invoice e-mailed once"


@register
class DoubleAssignment(DuplicateTransition):
    name = "double assignment"
    title = "two agents take the same conversation"
    story = (
        "Agents A and B both click 'take' on open conversation 7: each checks"
        " that it is still 'open', assigns it to themselves and is notified"
        " that it is theirs (in the same transaction)."
    )
    table = "conversations"
    FROM, TO = "open", "assigned"
    actors = ("agent A", "agent B")
    action_table = "assignment_notices"
    edges = (">open", "open>assigned", "assigned>closed", "assigned>open")
    tables = ("conversations", "assignment_notices")
    schema = (
        "CREATE TABLE conversations (id int PRIMARY KEY, status text NOT NULL, agent text)",
        "INSERT INTO conversations VALUES (7, 'open', NULL)",
        "CREATE TABLE assignment_notices (conversation_id int, agent text)",
    )

    def act(self, session):
        session.execute("INSERT INTO assignment_notices VALUES (7, %s)", (session.label,))

    def move(self, session):
        return session.execute(
            "UPDATE conversations SET status = 'assigned', agent = %s WHERE id = 7", (session.label,)
        )

    def verdict(self, notices):
        return "TWO agents told it is theirs" if notices > 1 else "one agent owns it"


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def play(race, admin, guarded):
    """Sets the race up and plays it once; returns (outcome, as_expected)."""
    try:
        race.setup(admin, guarded)
        outcome = race.run(guarded)
    except Exception as error:  # a race that breaks is reported, not fatal
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        outcome = Outcome(
            result=f"error: {type(error).__name__}",
            details=[f"the race broke: {type(error).__name__}: {message}"],
        )
        return outcome, False
    return outcome, race.check(outcome, guarded)


def print_table(rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("   " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if n == 0:
            print("   " + "  ".join("-" * w for w in widths))


def main(argv):
    known = {race.name: race for race in RACES}
    unknown = [name for name in argv if name not in known]
    if unknown:
        print(f"unknown race(s): {', '.join(unknown)}", file=sys.stderr)
        print(f"known races: {', '.join(known)}", file=sys.stderr)
        return 2
    races = [known[name] for name in argv] if argv else RACES

    admin = connect("raceguard demo: setup", autocommit=True)
    with admin.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS raceguard")
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'raceguard'")
        version = cur.fetchone()[0]
        cur.execute("SHOW server_version")
        server = cur.fetchone()[0]
    print(f"raceguard {version} on PostgreSQL {server}")

    summary = [("race", "without raceguard", "with raceguard", "as expected")]
    all_expected = True
    for race in races:
        print()
        print(f"== {race.name}: {race.title}" if race.title else f"== {race.name}")
        print(textwrap.fill(race.story, width=100, initial_indent="   ", subsequent_indent="   "))
        results = []
        expected = True
        for guarded in (False, True):
            outcome, ok = play(race, admin, guarded)
            expected &= ok
            results.append(outcome.result)
            label = "with raceguard:" if guarded else "without raceguard:"
            print(f"   {label}{'' if ok else '  (NOT AS EXPECTED)'}")
            if guarded:
                print(f"     guard: {race.guard}")
            for line in outcome.details:
                print(f"     {line}")
        summary.append((race.name, results[0], results[1], "yes" if expected else "NO"))
        all_expected &= expected
    admin.close()

    print()
    print("== summary")
    print_table(summary)
    print()
    print("every race ended as expected" if all_expected else "SOME RACES DID NOT END AS EXPECTED")
    return 0 if all_expected else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
