#!/usr/bin/env bash
# The release metadata agrees with itself: META.json (PGXN), the control
# file, the install script, the Debian package and `make dist`. Needs no
# server. The rule: the distribution's version is the extension's
# default_version as a three-part semantic version (1.0 -> 1.0.0).
set -uo pipefail
cd "$(dirname "$0")/.."

python3 - <<'PY' || exit 1
import json, os, re, sys

failures = []
def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)

meta = json.load(open("META.json"))
for field in ("name", "abstract", "version", "maintainer", "license", "provides", "meta-spec"):
    check(field in meta, "META.json has %s" % field)
check(meta.get("meta-spec", {}).get("version") == "1.0.0", "META.json follows the PGXN Meta Spec 1.0.0")

control = dict(re.findall(r"^\s*(\w+)\s*=\s*'?([^'\n]*)'?\s*$", open("raceguard.control").read(), re.M))
default_version = control.get("default_version", "")
check(re.fullmatch(r"\d+\.\d+(\.\d+)?", default_version) is not None,
      "raceguard.control's default_version is a version (%r)" % default_version)
semver = default_version if default_version.count(".") == 2 else default_version + ".0"

check(meta.get("name") == "raceguard", "META.json names the extension raceguard")
check(meta.get("version") == semver,
      "META.json's version %r is default_version %r as semver" % (meta.get("version"), default_version))
provided = meta.get("provides", {}).get("raceguard", {})
check(provided.get("version") == semver, "META.json provides raceguard %r" % provided.get("version"))
# How CREATE EXTENSION installs default_version, as PostgreSQL chooses it:
# its full script if there is one, else the shortest chain of update scripts
# from a version with a full script (the newest such version on a tie) --
# 1.6 has its own, raceguard--1.6.sql.
full_versions = set()
updates = {}
for name in os.listdir("sql"):
    found = re.fullmatch(r"raceguard--([^-]+)--([^-]+)\.sql", name)
    if found:
        updates.setdefault(found.group(1), []).append(found.group(2))
        continue
    found = re.fullmatch(r"raceguard--([^-]+)\.sql", name)
    if found:
        full_versions.add(found.group(1))
def chain_from(start):
    paths = [[start]]
    while paths:
        if paths[0][-1] == default_version:
            return paths[0]
        path = paths.pop(0)
        paths += [path + [to] for to in updates.get(path[-1], []) if to not in path]
    return None
def version_key(version):
    return [int(part) for part in version.split(".")]
chains = [chain for chain in map(chain_from, full_versions) if chain]
install = min(chains, key=lambda chain: (len(chain), [-n for n in version_key(chain[0])])) if chains else None
check(install is not None, "CREATE EXTENSION can install default_version %r: %s" %
      (default_version, " then ".join(install) if install else "no full script reaches it"))
install_scripts = ["sql/raceguard--%s.sql" % install[0]] if install else []
install_scripts += ["sql/raceguard--%s--%s.sql" % pair for pair in zip(install or [], (install or [])[1:])]
install_script = install_scripts[0] if install_scripts else None
check(provided.get("file") == install_script,
      "META.json's provides file is %s, the full script CREATE EXTENSION runs (%r)" % (install_script, provided.get("file")))
makefile = open("Makefile").read()
for script in install_scripts:
    check(re.search(r"^DATA\s*=.*\b%s\b" % re.escape(script), makefile, re.M) is not None,
          "the Makefile installs %s" % script)

requires = meta.get("prereqs", {}).get("runtime", {}).get("requires", {})
pgversions = open("debian/pgversions").read().split()
check(requires.get("PostgreSQL") == "13.0.0" and pgversions == ["13+"],
      "PGXN and Debian both require PostgreSQL 13 or later (%r, %r)" % (requires.get("PostgreSQL"), pgversions))

changelog = open("debian/changelog").readline()
match = re.match(r"raceguard \(([^)-]+)(-[^)]*)?\)", changelog)
check(match is not None and match.group(1) == semver,
      "debian/changelog's version %r is %r" % (match and match.group(1), semver))
control_in = open("debian/control.in").read()
check("Package: postgresql-PGVERSION-raceguard" in control_in, "debian/control.in makes postgresql-NN-raceguard")
sys.exit(1 if failures else 0)
PY

# make dist: a zip of the committed tree under raceguard-VERSION/.
if ! command -v git >/dev/null || ! git rev-parse --git-dir >/dev/null 2>&1; then
    echo "skipped: make dist (no git repository here)"
    exit 0
fi
version=$(python3 -c 'import json; print(json.load(open("META.json"))["version"])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
make -s -C "$work" -f "$PWD/Makefile" srcdir="$PWD" PG_CONFIG="${PG_CONFIG:-pg_config}" dist >/dev/null || { echo "FAIL: make dist"; exit 1; }
zip=$work/raceguard-$version.zip
[ -f "$zip" ] || { echo "FAIL: make dist made no raceguard-$version.zip"; ls "$work"; exit 1; }
listing=$(python3 -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$zip")
status=0
# Every script the Makefile installs (each version's install script and the
# update scripts) is in the distribution.
scripts=$(sed -n 's/^DATA *= *//p' Makefile)
for needed in META.json raceguard.control Makefile $scripts README.md; do
    grep -qx "raceguard-$version/$needed" <<<"$listing" || { echo "FAIL: raceguard-$version.zip lacks raceguard-$version/$needed"; status=1; }
done
if grep -v "^raceguard-$version/" <<<"$listing" | grep -q .; then
    echo "FAIL: raceguard-$version.zip has files outside raceguard-$version/"
    status=1
fi
if grep -qE '\.(so|o|bc)$' <<<"$listing"; then
    echo "FAIL: raceguard-$version.zip holds build products"
    status=1
fi
[ $status -ne 0 ] || echo "ok: make dist made raceguard-$version.zip, $(wc -l <<<"$listing") entries under raceguard-$version/"
exit $status
