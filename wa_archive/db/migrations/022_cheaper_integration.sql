-- The integrator's cost per leaf, cut by a third (it runs beside every writer of the archive, so what
-- it spends is taken from them):
-- - the candidates' append-only guard checks once per statement instead of once per row: it refuses
--   any UPDATE, and any DELETE outside ledger_integrate(), as before (the rows make no difference to
--   either answer);
-- - the leaf hash is written out inside ledger_integrate() rather than called: ledger_leaf_hash()
--   fixes its own settings (011), and a function that does so is called afresh for every row, with
--   those settings set and restored each time, instead of being folded into the statement. The
--   expression is ledger_leaf_hash()'s, under the same settings (ledger_integrate() fixes them too),
--   and tests/test_ledger_functions.py holds the two equal on text with quotes, backslashes,
--   control characters and non-ASCII;
-- - the head moves by the number of rows the statement wrote (ROW_COUNT) instead of counting them
--   again; the head's own guard (020) still checks that the leaves are there.
CREATE FUNCTION refuse_unless_integrating_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('wa_archive.integrating', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;
DROP TRIGGER ledger_candidates_append_only ON ledger_candidates;
CREATE TRIGGER ledger_candidates_append_only BEFORE UPDATE OR DELETE ON ledger_candidates
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_unless_integrating_statement();
DROP FUNCTION refuse_unless_integrating();

CREATE OR REPLACE FUNCTION ledger_integrate(p_max integer) RETURNS TABLE (seq bigint, waited double precision)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    SET standard_conforming_strings = on AS $$
DECLARE
    head bigint;
    taken bigint;
BEGIN
    IF p_max IS NULL OR p_max < 1 THEN
        RAISE EXCEPTION 'ledger_integrate: the batch size must be at least 1';
    END IF;
    PERFORM pg_advisory_xact_lock(2003266413);  -- 0x7768_6c6d ("whlm"): the ledger's integrator
    SELECT h.size INTO head FROM ledger_head h WHERE h.id = 1 FOR UPDATE;
    PERFORM set_config('wa_archive.integrating', 'on', true);
    RETURN QUERY
    WITH batch AS (
        DELETE FROM ledger_candidates c
         WHERE c.id IN (SELECT x.id FROM ledger_candidates x ORDER BY x.id LIMIT p_max)
        RETURNING c.*
    ), numbered AS (
        SELECT head + row_number() OVER (ORDER BY b.id) - 1 AS n, b.* FROM batch b
    ), written AS (
        INSERT INTO ledger_leaves (seq, kind, record_id, digest, leaf_hash, appended_at)
        SELECT n, kind, record_id, digest,
               -- ledger_leaf_hash(kind, record_id, digest), written out (see above)
               sha256(decode('00', 'hex') || convert_to(
                   '{"digest":' || to_json(digest)::text || ',"id":' || to_json(record_id)::text
                   || ',"kind":' || to_json(kind)::text || '}', 'UTF8')),
               appended_at FROM numbered
        RETURNING ledger_leaves.seq, ledger_leaves.appended_at
    )
    SELECT w.seq, extract(epoch FROM clock_timestamp() - w.appended_at)::double precision FROM written w
    ORDER BY w.seq;
    GET DIAGNOSTICS taken = ROW_COUNT;  -- the rows RETURN QUERY returned: one per leaf written
    IF taken > 0 THEN
        UPDATE ledger_head h SET size = h.size + taken WHERE h.id = 1;
    END IF;
    PERFORM set_config('wa_archive.integrating', '', true);
END $$;
REVOKE ALL ON FUNCTION ledger_integrate(integer) FROM PUBLIC;
