#!/usr/bin/env bash
# Debian root file systems for testing raceguard against a Debian release's
# own PostgreSQL, without touching this machine's installation. Run as root.
#
#   bash scripts/chroot.sh make RELEASE MAJOR         create (or reuse) the root
#   bash scripts/chroot.sh run RELEASE MAJOR CMD...   run CMD inside it
#   bash scripts/chroot.sh shell RELEASE MAJOR        a shell inside it
#   bash scripts/chroot.sh clean RELEASE              remove the cached root
#
# e.g. `bash scripts/chroot.sh run bookworm 15 pg_config --version`.
# Or source it and call chroot_make / chroot_run (same arguments).
#
# A root is made once with debootstrap (minbase), PostgreSQL MAJOR's server,
# headers and pgTAP, the compilers (with their sanitizer runtimes), Debian's
# packaging tools (debhelper, postgresql-server-dev-all), and cached in
# $RACEGUARD_CHROOT_CACHE/RELEASE (default /var/cache/raceguard-matrix).
# It is built in a temporary directory and
# renamed when complete, so a half-made root is never used. Each run sees
# the cached root through an overlay whose writes live in memory and vanish
# afterwards: every run starts from the same clean root and nothing it
# installs or builds is kept. Inside, the repository is /raceguard
# (read-only; copy it to build), the directory $RACEGUARD_CHROOT_SHARE, when
# set, is /share (read-write: how runs in different roots pass files, such
# as a dump, to each other), the locale is C.UTF-8, and only variables
# named RACEGUARD_*, STRESS_*, CI, or listed in $RACEGUARD_CHROOT_ENV are
# passed in. Mounts live in private mount, IPC and PID namespaces, so they
# and every process started inside end with the run (and are unmounted
# explicitly on exit too); to stop a run, signal its first process inside
# (the one running `chroot.sh __inside`) or press Ctrl-C. Runs on one
# release may overlap; making or removing its root waits for them.
#
# The Debian mirror is the one this machine's apt uses (override with
# $RACEGUARD_DEBIAN_MIRROR).

chroot_cache=${RACEGUARD_CHROOT_CACHE:-/var/cache/raceguard-matrix}

# The packages a root of RELEASE holds for PostgreSQL MAJOR: the server, the
# build and packaging tools, and what the ORM packages' suites need on that
# release (the RELEASE line of integrations/*/debian-packages).
chroot_packages() {
    local release=$1 major=$2
    local integrations
    integrations=$(chroot_integration_packages "$release")
    echo "postgresql-$major postgresql-server-dev-$major postgresql-$major-pgtap" \
        "libtap-parser-sourcehandler-pgtap-perl python3-psycopg2 build-essential" \
        "postgresql-server-dev-all debhelper${integrations:+ $integrations}"
}

# The Debian packages the integrations' suites need on RELEASE, on one line
# (nothing when no integration names that release). None for bookworm: the
# test command runs those suites on the Debian 12 host (scripts/setup.sh
# installs its line), so its roots (the sanitizer's, the matrix's 15) skip
# them and stay as small as they were.
chroot_integration_packages() {
    local release=$1 repo
    [ "$release" != bookworm ] || return 0
    repo=$(realpath "$(dirname "${BASH_SOURCE[0]}")/..")
    cat "$repo"/integrations/*/debian-packages 2>/dev/null |
        sed -n "s/^$release:[[:space:]]*//p" | tr -s ' \t' '\n\n' | sed '/^$/d' | sort -u | tr '\n' ' ' |
        sed 's/ $//'
}

# Whether the root of RELEASE is complete for PostgreSQL MAJOR: its marker
# lists the packages chroot_packages names now (a root made with fewer gets
# the others added in place).
chroot_complete() {
    local root=$chroot_cache/$1 major=$2
    [ -f "$root/$(chroot_marker "$major")" ] &&
        [ "$(cat "$root/$(chroot_marker "$major")")" = "$(chroot_packages "$1" "$major")" ]
}

# The file in a root that says it is complete for PostgreSQL MAJOR.
chroot_marker() {
    echo "etc/raceguard-chroot/postgresql-$1"
}

