#!/usr/bin/env bash
# raceguard-django's suite: builds the package from source, installs the
# built wheel into a virtualenv that sees Debian's Django, and runs a real
# project against the cluster in PGHOST/PGPORT (PGUSER a superuser, raceguard
# installed in that PostgreSQL): makemigrations, migrate as an application
# role (CREATEDB only) on a database copied from a template that holds
# raceguard, the guards' reversal, `manage.py raceguard check`, and
# `manage.py test` (races, leases, bad inputs, docs/django.md's examples).
# Randomized parts are seeded by RACEGUARD_SEED (printed).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
package=$(dirname "$here")
repo=$(cd "$package/../.." && pwd)
python=/usr/bin/python3

if ! "$python" -c 'import django' 2>/dev/null; then
    if [ "${RACEGUARD_INTEGRATIONS_OPTIONAL:-0}" = 1 ]; then
        echo "skipped: Django is not installed here"
        exit 0
    fi
    echo "FAIL: Django is not importable by $python (install the packages in integrations/django/debian-packages)" >&2
    exit 1
fi

export RACEGUARD_SEED=${RACEGUARD_SEED:-$RANDOM}
echo "seed: RACEGUARD_SEED=$RACEGUARD_SEED"
suffix=$$_$RANDOM
app_user=rg_django_app_$suffix
app_password=pw_$RANDOM$RANDOM
template=rg_django_tpl_$suffix
app_db=rg_django_db_$suffix
test_db=rg_django_test_$suffix
work=$(mktemp -d)
passed=0
failed=0
failures=()

superuser_psql() { psql -qAtX -v ON_ERROR_STOP=1 -d postgres "$@"; }

