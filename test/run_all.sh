#!/usr/bin/env bash
# Runs every test: pg_regress, isolation specs, pgTAP (pg_prove) and the
# stress tests, against a throwaway PostgreSQL 15 cluster. Installs what it
# needs first (scripts/setup.sh). Run as root on Debian 12:
#     bash test/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --integrations
# One locale everywhere, so outputs (sort order, encoding) do not depend on the machine.
export LANG=C.UTF-8 LC_ALL=C.UTF-8
exec pg_virtualenv -t -v 15 bash test/suites.sh
