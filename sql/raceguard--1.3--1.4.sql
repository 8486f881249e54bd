-- raceguard 1.3 -> 1.4 update script: no login role can crash the server
-- or slip a row past a guard (issue 20). Each part below says what it
-- changes and why.
--
-- There is no full raceguard--1.4.sql: CREATE EXTENSION raceguard (1.4)
-- runs raceguard--1.2.sql, raceguard--1.2--1.3.sql and then this script.

\echo Use "ALTER EXTENSION raceguard UPDATE TO '1.4'" to load this file. \quit

-- Part 1: the restore path (raceguard.restoring).




-- Part 2: privileges (who may see and check which guards).




-- Part 3: statistics.




-- Part 4: event triggers that stay harmless without the library.




-- End of the update script.