cleanup() {
    for db in "$test_db" "$app_db" "$template"; do
        superuser_psql -c "ALTER DATABASE \"$db\" IS_TEMPLATE false" >/dev/null 2>&1
        dropdb --if-exists --force "$db" >/dev/null 2>&1 || dropdb --if-exists "$db" >/dev/null 2>&1
    done
    superuser_psql -c "DROP ROLE IF EXISTS \"$app_user\"" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap "exit 1" INT TERM

check() {
    local name=$1
    shift
    echo
    echo "--- $name"
    if "$@"; then
        passed=$((passed + 1))
        echo "ok: $name"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "FAILED: $name"
        return 1
    fi
}

build_and_install() {
    mkdir -p "$work/src" "$work/dist" &&
        cp -r "$package/pyproject.toml" "$package/README.md" "$package/raceguard_django" "$work/src/" &&
        (cd "$work/src" && "$python" -m pip wheel --no-index --no-build-isolation --no-deps -q -w "$work/dist" .) &&
        "$python" -m venv --system-site-packages "$work/venv" &&
        "$work/venv/bin/python" -m pip install -q --no-index --no-deps "$work"/dist/raceguard_django-*.whl &&
        (cd / && "$work/venv/bin/python" -c 'import raceguard_django, sys; sys.exit(0 if "/venv/" in raceguard_django.__file__ else 1)')
}

setup_databases() {
    superuser_psql <<SQL
CREATE ROLE "$app_user" LOGIN CREATEDB PASSWORD '$app_password';
CREATE DATABASE "$template";
\c "$template"
CREATE EXTENSION raceguard;
\c postgres
ALTER DATABASE "$template" IS_TEMPLATE true;
SQL
    # The application role makes its database from the template, as it may.
    PGUSER=$app_user PGPASSWORD=$app_password createdb -T "$template" "$app_db"
}

manage() {
    (cd "$work/project" && APP_DB=$app_db APP_USER=$app_user APP_PASSWORD=$app_password \
        APP_TEST_DB=$test_db APP_TEMPLATE=$template RACEGUARD_DOCS=$repo/docs/django.md \
        "$work/venv/bin/python" manage.py "$@")
}

app_psql() { PGUSER=$app_user PGPASSWORD=$app_password psql -qAtX -v ON_ERROR_STOP=1 -d "$app_db" "$@"; }

has_pgtrigger() { "$python" -c 'import pgtrigger' 2>/dev/null; }

make_migrations() {
    cp -r "$here/project" "$work/project" &&
        manage makemigrations shop &&
        grep -q "raceguard_django.VersionField()" "$work/project/shop/migrations/0001_initial.py" &&
        cp "$work/project/shop/guards_migration.py" "$work/project/shop/migrations/0002_guards.py" || return 1
    if has_pgtrigger; then
        local generated=$work/project/shop_pgtrigger/migrations/0001_initial.py
        manage makemigrations shop_pgtrigger &&
            cat "$generated" &&
            [ "$(grep -c "pgtrigger.migrations.AddTrigger" "$generated")" = 4 ] &&
            [ "$(grep -c "raceguard_django.triggers.GuardTriggerSql" "$generated")" = 4 ] &&
            grep -qF "raceguard.lock_version(E'version', E'strict=true')" "$generated" &&
            grep -qF "raceguard.transition(E" "$generated" &&
            grep -q "('raceguard_django', '0001_extension')" "$generated" || return 1
    else
        echo "django-pgtrigger is not installed here: its guard classes are not tested"
    fi
    manage makemigrations --check --dry-run
}

shop_guards="SELECT string_agg(trigger_name || ':' || guard, ' ' ORDER BY trigger_name) FROM raceguard.guards
    WHERE table_name::text IN ('shop_order', 'shop_conversation', 'shop_entry', 'shop_job', 'shop_note', 'shop_shipment')"

migrate_as_app_role() {
    local sql
    sql=$(manage sqlmigrate shop 0002) && echo "$sql" &&
        echo "$sql" | grep -qxF "CREATE EXTENSION IF NOT EXISTS raceguard;" &&
        echo "$sql" | grep -qxF "CREATE TRIGGER \"shop_order_lock_version\" BEFORE INSERT OR UPDATE ON \"shop_order\" FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version(E'lock_version', E'strict=true');" &&
        echo "$sql" | grep -qxF "CREATE TRIGGER \"conversation_status\" BEFORE INSERT OR UPDATE ON \"shop_conversation\" FOR EACH ROW EXECUTE FUNCTION raceguard.transition(E'status_code', E'>open', E'open>assigned', E'assigned>closed', E'assigned>open');" &&
        echo "$sql" | grep -qxF "CREATE TRIGGER \"shop_shipment_status_transition\" BEFORE INSERT OR UPDATE ON \"shop_shipment\" FOR EACH ROW EXECUTE FUNCTION raceguard.transition(E'status', E'>pending', E'pending>sent', E'sent>pending', E'sent>paid');" &&
        echo "$sql" | grep -qxF "CREATE TRIGGER \"shop_entry_running_balance\" BEFORE INSERT OR UPDATE OR DELETE ON \"shop_entry\" FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance(E'amount', E'balance', E'account', E'seq=seq', E'min_balance=0');" &&
        sql=$(manage sqlmigrate --backwards shop 0002) &&
        echo "$sql" | grep -qxF 'DROP TRIGGER "conversation_agent_assignment" ON "shop_conversation";' || return 1
    manage migrate -v 0 &&
        [ "$(app_psql -c "$shop_guards")" = \
            "conversation_agent_assignment:immutable_once_set conversation_status:transition note_version_check:lock_version shop_entry_running_balance:running_balance shop_job_lock_version:lock_version shop_order_lock_version:lock_version shop_shipment_lock_version:lock_version shop_shipment_status_transition:transition" ]
}

reverse_and_reapply() {
    local before
    before=$(app_psql -c "SELECT count(*) FROM pg_catalog.pg_trigger WHERE NOT tgisinternal") &&
        manage migrate -v 0 shop 0001 &&
        [ -z "$(app_psql -c "$shop_guards")" ] &&
        [ "$(app_psql -c "SELECT count(*) FROM pg_catalog.pg_trigger WHERE NOT tgisinternal")" = $((before - 8)) ] &&
        [ "$(app_psql -c "SELECT count(*) FROM pg_catalog.pg_extension WHERE extname = 'raceguard'")" = 1 ] &&
        manage migrate -v 0 shop &&
        [ "$(app_psql -c "SELECT count(*) FROM pg_catalog.pg_trigger WHERE NOT tgisinternal")" = "$before" ] || return 1
    if has_pgtrigger; then
        manage migrate -v 0 shop_pgtrigger zero &&
            [ "$(app_psql -c "SELECT count(*) FROM pg_catalog.pg_trigger WHERE NOT tgisinternal")" = $((before - 4)) ] &&
            manage migrate -v 0 shop_pgtrigger &&
            [ "$(app_psql -c "SELECT count(*) FROM pg_catalog.pg_trigger WHERE NOT tgisinternal")" = "$before" ]
    fi
}

# A migration with a bad guard fails as it runs, with a clear error, and the
# database keeps exactly the triggers it had (the good operation before the
# bad one is rolled back with it).
bad_migration() {
    local operation=$1 expected=$2 before output status=0
    before=$(app_psql -c "SELECT count(*) FROM pg_catalog.pg_trigger WHERE NOT tgisinternal")
    cat >"$work/project/shop/migrations/0003_bad.py" <<PY
from django.db import migrations
from raceguard_django.operations import AddImmutableOnceSetGuard, AddLockVersionGuard, AddRunningBalanceGuard, AddTransitionGuard


class Migration(migrations.Migration):
    dependencies = [("shop", "0002_guards")]
    operations = [
        AddImmutableOnceSetGuard("conversation", fields=["topic"], name="conversation_topic_once"),
        $operation,
    ]
PY
    if output=$(manage migrate -v 0 shop 2>&1); then
        echo "migrated with $operation"
        status=1
    elif ! echo "$output" | grep -F -- "$expected"; then
        echo "$output" | tail -5
        echo "expected: $expected"
        status=1
    fi
    rm -f "$work/project/shop/migrations/0003_bad.py"
    [ "$(app_psql -c "SELECT count(*) FROM pg_catalog.pg_trigger WHERE NOT tgisinternal")" = "$before" ] &&
        [ -z "$(app_psql -c "SELECT 1 FROM django_migrations WHERE name = '0003_bad'")" ] &&
        return $status
}

bad_migrations() {
    bad_migration 'AddLockVersionGuard("order", field="version")' \
        "GuardDeclarationError: AddLockVersionGuard: model shop.Order has no field 'version' (given as field)" &&
        bad_migration 'AddLockVersionGuard("nosuch")' \
            "GuardDeclarationError: AddLockVersionGuard: no model 'nosuch' in app 'shop' at this migration" &&
        bad_migration 'AddRunningBalanceGuard("entry", amount="amount", balance="balance", seq="seq", group=["acount"], name="e2")' \
            "model shop.Entry has no field 'acount' (given as group)" &&
        bad_migration 'AddLockVersionGuard("order", strict="yes", name="o2")' \
            "GuardDeclarationError: AddLockVersionGuard: strict must be True or False, not 'yes'" &&
        bad_migration 'AddRunningBalanceGuard("entry", amount="amount", balance="balance", seq="seq", initial="ten", name="e3")' \
            "AddRunningBalanceGuard: initial is not a number: 'ten'" &&
        bad_migration 'AddLockVersionGuard("order", field="memo", name="o3")' \
            'column "memo" has type text; raceguard.lock_version() needs smallint, integer or bigint' &&
        bad_migration 'AddTransitionGuard("conversation", field="state", start=["open"], name="c2")' \
            "GuardDeclarationError: AddTransitionGuard: model shop.Conversation has no field 'state' (given as field)" &&
        bad_migration 'AddTransitionGuard("conversation", field="status", start=["open"], edges=[("open", "asigned")], name="c3")' \
            "GuardDeclarationError: AddTransitionGuard: state 'asigned' is not one of the choices of shop.Conversation.status" &&
        bad_migration 'AddTransitionGuard("label", field="number", start=["1"], edges=[("1", "two")], name="l1")' \
            'invalid input syntax for type integer: "two"' &&
        bad_migration 'AddTransitionGuard("label", field="text", start=[], edges=[], name="l2")' \
            "GuardDeclarationError: AddTransitionGuard: declare at least one edge or start state"
}

# Renaming a guarded field: raceguard refuses it while the guard is attached;
# RemoveGuard before the RenameField and the guard again after it (the
# example of docs/django.md) works, and migrating back restores the guard on
# the old column.
rename_guarded_field() {
    local migration=$work/project/shop/migrations/0003_rename.py output
    cat >"$migration" <<'PY'
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("shop", "0002_guards")]
    operations = [migrations.RenameField("note", "version", "revision")]
PY
    if output=$(manage migrate -v 0 shop 2>&1); then
        echo "a guarded column was renamed under its guard"
        rm -f "$migration"
        return 1
    fi
    rm -f "$migration"
    echo "$output" | grep "a raceguard guard cannot work: trigger \"note_version_check\"" || return 1
    # The migration is docs/django.md's example.
    "$python" - "$repo/docs/django.md" >"$migration" <<'PY' || return 1
import re, sys
fences = re.findall(r"^```python\n(.*?)^```$", open(sys.argv[1], encoding="utf-8").read(), re.S | re.M)
print([fence for fence in fences if "RemoveGuard(" in fence][0], end="")
PY
    cat "$migration"
    local guard="SELECT columns::text FROM raceguard.guards WHERE trigger_name = 'note_version_check'"
    manage migrate -v 0 shop &&
        [ "$(app_psql -c "$guard")" = "{revision}" ] &&
        manage migrate -v 0 shop 0002 &&
        [ "$(app_psql -c "$guard")" = "{version}" ]
    local status=$?
    rm -f "$migration"
    return $status
}

