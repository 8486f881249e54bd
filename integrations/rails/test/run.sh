#!/usr/bin/env bash
# The raceguard-rails gem's suite: builds the gem from source, installs it
# from the built .gem as a user would, and runs a Rails application with it
# (test/rails_test.rb) against the cluster in PGHOST/PGPORT, as PGUSER (a
# superuser, with raceguard installed in that PostgreSQL). Creates its own
# roles and databases, named rgrails_<pid>_<random>_*, and drops them at the
# end, also on failure or interruption. RACEGUARD_SEED seeds the races.
#
# Without ActiveRecord and pg for this Ruby: fails, or, with
# RACEGUARD_INTEGRATIONS_OPTIONAL=1, prints that it skipped and exits 0.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
gem_source=$(dirname "$here")

if ! command -v ruby >/dev/null || ! ruby -e 'require "active_record"; require "pg"; require "rails"' 2>/dev/null; then
    if [ "${RACEGUARD_INTEGRATIONS_OPTIONAL:-}" = 1 ]; then
        echo "skipped: ActiveRecord is not installed here"
        exit 0
    fi
    echo "raceguard-rails: ActiveRecord, railties and pg are needed (Debian: $(sed -n 's/^bookworm: //p' "$gem_source/debian-packages"))" >&2
    exit 1
fi

work=$(mktemp -d)
export RACEGUARD_RAILS_PREFIX="rgrails_$$_$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
cleanup() {
    # The test drops what it made; this is for a run that was killed.
    ruby "$here/cleanup.rb" "$RACEGUARD_RAILS_PREFIX" || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Build and install the gem as a user would: from the .gem, not the source tree.
cp -r "$gem_source/." "$work/source"
rm -rf "$work/source/test"
(cd "$work/source" && gem build --silent raceguard-rails.gemspec >/dev/null)
gem install --local --ignore-dependencies --no-document --install-dir "$work/gems" \
    "$work/source"/raceguard-rails-*.gem >/dev/null
GEM_PATH="$work/gems:$(ruby -e 'print Gem.path.join(":")')"
export GEM_PATH
export RACEGUARD_RAILS_GEM_DIR="$work/gems"
export RACEGUARD_RAILS_WORK="$work"

ruby "$here/rails_test.rb"
