#!/usr/bin/env python3
"""pgbench's retries for a pgbench too old to have them.

pgbench retries a transaction that failed with a serialization failure
(40001) or a deadlock (40P01) only from PostgreSQL 15 on (--max-tries). The
stress tests need those retries on every major, so where the installed
pgbench lacks the option (test/stress/lib.sh checks) this runs the same
script the same way: CLIENTS connections (from the PG* environment), each
running the script TRANSACTIONS times; a transaction failing with 40001 or
40P01 is rolled back and run again from the start with the same \\set values,
at most MAX_TRIES times in all; any other error ends the run (exit 2), as it
aborts a pgbench client. It prints the summary lines the tests read, in
pgbench's words.

The scripts it understands are the stress tests': \\set NAME random(LO, HI),
\\if :NAME = N / \\else / \\endif, SQL commands ending in ";" or "\\gset"
(possibly over several lines), :NAME variables and :client_id.
"""
import argparse
import random
import re
import sys
import threading

import psycopg2

RETRYABLE = ("40001", "40P01")


def parse(path):
    commands, pending = [], []
    with open(path) as script:
        for line in script:
            text = line.strip()
            if not pending and text.startswith("\\"):
                match = (re.fullmatch(r"\\set\s+(\w+)\s+random\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)", text)
                         or re.fullmatch(r"\\if\s+:(\w+)\s*=\s*(-?\d+)", text)
                         or re.fullmatch(r"\\(else|endif)", text))
                if not match:
                    sys.exit("pgbench_retry: unsupported meta-command: " + text)
                if text.startswith("\\set"):
                    commands.append(("set", match[1], int(match[2]), int(match[3])))
                elif text.startswith("\\if"):
                    commands.append(("if", match[1], int(match[2])))
                else:
                    commands.append((match[1],))
                continue
            if not pending and (not text or text.startswith("--")):
                continue
            gset = text.endswith("\\gset")
            pending.append(line.rstrip()[:-len("\\gset")] if gset else line.rstrip())
            if gset or text.endswith(";"):
                commands.append(("sql", "\n".join(pending), gset))
                pending = []
    if pending:
        sys.exit("pgbench_retry: unterminated SQL command: " + "\n".join(pending))
    return commands


def substitute(sql, variables):
    return re.sub(r"(?<!:):(\w+)", lambda m: variables.get(m[1], m[0]), sql)


def run_once(cursor, commands, variables):
    branches = []  # [enclosing branch active, this branch's condition]
    for command in commands:
        active = all(parent and condition for parent, condition in branches)
        kind = command[0]
        if kind == "if":
            branches.append([active, variables[command[1]] == str(command[2])])
        elif kind == "else":
            branches[-1][1] = not branches[-1][1]
        elif kind == "endif":
            branches.pop()
        elif active and kind == "sql":
            cursor.execute(substitute(command[1], variables))
            if command[2]:
                row = cursor.fetchone()
                for column, value in zip(cursor.description, row):
                    variables[column.name] = str(value)


class Client(threading.Thread):
    def __init__(self, number, commands, transactions, max_tries, seed, started):
        super().__init__()
        self.number, self.commands, self.transactions, self.max_tries = number, commands, transactions, max_tries
        self.started = started
        self.rng = random.Random(seed)
        self.processed = self.retried = self.failed = 0
        self.error = None

    def run(self):
        try:
            try:
                connection = psycopg2.connect("")
            except Exception:
                self.started.abort()  # the others stop waiting, and end
                raise
            # As pgbench: every client connects first, then all start
            # together, so that they race from the first transaction on.
            self.started.wait()
            connection.autocommit = True
            cursor = connection.cursor()
            for _ in range(self.transactions):
                drawn = {"client_id": str(self.number)}
                for command in self.commands:
                    if command[0] == "set":
                        drawn[command[1]] = str(self.rng.randint(command[2], command[3]))
                for attempt in range(1, self.max_tries + 1):
                    try:
                        run_once(cursor, self.commands, dict(drawn))
                        self.processed += 1
                        self.retried += attempt > 1
                        break
                    except psycopg2.Error as error:
                        cursor.execute("ROLLBACK")
                        if error.pgcode not in RETRYABLE:
                            raise
                else:
                    self.failed += 1
                    self.retried += self.max_tries > 1
            connection.close()
        except Exception as error:  # reported by main(), as pgbench reports an aborted client
            self.error = error


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", action="store_true")
    parser.add_argument("-c", type=int, default=1)
    parser.add_argument("-j", type=int, default=1)
    parser.add_argument("-t", type=int, default=10)
    parser.add_argument("-f", required=True)
    parser.add_argument("--max-tries", type=int, default=1)
    args = parser.parse_args()
    commands = parse(args.f)
    seed = random.randrange(2**31)
    started = threading.Barrier(args.c)
    clients = [Client(i, commands, args.t, args.max_tries, seed + i, started) for i in range(args.c)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    total = args.c * args.t
    processed = sum(c.processed for c in clients)
    failed = sum(c.failed for c in clients)
    retried = sum(c.retried for c in clients)
    print("pgbench_retry: random seed %d" % seed)
    print("number of clients: %d" % args.c)
    print("number of transactions actually processed: %d/%d" % (processed, total))
    print("number of failed transactions: %d (%.3f%%)" % (failed, 100.0 * failed / total))
    print("number of transactions retried: %d (%.3f%%)" % (retried, 100.0 * retried / total))
    aborted = [c for c in clients if c.error is not None]
    for client in aborted:
        print("client %d aborted: %s" % (client.number, client.error), file=sys.stderr)
    sys.exit(2 if aborted else 0)


if __name__ == "__main__":
    main()
