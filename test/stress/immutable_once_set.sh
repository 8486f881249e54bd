#!/usr/bin/env bash
# Stress: many clients race to claim many conversations with the usual
# check-then-update (read the owner; if there is none, "UPDATE ... SET
# texter_id = me WHERE id = ?") and record each success in their own log, in
# the same transaction.
# With the guard every conversation ends with exactly one owner, and each
# client's log matches the table. The same workload without the guard is run
# first as a control: claims must get stolen there, or this test could not
# tell the difference. Bounded: a fixed number of transactions per client.
source "$(dirname "$0")/lib.sh"
transactions=${STRESS_TRANSACTIONS:-300}
rows=${STRESS_ROWS:-60}

psql -qX -v ON_ERROR_STOP=1 -v rows="$rows" <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS stress_conversations, stress_claims, stress_open_conversations, stress_open_claims, stress_rejections;
CREATE TABLE stress_conversations (id integer PRIMARY KEY, texter_id integer);
CREATE TRIGGER stress_texter_once BEFORE UPDATE ON stress_conversations
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('texter_id');
CREATE TABLE stress_claims (conversation_id integer NOT NULL, client integer NOT NULL);
CREATE TABLE stress_open_conversations (LIKE stress_conversations INCLUDING ALL);
CREATE TABLE stress_open_claims (LIKE stress_claims);
CREATE TABLE stress_rejections (LIKE stress_claims);
INSERT INTO stress_conversations SELECT g, NULL FROM generate_series(1, :rows) g;
INSERT INTO stress_open_conversations SELECT g, NULL FROM generate_series(1, :rows) g;
-- One claim attempt, check then update. A rejected claim (23514) is the
-- normal "someone else has it" outcome, so it is caught and not logged.
CREATE FUNCTION stress_claim(conversations regclass, claims regclass, conversation integer, me integer)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    owner integer;
BEGIN
    EXECUTE format('SELECT texter_id FROM %s WHERE id = $1', conversations) INTO owner USING conversation;
    IF owner IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_sleep(0.005 * random());  -- the application thinks a moment
    EXECUTE format('UPDATE %s SET texter_id = $1 WHERE id = $2', conversations) USING me, conversation;
    EXECUTE format('INSERT INTO %s VALUES ($1, $2)', claims) USING conversation, me;
    RETURN true;
EXCEPTION WHEN check_violation THEN
    INSERT INTO stress_rejections VALUES (conversation, me);
    RETURN false;
END $$;
SQL

for target in open guarded; do
    if [ "$target" = open ]; then tables="'stress_open_conversations', 'stress_open_claims'"; else tables="'stress_conversations', 'stress_claims'"; fi
    cat >"$work/$target.sql" <<SQL
\set id random(1, $rows)
SELECT stress_claim($tables, :id, :client_id);
SQL
    run_pgbench "$target" "$clients" "$transactions" --max-tries=100
done

# A conversation is stolen when more than one client logged a claim on it.
stolen_open=$(psql -qXAt -c "SELECT count(*) FROM (SELECT conversation_id FROM stress_open_claims
                              GROUP BY 1 HAVING count(DISTINCT client) > 1) s")
read -r claimed multi_owner log_mismatch unlogged < <(psql -qXAt -F ' ' -c "
    SELECT (SELECT count(*) FROM stress_conversations WHERE texter_id IS NOT NULL),
           (SELECT count(*) FROM (SELECT conversation_id FROM stress_claims
                                   GROUP BY 1 HAVING count(DISTINCT client) > 1) s),
           (SELECT count(*) FROM stress_claims l JOIN stress_conversations c ON c.id = l.conversation_id
             WHERE c.texter_id <> l.client),
           (SELECT count(*) FROM stress_conversations c WHERE texter_id IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM stress_claims l WHERE l.conversation_id = c.id AND l.client = c.texter_id))")
rejected=$(psql -qXAt -c "SELECT count(*) FROM stress_rejections")
failed=$(pgbench_number guarded "number of failed transactions")

echo "control without raceguard: $stolen_open conversations claimed by more than one client"
echo "with immutable_once_set: $claimed conversations claimed, $rejected late claims rejected (23514); $multi_owner with more than one successful claimant," \
     "$log_mismatch log entries that disagree with the table, $unlogged owners without a logged claim"
status=0
[ "$stolen_open" -gt 0 ] || { echo "FAIL: the control stole nothing; the workload does not race"; status=1; }
[ "$claimed" -gt 0 ] || { echo "FAIL: nothing was claimed"; status=1; }
[ "$rejected" -gt 0 ] || { echo "FAIL: no claim was ever rejected; the workload does not race"; status=1; }
[ "$multi_owner" -eq 0 ] || { echo "FAIL: $multi_owner conversations were stolen"; status=1; }
[ "$log_mismatch" -eq 0 ] || { echo "FAIL: $log_mismatch successes are not in the table"; status=1; }
[ "$unlogged" -eq 0 ] || { echo "FAIL: $unlogged owners have no logged claim"; status=1; }
[ "${failed:-0}" -eq 0 ] || { echo "FAIL: $failed transactions failed"; status=1; }
[ $status -ne 0 ] || echo "ok: every conversation has exactly one owner"
psql -qX -c "DROP TABLE stress_conversations, stress_claims, stress_open_conversations, stress_open_claims, stress_rejections;
             DROP FUNCTION stress_claim(regclass, regclass, integer, integer)"
exit $status
