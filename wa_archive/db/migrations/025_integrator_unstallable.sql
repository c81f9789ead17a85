-- What the application role can do against the ledger's integrator must fail its own transaction, never
-- the integrator's (tests/test_ledger_attacks.py):
--
-- - A candidate must fit the log. A record id longer than an index entry of ledger_leaves can hold
--   (about 2.7 kB) committed as a candidate, and then every ledger_integrate() failed on it: no leaf
--   and no checkpoint after it, for good. The archive's ids are at most a few hundred bytes (a message
--   id is capped at 256 characters) and its digests are SHA-256 in hex, so the bounds leave room.
-- - No lock the application can take may make the integrator wait. Advisory locks are anyone's, and an
--   idle session holding the integrator's or the tile writer's number held up every integration and
--   checkpoint until it left. The integrator is serialised by the head's row instead (its SELECT ... FOR
--   UPDATE was already there; a second run waits for the first to commit and then reads the head it
--   left), and the tile writer by a lock on ledger_tiles that conflicts with itself but not with
--   reading: locking a row or a table for writing needs a privilege the application does not have.
--
-- A log already poisoned so (its integration failing on such a candidate at every run) is mended here:
-- candidates outside the bounds are moved aside, kept as they were in ledger_candidates_refused with
-- the time they were refused, and integration goes on past them.
CREATE TABLE ledger_candidates_refused AS
    SELECT c.*, now() AS refused_at FROM ledger_candidates c
     WHERE NOT (octet_length(c.record_id) <= 1024 AND octet_length(c.digest) <= 128);
SELECT set_config('wa_archive.integrating', 'on', true);  -- the candidates' guard lets only this remove them
DELETE FROM ledger_candidates c WHERE c.id IN (SELECT r.id FROM ledger_candidates_refused r);
SELECT set_config('wa_archive.integrating', '', true);
ALTER TABLE ledger_candidates ADD CONSTRAINT ledger_candidates_fit_the_log
    CHECK (octet_length(record_id) <= 1024 AND octet_length(digest) <= 128);

-- Each function as it was, but for its lock: one line replaced in its definition, checked to be there.
DO $$
DECLARE
    f record;
    definition text;
BEGIN
    FOR f IN SELECT * FROM (VALUES
        ('ledger_integrate(integer)',
         'PERFORM pg_advisory_xact_lock(2003266413);  -- 0x7768_6c6d ("whlm"): the ledger''s integrator',
         '-- one run at a time: the head''s row below, locked FOR UPDATE (migration 025)'),
        ('ledger_write_tiles(integer)',
         'PERFORM pg_advisory_xact_lock(2003266420);  -- "whlt": the ledger''s tile writer',
         'LOCK TABLE ledger_tiles IN SHARE ROW EXCLUSIVE MODE;  -- one writer at a time (migration 025)')
    ) AS v(fn, old_line, new_line) LOOP
        definition := pg_get_functiondef(f.fn::regprocedure);
        IF position(f.old_line IN definition) = 0 THEN
            RAISE EXCEPTION 'migration 025: % does not take the lock it replaces', f.fn;
        END IF;
        EXECUTE replace(definition, f.old_line, f.new_line);
    END LOOP;
END $$;
