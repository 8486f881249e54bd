#!/usr/bin/env bash
# A lease token is never handed out twice, even after an asynchronous
# standby that had not received the primary's last tokens is promoted.
#
# The standby's copy of the token sequence is as old as the last WAL it
# received; once promoted, it hands out the values the primary handed out
# after that again. A token carries the WAL timeline in its high bits, and a
# promoted standby writes on a new timeline, so its tokens differ from all of
# the old primary's.
#
# A primary and a streaming standby (pg_basebackup -R); the standby catches
# up, then is stopped; the primary hands out more tokens and crashes; the
# standby is started and promoted and hands out tokens. Every token a client
# was given is recorded; none may repeat. The control, plain nextval()s of
# another sequence taken the same way, must repeat (the standby was behind).
source "$(dirname "$0")/lib.sh"
primary=5492
standby=5493
takes=${FAULT_TAKES:-100}   # more than a sequence logs ahead (32), so the standby is behind

new_cluster primary $primary
start primary
sql $primary <<SQL
CREATE EXTENSION raceguard;
CREATE TABLE jobs (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz);
INSERT INTO jobs (id) SELECT generate_series(1, 4 * $takes);
CREATE SEQUENCE control_seq;
SQL

# take_tokens PORT ROUND COUNT: leases (one token each, each call its own
# transaction), then control values, as separate clients see them.
take_tokens() {
    local port=$1 round=$2 count=$3 i
    for i in $(seq "$count"); do
        echo "SELECT claim_token FROM raceguard.claim_lease(NULL::jobs, 'claim_token IS NULL', 1, '1 hour', 'id');"
    done | sql "$port" >"$faults/leases.$round"
    for i in $(seq "$count"); do echo "SELECT nextval('control_seq');"; done | sql "$port" >"$faults/control.$round"
    [ "$(sort -u "$faults/leases.$round" | wc -l)" -eq "$count" ] || { echo "FAIL: round $round did not hand out $count tokens"; exit 1; }
}

take_tokens $primary replicated 10
as_postgres "$bindir/pg_basebackup" -h "$faults" -p $primary -U postgres -D "$faults/standby" -R -X stream --no-sync
configure standby $standby
start standby
# The standby replays everything so far, then stops.
target=$(sql $primary -c "SELECT pg_current_wal_insert_lsn()")
for _ in $(seq 300); do
    [ "$(sql $standby -c "SELECT pg_last_wal_replay_lsn() >= '$target'")" = t ] && break
    sleep 0.1
done
[ "$(sql $standby -c "SELECT pg_last_wal_replay_lsn() >= '$target'")" = t ] || { echo "FAIL: the standby did not catch up"; exit 1; }
as_postgres "$bindir/pg_ctl" -D "$faults/standby" -m fast -w stop >/dev/null

take_tokens $primary unreplicated "$takes"
as_postgres "$bindir/pg_ctl" -D "$faults/primary" -m immediate -w stop >/dev/null
start standby
as_postgres "$bindir/pg_ctl" -D "$faults/standby" -w promote >/dev/null
for _ in $(seq 300); do [ "$(sql $standby -c "SELECT pg_is_in_recovery()")" = f ] && break; sleep 0.1; done
take_tokens $standby promoted "$takes"

lease_repeats=$(repeated "$faults"/leases.*)
control_repeats=$(repeated "$faults"/control.*)
timelines=$(for round in replicated unreplicated promoted; do
    echo "$round: timeline $(sort -n "$faults/leases.$round" | head -1 | awk '{ print int($1 / 2^48) }')"
done | paste -sd, - | sed 's/,/, /g')
echo "tokens by timeline: $timelines"
echo "lease tokens handed out twice: $lease_repeats of $((10 + 2 * takes))"
echo "control (plain nextval): $control_repeats values handed out twice"
status=0
[ "$lease_repeats" -eq 0 ] || { echo "FAIL: a lease token was handed out twice"; status=1; }
[ "$control_repeats" -gt 0 ] || { echo "FAIL: the control repeated nothing; the standby was not behind and the test cannot tell"; status=1; }
[ $status -ne 0 ] || echo "ok: no lease token repeats after a promotion"
exit $status
