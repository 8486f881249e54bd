#!/usr/bin/env bash
# An update keeps every privilege a DBA set on the extension's objects. A
# database is made under the old version, and a pattern of GRANTs and
# REVOKEs drawn from a seed (privileges_pattern.sql) is applied to every
# member that has an ACL (functions, views, the sequence): privileges
# revoked from PUBLIC, granted to roles, granted with GRANT OPTION to a role
# that grants them on, SELECT on a view's column. After ALTER EXTENSION
# raceguard UPDATE, the members' privileges and initial privileges
# (privileges_listing.sql) must be those of a fresh install of the new
# version given the same statements (members new in it: their fresh
# privileges), and pg_dump must dump the same GRANT and REVOKE lines for
# both (what pg_dump dumps of a member is its ACL against its initial
# privileges, so a DBA's change recorded as initial would be lost by a
# dump and restore).
#
# The update paths are the arguments ("FROM TO", as test/upgrade/update.sh
# lists them, which runs this script with its own list); and one database
# also goes step by step from the oldest version to the newest, the DBA
# setting the privileges of each version's new members as they appear.
#   RACEGUARD_SEED=n   replay a run (the seed is printed at start)
# Runs against the cluster in PGHOST/PGPORT; creates and drops its own
# databases and roles.
set -uo pipefail
cd "$(dirname "$0")"

