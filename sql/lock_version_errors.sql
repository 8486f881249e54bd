-- raceguard.lock_version(): every bad definition fails at its first row with
-- an error that names the trigger, the table and the argument, and nothing
-- is written.
CREATE TABLE accounts (id integer PRIMARY KEY, note text, version bigint, lock_version integer);

-- A missing column (42703): the default one, and a misspelt one.
CREATE TABLE no_version (id integer PRIMARY KEY);
CREATE TRIGGER no_version_lv BEFORE INSERT ON no_version
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
SELECT * FROM regress.error_of($$INSERT INTO no_version VALUES (1)$$) \gx
SELECT count(*) AS written FROM no_version;
CREATE TRIGGER accounts_misspelt BEFORE INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('versoin');
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO accounts (id) VALUES (1)$$);
-- Names match exactly as stored: "Version" is not version.
DROP TRIGGER accounts_misspelt ON accounts;
CREATE TRIGGER accounts_misspelt BEFORE INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('Version');
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO accounts (id) VALUES (1)$$);
DROP TRIGGER accounts_misspelt ON accounts;

-- A dropped column is a missing column.
CREATE TABLE dropped (id integer, lock_version integer);
CREATE TRIGGER dropped_lv BEFORE UPDATE ON dropped
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
INSERT INTO dropped VALUES (1, 1);
ALTER TABLE dropped DROP COLUMN lock_version;
SELECT sqlstate, message FROM regress.error_of($$UPDATE dropped SET id = 2$$);
SELECT * FROM dropped;

-- A system column (0A000).
CREATE TRIGGER accounts_xmin BEFORE INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('xmin');
SELECT * FROM regress.error_of($$INSERT INTO accounts (id) VALUES (1)$$) \gx
DROP TRIGGER accounts_xmin ON accounts;

-- A generated column (0A000): PostgreSQL computes it after BEFORE triggers,
-- so the version the guard writes would never be stored (every row would
-- stay at the expression's value). Nothing is written.
CREATE TABLE generated_versions (id integer, note text, lock_version integer GENERATED ALWAYS AS (1) STORED);
INSERT INTO generated_versions (id, note) VALUES (1, 'before the trigger');
CREATE TRIGGER generated_versions_lv BEFORE INSERT OR UPDATE ON generated_versions
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
SELECT * FROM regress.error_of($$INSERT INTO generated_versions (id) VALUES (2)$$) \gx
SELECT sqlstate, message FROM regress.error_of($$UPDATE generated_versions SET note = 'changed'$$);
SELECT * FROM generated_versions;

-- Unsupported types (42804): text, numeric, and a domain over integer (its
-- constraints would not be checked on the value the trigger writes).
CREATE TRIGGER accounts_text BEFORE INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('note');
SELECT * FROM regress.error_of($$INSERT INTO accounts (id) VALUES (1)$$) \gx
DROP TRIGGER accounts_text ON accounts;
CREATE DOMAIN small_positive AS integer CHECK (VALUE BETWEEN 1 AND 10);
CREATE TABLE domain_versions (id integer, lock_version small_positive, amount numeric);
CREATE TRIGGER domain_versions_lv BEFORE INSERT ON domain_versions
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO domain_versions (id) VALUES (1)$$);
DROP TRIGGER domain_versions_lv ON domain_versions;
CREATE TRIGGER domain_versions_lv BEFORE INSERT ON domain_versions
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('amount');
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO domain_versions (id) VALUES (1)$$);
SELECT count(*) AS written FROM domain_versions;

-- Too many columns, unknown options, bad option values, a repeated option and
-- an empty argument (22023).
CREATE TRIGGER accounts_two_columns BEFORE INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('version', 'lock_version');
SELECT * FROM regress.error_of($$INSERT INTO accounts (id) VALUES (1)$$) \gx
DROP TRIGGER accounts_two_columns ON accounts;
CREATE TRIGGER accounts_unknown_option BEFORE INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('stirct=true');
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO accounts (id) VALUES (1)$$);
DROP TRIGGER accounts_unknown_option ON accounts;
CREATE TRIGGER accounts_bad_strict BEFORE INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('strict=maybe');
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO accounts (id) VALUES (1)$$);
DROP TRIGGER accounts_bad_strict ON accounts;
CREATE TRIGGER accounts_bad_sqlstate BEFORE INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('sqlstate=23505');
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO accounts (id) VALUES (1)$$);
DROP TRIGGER accounts_bad_sqlstate ON accounts;
CREATE TRIGGER accounts_repeated BEFORE INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('strict=true', 'strict=false');
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO accounts (id) VALUES (1)$$);
DROP TRIGGER accounts_repeated ON accounts;
CREATE TRIGGER accounts_empty BEFORE INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('');
SELECT sqlstate, message FROM regress.error_of($$INSERT INTO accounts (id) VALUES (1)$$);
DROP TRIGGER accounts_empty ON accounts;
-- PostgreSQL's boolean spellings are accepted.
CREATE TRIGGER accounts_spelling BEFORE INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version('strict=on', 'sqlstate=40001');
INSERT INTO accounts (id) VALUES (1) RETURNING lock_version;
DROP TRIGGER accounts_spelling ON accounts;
SELECT count(*) AS written FROM accounts;

-- Fired the wrong way (39P01): STATEMENT level, AFTER, on DELETE, INSTEAD OF.
CREATE TRIGGER accounts_statement BEFORE UPDATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION raceguard.lock_version();
SELECT * FROM regress.error_of($$UPDATE accounts SET note = 'x'$$) \gx
DROP TRIGGER accounts_statement ON accounts;
CREATE TRIGGER accounts_after AFTER UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
SELECT sqlstate, message FROM regress.error_of($$UPDATE accounts SET note = 'x'$$);
DROP TRIGGER accounts_after ON accounts;
CREATE TRIGGER accounts_delete BEFORE UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
SELECT sqlstate, message FROM regress.error_of($$DELETE FROM accounts$$);
SELECT sqlstate, message FROM regress.error_of($$UPDATE accounts SET note = 'x'$$);
DROP TRIGGER accounts_delete ON accounts;
SELECT id, note, lock_version FROM accounts;
CREATE VIEW accounts_view AS SELECT * FROM accounts;
CREATE TRIGGER accounts_view_lv INSTEAD OF UPDATE ON accounts_view
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
SELECT sqlstate, message FROM regress.error_of($$UPDATE accounts_view SET note = 'x'$$);

-- Called directly, outside a trigger (39P01).
SELECT * FROM regress.error_of($$SELECT raceguard.lock_version()$$);
