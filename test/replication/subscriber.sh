#!/usr/bin/env bash
# A running_balance ledger on a logical replication subscriber (README,
# "Logical replication"). One cluster of its own (wal_level = logical), a
# publisher and a subscriber database in it:
#  1. the trigger as created on the subscriber: the subscriber's ledger is
#     exactly the publisher's (initial copy, later appends, an UPDATE of a
#     free column), verify_running_balance() and check_guards() find nothing;
#  2. ENABLE ALWAYS on the subscriber: check_guards() warns, the copied rows
#     are recomputed (the copy is not in seq order), and the first
#     replicated UPDATE is refused, which stops replication;
#  3. a local append on a subscriber with the trigger as created collides
#     with the next replicated append on the chain index.
# Waits are bounded polls; nothing is timed.
source "$(dirname "$0")/../faults/lib.sh"
port=5493
new_cluster logical $port
# verbose: the log shows each error's SQLSTATE, which the test looks for.
printf 'wal_level = logical\nlog_error_verbosity = verbose\n' >>"$faults/logical/postgresql.conf"
start logical

status=0
fail() { echo "FAIL: $*"; status=1; }
db() { local name=$1; shift; sql $port -d "$name" "$@"; }
# wait_for DB QUERY: polls until QUERY returns t (at most 60 s).
wait_for() {
    local i
    for i in $(seq 300); do
        [ "$(db "$1" -c "$2")" = t ] && return 0
        sleep 0.2
    done
    return 1
}

ledger_schema="
CREATE EXTENSION raceguard;
CREATE TABLE ledger (account_id integer, amount bigint, balance bigint, n bigint, note text,
                     PRIMARY KEY (account_id, n));
CREATE TRIGGER ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n');"

# setup CASE [subscriber SQL]: a publisher with 5,000 entries over 5 accounts
# (every third one updated since, so the table's physical order is not the
# append order) and a subscriber that has copied them.
setup() {
    local case=$1 subscriber_sql=${2:-}
    db postgres -c "CREATE DATABASE pub_$case" -c "CREATE DATABASE sub_$case"
    db "pub_$case" -c "$ledger_schema"
    db "sub_$case" -c "$ledger_schema"
    db "pub_$case" <<SQL
INSERT INTO ledger (account_id, amount) SELECT g % 5, (g * 7919) % 200 - 90 FROM generate_series(1, 5000) g;
UPDATE ledger SET note = 'seen' WHERE n % 3 = 0;
CREATE PUBLICATION p FOR TABLE ledger;
SQL
    db "pub_$case" -c "SELECT 1 FROM pg_create_logical_replication_slot('s_$case', 'pgoutput')" >/dev/null
    [ -n "$subscriber_sql" ] && db "sub_$case" -c "$subscriber_sql"
    db "sub_$case" -c "CREATE SUBSCRIPTION s_$case CONNECTION 'host=$faults port=$port user=postgres dbname=pub_$case'
                       PUBLICATION p WITH (create_slot = false, slot_name = 's_$case')"
    wait_for "sub_$case" "SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate <> 'r'" ||
        fail "$case: the initial copy did not finish"
}

# differing CASE: subscriber rows whose entry differs from the publisher's.
differing() {
    db "pub_$1" -c "COPY (SELECT account_id, n, amount, balance, note FROM ledger) TO STDOUT" >"$faults/pub_$1.rows"
    db "sub_$1" <<SQL
CREATE TEMP TABLE published (account_id integer, n bigint, amount bigint, balance bigint, note text);
\\copy published FROM '$faults/pub_$1.rows'
SELECT count(*) FROM published p FULL JOIN ledger l USING (account_id, n)
 WHERE (p.amount, p.balance, p.note) IS DISTINCT FROM (l.amount, l.balance, l.note);
SQL
}

more_appends_and_an_update="
INSERT INTO ledger (account_id, amount) SELECT g % 5, 3 FROM generate_series(1, 50) g;
UPDATE ledger SET note = 'reviewed' WHERE n = 900;"

# 1. As created.
setup as_created
db pub_as_created -c "$more_appends_and_an_update"
wait_for sub_as_created "SELECT count(*) = 5 FROM ledger WHERE note = 'reviewed'" ||
    fail "as created: the publisher's appends and update did not arrive"
rows=$(differing as_created)
[ "$rows" = 0 ] || fail "as created: $rows subscriber rows differ from the publisher's"
problems=$(db sub_as_created -c "SELECT count(*) FROM raceguard.verify_running_balance('ledger')")
[ "$problems" = 0 ] || fail "as created: verify_running_balance() found $problems problems"
warnings=$(db sub_as_created -c "SELECT count(*) FROM raceguard.check_guards()")
[ "$warnings" = 0 ] || fail "as created: check_guards() reports $warnings problems"
[ $status = 0 ] && echo "ok: with the trigger as created the subscriber's ledger is the publisher's (5,050 entries)"

# 2. ENABLE ALWAYS.
setup always "ALTER TABLE ledger ENABLE ALWAYS TRIGGER ledger_balance"
warning=$(db sub_always -c "SELECT problem FROM raceguard.check_guards()")
case "$warning" in
    "warning: ENABLE ALWAYS: "*"stops replication"*) echo "ok: check_guards() warns about ENABLE ALWAYS" ;;
    *) fail "check_guards() does not warn about ENABLE ALWAYS: '$warning'" ;;
esac
rows=$(differing always)
[ "$rows" -gt 0 ] && echo "ok: enabled ALWAYS, the guard recomputed $rows of 5000 copied entries" ||
    fail "enabled ALWAYS, no copied entry was recomputed: the test shows nothing"
db pub_always -c "$more_appends_and_an_update"
if wait_for postgres "SELECT pg_read_file('$faults/logical.log') LIKE '%ERROR:  23514:%'"; then
    echo "ok: enabled ALWAYS, the replicated UPDATE was refused and replication stopped"
else
    fail "enabled ALWAYS, the replicated UPDATE was not refused"
fi
[ "$(db sub_always -c "SELECT count(*) FROM ledger")" = 5000 ] || fail "enabled ALWAYS, replication went on"
db sub_always -c "ALTER SUBSCRIPTION s_always DISABLE"

# 3. A local append on the subscriber.
setup local_append
db sub_local_append -c "INSERT INTO ledger (account_id, amount, note) VALUES (1, 10, 'local')"
db pub_local_append -c "$more_appends_and_an_update"
if wait_for postgres "SELECT pg_read_file('$faults/logical.log') LIKE '%ERROR:  23505:%ledger_pkey%'"; then
    echo "ok: a local append on the subscriber stopped replication at the next replicated append"
else
    fail "a local append on the subscriber did not collide with the replicated appends"
fi
db sub_local_append -c "ALTER SUBSCRIPTION s_local_append DISABLE"

exit $status
