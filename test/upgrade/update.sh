#!/usr/bin/env bash
# Each update path the extension ships, as DBAs apply it: a database made
# under the old version, with a guard of every kind holding data and jobs
# holding leases (test/dump/majors_source.sql), is updated with ALTER
# EXTENSION raceguard UPDATE TO the new version. Then
#   (a) the extension's objects are those of a fresh CREATE EXTENSION of the
#       new version: objects.sql lists both from the catalogs (every member,
#       its definition, owner, privileges, initial privileges and comment,
#       the extension's configuration tables) and the listings must be equal,
#       as must pg_dump --schema-only of the schema raceguard (a full install
#       script, such as 1.6's, is checked against the chain of updates so);
#   (b) the guards made under the old version still fire and pass the checks
#       of test/dump/majors_check.sql (check_guards() empty, ledgers verify,
#       every guard refuses what it refuses);
#   (c) the lease token sequence kept its value through the update and a new
#       lease's token is past every token handed out before it.
# The default version installs, and updates from the version before it,
# without temporary objects (Citus runs both on its workers and commits them
# with PREPARE TRANSACTION, which refuses a transaction that touched one).
# And an update that must drop a function a user's object depends on stops
# with the error the README shows, changing nothing. Last, privileges.sh
# runs the same paths with a DBA's GRANTs and REVOKEs on every member: the
# update keeps them, and keeps them out of the initial privileges.
# Runs against the cluster in PGHOST/PGPORT (test/suites.sh runs it inside
# the throwaway cluster); creates and drops its own databases.
set -uo pipefail
cd "$(dirname "$0")"

# Every update path: "FROM TO". A new update script adds its line here (and
# one from each older version, if ALTER EXTENSION should go through it).
updates=(
    "1.0 1.1"
    "1.1 1.2"
    "1.0 1.2"
    "1.2 1.3"
    "1.1 1.3"
    "1.0 1.3"
    "1.3 1.4"
    "1.2 1.4"
    "1.1 1.4"
    "1.0 1.4"
    "1.4 1.5"
    "1.3 1.5"
    "1.2 1.5"
    "1.1 1.5"
    "1.0 1.5"
    "1.5 1.6"
    "1.4 1.6"
    "1.3 1.6"
    "1.2 1.6"
    "1.1 1.6"
    "1.0 1.6"
)

updated_db=raceguard_update_old
fresh_db=raceguard_update_fresh
work=$(mktemp -d)
drop_databases() { dropdb --if-exists "$updated_db" 2>/dev/null; dropdb --if-exists "$fresh_db" 2>/dev/null; }
trap 'rm -rf "$work"; drop_databases' EXIT
psql_quiet() { psql -qAtX -v ON_ERROR_STOP=1 "$@"; }

status=0
fail() { echo "FAIL $*"; status=1; }

default_version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" ../../raceguard.control)
covered=no

