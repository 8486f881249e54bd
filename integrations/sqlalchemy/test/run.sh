#!/usr/bin/env bash
# The raceguard-sqlalchemy test suite, against a running cluster with
# raceguard installed in its PostgreSQL: PGHOST, PGPORT and PGUSER (a
# superuser) say which.
#
#   bash integrations/sqlalchemy/test/run.sh
#
# It builds the package from source as a user would (a wheel, offline),
# installs the wheel in a virtual environment that sees Debian's
# SQLAlchemy and Alembic, and runs suite.py there: a real Alembic project
# (autogenerate, upgrade, downgrade) migrated by an application role that
# has only CREATEDB, in databases made from a template holding raceguard;
# races through the ORM; leases; bad inputs; the examples of
# docs/sqlalchemy.md. It makes its own roles and databases (random names)
# and drops them at the end, also on failure. RACEGUARD_SEED seeds the
# random rounds. Without SQLAlchemy or Alembic it fails, or with
# RACEGUARD_INTEGRATIONS_OPTIONAL=1 says it skipped and succeeds.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
package=$(dirname "$here")
repo=$(cd "$package/../.." && pwd)
python=/usr/bin/python3

if ! "$python" -c 'import sqlalchemy, alembic' 2>/dev/null; then
    if [ "${RACEGUARD_INTEGRATIONS_OPTIONAL:-}" = 1 ]; then
        echo "skipped: SQLAlchemy/Alembic is not installed here"
        exit 0
    fi
    release=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
    echo "FAIL: SQLAlchemy/Alembic is not installed here" \
        "(Debian ${release:-?}: $(sed -n "s/^${release:-bookworm}: //p" "$package/debian-packages"))" >&2
    exit 1
fi

suffix=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
export RACEGUARD_TEST_PREFIX="rg_sqla_${suffix}"
export RACEGUARD_TEST_APP_ROLE="${RACEGUARD_TEST_PREFIX}_app"
export RACEGUARD_TEST_APP_PASSWORD="pw_${suffix}_$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
export RACEGUARD_TEST_TEMPLATE="${RACEGUARD_TEST_PREFIX}_template"
work=$(mktemp -d)

psql_admin() {
    psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@"
}

cleanup() {
    local status=$?
    # Every database the suite made has the prefix; the template must lose
    # its template flag before it can be dropped.
    psql -X -q -d postgres -At -c "SELECT datname FROM pg_database WHERE datname LIKE '${RACEGUARD_TEST_PREFIX}%'" 2>/dev/null |
        while read -r db; do
            psql -X -q -d postgres -c "ALTER DATABASE \"$db\" IS_TEMPLATE false" >/dev/null 2>&1 || true
            psql -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 ||
                echo "warning: could not drop database $db" >&2
        done
    for role in "$RACEGUARD_TEST_APP_ROLE" "${RACEGUARD_TEST_PREFIX}_blind"; do
        psql -X -q -d postgres -c "DROP ROLE IF EXISTS \"$role\"" >/dev/null 2>&1 ||
            echo "warning: could not drop role $role" >&2
    done
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

echo "== build the wheel from source"
cp -r "$package" "$work/src"
rm -rf "$work/src/test" "$work/src/build" "$work/src"/*.egg-info
"$python" -m pip wheel --quiet --no-index --no-build-isolation --no-deps -w "$work/dist" "$work/src"
wheel=$(ls "$work"/dist/raceguard_sqlalchemy-*.whl)
echo "built $(basename "$wheel")"

echo "== install it into a virtual environment that sees Debian's SQLAlchemy and Alembic"
"$python" -m venv --system-site-packages "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --no-index --no-deps "$wheel"
"$work/venv/bin/python" - <<'EOF'
import sqlalchemy, alembic, raceguard_sqlalchemy, os
print("SQLAlchemy %s, Alembic %s, raceguard_sqlalchemy %s from %s" % (
    sqlalchemy.__version__, alembic.__version__, raceguard_sqlalchemy.__version__,
    os.path.dirname(raceguard_sqlalchemy.__file__)))
EOF

echo "== a template database holding raceguard, and an application role with only CREATEDB"
psql_admin -c "CREATE DATABASE \"$RACEGUARD_TEST_TEMPLATE\""
psql_admin -d "$RACEGUARD_TEST_TEMPLATE" -c "CREATE EXTENSION raceguard"
psql_admin -c "ALTER DATABASE \"$RACEGUARD_TEST_TEMPLATE\" IS_TEMPLATE true"
psql_admin -c "CREATE ROLE \"$RACEGUARD_TEST_APP_ROLE\" LOGIN CREATEDB PASSWORD '$RACEGUARD_TEST_APP_PASSWORD'"

echo "== the suite"
cp -r "$here/project" "$work/project"
cp "$here/suite.py" "$work/suite.py"
cd "$work"
RACEGUARD_TEST_PROJECT="$work/project" RACEGUARD_TEST_DOCS="$repo/docs/sqlalchemy.md" \
    "$work/venv/bin/python" "$work/suite.py"
