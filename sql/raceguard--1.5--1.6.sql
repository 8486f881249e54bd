-- raceguard 1.5 -> 1.6 update script. Each part below says what it adds or
-- changes and why.
--
-- 1.6 has a full install script, raceguard--1.6.sql, which CREATE EXTENSION
-- runs; this script brings an older installation to the same objects
-- (test/upgrade/update.sh compares them). Like the full script it makes no
-- temporary objects, so that Citus can run it on its workers.

\echo Use "ALTER EXTENSION raceguard UPDATE TO '1.6'" to load this file. \quit