for update in "${updates[@]}"; do
    read -r from to <<<"$update"
    [ "$to" = "$default_version" ] && covered=yes
    how="$from -> $to"
    drop_databases
    createdb "$updated_db" && createdb "$fresh_db" || { fail "$how: createdb"; continue; }
    # The old version, and a database's worth of guards and leases made under it.
    if ! psql_quiet -d "$updated_db" -c "CREATE EXTENSION raceguard VERSION '$from'" >/dev/null ||
        ! sed '/^CREATE EXTENSION raceguard;$/d' ../dump/majors_source.sql | psql_quiet -d "$updated_db" >/dev/null; then
        fail "$how: cannot make the $from database"
        continue
    fi
    # The new library serves the old version's definitions until the update
    # (majors_source.sql leased through them): the first lease's 10 rows are
    # released and leased again (25 leased rows, as majors_check.sql expects).
    released=$(psql_quiet -d "$updated_db" -c "SELECT raceguard.release_lease(NULL::app.jobs, min(claim_token)) FROM app.jobs")
    leased=$(psql_quiet -d "$updated_db" -c "SELECT count(*) FROM raceguard.claim_lease(NULL::app.jobs, 'status = ''pending''', 10, '1 hour')")
    [ "$released|$leased" = "10|10" ] ||
        fail "$how: through $from's definitions, release_lease released ${released:-no} rows and claim_lease leased ${leased:-no}, not 10 and 10"
    source_token=$(psql_quiet -d "$updated_db" -c "SELECT max(claim_token) FROM app.jobs")
    sequence_before=$(psql_quiet -d "$updated_db" -c "SELECT last_value, is_called FROM raceguard.lease_token_seq")
    [ -n "$source_token" ] || fail "$how: no lease was taken under $from"

    if ! psql_quiet -d "$updated_db" -c "ALTER EXTENSION raceguard UPDATE TO '$to'"; then
        fail "$how: ALTER EXTENSION raceguard UPDATE TO '$to' failed"
        continue
    fi
    version=$(psql_quiet -d "$updated_db" -c "SELECT extversion FROM pg_extension WHERE extname = 'raceguard'")
    [ "$version" = "$to" ] || fail "$how: the extension's version is $version after the update"

    # (a) the same objects as a fresh install of $to.
    psql_quiet -d "$fresh_db" -c "CREATE EXTENSION raceguard VERSION '$to'" >/dev/null || fail "$how: CREATE EXTENSION VERSION '$to'"
    psql_quiet -d "$updated_db" -f objects.sql >"$work/updated.txt" || fail "$how: objects.sql on the updated database"
    psql_quiet -d "$fresh_db" -f objects.sql >"$work/fresh.txt" || fail "$how: objects.sql on the fresh database"
    members=$(grep -c '^[a-z]' "$work/fresh.txt")
    if ! diff -u "$work/fresh.txt" "$work/updated.txt"; then
        fail "$how: the updated extension's objects differ from a fresh install's (- fresh, + updated)"
    elif ! grep -q "^function raceguard.claim_lease(" "$work/fresh.txt" || ! grep -q "^event trigger raceguard_validate_guards|" "$work/fresh.txt" ||
         ! grep -q "^sequence raceguard.lease_token_seq|" "$work/fresh.txt" || ! grep -q "^view raceguard.guards|" "$work/fresh.txt" ||
         { [ "$to" != 1.0 ] && [ "$to" != 1.1 ] && { ! grep -q "^view raceguard.stats|" "$work/fresh.txt" ||
             ! grep -q "^event trigger raceguard_forget_dropped_stats|" "$work/fresh.txt"; }; } ||
         grep -q "^not a member\|does not describe yet" "$work/fresh.txt"; then
        fail "$how: the listing lacks objects it must show, or shows ones it cannot describe"
        cat "$work/fresh.txt"
    else
        echo "ok $how (a): the updated extension's objects are a fresh $to install's ($(wc -l <"$work/fresh.txt") lines)"
    fi
    # pg_dump's \restrict key is random: left out.
    pg_dump --schema-only --schema=raceguard "$fresh_db" | grep -v '^\\\(un\)\?restrict ' >"$work/fresh.dump" &&
        pg_dump --schema-only --schema=raceguard "$updated_db" | grep -v '^\\\(un\)\?restrict ' >"$work/updated.dump" ||
        fail "$how: pg_dump --schema-only --schema=raceguard failed"
    if ! diff -u "$work/fresh.dump" "$work/updated.dump"; then
        fail "$how: pg_dump --schema-only of the schema raceguard differs from a fresh install's (- fresh, + updated)"
    elif ! grep -q '^CREATE SCHEMA raceguard;$' "$work/fresh.dump"; then
        fail "$how: pg_dump --schema-only --schema=raceguard dumped no CREATE SCHEMA raceguard"
    else
        echo "ok $how (a): pg_dump --schema-only --schema=raceguard dumps the same $(grep -c . "$work/fresh.dump") lines"
    fi

    # (c) the sequence kept its value; (b) and (c) majors_check.sql's checks.
    sequence_after=$(psql_quiet -d "$updated_db" -c "SELECT last_value, is_called FROM raceguard.lease_token_seq")
    [ "$sequence_after" = "$sequence_before" ] ||
        fail "$how: the lease token sequence was $sequence_before before the update, $sequence_after after"
    checks=0 failed=0
    while IFS='|' read -r check ok detail; do
        checks=$((checks + 1))
        [ "$ok" = t ] || { fail "$how: $check ($detail)"; failed=1; }
    done < <(psql_quiet -d "$updated_db" -v source_token="$source_token" -f ../dump/majors_check.sql 2>&1 ||
             echo "majors_check.sql|f|did not run to its end")
    [ "$checks" -eq "$(grep -c "^SELECT '" ../dump/majors_check.sql)" ] || { fail "$how: $checks checks ran"; failed=1; }
    [ $failed -eq 0 ] &&
        echo "ok $how (b, c): $checks checks passed (check_guards() empty, ledgers verify, every guard fires, tokens go on past $source_token; sequence kept at $sequence_after)"
done
[ $covered = yes ] || fail "no update path ends at the default version $default_version"

# No temporary objects: the session that ran CREATE EXTENSION, or ALTER
# EXTENSION UPDATE from the version before the default one (installed in a
# session of its own), has no temporary schema (helpers in pg_temp would
# have made it); and where the cluster allows prepared transactions, both
# PREPARE and commit.
previous_version=$(printf '%s\n' "${updates[@]}" | awk -v to="$default_version" '$2 == to { print $1 }' | sort -V | tail -1)
prepared=$(psql_quiet -d postgres -c "SHOW max_prepared_transactions")
for before in "" "CREATE EXTENSION raceguard VERSION '$previous_version'"; do
    install="CREATE EXTENSION raceguard"
    [ -n "$before" ] && install="ALTER EXTENSION raceguard UPDATE TO '$default_version'"
    how="${before:+$before, then }$install"
    drop_databases
    createdb "$updated_db" && { [ -z "$before" ] || psql_quiet -d "$updated_db" -c "$before"; } || { fail "$how: cannot make the database"; continue; }
    temporary=$(psql_quiet -d "$updated_db" -c "$install" -c "SELECT pg_my_temp_schema()::regnamespace")
    if [ "$temporary" != - ]; then
        fail "$how: made temporary objects (in ${temporary:-?})"
    elif [ "${prepared:-0}" -gt 0 ]; then
        dropdb "$updated_db" && createdb "$updated_db" && { [ -z "$before" ] || psql_quiet -d "$updated_db" -c "$before"; } &&
            psql_quiet -d "$updated_db" -c "BEGIN" -c "$install" -c "PREPARE TRANSACTION 'raceguard_install'" \
                -c "COMMIT PREPARED 'raceguard_install'" &&
            [ "$(psql_quiet -d "$updated_db" -c "SELECT extversion FROM pg_extension WHERE extname = 'raceguard'")" = "$default_version" ] &&
            echo "ok $how: no temporary objects, and it commits through PREPARE TRANSACTION" ||
            fail "$how: does not commit through PREPARE TRANSACTION"
    else
        echo "ok $how: no temporary objects (PREPARE TRANSACTION not tried: max_prepared_transactions is 0)"
    fi
done

# What blocks 1.0 -> 1.1: a user's view over claim_lease() depends on the
# function the update drops. The update fails (2BP01) and changes nothing.
drop_databases
createdb "$updated_db" &&
    psql_quiet -d "$updated_db" >/dev/null <<'SQL' || fail "1.0 -> 1.1 blocked: cannot make the database"
CREATE EXTENSION raceguard VERSION '1.0';
CREATE TABLE jobs (id integer PRIMARY KEY, claim_token bigint, claimed_until timestamptz);
CREATE VIEW next_job AS SELECT id FROM raceguard.claim_lease(NULL::jobs, 'true', 1, '1 minute');
SQL
error=$(psql -qAtX -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$updated_db" -c "ALTER EXTENSION raceguard UPDATE TO '1.1'" 2>&1)
version=$(psql_quiet -d "$updated_db" -c "SELECT extversion FROM pg_extension WHERE extname = 'raceguard'")
if [[ "$error" == *"ERROR:  2BP01: cannot drop function claim_lease(anyelement,text,integer,interval,text,name,name) because other objects depend on it"* ]] &&
    [[ "$error" == *"view public.next_job depends on function claim_lease("* ]] && [ "$version" = 1.0 ]; then
    echo "ok 1.0 -> 1.1 blocked by a dependent view: 2BP01, still 1.0"
else
    fail "1.0 -> 1.1 with a dependent view: expected 2BP01 and version 1.0, got version $version and: $error"
fi

# What blocks 1.3 -> 1.4: a user's view over raceguard.stats, which the
# update drops and makes again with its new column (entries_restored).
drop_databases
createdb "$updated_db" &&
    psql_quiet -d "$updated_db" >/dev/null <<'SQL' || fail "1.3 -> 1.4 blocked: cannot make the database"
CREATE EXTENSION raceguard VERSION '1.3';
CREATE VIEW stale_writes AS SELECT table_name, stale_writes FROM raceguard.stats;
SQL
error=$(psql -qAtX -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$updated_db" -c "ALTER EXTENSION raceguard UPDATE TO '1.4'" 2>&1)
version=$(psql_quiet -d "$updated_db" -c "SELECT extversion FROM pg_extension WHERE extname = 'raceguard'")
if [[ "$error" == *"ERROR:  2BP01: cannot drop view stats because other objects depend on it"* ]] &&
    [[ "$error" == *"view public.stale_writes depends on view stats"* ]] && [ "$version" = 1.3 ]; then
    echo "ok 1.3 -> 1.4 blocked by a dependent view: 2BP01, still 1.3"
else
    fail "1.3 -> 1.4 with a dependent view: expected 2BP01 and version 1.3, got version $version and: $error"
fi
drop_databases

# The privileges a DBA set, through every path.
drop_databases
bash privileges.sh "${updates[@]}" || status=1
exit $status
