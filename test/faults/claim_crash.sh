#!/usr/bin/env bash
# A lease token is never handed out twice, even after a crash with
# synchronous_commit = off.
#
# A crash restarts a sequence from its last WAL record on disk; with
# asynchronous commit, the record behind the tokens just handed out may not
# have reached the disk (the WAL writer flushes it later, every
# wal_writer_delay), and the restarted sequence hands them out again.
# claim_lease() flushes that record before it returns a token.
#
# The test makes the window certain: the WAL writer is paused (SIGSTOP)
# while tokens are taken, so nothing flushes WAL but claim_lease() itself,
# and the server is then stopped with "pg_ctl stop -m immediate" (a crash:
# no shutdown checkpoint). Every token a client was given before and after
# the crash is recorded; none may repeat. The control takes plain
# nextval()s of another sequence the same way: they must repeat, or the
# crash lost no WAL and the test could not tell.
source "$(dirname "$0")/lib.sh"
port=5491
takes=${FAULT_TAKES:-40}

new_cluster crash $port
cat >>"$faults/crash/postgresql.conf" <<CONF
synchronous_commit = off
checkpoint_timeout = 1h
bgwriter_lru_maxpages = 0
CONF
start crash
sql $port <<SQL
CREATE EXTENSION raceguard;
CREATE TABLE jobs (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz);
INSERT INTO jobs (id) SELECT generate_series(1, 4 * $takes);
CREATE SEQUENCE control_seq;
CHECKPOINT;
SQL

# take_tokens ROUND: $takes leases (one token each, each call its own
# transaction), then $takes control values, as separate clients see them.
take_tokens() {
    local round=$1 i
    for i in $(seq "$takes"); do
        echo "SELECT claim_token FROM raceguard.claim_lease(NULL::jobs, 'claim_token IS NULL', 1, '1 hour', 'id');"
    done | sql $port >"$faults/leases.$round"
    for i in $(seq "$takes"); do echo "SELECT nextval('control_seq');"; done | sql $port >"$faults/control.$round"
    [ "$(sort -u "$faults/leases.$round" | wc -l)" -eq "$takes" ] || { echo "FAIL: round $round did not hand out $takes tokens"; exit 1; }
}

wal_writer=$(sql $port -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'")
kill -STOP "$wal_writer"
stopped_processes+=("$wal_writer")
take_tokens before
unflushed=$(sql $port -c "SELECT pg_current_wal_insert_lsn() - pg_current_wal_flush_lsn()")
# The crash: immediate stop; the paused WAL writer is killed, never resumed.
as_postgres "$bindir/pg_ctl" -D "$faults/crash" -m immediate -W stop >/dev/null
kill -KILL "$wal_writer"
stopped_processes=()
for _ in $(seq 100); do [ -f "$faults/crash/postmaster.pid" ] || break; sleep 0.1; done
start crash
take_tokens after

lease_repeats=$(repeated "$faults/leases.before" "$faults/leases.after")
control_repeats=$(repeated "$faults/control.before" "$faults/control.after")
echo "before the crash: $takes tokens, $unflushed bytes of WAL not flushed at the crash"
echo "lease tokens handed out twice: $lease_repeats of $((2 * takes))"
echo "control (plain nextval, synchronous_commit = off): $control_repeats values handed out twice"
status=0
[ "$lease_repeats" -eq 0 ] || { echo "FAIL: a lease token was handed out twice"; status=1; }
[ "$control_repeats" -gt 0 ] || { echo "FAIL: the control repeated nothing; the crash lost no WAL and the test cannot tell"; status=1; }
[ $status -ne 0 ] || echo "ok: no lease token repeats after a crash"
exit $status
