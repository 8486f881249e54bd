#!/usr/bin/env bash
# Inside test/preloaded/run.sh's cluster (raceguard preloaded): a prepared
# transaction that wrote around the guard, first in replica mode (a
# superuser), then by its owner with one leaf's clone disabled, survives a
# restart; the shared last entries must not be trusted until it is
# committed, and the append after COMMIT PREPARED continues from its row.
# The restart empties shared memory; what keeps the prepared transaction
# counted is a lock it holds, which PostgreSQL restores with it.
set -euo pipefail
export PGDATABASE=raceguard_prepared
dropdb --if-exists "$PGDATABASE" && createdb "$PGDATABASE" && psql -qX -c "CREATE EXTENSION raceguard"
restart() { pg_ctlcluster "$PGVERSION" regress restart; }
sql() { psql -qXAt -v ON_ERROR_STOP=1 -c "$1"; }
status=0
expect() {  # expect LABEL ACTUAL WANTED
    if [ "$2" = "$3" ]; then echo "ok: $1 ($2)"; else echo "FAIL: $1: got $2, expected $3"; status=1; fi
}
sql "DROP ROLE IF EXISTS raceguard_pr_owner; CREATE ROLE raceguard_pr_owner; GRANT CREATE ON SCHEMA public TO raceguard_pr_owner"
for way in replica owner; do
    sql "DROP TABLE IF EXISTS pr"
    sql "SET ROLE raceguard_pr_owner;
         CREATE TABLE pr (account integer NOT NULL, booked date NOT NULL, amount bigint NOT NULL, balance bigint, n bigint)
             PARTITION BY RANGE (booked);
         CREATE TABLE pr_1 PARTITION OF pr FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
         CREATE TABLE pr_2 PARTITION OF pr FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
         CREATE INDEX ON pr (account, n);
         CREATE TRIGGER pr_balance BEFORE INSERT OR UPDATE OR DELETE ON pr FOR EACH ROW EXECUTE FUNCTION
             raceguard.running_balance('amount', 'balance', 'account', 'seq=n');
         INSERT INTO pr (account, booked, amount) VALUES (1, '2026-01-05', 1), (1, '2026-02-05', 1);"
    if [ $way = replica ]; then
        sql "BEGIN; SET LOCAL session_replication_role = replica;
             INSERT INTO pr VALUES (1, '2026-01-20', 5, 2000, 60); PREPARE TRANSACTION 'raceguard_pr';"
    else
        sql "SET ROLE raceguard_pr_owner; BEGIN; ALTER TABLE pr_1 DISABLE TRIGGER pr_balance;
             INSERT INTO pr_1 VALUES (1, '2026-01-20', 5, 2000, 60); ALTER TABLE pr_1 ENABLE TRIGGER pr_balance;
             PREPARE TRANSACTION 'raceguard_pr';"
    fi
    restart
    expect "$way: append while prepared, after a restart" \
        "$(sql "INSERT INTO pr (account, booked, amount) VALUES (1, '2026-02-06', 1) RETURNING n || '/' || balance")" "3/3"
    expect "$way: again, from another session" \
        "$(sql "INSERT INTO pr (account, booked, amount) VALUES (1, '2026-02-07', 1) RETURNING n || '/' || balance")" "4/4"
    sql "COMMIT PREPARED 'raceguard_pr'"
    expect "$way: append after COMMIT PREPARED continues from the prepared row" \
        "$(sql "INSERT INTO pr (account, booked, amount) VALUES (1, '2026-02-08', 1) RETURNING n || '/' || balance")" "61/2001"
done
sql "DROP TABLE pr; REVOKE CREATE ON SCHEMA public FROM raceguard_pr_owner; DROP ROLE raceguard_pr_owner;"
exit $status
