#!/usr/bin/env bash
# raceguard on Citus (docs/citus.md, SPEC §9): a coordinator and two workers
# of the Citus installed for the PostgreSQL under test (PG_CONFIG), each a
# throwaway cluster with its own Unix socket and no TCP listener. Without
# citus.so in that server's library directory it says it skipped, and
# passes: Citus is not a Debian package, and nothing here builds it.
# RACEGUARD_CITUS_PORT=n: the coordinator's port (default 9700); the workers
# take the ports after it.
#  0. raceguard is created on the coordinator alone, after the first worker
#     joined: Citus creates it on that worker, and on the second worker when
#     it is added later (1.6's install script makes no temporary objects,
#     which PREPARE TRANSACTION refuses);
#  1. refusals: running_balance on a table distributed by a column that is
#     not a group column (and without group columns) fails at CREATE TRIGGER
#     with 0A000 and leaves no trigger; a reference-table ledger is created
#     with a WARNING and check_guards() lists it; create_distributed_table
#     on a ledger whose trigger exists, by a column that is not a group
#     column, fails (the guard refuses the rows Citus copies into the
#     shards; were the table empty, its first append would fail, and
#     check_guards() reports it either way) and leaves the ledger as it was;
#  1b. a ledger that has its trigger and rows: create_distributed_table (by
#     its group column, and single-shard) and create_reference_table are
#     refused (Citus would copy the rows into the new shards through the
#     guard, renumbering them) and leave every seq and balance as it was, for
#     a superuser and for an ordinary role (which cannot set
#     raceguard.restoring); an append in the transaction that distributed
#     the table is refused too; the documented procedure (drop the trigger,
#     distribute, create the trigger, in one transaction) and
#     raceguard.restoring set for the transaction by a superuser distribute
#     it with every entry kept; a shard move and a split (block_writes) keep
#     them, and the next appends continue each chain;
#  2. lost updates: read-modify-write through the coordinator and through
#     both workers against lock_version: 0 lost;
#  3. a ledger distributed by its account column, appended to through the
#     coordinator and both workers at once: verify_running_balance() finds
#     nothing, and each account's last balance is the sum of its amounts;
#  4. lease tokens made on the three nodes at once: none twice, and each
#     carries its node's Citus group id;
#  5. claim_lease through three nodes on a table distributed by its queue
#     column, the filter pinning the queue, and on a reference table: every
#     job leased exactly once; a filter that does not pin the queue is
#     refused with an error naming the distribution column;
#  6. the same as an ordinary role (its first rows on the workers read
#     Citus's catalog with its privileges);
#  7. a guard's error raised on a shard names the user's table and trigger,
#     not the shard's, and its DETAIL carries the constraint's name;
#  8. the whole cluster at once: cluster_guards() lists each guard of a
#     distributed ledger once, under its table's and trigger's names;
#     cluster_stats() adds up the appends made through the three nodes;
#     check_cluster_guards() reports a shard's problem found on a worker, in
#     the user's names; an ordinary role sees only the tables it may see;
#  9. a node that already has raceguard (and handed out a lease token before
#     it joined) joins: its tokens as a worker come after that token; once
#     it is down, cluster_guards() fails naming it (08006).
# Nothing is timed; RACEGUARD_SEED seeds the amounts and accounts.
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
major=$("$PG_CONFIG" --version | sed 's/^PostgreSQL \([0-9]*\).*/\1/')
libdir=$("$PG_CONFIG" --pkglibdir)
if [ ! -f "$libdir/citus.so" ]; then
    echo "skipped: Citus is not installed for PostgreSQL $major (no citus.so in $libdir; see README, \"Citus\")"
    exit 0
fi
source "$(dirname "$0")/../faults/lib.sh"
seed=${RACEGUARD_SEED:-$RANDOM}
echo "seed: $seed"