# django-pgtrigger: a guarded field replaced by another in the model
# (makemigrations without input: RemoveField and AddField). The generated
# migration drops the guard before the column and attaches it after the new
# one; it applies, and reverses.
pgtrigger_field_change() {
    local models=$work/project/shop_pgtrigger/models.py generated status
    local guard="SELECT columns::text FROM raceguard.guards WHERE trigger_name = 'invoice_version'"
    cp "$models" "$work/models.py.orig" &&
        sed -i -e 's/    version = raceguard_django.VersionField()/    revision = raceguard_django.VersionField()/' \
            -e 's/field="version"/field="revision"/' "$models" &&
        manage makemigrations --noinput shop_pgtrigger &&
        generated=$(ls "$work"/project/shop_pgtrigger/migrations/0002_*.py) &&
        cat "$generated" &&
        "$python" - "$generated" <<'PY' &&
import re, sys
kinds = re.findall(r"^        (?:migrations|pgtrigger\.migrations)\.(\w+)\(", open(sys.argv[1]).read(), re.M)
print("operations:", kinds)
assert kinds.index("RemoveTrigger") < kinds.index("RemoveField"), kinds
assert kinds.index("AddField") < kinds.index("AddTrigger"), kinds
PY
        manage migrate -v 0 shop_pgtrigger &&
        [ "$(app_psql -c "$guard")" = "{revision}" ] &&
        manage migrate -v 0 shop_pgtrigger 0001 &&
        [ "$(app_psql -c "$guard")" = "{version}" ]
    status=$?
    cp "$work/models.py.orig" "$models"
    rm -f "$work"/project/shop_pgtrigger/migrations/0002_*.py
    return $status
}

