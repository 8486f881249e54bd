#!/usr/bin/env bash
# Stress: many clients race to move the same invoices along their edges
# (pending -> sent -> paid), each with one statement, "UPDATE invoices SET
# status = <target> WHERE id = ?", holding the row a moment before it
# commits, so that the others wait and PostgreSQL re-aims their UPDATEs at
# the newer row. Each client logs, in the same transaction, the moves it
# believes it made: the state its statement saw (its snapshot's, through a
# self-join) and the one it wrote, when they differ; an AFTER trigger logs
# every change the table really went through. A random share runs at
# REPEATABLE READ (pgbench retries its 40001).
# With the guard every invoice is moved to each state by at most one client
# (so along each edge at most once), every real change is a declared edge,
# and the clients' logs match the table. The same workload
# without the guard is run first as a control: an edge must be taken twice
# there, or this test could not tell the difference. Bounded: a fixed
# number of transactions per client.
source "$(dirname "$0")/lib.sh"
transactions=${STRESS_TRANSACTIONS:-300}
rows=${STRESS_ROWS:-30}

psql -qX -v ON_ERROR_STOP=1 -v rows="$rows" <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS stress_invoices, stress_moves, stress_open_invoices, stress_open_moves, stress_refusals,
    stress_changes;
CREATE TABLE stress_invoices (id integer PRIMARY KEY, status text NOT NULL);
CREATE TRIGGER stress_invoices_status BEFORE INSERT OR UPDATE ON stress_invoices
    FOR EACH ROW EXECUTE FUNCTION raceguard.transition('status', '>pending', 'pending>sent', 'sent>paid');
CREATE TABLE stress_moves (invoice integer NOT NULL, from_status text NOT NULL, to_status text NOT NULL,
                           client integer NOT NULL);
CREATE TABLE stress_open_invoices (LIKE stress_invoices INCLUDING ALL);
CREATE TABLE stress_open_moves (LIKE stress_moves);
CREATE TABLE stress_refusals (invoice integer, to_status text, client integer);
CREATE TABLE stress_changes (invoice integer, old_status text, new_status text);
CREATE FUNCTION stress_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO stress_changes VALUES (OLD.id, OLD.status, NEW.status);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER stress_invoices_changes AFTER UPDATE ON stress_invoices
    FOR EACH ROW EXECUTE FUNCTION stress_change();
INSERT INTO stress_invoices SELECT g, 'pending' FROM generate_series(1, :rows) g;
INSERT INTO stress_open_invoices SELECT g, 'pending' FROM generate_series(1, :rows) g;
-- One move: a single UPDATE that also returns the state its statement saw.
-- A refusal (23514) is the normal "already done, or not from here" outcome.
CREATE FUNCTION stress_move(invoices regclass, moves regclass, invoice integer, target text, me integer)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    seen text;
BEGIN
    EXECUTE format('UPDATE %1$s AS i SET status = $1 FROM (SELECT status FROM %1$s WHERE id = $2) AS s
                    WHERE i.id = $2 RETURNING s.status', invoices) INTO seen USING target, invoice;
    PERFORM pg_sleep(0.01 * random());  -- the row stays locked a moment: others wait
    IF seen IS DISTINCT FROM target THEN
        EXECUTE format('INSERT INTO %s VALUES ($1, $2, $3, $4)', moves) USING invoice, seen, target, me;
    END IF;
    RETURN true;
EXCEPTION WHEN check_violation THEN
    INSERT INTO stress_refusals VALUES (invoice, target, me);
    RETURN false;
END $$;
SQL

# The clients' script, for the control (open) or the guarded tables.
write_script() {
    local target=$1 tables
    if [ "$target" = open ]; then tables="'stress_open_invoices', 'stress_open_moves'"; else tables="'stress_invoices', 'stress_moves'"; fi
    cat >"$work/$target.sql" <<SQL
\set id random(1, $rows)
\set paid random(0, 1)
\set repeatable random(0, 3)
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT stress_move($tables, :id, CASE :paid WHEN 1 THEN 'paid' ELSE 'sent' END, :client_id) WHERE :repeatable > 0;
COMMIT;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT stress_move($tables, :id, CASE :paid WHEN 1 THEN 'sent' ELSE 'paid' END, :client_id) WHERE :repeatable = 0;
COMMIT;
SQL
}

# No client ever writes pending: an invoice leaves it once, unless a race
# lets two clients both move it from there. The control shows the workload
# races; on a busy machine the clients may happen not to overlap, so it is
# played up to three times, from pending again each time.
write_script open
for attempt in 1 2 3; do
    psql -qX -v ON_ERROR_STOP=1 -c "TRUNCATE stress_open_moves; UPDATE stress_open_invoices SET status = 'pending'"
    run_pgbench open "$clients" "$transactions" --max-tries=100
    twice_open=$(psql -qXAt -c "SELECT count(*) FROM (SELECT invoice FROM stress_open_moves WHERE from_status = 'pending'
                                 GROUP BY 1 HAVING count(*) > 1) s")
    [ "$twice_open" -eq 0 ] || break
done
write_script guarded
run_pgbench guarded "$clients" "$transactions" --max-tries=100

read -r moved twice undeclared log_mismatch < <(psql -qXAt -F ' ' -c "
    SELECT (SELECT count(*) FROM stress_moves),
           (SELECT count(*) FROM (SELECT invoice, to_status FROM stress_moves
                                   GROUP BY 1, 2 HAVING count(*) > 1) s),
           (SELECT count(*) FROM stress_changes
             WHERE (old_status, new_status) NOT IN (('pending', 'sent'), ('sent', 'paid'))),
           (SELECT count(*) FROM stress_invoices i
             WHERE (SELECT count(*) FROM stress_moves m WHERE m.invoice = i.id AND m.to_status = 'sent')
                   <> (i.status IN ('sent', 'paid'))::integer
                OR (SELECT count(*) FROM stress_moves m WHERE m.invoice = i.id AND m.to_status = 'paid')
                   <> (i.status = 'paid')::integer)")
refused=$(psql -qXAt -c "SELECT count(*) FROM stress_refusals")
failed=$(pgbench_number guarded "number of failed transactions")
retried=$(pgbench_number guarded "number of transactions retried")

echo "control without raceguard: $twice_open invoices moved from pending by more than one client (play $attempt of at most 3)"
echo "with transition: $moved moves, $refused refused (23514), ${retried:-0} transactions retried (40001);" \
     "$twice moves to a state an invoice was already moved to, $undeclared undeclared changes, $log_mismatch invoices whose log disagrees with the table"
status=0
expect "$twice_open" -gt 0 "in the control no invoice was moved from pending twice; the workload does not race"
expect "$moved" -gt 0 "nothing moved"
expect "$refused" -gt 0 "no move was ever refused; the workload does not race"
expect "$twice" -eq 0 "$twice moves repeated another client's"
expect "$undeclared" -eq 0 "$undeclared changes along undeclared edges"
expect "$log_mismatch" -eq 0 "$log_mismatch invoices' logs disagree with the table"
expect "${failed:-0}" -eq 0 "$failed transactions failed"
[ $status -ne 0 ] || echo "ok: every invoice moved along each edge at most once"
psql -qX -c "DROP TABLE stress_invoices, stress_moves, stress_open_invoices, stress_open_moves, stress_refusals,
                        stress_changes;
             DROP FUNCTION stress_move(regclass, regclass, integer, text, integer); DROP FUNCTION stress_change()"
exit $status
