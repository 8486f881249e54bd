-- The error boundary: errors raised several C++ frames deep reach the client
-- as ordinary PostgreSQL errors with the intended SQLSTATE and fields, every
-- C++ destructor on the way runs, and the backend stays usable.
-- The probe is a test hook in the library; only this test gives it a name.
CREATE FUNCTION pg_temp.boundary_probe(mode text) RETURNS integer
    LANGUAGE c STRICT AS '$libdir/raceguard', 'raceguard_boundary_probe';

SELECT pg_backend_pid() AS backend_before \gset
-- A plain call through the boundary and into PostgreSQL (int4in) succeeds.
SELECT pg_temp.boundary_probe('ok') AS ok;
SELECT pg_temp.boundary_probe('destructor_runs') AS destructors_before;

-- raceguard's own error, thrown 5 frames deep: SQLSTATE, detail, hint and
-- constraint all arrive.
SELECT * FROM regress.error_of($$SELECT pg_temp.boundary_probe('raceguard_error')$$) \gx
-- A PostgreSQL error (int4in rejecting its input) caught by the call guard,
-- carried through 5 C++ frames and re-raised with its own SQLSTATE 22P02.
SELECT * FROM regress.error_of($$SELECT pg_temp.boundary_probe('postgres_error')$$) \gx
-- A std::exception becomes an internal error (XX000), not a crash.
SELECT * FROM regress.error_of($$SELECT pg_temp.boundary_probe('std_exception')$$) \gx
-- The same errors as the client sees them, uncaught:
SELECT pg_temp.boundary_probe('raceguard_error');
SELECT pg_temp.boundary_probe('postgres_error');

-- The backend is alive, and each error unwound all 5 frames: 5 for 'ok' and
-- 5 for each of the five errors.
SELECT pg_temp.boundary_probe('destructor_runs') AS destructors_after,
       pg_backend_pid() = :backend_before AS same_backend;

-- Errors inside a transaction roll back like any other error.
CREATE TEMP TABLE boundary_witness (n integer);
BEGIN;
INSERT INTO boundary_witness VALUES (1);
SELECT pg_temp.boundary_probe('postgres_error');
COMMIT;
SELECT count(*) AS rows_written FROM boundary_witness;
-- and a savepoint can catch them.
BEGIN;
INSERT INTO boundary_witness VALUES (2);
SAVEPOINT s;
SELECT pg_temp.boundary_probe('raceguard_error');
ROLLBACK TO SAVEPOINT s;
INSERT INTO boundary_witness VALUES (3);
COMMIT;
SELECT n FROM boundary_witness ORDER BY n;
