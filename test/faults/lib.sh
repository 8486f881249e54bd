# Shared by the fault tests (sourced): clusters of their own, made and
# broken on purpose (crashes, promotions), each in a temporary directory with
# its own Unix socket and no TCP listener, so nothing else on the machine is
# touched. Every server started here is stopped, and the directory removed,
# on any exit. Run as root (the servers run as postgres) or as postgres.
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
bindir=$("$PG_CONFIG" --bindir)
faults=$(mktemp -d /tmp/raceguard-faults.XXXXXX)
chmod 755 "$faults"
started=()           # data directories of servers started here
stopped_processes=() # processes paused with SIGSTOP (see pause_wal_writer)

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else chown -R postgres "$faults" && runuser -u postgres -- "$@"; fi
}

cleanup() {
    local pid data
    for pid in "${stopped_processes[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for data in "${started[@]}"; do
        [ -f "$data/postmaster.pid" ] && as_postgres "$bindir/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    done
    rm -rf "$faults"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# new_cluster NAME PORT: initdb into $faults/NAME, listening on $faults/.s.PGSQL.PORT only.
new_cluster() {
    local name=$1 port=$2
    as_postgres "$bindir/initdb" -D "$faults/$name" -U postgres -A trust --no-sync >"$faults/$name.initdb.log" 2>&1 ||
        { cat "$faults/$name.initdb.log"; exit 1; }
    configure "$name" "$port"
}

# configure NAME PORT: the settings every cluster here runs with.
configure() {
    local name=$1 port=$2
    cat >>"$faults/$name/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$faults'
port = $port
autovacuum = off
CONF
}

start() {
    started+=("$faults/$1")
    as_postgres "$bindir/pg_ctl" -D "$faults/$1" -l "$faults/$1.log" -w start >/dev/null ||
        { cat "$faults/$1.log"; exit 1; }
}

# sql PORT [psql option...]: psql on a cluster of this test, unaligned, tuples only.
sql() {
    local port=$1
    shift
    "$bindir/psql" -h "$faults" -p "$port" -U postgres -d postgres -qXAt -v ON_ERROR_STOP=1 "$@"
}

# repeated FILE...: how many values occur more than once in the files together.
repeated() {
    cat "$@" | sort | uniq -d | wc -l
}
