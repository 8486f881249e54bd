#!/usr/bin/env bash
# The version matrix: for each PostgreSQL major Debian ships, in a Debian
# root of that release (scripts/chroot.sh), build the Debian package from a
# copy of this tree, install the package (so a file missing from it fails
# here), and run every suite (test/suites.sh) against it in a throwaway
# cluster. A database dumped on 15 is restored into 17 and 18, plain and
# with pg_restore -j 4 (test/dump/across_majors.sh). Run as root on Debian 12:
#     bash test/matrix.sh          # 13 (bullseye), 15 (bookworm), 17 (trixie), 18 (sid)
#     bash test/matrix.sh 17 18    # only these majors
# Prints one line per major and ends with `matrix: N passed, N failed`.
# The randomized tests run 15 s each here (RACEGUARD_RANDOM_SECONDS; the
# test command runs them longer), every major with the same seed: RACEGUARD_SEED
# when set (CI sets a fixed one), else a random one; the matrix prints it
# first and last, so a failure replays with RACEGUARD_SEED=n bash test/matrix.sh MAJOR.
# Nothing outside the roots' cache changes.
set -uo pipefail
cd "$(dirname "$0")/.."

declare -A release_of=([13]=bullseye [15]=bookworm [17]=trixie [18]=sid)
all_majors=(13 15 17 18)
dump_major=15
restore_majors=" 17 18 "

# Inside a root: build and install the package, then run the suites and,
# for ROLE dump or restore, the dump across majors. The repository is
# /raceguard (read-only), the exchange directory /share.
inside() {
    local major=$1 role=$2 suites=$3
    local work=/tmp/matrix bindir=/usr/lib/postgresql/$major/bin
    export PG_CONFIG=$bindir/pg_config
    export RACEGUARD_RANDOM_SECONDS=${RACEGUARD_RANDOM_SECONDS:-15}
    # The ORM packages' suites run where their release's frameworks are in the
    # root (integrations/*/debian-packages), and say they skipped elsewhere.
    export RACEGUARD_INTEGRATIONS_OPTIONAL=1
    local src=$work/raceguard
    mkdir -p "$src"
    tar -C /raceguard --exclude=.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude=.build-mode \
        --exclude=results --exclude=output_iso --exclude=regression.diffs --exclude=regression.out \
        --exclude='raceguard-*.zip' -cf - . | tar -C "$src" -xf -
    cd "$src" || return 1

    echo "== building postgresql-$major-raceguard (dpkg-buildpackage)"
    local started=$SECONDS
    # debian/control as this release's PostgreSQL majors make it.
    pg_buildext updatecontrol >/dev/null &&
        dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1 ||
        { tail -n 60 "$work/build.log"; echo "matrix-inside: package build failed"; return 1; }
    # The build stays free of compiler warnings here too.
    grep -E '^[^ :]+\.(c|cpp|h|hpp):[0-9]+:([0-9]+:)? warning:' "$work/build.log" &&
        { echo "matrix-inside: package build has compiler warnings"; return 1; }
    local deb
    deb=$(ls "$work"/postgresql-"$major"-raceguard_*.deb) || { echo "matrix-inside: no package for $major"; return 1; }
    local listing
    listing=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}') || { echo "matrix-inside: package unreadable"; return 1; }
    echo "== built $(basename "$deb") in $((SECONDS - started)) s; its files:"
    sed 's/^/    /' <<<"$listing"

    # What the package must hold: the control file, every script the Makefile
    # installs (the install scripts and the update scripts, through which
    # CREATE EXTENSION reaches a default_version that has no full script), the
    # library, and the bitcode where the server can JIT.
    local sharedir pkglibdir missing=0 file script
    sharedir=$("$PG_CONFIG" --sharedir) pkglibdir=$("$PG_CONFIG" --pkglibdir)
    local needed=("$sharedir/extension/raceguard.control" "$pkglibdir/raceguard.so")
    for script in $(sed -n 's/^DATA *= *//p' Makefile); do
        needed+=("$sharedir/extension/$(basename "$script")")
    done
    if "$PG_CONFIG" --configure | grep -q -- --with-llvm; then
        needed+=("$pkglibdir/bitcode/raceguard.index.bc" "$pkglibdir/bitcode/raceguard/src/entry_points.bc")
    fi
    for file in "${needed[@]}"; do
        grep -qxF ".$file" <<<"$listing" || { echo "FAIL: the package lacks $file"; missing=1; }
    done
    [ $missing -eq 0 ] || { echo "matrix-inside: package incomplete"; return 1; }

    dpkg -i "$deb" >"$work/install.log" 2>&1 || { cat "$work/install.log"; echo "matrix-inside: package install failed"; return 1; }
    # The suites must meet the packaged files only: nothing built is left here.
    local left
    left=$(find . -path ./debian -prune -o \( -name '*.so' -o -name '*.o' \) -print)
    [ -z "$left" ] || { echo "matrix-inside: build products left in the tree:" $left; return 1; }
    echo "== installed $(dpkg-query -W -f='${Package} ${Version}' "postgresql-$major-raceguard")"

    local status=0 line
    if [ "$suites" = 1 ]; then
        echo "== test/suites.sh against PostgreSQL $major"
        pg_virtualenv -t -v "$major" bash test/suites.sh 2>&1 | tee "$work/suites.out"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
        line=$(sed -n 's/^suites: \([0-9]*\) passed, \([0-9]*\) failed$/suites \1 passed \2 failed/p' "$work/suites.out" | tail -n 1)
        echo "matrix-inside: ${line:-suites did not finish (no summary)}"
        [ -n "$line" ] || status=1
    fi
    if [ "$role" != none ]; then
        echo "== dump across majors: $role on PostgreSQL $major"
        if pg_virtualenv -t -v "$major" bash test/dump/across_majors.sh "$role" /share/dump 2>&1 | tee "$work/$role.out" &&
            [ "${PIPESTATUS[0]}" -eq 0 ]; then
            echo "matrix-inside: $role passed"
        else
            echo "matrix-inside: $role failed"
            status=1
        fi
    fi
    return $status
}