coordinator=${RACEGUARD_CITUS_PORT:-9700} worker1=$((coordinator + 1)) worker2=$((coordinator + 2))
for node in coordinator:$coordinator worker1:$worker1 worker2:$worker2; do
    name=${node%%:*} port=${node##*:}
    new_cluster "$name" "$port"
    cat >>"$faults/$name/postgresql.conf" <<CONF
shared_preload_libraries = 'citus,raceguard'
max_prepared_transactions = 100
citus.node_conninfo = 'sslmode=prefer'
citus.local_hostname = '$faults'
CONF
    start "$name"
    sql "$port" -c "CREATE EXTENSION citus"
done
status=0
fail() { echo "FAIL: $*"; status=1; }
pass() { echo "ok: $*"; }

echo "--- 0. Citus creates raceguard on the workers"
# raceguard on the coordinator alone, once worker1 has joined; worker2
# joins after it.
default_version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$(dirname "$0")/../../raceguard.control")
sql $coordinator <<SQL >/dev/null
SELECT citus_set_coordinator_host('$faults', $coordinator);
SELECT citus_add_node('$faults', $worker1);
CREATE EXTENSION raceguard;
SQL
installed=$(sql $worker1 -c "SELECT extversion FROM pg_extension WHERE extname = 'raceguard'")
[ "$installed" = "$default_version" ] && pass "CREATE EXTENSION raceguard on the coordinator made raceguard $installed on worker1" ||
    fail "worker1 has raceguard '${installed}', not $default_version, after CREATE EXTENSION on the coordinator"
sql $coordinator -c "SELECT citus_add_node('$faults', $worker2)" >/dev/null
installed=$(sql $worker2 -c "SELECT extversion FROM pg_extension WHERE extname = 'raceguard'")
[ "$installed" = "$default_version" ] && pass "worker2, added later, got raceguard $installed" ||
    fail "worker2 has raceguard '${installed}', not $default_version, after citus_add_node"
# expect_error PORT SQLSTATE TEXT SQL: SQL fails with SQLSTATE and a message holding TEXT.
expect_error() {
    local port=$1 state=$2 text=$3 statement=$4 output
    if output=$(sql "$port" -v VERBOSITY=verbose -c "$statement" 2>&1); then
        fail "accepted: $statement"
        return
    fi
    if grep -q "ERROR:  $state: .*$text" <<<"$output"; then
        pass "refused with $state: ${statement:0:70}"
    else
        fail "refused otherwise than with $state and \"$text\": $output"
    fi
}

echo "--- 1. refusals"
sql $coordinator <<'SQL'
CREATE TABLE by_id (id bigserial PRIMARY KEY, account_id integer NOT NULL, amount bigint, balance bigint, n bigint);
CREATE INDEX ON by_id (account_id, n);
SELECT create_distributed_table('by_id', 'id') \gset
CREATE TABLE no_groups (id bigserial PRIMARY KEY, amount bigint, balance bigint, n bigint);
CREATE INDEX ON no_groups (n);
SELECT create_distributed_table('no_groups', 'id') \gset
CREATE TABLE shared_ledger (amount bigint, balance bigint, n bigint);
CREATE INDEX ON shared_ledger (n);
SELECT create_reference_table('shared_ledger') \gset
ALTER SYSTEM SET citus.enable_unsafe_triggers = on;
SELECT pg_reload_conf() \gset
SQL
for port in $worker1 $worker2; do sql "$port" -c "ALTER SYSTEM SET citus.enable_unsafe_triggers = on" -c "SELECT pg_reload_conf()" >/dev/null; done
expect_error $coordinator 0A000 'Citus distributes the table by column "id", which is not one of its group columns' \
    "CREATE TRIGGER by_id_balance BEFORE INSERT OR UPDATE OR DELETE ON by_id FOR EACH ROW
     EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n')"
expect_error $coordinator 0A000 'and the ledger has no group columns' \
    "CREATE TRIGGER no_groups_balance BEFORE INSERT OR UPDATE OR DELETE ON no_groups FOR EACH ROW
     EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'seq=n')"
for port in $coordinator $worker1 $worker2; do
    left=$(sql "$port" -c "SELECT count(*) FROM pg_trigger WHERE tgname IN ('by_id_balance', 'no_groups_balance')")
    [ "$left" = 0 ] && pass "no trigger left on port $port" || fail "$left refused triggers left on port $port"
done
output=$(sql $coordinator -c "CREATE TRIGGER shared_balance BEFORE INSERT OR UPDATE OR DELETE ON shared_ledger
                              FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'seq=n')" 2>&1)
grep -q 'WARNING:  trigger "shared_balance" on table "shared_ledger": a Citus reference table' <<<"$output" &&
    pass "a reference-table ledger is created with a WARNING" || fail "no WARNING for a reference-table ledger: $output"