chroot_mirror() {
    if [ -n "${RACEGUARD_DEBIAN_MIRROR:-}" ]; then
        echo "$RACEGUARD_DEBIAN_MIRROR"
        return
    fi
    # The first Debian archive in apt's sources (one-line or deb822 format).
    local mirror
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        sed -n -E 's,^(deb[[:space:]]+(\[[^]]*\][[:space:]]+)?|URIs:[[:space:]]+)([^[:space:]]+/debian)/?([[:space:]].*)?$,\3,p' |
        head -n 1)
    echo "${mirror:-http://deb.debian.org/debian}"
}

chroot_die() {
    echo "chroot: $*" >&2
    return 1
}

# The mount points at or below DIR, deepest first.
chroot_mounts_below() {
    local dir=$1 mountpoint
    [ -d "$dir" ] || return 0
    dir=$(realpath "$dir")
    awk '{print $5}' /proc/self/mountinfo | sed 's/\\040/ /g' | sort -r |
        while IFS= read -r mountpoint; do
            case "$mountpoint" in "$dir" | "$dir"/*) echo "$mountpoint" ;; esac
        done
}

# Unmounts the mount points read from standard input, in their order.
chroot_unmount() {
    local mountpoint
    while IFS= read -r mountpoint; do
        umount "$mountpoint" 2>/dev/null || umount -l "$mountpoint"
    done
}

# Unmounts everything mounted at or below DIR, deepest first.
chroot_unmount_below() {
    chroot_mounts_below "$1" | chroot_unmount
}

# The mount points of RELEASE's root, its unfinished roots and its runs.
chroot_release_mounts() {
    local release=$1 dir
    for dir in "$chroot_cache/$release" "$chroot_cache/.$release".* "$chroot_cache/.run-$release".*; do
        [ -d "$dir" ] && chroot_mounts_below "$dir"
    done
    return 0
}

# Mounts what a program inside ROOT needs: /proc, a small /dev, /dev/shm.
chroot_mount_system() {
    local root=$1 device
    mount -t proc proc "$root/proc"
    mount -t tmpfs -o mode=0755,nosuid dev "$root/dev"
    for device in null zero full random urandom tty; do
        touch "$root/dev/$device"
        mount --bind "/dev/$device" "$root/dev/$device"
    done
    ln -s /proc/self/fd "$root/dev/fd"
    ln -s /proc/self/fd/0 "$root/dev/stdin"
    ln -s /proc/self/fd/1 "$root/dev/stdout"
    ln -s /proc/self/fd/2 "$root/dev/stderr"
    mkdir "$root/dev/shm" "$root/dev/pts"
    mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
}

# The environment a command inside gets: a clean one, plus the variables the
# tests are steered by.
chroot_environment() {
    local name
    printf '%s\n' HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM="${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive
    for name in $(compgen -e); do
        case " ${RACEGUARD_CHROOT_ENV:-} " in
        *" $name "*) ;;
        *) case "$name" in RACEGUARD_* | STRESS_* | CI) ;; *) continue ;; esac ;;
        esac
        printf '%s=%s\n' "$name" "${!name}"
    done
}

# Runs CMD... chrooted into ROOT with the system mounts (and, when REPO is
# not empty, REPO read-only at /raceguard); when OVERLAY is 1, ROOT is seen
# through an in-memory overlay mounted at RUNDIR. Everything mounted here is
# unmounted on the way out, however the command ends. Runs inside the
# private namespaces set up by chroot_enter.
chroot_inside() {
    # Globals, not locals: the EXIT trap runs after this function has returned.
    chroot_root=$1 chroot_overlay=$2 chroot_rundir=$3
    local repo=$4
    shift 4
    chroot_target=$chroot_root
    trap 'trap - EXIT ERR INT TERM; cd /
          chroot_unmount_below "$chroot_target/raceguard"; chroot_unmount_below "$chroot_target/share"
          chroot_unmount_below "$chroot_target/dev"
          chroot_unmount_below "$chroot_target/proc"; chroot_unmount_below "$chroot_rundir"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 1' ERR
    set -eE
    if [ "$chroot_overlay" = 1 ]; then
        mkdir -p "$chroot_rundir"
        mount -t tmpfs -o mode=0755 run "$chroot_rundir"
        mkdir "$chroot_rundir/upper" "$chroot_rundir/work" "$chroot_rundir/root"
        mount -t overlay overlay \
            -o "lowerdir=$chroot_root,upperdir=$chroot_rundir/upper,workdir=$chroot_rundir/work" "$chroot_rundir/root"
        chroot_target=$chroot_rundir/root
    fi
    chroot_mount_system "$chroot_target"
    # In a network namespace of its own, the loopback starts down.
    [ "$chroot_overlay" != 1 ] || ip link set lo up 2>/dev/null || true
    if [ -n "$repo" ]; then
        mkdir -p "$chroot_target/raceguard"
        mount --bind "$repo" "$chroot_target/raceguard"
        mount -o remount,bind,ro "$chroot_target/raceguard"
    fi
    if [ "$chroot_overlay" = 1 ] && [ -n "${RACEGUARD_CHROOT_SHARE:-}" ]; then
        mkdir -p "$chroot_target/share"
        mount --bind "$RACEGUARD_CHROOT_SHARE" "$chroot_target/share"
    fi
    local environment=()
    mapfile -t environment < <(chroot_environment)
    set +eE
    trap - ERR
    # In the background with its standard input kept, and waited for: a
    # signal then ends the run at once (and with it, as this shell is the
    # PID namespace's first process, every process inside), where a command
    # in the foreground would hold the traps back until it was done.
    chroot "$chroot_target" /usr/bin/env -i "${environment[@]}" "$@" 0<&0 &
    chroot_command=$!
    trap 'kill -TERM $chroot_command 2>/dev/null; exit 130' INT
    trap 'kill -TERM $chroot_command 2>/dev/null; exit 143' TERM
    wait $chroot_command
}

# chroot_enter ROOT OVERLAY RUNDIR REPO CMD...: chroot_inside in a private
# mount, IPC and PID namespace (so nothing mounted or started inside
# outlives the run), or directly where namespaces are not available. With
# RACEGUARD_CHROOT_NET=private, a run (OVERLAY 1) also gets a network
# namespace of its own with just a loopback, so that servers of runs going
# on at the same time, or of this machine, never take each other's ports
# (it then has no other network); by default it shares the machine's.
chroot_enter() {
    local self namespaces=(--mount --propagation private --ipc --pid)
    self=$(realpath "${BASH_SOURCE[0]}")
    if [ "$2" = 1 ] && [ "${RACEGUARD_CHROOT_NET:-host}" = private ] && command -v ip >/dev/null &&
        unshare --net true 2>/dev/null; then
        namespaces+=(--net)
    fi
    if unshare "${namespaces[@]}" --fork true 2>/dev/null; then
        unshare "${namespaces[@]}" --fork --kill-child \
            bash "$self" __inside "$@" 9>&-
    else
        bash "$self" __inside "$@" 9>&-
    fi
}

# chroot_lock RELEASE [-s]: takes the release's lock on file descriptor 9,
# exclusive while a root is made or removed, shared (-s) while runs, which
# never change it, use it.
chroot_lock() {
    local release=$1
    shift
    mkdir -p "$chroot_cache"
    exec 9>"$chroot_cache/$release.lock"
    flock "$@" 9
}

# Makes the root of RELEASE with PostgreSQL MAJOR unless it exists; with the
# lock held.
chroot_make_locked() {
    local release=$1 major=$2
    local root=$chroot_cache/$release marker
    marker=$(chroot_marker "$major")
    # Mounts left by an interrupted run outside a private namespace.
    chroot_release_mounts "$release" | chroot_unmount
    # Unfinished roots, and the mount points of runs, left by interrupted runs.
    rm -rf "$chroot_cache/.$release".*
    rmdir "$chroot_cache/.run-$release".* 2>/dev/null || true
    if chroot_complete "$release" "$major"; then
        return 0
    fi
    local building
    if [ -d "$root" ]; then
        # A root of this release made for another major: add this major in place.
        building=$root
    else
        command -v debootstrap >/dev/null || {
            echo "== installing debootstrap"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
                { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
        } || return 1
        building=$(mktemp -d "$chroot_cache/.$release.XXXXXX")
        chmod 755 "$building" # the root's / (mktemp makes it private)
        local mirror
        mirror=$(chroot_mirror)
        echo "== debootstrap $release from $mirror into $building"
        unshare --mount --propagation private \
            debootstrap --variant=minbase "$release" "$building" "$mirror" >"$building.log" 2>&1 ||
            { tail -n 30 "$building.log" >&2; chroot_die "debootstrap $release failed (log: $building.log)"; return 1; }
        rm -f "$building.log"
        echo "deb $mirror $release main" >"$building/etc/apt/sources.list"
        # Roots are made from a mirror snapshot at times: do not refuse old Release files.
        echo 'Acquire::Check-Valid-Until "false";' >"$building/etc/apt/apt.conf.d/99raceguard"
        # Package installs start no services here.
        printf '#!/bin/sh\nexit 101\n' >"$building/usr/sbin/policy-rc.d"
        chmod 755 "$building/usr/sbin/policy-rc.d"
        # Tests make their own throwaway clusters: no "main" cluster at install.
        mkdir -p "$building/etc/postgresql-common/createcluster.d"
        echo 'create_main_cluster = false' >"$building/etc/postgresql-common/createcluster.d/raceguard.conf"
    fi
    echo "== installing PostgreSQL $major and the build tools into the $release root"
    # shellcheck disable=SC2046
    # man-db's index of every manual page takes minutes to build, for nobody.
    chroot_enter "$building" 0 "" "" sh -c "rm -f /var/lib/man-db/auto-update &&
        echo 'man-db man-db/auto-update boolean false' | debconf-set-selections &&
        apt-get update -qq &&
        apt-get install -y -qq --no-install-recommends $(chroot_packages "$release" "$major") >/tmp/raceguard-apt.log 2>&1 ||
        { tail -n 30 /tmp/raceguard-apt.log; exit 1; }" ||
        { chroot_die "installing packages into $building failed"; return 1; }
    chroot_enter "$building" 0 "" "" apt-get clean
    rm -f "$building/tmp/raceguard-apt.log"
    mkdir -p "$(dirname "$building/$marker")"
    chroot_packages "$release" "$major" >"$building/$marker"
    [ "$building" = "$root" ] || mv "$building" "$root"
}

chroot_make() {
    local release=$1 major=$2
    (chroot_lock "$release" && chroot_make_locked "$release" "$major")
}

# chroot_run RELEASE MAJOR CMD...: makes the root if needed, then runs CMD in
# it with this repository at /raceguard.
chroot_run() {
    local release=$1 major=$2
    shift 2
    local repo
    repo=$(realpath "$(dirname "${BASH_SOURCE[0]}")/..")
    (
        chroot_lock "$release" -s || exit 1
        # Made, and nothing left mounted by an interrupted run? Else make or
        # clean it up first, alone.
        if ! chroot_complete "$release" "$major" ||
            [ -n "$(chroot_release_mounts "$release")" ]; then
            flock 9 && chroot_make_locked "$release" "$major" && flock -s 9 || exit 1
        fi
        rundir=$(mktemp -d "$chroot_cache/.run-$release.XXXXXX")
        status=0
        chroot_enter "$chroot_cache/$release" 1 "$rundir" "$repo" "$@" || status=$?
        rmdir "$rundir" 2>/dev/null || true
        exit $status
    )
}

chroot_clean() {
    local release=$1
    (chroot_lock "$release" && chroot_release_mounts "$release" | chroot_unmount &&
        rm -rf "${chroot_cache:?}/$release" "$chroot_cache/.$release".* &&
        { rmdir "$chroot_cache/.run-$release".* 2>/dev/null || true; })
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    usage() {
        sed -n 's/^#   \(bash scripts\/chroot.sh .*\)/\1/p' "$0" >&2
        exit 2
    }
    [ $# -ge 1 ] || usage
    command=$1
    shift
    case "$command" in
    __inside) chroot_inside "$@" ;;
    make) [ $# -eq 2 ] || usage; chroot_make "$@" ;;
    run) [ $# -ge 3 ] || usage; chroot_run "$@" ;;
    shell) [ $# -eq 2 ] || usage; chroot_run "$@" bash -l ;;
    clean) [ $# -eq 1 ] || usage; chroot_clean "$@" ;;
    *) usage ;;
    esac
    exit $?
fi