raceguard_check() {
    local output
    manage raceguard check || return 1
    app_psql -c "ALTER TABLE shop_conversation DISABLE TRIGGER conversation_agent_assignment" || return 1
    if output=$(manage raceguard check 2>&1); then
        echo "a disabled guard passed the check: $output"
        return 1
    fi
    echo "$output"
    app_psql -c "ALTER TABLE shop_conversation ENABLE TRIGGER conversation_agent_assignment" &&
        echo "$output" | grep -q "conversation_agent_assignment"
}

test_database_without_template() {
    local output
    if output=$(cd "$work/project" && APP_DB=$app_db APP_USER=$app_user APP_PASSWORD=$app_password \
        APP_TEST_DB=${test_db}_plain APP_TEMPLATE= "$work/venv/bin/python" manage.py test --noinput shop.tests.VersionTests 2>&1); then
        echo "manage.py test without the template succeeded as an application role"
        return 1
    fi
    dropdb --if-exists "${test_db}_plain" >/dev/null 2>&1
    echo "$output" | grep 'permission denied to create extension "raceguard"'
}

run_tests() {
    if has_pgtrigger; then
        manage test --noinput -v 2 shop shop_pgtrigger
    else
        manage test --noinput -v 2 shop
    fi
}

summary() {
    echo
    echo "raceguard-django: $passed passed, $failed failed${failures[*]:+ (${failures[*]})}"
    [ "$failed" = 0 ]
}

# The steps after a failed set-up step could only fail for the same reason.
check "build the wheel and install it into a virtualenv" build_and_install &&
    check "roles, the template database, a database made from it by the application role" setup_databases &&
    check "makemigrations" make_migrations &&
    check "migrate as the application role (database from the template)" migrate_as_app_role || { summary; exit 1; }
check "each guard's reversal removes exactly its trigger" reverse_and_reapply
check "bad guards fail the migration with clear errors, nothing created" bad_migrations
check "renaming a guarded field: RemoveGuard, RenameField, the guard again" rename_guarded_field
has_pgtrigger && check "django-pgtrigger: a guarded field replaced, migrated and reversed" pgtrigger_field_change
check "manage.py raceguard check" raceguard_check
check "manage.py test without the template: the clear permission error" test_database_without_template
check "manage.py test (races, leases, errors, bad inputs, docs examples)" run_tests
summary