listed=$(sql $coordinator -c "SELECT count(*) FROM raceguard.check_guards()
                              WHERE table_name = 'shared_ledger'::regclass AND problem LIKE 'warning: a Citus reference table%'")
[ "$listed" = 1 ] && pass "check_guards() lists the reference-table ledger" || fail "check_guards() lists it $listed times"
sql $coordinator -c "INSERT INTO shared_ledger (amount) VALUES (5), (7)"
[ "$(sql $coordinator -c "SELECT string_agg(n || ':' || balance, ' ' ORDER BY n) FROM shared_ledger")" = "1:5 2:12" ] &&
    pass "the reference-table ledger appends" || fail "the reference-table ledger: $(sql $coordinator -c "TABLE shared_ledger")"

# The other order: the trigger first, then the table distributed by id.
sql $coordinator <<'SQL'
CREATE TABLE late (id bigserial PRIMARY KEY, account_id integer NOT NULL, amount bigint, balance bigint, n bigint);
CREATE INDEX ON late (account_id, n);
CREATE TRIGGER late_balance BEFORE INSERT OR UPDATE OR DELETE ON late FOR EACH ROW
    EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n');
INSERT INTO late (account_id, amount) SELECT 1, g FROM generate_series(1, 8) g;
SQL
# Citus copies the rows into the shards through the guard, which refuses
# them; Citus reports that as XX000, with the guard's message (naming the
# shard). Which refusal comes back depends on whether the shard's connection
# already sees Citus's catalog: the distribution column's, or the copy's
# (section 1b).
if output=$(sql $coordinator -v VERBOSITY=verbose -c "SELECT create_distributed_table('late', 'id')" 2>&1); then
    fail "create_distributed_table accepted a ledger with its trigger, by id"
elif grep -q 'ERROR:  .*Citus distributes its table "late" by column "id", which is not one of its group columns' \
    <<<"$output" || grep -q 'ERROR:  .*takes no rows into a Citus shard in the transaction that created the shard' \
    <<<"$output"; then
    pass "distributing a ledger after its trigger by a column that is not a group column is refused"
else
    fail "create_distributed_table failed otherwise: $output"
fi
kept=$(sql $coordinator -c "SELECT (SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'late'::regclass)
                                || ' ' || string_agg(n || ':' || balance, ' ' ORDER BY n) FROM late")
[ "$kept" = "0 1:1 2:3 3:6 4:10 5:15 6:21 7:28 8:36" ] && pass "the ledger stays local and unchanged" ||
    fail "after the refused create_distributed_table: $kept"
# An empty ledger has no rows to copy: check_guards() reports it, and its
# first append fails.
sql $coordinator <<'SQL'
CREATE TABLE late_empty (id bigserial PRIMARY KEY, account_id integer NOT NULL, amount bigint, balance bigint, n bigint);
CREATE INDEX ON late_empty (account_id, n);
CREATE TRIGGER late_empty_balance BEFORE INSERT OR UPDATE OR DELETE ON late_empty FOR EACH ROW
    EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n');
SELECT create_distributed_table('late_empty', 'id') \gset
SQL
problem=$(sql $coordinator -c "SELECT problem FROM raceguard.check_guards() WHERE table_name = 'late_empty'::regclass")
grep -q 'Citus distributes the table by column "id", which is not one of its group columns' <<<"$problem" &&
    pass "an empty ledger distributed after its trigger: check_guards() reports it" ||
    fail "an empty ledger distributed after its trigger: check_guards() says: $problem"
expect_error $coordinator 0A000 'Citus distributes its table "late_empty" by column "id"' \
    "INSERT INTO late_empty (account_id, amount) VALUES (1, 100)"
[ "$(sql $coordinator -c "SELECT count(*) FROM late_empty")" = 0 ] && pass "nothing was appended" ||
    fail "rows were appended to late_empty"

# The same with a name too long for its shard ids: Citus cuts and hashes the
# shards' names, and the guard still finds their table.
long=ledger_with_a_name_long_enough_that_citus_hashes_its_shards_x
sql $coordinator <<SQL
CREATE TABLE $long (id bigserial PRIMARY KEY, account_id integer NOT NULL, amount bigint, balance bigint, n bigint);
CREATE INDEX ON $long (account_id, n);
CREATE TRIGGER long_balance BEFORE INSERT OR UPDATE OR DELETE ON $long FOR EACH ROW
    EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n');
SELECT create_distributed_table('$long', 'id') \gset
SQL
expect_error $coordinator 0A000 "Citus distributes its table \"$long\" by column \"id\"" \
    "INSERT INTO $long (account_id, amount) VALUES (1, 100)"

echo "--- 1b. distributing a ledger that has its trigger and rows"
# Citus copies a table's rows into its new shards through the shards'
# triggers: the guard would append them again in copy order (physical
# order, which an UPDATE of another column changes) and renumber them.
# Every such copy is refused and leaves the ledger as it was; the documented
# procedure, and raceguard.restoring for a superuser, keep every entry.
# make_history TABLE: a ledger with its trigger, 60 entries of 4 accounts,
# some rows moved by an UPDATE of a column that is no ledger column, and
# TABLE_before holding every entry's seq and balance.
make_history() {
    sql $coordinator <<SQL
CREATE TABLE $1 (id bigserial, account_id integer NOT NULL, amount bigint NOT NULL, balance bigint, n bigint,
                 note text, PRIMARY KEY (account_id, id));
CREATE INDEX ON $1 (account_id, n);
CREATE TRIGGER $1_balance BEFORE INSERT OR UPDATE OR DELETE ON $1 FOR EACH ROW
    EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n');
INSERT INTO $1 (account_id, amount) SELECT 1 + abs(hashint4(g + $seed)) % 4, abs(hashint4(g - $seed)) % 100 - 20
  FROM generate_series(1, 60) g;
UPDATE $1 SET note = 'moved' WHERE abs(hashint4(id::integer * $seed)) % 3 = 0;
CREATE TABLE $1_before AS SELECT id, account_id, n, balance FROM $1;
SQL
}
# unchanged TABLE: "ENTRIES DISTRIBUTED CHANGED": how many entries the
# ledger holds, whether Citus distributes it, and how many of the entries in
# TABLE_before are gone or have another seq or balance.
unchanged() {
    sql $coordinator -c "WITH now AS MATERIALIZED (SELECT id, n, balance FROM $1)
                         SELECT (SELECT count(*) FROM now) || ' ' ||
                                (SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = '$1'::regclass) || ' ' ||
                                count(*) FILTER (WHERE now.id IS NULL OR now.n IS DISTINCT FROM b.n
                                                 OR now.balance IS DISTINCT FROM b.balance)
                           FROM $1_before b LEFT JOIN now USING (id)"
}
# distributed_intact TABLE WHAT: TABLE is distributed, with every entry of
# TABLE_before as it was, and verify_running_balance() finds nothing.
distributed_intact() {
    local problems state
    problems=$(sql $coordinator -c "SELECT count(*) FROM raceguard.verify_running_balance('$1')")
    state=$(unchanged "$1")
    [ "$state" = "60 1 0" ] && [ "$problems" = 0 ] &&
        pass "$2: 60 entries distributed, every seq and balance kept, verify clean" ||
        fail "$2: (entries, distributed, changed) = $state, verify rows $problems"
}
refused_copy='ERROR:  .*takes no rows into a Citus shard in the transaction that created the shard'
make_history history
for distribute in "create_distributed_table('history', 'account_id')" "create_reference_table('history')" \
    "create_distributed_table('history', NULL)"; do
    if output=$(sql $coordinator -v VERBOSITY=verbose -c "SELECT $distribute" 2>&1); then
        fail "$distribute accepted a ledger with its trigger and rows"
    elif grep -q "$refused_copy" <<<"$output" && grep -q 'DETAIL:  .*drop its trigger, distribute the table' <<<"$output"; then
        pass "$distribute on a ledger with its trigger and rows is refused"
    else
        fail "$distribute failed otherwise: $output"
    fi
    state=$(unchanged history)
    [ "$state" = "60 0 0" ] && pass "after $distribute the ledger is local, every seq and balance as before" ||
        fail "after $distribute: (entries, distributed, changed) = $state"
done
# An ordinary role that owns its ledger: the copy runs as that role on the
# workers, and raceguard.restoring is not that role's to set (a session that
# has not loaded raceguard yet takes the SET as a placeholder, which the
# workers drop with a WARNING when raceguard loads there).
sql $coordinator -c "CREATE ROLE owner_role LOGIN" -c "GRANT CREATE ON SCHEMA public TO owner_role"
make_history owned
sql $coordinator -c "ALTER TABLE owned OWNER TO owner_role" -c "ALTER TABLE owned_before OWNER TO owner_role"
# Statements one at a time: Citus propagates a string of several badly.
as_owner() { "$bindir/psql" -h "$faults" -p "$coordinator" -U owner_role -d postgres -qXAt -v ON_ERROR_STOP=1 -v VERBOSITY=verbose 2>&1; }
output=$(as_owner <<<"SELECT create_distributed_table('owned', 'account_id');" || true)
grep -q "$refused_copy" <<<"$output" && pass "an ordinary role's create_distributed_table is refused too" ||
    fail "an ordinary role's create_distributed_table: $output"
output=$(as_owner <<'SQL' || true
BEGIN;
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL raceguard.restoring = on;
SELECT create_distributed_table('owned', 'account_id');
COMMIT;
SQL
)
{ grep -q "$refused_copy" <<<"$output" ||
    grep -q 'ERROR:  42501: permission denied to set parameter "raceguard.restoring"' <<<"$output"; } &&
    pass "an ordinary role's raceguard.restoring keeps nothing: the copy is refused" ||
    fail "raceguard.restoring as owner_role: $output"
[ "$(unchanged owned)" = "60 0 0" ] && pass "the ordinary role's ledger stayed local and unchanged" ||
    fail "owned: $(unchanged owned)"
# An append in the transaction that distributed the table reaches a shard
# that transaction created: refused as well (with its SQLSTATE, since it is
# no copy), and nothing stays.
output=$(sql $coordinator -v VERBOSITY=verbose 2>&1 <<'SQL' || true
BEGIN;
CREATE TABLE fresh (account_id integer NOT NULL, amount bigint NOT NULL, balance bigint, n bigint);
CREATE INDEX ON fresh (account_id, n);
SELECT create_distributed_table('fresh', 'account_id') \gset
CREATE TRIGGER fresh_balance BEFORE INSERT OR UPDATE OR DELETE ON fresh FOR EACH ROW
    EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n');
INSERT INTO fresh (account_id, amount) VALUES (1, 5);
COMMIT;
SQL
)
grep -q 'ERROR:  0A000: ledger table "fresh" takes no rows into a Citus shard in the transaction that created the shard' \
    <<<"$output" && grep -q 'HINT:  .*append once that transaction has committed' <<<"$output" &&
    pass "an append in the transaction that distributed the ledger is refused with 0A000" ||
    fail "an append in the distributing transaction: $output"
[ "$(sql $coordinator -c "SELECT to_regclass('fresh') IS NULL")" = t ] && pass "nothing of it stayed" ||
    fail "table fresh exists after its refused transaction"

# The documented procedure (docs/citus.md), in one transaction.
sql $coordinator <<'SQL'
BEGIN;
DROP TRIGGER history_balance ON history;
SELECT create_distributed_table('history', 'account_id') \gset
CREATE TRIGGER history_balance BEFORE INSERT OR UPDATE OR DELETE ON history FOR EACH ROW
    EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n');
COMMIT;
SQL
distributed_intact history "drop trigger, distribute, create trigger"
# raceguard.restoring, set for the distributed transaction by a superuser,
# keeps the copied entries as they are, the trigger in place.
make_history kept
sql $coordinator <<'SQL'
BEGIN;
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL raceguard.restoring = on;
SELECT create_distributed_table('kept', 'account_id') \gset
COMMIT;
SQL
distributed_intact kept "raceguard.restoring"
[ "$(sql $coordinator -c "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'kept'::regclass AND tgname = 'kept_balance'")" = 1 ] &&
    pass "raceguard.restoring: the trigger stayed in place" || fail "kept lost its trigger"
# Moving and splitting shards copies the rows before the shards get their
# triggers: the entries stay as they are, and appends continue each chain.
shard=$(sql $coordinator -c "SELECT shardid FROM citus_shards WHERE table_name = 'history'::regclass AND shard_size > 0
                             AND nodeport = $worker1 ORDER BY shardid LIMIT 1")
sql $coordinator -c "SELECT citus_move_shard_placement($shard, '$faults', $worker1, '$faults', $worker2, 'block_writes')" >/dev/null
split=$(sql $coordinator -c "SELECT shardid FROM citus_shards WHERE table_name = 'history'::regclass AND shard_size > 0
                             AND nodeport = $worker2 ORDER BY shardid LIMIT 1")
sql $coordinator -c "SELECT citus_split_shard_by_split_points($split,
                         ARRAY[((SELECT shardminvalue::bigint + shardmaxvalue::bigint FROM pg_dist_shard WHERE shardid = $split) / 2)::text],
                         ARRAY[(SELECT nodeid FROM pg_dist_node WHERE nodeport = $worker2), (SELECT nodeid FROM pg_dist_node WHERE nodeport = $worker1)],
                         'block_writes')" >/dev/null
sql $coordinator -c "INSERT INTO history (account_id, amount) SELECT a, 1000 FROM generate_series(1, 4) a"
problems=$(sql $coordinator -c "SELECT count(*) FROM raceguard.verify_running_balance('history')")
continued=$(sql $coordinator -c "WITH appended AS MATERIALIZED (SELECT account_id, n, balance FROM history WHERE amount = 1000)
                                SELECT count(*) FROM appended a
                                  JOIN (SELECT DISTINCT ON (account_id) account_id, n, balance FROM history_before
                                         ORDER BY account_id, n DESC) last USING (account_id)
                                 WHERE a.n = last.n + 1 AND a.balance = last.balance + 1000")
[ "$(unchanged history)" = "64 1 0" ] && [ "$problems" = 0 ] && [ "$continued" = 4 ] &&
    pass "shard $shard moved, shard $split split: entries unchanged, 4 appends continue their chains, verify clean" ||
    fail "after a move and a split: $(unchanged history), verify rows $problems, appends continuing a chain $continued"

echo "--- 2. lost updates against lock_version"
sql $coordinator <<'SQL'
CREATE TABLE counters (id integer PRIMARY KEY, hits integer NOT NULL, lock_version integer);
SELECT create_distributed_table('counters', 'id') \gset
CREATE TRIGGER counters_lock_version BEFORE INSERT OR UPDATE ON counters
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO counters VALUES (1, 0), (2, 0);
SQL
# Each writer reads a counter and writes back hits + 1 with the version it read.
writes=150
for i in $(seq $writes); do
    echo "SELECT hits AS h, lock_version AS v FROM counters WHERE id = $((i % 2 + 1)) \\gset"
    echo "UPDATE counters SET hits = :h + 1, lock_version = :v WHERE id = $((i % 2 + 1));"
done >"$faults/writer.sql"
pids=()
k=0
for port in $coordinator $coordinator $worker1 $worker2; do
    k=$((k + 1))
    "$bindir/psql" -h "$faults" -p "$port" -U postgres -d postgres -X -v VERBOSITY=verbose -f "$faults/writer.sql" \
        >"$faults/writer.$k.out" 2>&1 &
    pids+=($!)
done
wait "${pids[@]}"
accepted=$(cat "$faults"/writer.*.out | grep -c '^UPDATE 1$' || true)
stale=$(cat "$faults"/writer.*.out | grep -c 'ERROR:  40001:' || true)
hits=$(sql $coordinator -c "SELECT sum(hits) FROM counters")
echo "accepted $accepted, stale $stale, hits $hits"
[ "$hits" = "$accepted" ] && [ $((accepted + stale)) = $((4 * writes)) ] &&
    pass "0 lost updates of $accepted through the coordinator and both workers" ||
    fail "lost updates: $accepted accepted, $stale stale, $hits counted"

echo "--- 3. a ledger distributed by its account column"
# distributed_ledger NAME: a ledger distributed by its account, its guard NAME_balance.
distributed_ledger() {
    sql $coordinator <<SQL
CREATE TABLE $1 (account_id integer NOT NULL, amount bigint NOT NULL, balance bigint, n bigint);
CREATE INDEX ON $1 (account_id, n);
SELECT create_distributed_table('$1', 'account_id') \\gset
CREATE TRIGGER $1_balance BEFORE INSERT OR UPDATE OR DELETE ON $1 FOR EACH ROW
    EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'account_id', 'seq=n');
SQL
}
distributed_ledger ledger
appends=250
pids=()
k=0
for port in $coordinator $coordinator $worker1 $worker2; do
    k=$((k + 1))
    RANDOM=$((seed + k))
    for i in $(seq $appends); do
        echo "INSERT INTO ledger (account_id, amount) VALUES ($((RANDOM % 6 + 1)), $((RANDOM % 200 - 50)));"
    done >"$faults/appends.$k.sql"
    "$bindir/psql" -h "$faults" -p "$port" -U postgres -d postgres -qX -v ON_ERROR_STOP=1 -f "$faults/appends.$k.sql" \
        >"$faults/appends.$k.out" 2>&1 &
    pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
[ $failed = 0 ] || fail "$failed appending clients failed: $(cat "$faults"/appends.*.out)"
problems=$(sql $coordinator -c "SELECT count(*) FROM raceguard.verify_running_balance('ledger')")
entries=$(sql $coordinator -c "SELECT count(*) FROM ledger")
wrong=$(sql $coordinator -c "SELECT count(*) FROM (SELECT account_id, max(n) AS n, sum(amount) AS total, count(*) AS c
                                                   FROM ledger GROUP BY account_id) t
                             JOIN ledger l USING (account_id, n) WHERE l.balance <> t.total OR t.n <> t.c")
echo "entries $entries, verify_running_balance rows $problems, accounts whose last entry is wrong $wrong"
[ "$entries" = $((4 * appends)) ] && [ "$problems" = 0 ] && [ "$wrong" = 0 ] &&
    pass "$entries appends from three nodes, every chain exact" || fail "the distributed ledger is not exact"

echo "--- 4. lease tokens from three nodes"
for port in $coordinator $worker1 $worker2; do
    sql "$port" <<'SQL'
SET citus.enable_ddl_propagation = off;
CREATE TABLE local_jobs (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz);
INSERT INTO local_jobs SELECT g, NULL, NULL FROM generate_series(1, 5) g;
CREATE TABLE tokens (token bigint);
SQL
done
leases=300
pids=()
for port in $coordinator $worker1 $worker2; do
    sql "$port" -c "DO \$\$
        DECLARE t bigint;
        BEGIN
            FOR i IN 1..$leases LOOP
                SELECT claim_token INTO t FROM raceguard.claim_lease(NULL::local_jobs, 'true', 1, '1 hour');
                INSERT INTO tokens VALUES (t);
                PERFORM raceguard.release_lease(NULL::local_jobs, t);
                COMMIT;
            END LOOP;
        END \$\$" &
    pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
[ $failed = 0 ] || fail "$failed leasing clients failed"
for port in $coordinator $worker1 $worker2; do
    sql "$port" -c "SELECT token FROM tokens" >"$faults/tokens.$port"
    group=$(sql "$port" -c "SELECT groupid FROM pg_dist_local_group")
    other=$(sql "$port" -c "SELECT count(*) FROM tokens WHERE (token >> 40) & 255 <> $group OR token >= 2 ^ 53")
    [ "$other" = 0 ] && pass "port $port: every token carries group $group and is below 2^53" ||
        fail "port $port: $other tokens without group $group"
done
total=$(cat "$faults"/tokens.* | wc -l)
twice=$(repeated "$faults"/tokens.*)
[ "$total" = $((3 * leases)) ] && [ "$twice" = 0 ] && pass "$total tokens from three nodes, none twice" ||
    fail "$total tokens, $twice handed out more than once"

echo "--- 5. claim_lease on a distributed and on a reference table"
sql $coordinator <<'SQL'
CREATE TABLE jobs (id bigserial, queue text NOT NULL, status text NOT NULL DEFAULT 'pending',
                   claim_token bigint, claimed_until timestamptz, PRIMARY KEY (queue, id));
SELECT create_distributed_table('jobs', 'queue') \gset
INSERT INTO jobs (queue) SELECT q FROM generate_series(1, 100), unnest(ARRAY['a', 'b']) q;
CREATE TABLE ref_jobs (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz);
SELECT create_reference_table('ref_jobs') \gset
INSERT INTO ref_jobs (id) SELECT generate_series(1, 60);
SQL
# Four clients drain queue a (100 jobs, 5 per lease, 1-hour leases) and
# two drain ref_jobs (60 jobs, 3 per lease): every job exactly once.
for i in $(seq 15); do
    echo "SELECT id FROM raceguard.claim_lease(NULL::jobs, 'queue = ''a'' AND status = ''pending''', 5, '1 hour');"
done >"$faults/claims.sql"
for i in $(seq 25); do
    echo "SELECT id FROM raceguard.claim_lease(NULL::ref_jobs, 'true', 3, '1 hour');"
done >"$faults/ref_claims.sql"
pids=()
k=0
for run in $coordinator:claims $coordinator:claims $worker1:claims $worker2:claims $worker1:ref_claims $worker2:ref_claims; do
    k=$((k + 1))
    port=${run%%:*} script=${run##*:}
    sql "$port" -f "$faults/$script.sql" >"$faults/$script.$k.ids" 2>&1 &
    pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
[ $failed = 0 ] || fail "$failed claiming clients failed: $(cat "$faults"/*claims.*.ids | grep ERROR | head -3)"
total=$(cat "$faults"/claims.*.ids | wc -l)
twice=$(repeated "$faults"/claims.*.ids)
leased=$(sql $coordinator -c "SELECT count(*) FILTER (WHERE claim_token IS NOT NULL) || ' ' ||
                                     count(*) FILTER (WHERE claim_token IS NOT NULL AND queue <> 'a') FROM jobs")
[ "$total" = 100 ] && [ "$twice" = 0 ] && [ "$leased" = "100 0" ] &&
    pass "queue a drained from three nodes: 100 jobs, each leased once, queue b untouched" ||
    fail "queue a: $total leases, $twice jobs twice, leased (all, other queue): $leased"
total=$(cat "$faults"/ref_claims.*.ids | wc -l)
twice=$(repeated "$faults"/ref_claims.*.ids)
[ "$total" = 60 ] && [ "$twice" = 0 ] && pass "the reference table drained from two nodes: 60 jobs, each leased once" ||
    fail "ref_jobs: $total leases, $twice jobs twice"
expect_error $coordinator 0A000 'claim_lease() on table public.jobs, which Citus distributes by column "queue", needs a filter that pins "queue" to one value' \
    "SELECT * FROM raceguard.claim_lease(NULL::jobs, 'status = ''pending''', 1, '1 minute')"
[ "$(sql $coordinator -c "SELECT count(*) FROM jobs WHERE claim_token IS NOT NULL")" = 100 ] &&
    pass "the refused claim leased nothing" || fail "the refused claim leased rows"

echo "--- 6. an ordinary role: appends and leases through the coordinator and a worker"
# Citus connects to the workers as the same role, so the guards' first rows
# there (which read Citus's catalog) run with an ordinary role's privileges.
sql $coordinator <<'SQL'
CREATE ROLE clerk LOGIN;
GRANT SELECT, INSERT ON ledger TO clerk;
GRANT SELECT, UPDATE ON jobs TO clerk;
SQL
as_clerk() { "$bindir/psql" -h "$faults" -p "$1" -U clerk -d postgres -qXAt -v ON_ERROR_STOP=1 -c "$2"; }
for port in $coordinator $worker1; do
    as_clerk "$port" "INSERT INTO ledger (account_id, amount) SELECT 7, 10 FROM generate_series(1, 20)"
done
as_clerk $coordinator "SELECT count(*) FROM raceguard.verify_running_balance('ledger')" >"$faults/clerk.verify"
chain=$(sql $coordinator -c "SELECT count(*) || ' ' || max(n) || ' ' || max(balance) FROM ledger WHERE account_id = 7")
[ "$(cat "$faults/clerk.verify")" = 0 ] && [ "$chain" = "40 40 400" ] &&
    pass "40 appends by an ordinary role, chain exact" || fail "an ordinary role's appends: $chain"
leased=$(as_clerk $worker1 "SELECT count(*) FROM raceguard.claim_lease(NULL::jobs, 'queue = ''b''', 5, '1 hour')")
[ "$leased" = 5 ] && pass "an ordinary role leases 5 jobs of queue b through a worker" ||
    fail "an ordinary role leased $leased jobs"

echo "--- 7. errors from the shards in the names users know"
# A ledger row is history: changing its amount fails on its shard, 23514
# with the trigger as constraint; Citus passes SQLSTATE, DETAIL and HINT on,
# but not the constraint field, so DETAIL names it.
for port in $coordinator $worker2; do
    output=$(sql "$port" -v VERBOSITY=verbose -c "UPDATE ledger SET amount = amount + 1 WHERE account_id = 7 AND n = 1" 2>&1 || true)
    if grep -q 'ERROR:  23514: .*"ledger"' <<<"$output" && grep -q 'Constraint "ledger_balance" on table "ledger"\.' <<<"$output" &&
        ! grep -q 'ledger_[0-9]\|ledger_balance_[0-9]' <<<"$output"; then
        pass "port $port: the refused UPDATE names table ledger and constraint ledger_balance, no shard"
    else
        fail "port $port: the refused UPDATE says: $output"
    fi
done
output=$(sql $coordinator -v VERBOSITY=verbose -c "UPDATE counters SET hits = 0, lock_version = lock_version - 5 WHERE id = 1" 2>&1 || true)
grep -q 'ERROR:  40001: .*"counters"' <<<"$output" && ! grep -q 'counters_[0-9]' <<<"$output" &&
    pass "a stale write names table counters, no shard" || fail "a stale write says: $output"

echo "--- 8. the whole cluster at once"
distributed_ledger cluster_ledger
RANDOM=$seed
made=0
for port in $coordinator $worker1 $worker2; do
    count=$((RANDOM % 20 + 10))
    sql "$port" -c "INSERT INTO cluster_ledger (account_id, amount)
                    SELECT (random() * 20)::integer, 1 FROM generate_series(1, $count)"
    made=$((made + count))
done
shards=$(sql $coordinator -c "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'cluster_ledger'::regclass")
listed=$(sql $coordinator -c "SELECT count(*) || ' ' || string_agg(format('%s %s %s %s %s', trigger_name, citus_table, nodes, shards, enabled), ',')
                              FROM raceguard.cluster_guards() WHERE table_name = 'public.cluster_ledger'")
[ "$listed" = "1 cluster_ledger_balance distributed {0,1,2} $shards t" ] &&
    pass "cluster_guards() lists the ledger's guard once, on 3 nodes and its $shards shards" ||
    fail "cluster_guards() lists cluster_ledger as: $listed (expected 1 row over {0,1,2} and $shards shards)"
unfolded=$(sql $coordinator -c "SELECT count(*) FROM raceguard.cluster_guards() g JOIN pg_dist_shard s
                                    ON g.table_name LIKE '%\_' || s.shardid OR g.trigger_name LIKE '%\_' || s.shardid")
twice=$(sql $coordinator -c "SELECT count(*) FROM (SELECT FROM raceguard.cluster_guards() g
                                                    WHERE g.citus_table IS NOT NULL GROUP BY table_name, trigger_name
                                                   HAVING count(*) > 1) t")
guards=$(sql $coordinator -c "SELECT count(*) FROM raceguard.cluster_guards() WHERE citus_table IS NOT NULL")
[ "$unfolded|$twice" = "0|0" ] && [ "$guards" -ge 5 ] &&
    pass "cluster_guards(): $guards guards of Citus tables, each once, no shard's name" ||
    fail "cluster_guards(): $unfolded rows with a shard's name, $twice guards listed more than once"
appends=$(sql $coordinator -c "SELECT appends || ' ' || nodes::text FROM raceguard.cluster_stats()
                               WHERE table_name = 'public.cluster_ledger' AND trigger_name = 'cluster_ledger_balance'")
local_appends=$(sql $worker1 -c "SELECT sum(appends) FROM raceguard.stats WHERE table_name::text LIKE 'cluster_ledger%'")
[ "$appends" = "$made {0,1,2}" ] &&
    pass "cluster_stats(): $made appends through three nodes, one row (worker1 alone counts $local_appends)" ||
    fail "cluster_stats() for cluster_ledger: $appends, not $made appends on {0,1,2}"
# A shard on worker2 loses the index its guard needs: worker2's
# check_guards() names the shard, the coordinator's check_cluster_guards()
# the ledger.
read -r broken_shard broken_group < <(sql $coordinator -F ' ' -c "SELECT s.shardid, n.groupid FROM pg_dist_shard s
    JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)
    WHERE s.logicalrelid = 'cluster_ledger'::regclass AND n.nodeport = $worker2 ORDER BY s.shardid LIMIT 1")
sql $worker2 -c "DO \$\$ BEGIN EXECUTE (SELECT format('DROP INDEX %s', indexrelid::regclass) FROM pg_index
                                        WHERE indrelid = 'cluster_ledger_$broken_shard'::regclass); END \$\$"
on_worker=$(sql $worker2 -c "SELECT count(*) FROM raceguard.check_guards() WHERE table_name::text = 'cluster_ledger_$broken_shard'")
reported=$(sql $coordinator -c "SELECT string_agg(format('%s|%s|%s|%s', trigger_name, nodes, shards, problem), ',')
                                FROM raceguard.check_cluster_guards() WHERE table_name = 'public.cluster_ledger'")
[ "$on_worker" = 1 ] &&
    [ "$reported" = "cluster_ledger_balance|{$broken_group}|{$broken_shard}|raceguard.running_balance() needs a btree index on (\"account_id\", \"n\") of \"cluster_ledger\" to find each group's last entry" ] &&
    pass "check_cluster_guards() reports shard $broken_shard's missing index on group $broken_group, naming cluster_ledger" ||
    fail "check_cluster_guards() for cluster_ledger: $reported (worker2 lists $on_worker problems of the shard)"
# An ordinary role sees the guards of the tables it may see, on every node.
seen=$(as_clerk $coordinator "SELECT string_agg(table_name, ' ' ORDER BY table_name) FROM raceguard.cluster_guards()")
sql $coordinator -c "GRANT SELECT (amount) ON cluster_ledger TO clerk"
seen_after=$(as_clerk $coordinator "SELECT string_agg(table_name || ' ' || nodes::text, ' ' ORDER BY table_name) FROM raceguard.cluster_guards()")
problems=$(as_clerk $coordinator "SELECT count(*) FROM raceguard.check_cluster_guards() WHERE table_name = 'public.cluster_ledger'")
[ "$seen" = "public.ledger" ] && [ "$seen_after" = "public.cluster_ledger {0,1,2} public.ledger {0,1,2}" ] && [ "$problems" = 1 ] &&
    pass "an ordinary role sees only the guards of the tables it may see, on every node, and their problems" ||
    fail "the clerk sees guards of: $seen; after a GRANT: $seen_after; $problems problems of cluster_ledger"

echo "--- 9. a node that already has raceguard joins"
# raceguard installed by hand before the node joins (what older versions
# needed): the node joins, and a token it handed out before, as group 0,
# stays below its tokens as a worker.
worker3=$((coordinator + 3))
new_cluster worker3 $worker3
cat >>"$faults/worker3/postgresql.conf" <<CONF
shared_preload_libraries = 'citus,raceguard'
max_prepared_transactions = 100
citus.node_conninfo = 'sslmode=prefer'
CONF
start worker3
sql $worker3 -c "CREATE EXTENSION citus" -c "CREATE EXTENSION raceguard" \
    -c "CREATE TABLE before_join (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz)" \
    -c "INSERT INTO before_join VALUES (1), (2)"
token_before_join=$(sql $worker3 -c "SELECT claim_token FROM raceguard.claim_lease(NULL::before_join, 'true', 1, '1 hour')")
sql $coordinator -c "SELECT citus_add_node('$faults', $worker3)" >/dev/null
group=$(sql $worker3 -c "SELECT groupid FROM pg_dist_local_group")
token_after_join=$(sql $worker3 -c "SELECT claim_token FROM raceguard.claim_lease(NULL::before_join, 'true', 1, '1 hour')")
[ "$group" -gt 0 ] && [ "$token_after_join" -gt "$token_before_join" ] && [ $(((token_after_join >> 40) & 255)) = "$group" ] &&
    pass "worker3 joined with raceguard; its token as group $group ($token_after_join) is above its token from before ($token_before_join)" ||
    fail "worker3 (group $group): token $token_after_join after joining, $token_before_join before"
# A node that cannot be reached stops the cluster-wide views with its name,
# rather than leaving its rows out.
as_postgres "$bindir/pg_ctl" -D "$faults/worker3" -m fast -w stop >/dev/null
expect_error $coordinator 08006 "node $faults:$worker3 did not send its raceguard guards rows" \
    "SELECT * FROM raceguard.cluster_guards()"

exit $status
