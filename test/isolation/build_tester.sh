#!/usr/bin/env bash
# PostgreSQL installs isolationtester and pg_isolation_regress where PGXS's
# `make installcheck` runs the isolation specs only from 14 on; Debian's
# PostgreSQL 13 has neither. Where they are missing, this builds them from
# Debian's source package of the installed server (same version) and puts
# them there. Needs root and Debian's archive (a throwaway root is the place
# for it: it installs bison, flex and dpkg-dev). Does nothing where they
# exist.   PG_CONFIG=... bash test/isolation/build_tester.sh
set -euo pipefail
pg_config=${PG_CONFIG:-pg_config}
target=$(dirname "$("$pg_config" --pgxs)")/../../src/test/isolation
[ -x "$target/pg_isolation_regress" ] && [ -x "$target/isolationtester" ] && exit 0

version=$("$pg_config" --version | awk '{print $2}')
major=${version%%.*}
echo "building isolationtester $version from the postgresql-$major source package"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The archive of the binary packages, for the source too.
{ grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
    sed 's/^deb /deb-src /' >"$work/src.list"
mv "$work/src.list" /etc/apt/sources.list.d/raceguard-src.list
apt-get update -qq
apt-get install -y -qq --no-install-recommends bison flex dpkg-dev >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; exit 1; }
cd "$work"
apt-get source -qq "postgresql-$major" >"$work/source.log" 2>&1 || { cat "$work/source.log"; exit 1; }
cd "$(find "$work" -maxdepth 1 -type d -name "postgresql-$major-*" | head -n 1)"
./configure --without-readline --without-zlib --without-icu --without-llvm >"$work/configure.log" 2>&1 ||
    { tail -n 30 "$work/configure.log"; exit 1; }
# Parallel, then serially if that fails: the parallel submakes of the
# source tree's libraries can race (seen once: libpgcommon.a missing).
make -s -C src/test/isolation -j2 >"$work/make.log" 2>&1 ||
    make -s -C src/test/isolation >>"$work/make.log" 2>&1 || { tail -n 30 "$work/make.log"; exit 1; }
mkdir -p "$target"
install -m 755 src/test/isolation/isolationtester src/test/isolation/pg_isolation_regress "$target/"
echo "installed isolationtester and pg_isolation_regress in $target"
