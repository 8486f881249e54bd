#!/usr/bin/env bash
# Lease tokens after pg_upgrade: the upgraded cluster starts on timeline 1
# again, so the timeline in a token no longer tells its tokens apart from
# those a server abandoned at an earlier failover handed out on timeline 1.
# raceguard.lease_tokens_after_upgrade(old timeline), run once after the
# upgrade, moves the token sequence above every token of every earlier
# timeline.
#
# A primary and a streaming standby (as in claim_promotion.sh); the standby
# catches up and stops; the primary hands out more tokens and crashes (a
# server abandoned at a failover); the standby is promoted (timeline 2),
# hands out a few tokens, and is upgraded with pg_upgrade into a new cluster
# (timeline 1). There, tokens taken before the function (the control: they
# must repeat some of the abandoned server's) and after it (none may repeat
# any token handed out before) are recorded.
source "$(dirname "$0")/lib.sh"
primary=5494
standby=5495
upgraded=5496
takes=${FAULT_TAKES:-100}   # more than a sequence logs ahead (32), so the standby is behind

new_cluster primary $primary
start primary
sql $primary <<SQL
CREATE EXTENSION raceguard;
CREATE TABLE jobs (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz);
INSERT INTO jobs (id) SELECT generate_series(1, 6 * $takes);
SQL

# take_tokens PORT ROUND COUNT: leases, one token each, each call its own transaction.
take_tokens() {
    local port=$1 round=$2 count=$3 i
    for i in $(seq "$count"); do
        echo "SELECT claim_token FROM raceguard.claim_lease(NULL::jobs, 'claim_token IS NULL', 1, '1 hour', 'id');"
    done | sql "$port" >"$faults/leases.$round"
    [ "$(sort -u "$faults/leases.$round" | wc -l)" -eq "$count" ] || { echo "FAIL: round $round did not hand out $count tokens"; exit 1; }
}

take_tokens $primary replicated 10
as_postgres "$bindir/pg_basebackup" -h "$faults" -p $primary -U postgres -D "$faults/standby" -R -X stream --no-sync
configure standby $standby
start standby
target=$(sql $primary -c "SELECT pg_current_wal_insert_lsn()")
for _ in $(seq 300); do
    [ "$(sql $standby -c "SELECT pg_last_wal_replay_lsn() >= '$target'")" = t ] && break
    sleep 0.1
done
[ "$(sql $standby -c "SELECT pg_last_wal_replay_lsn() >= '$target'")" = t ] || { echo "FAIL: the standby did not catch up"; exit 1; }
as_postgres "$bindir/pg_ctl" -D "$faults/standby" -m fast -w stop >/dev/null

# The abandoned server hands out more tokens than the promoted one will
# before the upgrade, so the upgraded cluster's sequence is still below them.
take_tokens $primary abandoned $((2 * takes))
as_postgres "$bindir/pg_ctl" -D "$faults/primary" -m immediate -w stop >/dev/null
start standby
as_postgres "$bindir/pg_ctl" -D "$faults/standby" -w promote >/dev/null
for _ in $(seq 300); do [ "$(sql $standby -c "SELECT pg_is_in_recovery()")" = f ] && break; sleep 0.1; done
take_tokens $standby promoted 10
as_postgres "$bindir/pg_ctl" -D "$faults/standby" -m fast -w stop >/dev/null
old_timeline=$(LC_ALL=C "$bindir/pg_controldata" "$faults/standby" | sed -n "s/^Latest checkpoint's TimeLineID: *//p")
[ "$old_timeline" = 2 ] || { echo "FAIL: the promoted standby is on timeline ${old_timeline:-?}, not 2"; exit 1; }

# pg_upgrade into a new cluster of the same major, as a major upgrade does.
new_cluster upgraded $upgraded
( cd "$faults" && as_postgres "$bindir/pg_upgrade" -b "$bindir" -B "$bindir" -d "$faults/standby" -D "$faults/upgraded" \
      -p $standby -P $upgraded -U postgres >"$faults/pg_upgrade.log" 2>&1 ) ||
    { tail -n 40 "$faults/pg_upgrade.log"; echo "FAIL: pg_upgrade failed"; exit 1; }
start upgraded
new_timeline=$(sql $upgraded -c "SELECT timeline_id FROM pg_control_checkpoint()")

take_tokens $upgraded unprotected "$takes"
boundary=$(sql $upgraded -c "SELECT raceguard.lease_tokens_after_upgrade($old_timeline)")
take_tokens $upgraded protected "$takes"

earlier=("$faults/leases.replicated" "$faults/leases.abandoned" "$faults/leases.promoted" "$faults/leases.unprotected")
control_repeats=$(repeated "$faults/leases.abandoned" "$faults/leases.unprotected")
# Tokens after the function that repeat one of them, or each other.
protected_repeats=$(( $(comm -12 <(cat "${earlier[@]}" | sort -u) <(sort -u "$faults/leases.protected") | wc -l) +
                      $(repeated "$faults/leases.protected") ))
highest_earlier=$(cat "${earlier[@]}" | sort -n | tail -1)
lowest_protected=$(sort -n "$faults/leases.protected" | head -1)
timelines=$(for round in replicated abandoned promoted unprotected protected; do
    echo "$round: $(sort -n "$faults/leases.$round" | head -1 | awk '{ print int($1 / 2^48) }')"
done | paste -sd, - | sed 's/,/, /g')
echo "timeline before pg_upgrade: $old_timeline, after: $new_timeline"
echo "tokens' high bits (timeline + block) by round: $timelines"
echo "control (tokens after pg_upgrade, before lease_tokens_after_upgrade): $control_repeats repeat the abandoned server's"
echo "after lease_tokens_after_upgrade($old_timeline) (boundary $boundary): $protected_repeats of $takes repeat an earlier token"
status=0
# pg_upgrade kept the sequence's value: the first token after it continues
# from the promoted server's last (its value is in the low 48 bits).
last_promoted=$(sort -n "$faults/leases.promoted" | tail -1)
first_upgraded=$(sort -n "$faults/leases.unprotected" | head -1)
[ $((first_upgraded % (1 << 48))) -gt $((last_promoted % (1 << 48))) ] ||
    { echo "FAIL: the sequence did not go on after pg_upgrade ($last_promoted, then $first_upgraded)"; status=1; }
[ "$new_timeline" = 1 ] || { echo "FAIL: the upgraded cluster is on timeline $new_timeline, not 1; the test cannot tell"; status=1; }
[ "$control_repeats" -gt 0 ] || { echo "FAIL: the control repeated nothing; the test cannot tell"; status=1; }
[ "$protected_repeats" -eq 0 ] || { echo "FAIL: a token was handed out twice after lease_tokens_after_upgrade()"; status=1; }
[ "$lowest_protected" -ge "$boundary" ] && [ "$boundary" -gt "$highest_earlier" ] ||
    { echo "FAIL: tokens after the function ($lowest_protected and up) are not above the boundary $boundary above every earlier one ($highest_earlier)"; status=1; }
[ $status -ne 0 ] || echo "ok: after pg_upgrade and lease_tokens_after_upgrade() no lease token repeats"
exit $status
