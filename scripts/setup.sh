#!/usr/bin/env bash
# Installs what raceguard needs on Debian 12 (when missing), then builds and
# installs the extension into the local PostgreSQL 15. Run as root.
# Used by demo/run.sh, bench/run.sh and test/run_all.sh; safe to run again.
#     bash scripts/setup.sh                  # the extension's needs
#     bash scripts/setup.sh --integrations   # and the frameworks the ORM packages' suites run (the test command)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    build-essential
    postgresql-15
    postgresql-server-dev-15
    postgresql-15-pgtap
    libtap-parser-sourcehandler-pgtap-perl
    python3-psycopg2
)
# With --integrations, what the ORM packages' suites need here (Debian 12):
# the bookworm line of each integrations/*/debian-packages.
if [ "${1:-}" = --integrations ]; then
    mapfile -t integration_packages < <(sed -n 's/^bookworm:[[:space:]]*//p' integrations/*/debian-packages 2>/dev/null |
        tr -s ' \t' '\n\n' | sed '/^$/d' | sort -u)
    packages+=("${integration_packages[@]}")
fi
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
echo "== building raceguard"
make -s PG_CONFIG="$PG_CONFIG" >/dev/null
make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