[ $# -gt 0 ] || { echo "usage: $0 'FROM TO' ..."; exit 2; }
seed=${RACEGUARD_SEED:-$((RANDOM * 32768 + RANDOM))}
echo "privileges: RACEGUARD_SEED=$seed"

updated_db=raceguard_privileges_updated
fresh_db=raceguard_privileges_fresh
roles=(raceguard_upgrade_reader raceguard_upgrade_delegate raceguard_upgrade_delegated raceguard_upgrade_column_reader)
work=$(mktemp -d)
psql_quiet() { psql -qAtX -v ON_ERROR_STOP=1 "$@"; }
drop_databases() { dropdb --if-exists "$updated_db" 2>/dev/null; dropdb --if-exists "$fresh_db" 2>/dev/null; }
drop_roles() { for role in "${roles[@]}"; do psql_quiet -d postgres -c "DROP ROLE IF EXISTS $role" 2>/dev/null; done; }
trap 'rm -rf "$work"; drop_databases; drop_roles' EXIT

status=0
fail() { echo "FAIL $*"; status=1; }

drop_databases
drop_roles
for role in "${roles[@]}"; do
    psql_quiet -d postgres -c "CREATE ROLE $role" || { fail "cannot create role $role"; exit 1; }
done

# The pattern's statements for the members of database $1 not yet covered
# by the statements in file $2; appended to $2 and printed.
draw_pattern() {
    local database=$1 file=$2 covered
    covered=$(sed -n 's/.* ON [A-Z]* raceguard\.\([a-z_]*\)[ ;(].*/\1/p' "$file" | sort -u | paste -sd, -)
    psql_quiet -d "$database" -v seed="$seed" -v covered="{$covered}" -f privileges_pattern.sql | tee -a "$file"
}

# Compares database $updated_db, just updated to version $2, with a fresh
# install of $2 given the statements in file $3. $1 names the path.
compare_with_fresh() {
    local how=$1 to=$2 statements=$3
    dropdb --if-exists "$fresh_db" 2>/dev/null
    createdb "$fresh_db" &&
        psql_quiet -d "$fresh_db" -c "CREATE EXTENSION raceguard VERSION '$to'" >/dev/null ||
        { fail "$how: cannot make a fresh $to database"; return; }
    psql_quiet -d "$fresh_db" -f privileges_listing.sql >"$work/untouched.txt" || fail "$how: listing the fresh database"
    psql_quiet -d "$fresh_db" -f "$statements" >/dev/null ||
        { fail "$how: the statements do not apply to a fresh $to install"; return; }
    psql_quiet -d "$fresh_db" -f privileges_listing.sql >"$work/fresh.txt" || fail "$how: listing the fresh database"
    psql_quiet -d "$updated_db" -f privileges_listing.sql >"$work/updated.txt" || fail "$how: listing the updated database"
    if cmp -s "$work/untouched.txt" "$work/fresh.txt"; then
        fail "$how: the statements changed nothing: this comparison could not fail"
    elif ! diff -u "$work/fresh.txt" "$work/updated.txt"; then
        fail "$how: the privileges after the update differ from a fresh $to install's given the same statements (- fresh, + updated; replay: RACEGUARD_SEED=$seed)"
        echo "the statements:"
        cat "$statements"
    else
        echo "ok $how: the privileges of $(wc -l <"$work/fresh.txt") members and columns are a fresh $to install's given the same $(wc -l <"$statements") lines of statements"
    fi
    pg_dump -s -d "$fresh_db" | grep -E '^(GRANT|REVOKE) ' | sort >"$work/fresh_dump.txt"
    pg_dump -s -d "$updated_db" | grep -E '^(GRANT|REVOKE) ' | sort >"$work/updated_dump.txt"
    if ! grep -q ' raceguard\.' "$work/fresh_dump.txt"; then
        fail "$how: pg_dump dumps no GRANT or REVOKE on raceguard's objects: this comparison could not fail"
    elif ! diff -u "$work/fresh_dump.txt" "$work/updated_dump.txt"; then
        fail "$how: pg_dump of the updated database dumps other GRANTs and REVOKEs than of a fresh $to install given the same statements (- fresh, + updated)"
    else
        echo "ok $how: pg_dump dumps the same $(wc -l <"$work/fresh_dump.txt") GRANT and REVOKE lines"
    fi
}

# Each update path.
for update in "$@"; do
    read -r from to <<<"$update"
    how="$from -> $to"
    : >"$work/statements.sql"
    drop_databases
    createdb "$updated_db" && psql_quiet -d "$updated_db" -c "CREATE EXTENSION raceguard VERSION '$from'" >/dev/null &&
        draw_pattern "$updated_db" "$work/statements.sql" | psql_quiet -d "$updated_db" >/dev/null ||
        { fail "$how: cannot make the $from database with its privileges"; continue; }
    psql_quiet -d "$updated_db" -c "ALTER EXTENSION raceguard UPDATE TO '$to'" ||
        { fail "$how: ALTER EXTENSION raceguard UPDATE TO '$to' failed"; continue; }
    compare_with_fresh "$how" "$to" "$work/statements.sql"
done

# Step by step, from the oldest version to the newest, the DBA setting the
# privileges of each version's new members.
versions=($(printf '%s\n' "$@" | tr ' ' '\n' | sort -t. -k1,1n -k2,2n -u))
drop_databases
: >"$work/statements.sql"
createdb "$updated_db" && psql_quiet -d "$updated_db" -c "CREATE EXTENSION raceguard VERSION '${versions[0]}'" >/dev/null &&
    draw_pattern "$updated_db" "$work/statements.sql" | psql_quiet -d "$updated_db" >/dev/null ||
    fail "step by step: cannot make the ${versions[0]} database with its privileges"
for ((i = 1; i < ${#versions[@]}; i++)); do
    how="step by step ${versions[0]} -> ... -> ${versions[i]}"
    psql_quiet -d "$updated_db" -c "ALTER EXTENSION raceguard UPDATE TO '${versions[i]}'" ||
        { fail "$how: ALTER EXTENSION raceguard UPDATE TO '${versions[i]}' failed"; break; }
    compare_with_fresh "$how" "${versions[i]}" "$work/statements.sql"
    draw_pattern "$updated_db" "$work/statements.sql" | psql_quiet -d "$updated_db" >/dev/null ||
        fail "$how: cannot set the privileges of the new members"
done
exit $status