if [ "${1:-}" = --inside ]; then
    shift
    inside "$@"
    exit $?
fi

# The host side, in a function so that bash reads it whole before it runs.
main() {
    [ "$(id -u)" -eq 0 ] || { echo "matrix: run as root" >&2; exit 2; }
    majors=()
    for major in "${@:-${all_majors[@]}}"; do
        [ -n "${release_of[$major]:-}" ] || { echo "matrix: no major $major (one of: ${all_majors[*]})" >&2; exit 2; }
        majors+=("$major")
    done
    mapfile -t majors < <(printf '%s\n' "${majors[@]}" | sort -n -u)

    # One seed for every major's randomized tests (chroot_run passes RACEGUARD_*
    # into the roots), between 1 and 2^30.
    export RACEGUARD_SEED=${RACEGUARD_SEED:-$(( (RANDOM << 15 | RANDOM) + 1 ))}
    echo "matrix: RACEGUARD_SEED=$RACEGUARD_SEED"

    source scripts/chroot.sh
    mkdir -p "$chroot_cache"
    share=$(mktemp -d "$chroot_cache/.matrix.XXXXXX")
    trap 'rm -rf "$share"' EXIT
    export RACEGUARD_CHROOT_SHARE=$share

    # The dump is made on 15: when a restoring major runs without 15, 15 still
    # builds, installs and dumps, but runs no suites.
    needs_dump=0
    for major in "${majors[@]}"; do
        case "$restore_majors" in *" $major "*) needs_dump=1 ;; esac
    done
    runs=()
    if [ $needs_dump = 1 ] && [[ " ${majors[*]} " != *" $dump_major "* ]]; then
        runs+=("$dump_major:dump:0")
    fi
    for major in "${majors[@]}"; do
        role=none
        [ "$major" = "$dump_major" ] && [ $needs_dump = 1 ] && role=dump
        case "$restore_majors" in *" $major "*) role=restore ;; esac
        runs+=("$major:$role:1")
    done

    passed=0 failed=0 summary=()
    total_started=$SECONDS
    for run in "${runs[@]}"; do
        IFS=: read -r major role suites <<<"$run"
        release=${release_of[$major]}
        started=$SECONDS
        echo
        echo "=== PostgreSQL $major ($release)"
        # chroot_run makes the root first when it is missing or incomplete.
        out=$share/run-$major.out
        chroot_run "$release" "$major" bash /raceguard/test/matrix.sh --inside "$major" "$role" "$suites" 2>&1 | tee "$out"
        status=${PIPESTATUS[0]}
        details=()
        line=$(sed -n 's/^matrix-inside: \(suites .*\)$/\1/p' "$out" 2>/dev/null | tail -n 1)
        [ -n "$line" ] && details+=("$line")
        grep -q '^matrix-inside: package' "$out" 2>/dev/null && details+=("$(sed -n 's/^matrix-inside: \(package.*\)$/\1/p' "$out" | tail -n 1)")
        [ "$role" = dump ] && details+=("dump for 17 and 18 $(grep -q '^matrix-inside: dump passed' "$out" 2>/dev/null && echo made || echo failed)")
        [ "$role" = restore ] && details+=("restore of the $dump_major dump $(grep -q '^matrix-inside: restore passed' "$out" 2>/dev/null && echo passed || echo failed)")
        verdict=passed
        [ "$status" -eq 0 ] || verdict=failed
        if [ "$suites" = 1 ]; then
            [ "$status" -eq 0 ] && passed=$((passed + 1)) || failed=$((failed + 1))
        elif [ "$status" -ne 0 ]; then
            # The dump-only run counts against the majors that need its dump.
            failed=$((failed + 1))
        fi
        summary+=("matrix: $major ($release): $verdict$([ ${#details[@]} -eq 0 ] || printf ', %s' "${details[@]}"), $((SECONDS - started)) s")
        [ "$suites" = 1 ] || summary[-1]="${summary[-1]/: passed/: dump only, passed}"
    done

    echo
    echo "matrix: RACEGUARD_SEED=$RACEGUARD_SEED (replay: RACEGUARD_SEED=$RACEGUARD_SEED bash test/matrix.sh ${majors[*]})"
    printf '%s\n' "${summary[@]}"
    echo "matrix: $passed passed, $failed failed ($((SECONDS - total_started)) s)"
    [ $failed -eq 0 ]
}
main "$@"; exit $?
