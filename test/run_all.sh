#!/usr/bin/env bash
# Runs every test: pg_regress, isolation specs, pgTAP (pg_prove) and the
# stress tests, against a throwaway PostgreSQL 15 cluster. Installs what it
# needs first (scripts/setup.sh). Run as root on Debian 12:
#     bash test/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec pg_virtualenv -t -v 15 bash test/suites.sh
