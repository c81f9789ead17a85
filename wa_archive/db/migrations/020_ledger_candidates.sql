-- Batched sequencing: a record's transaction no longer numbers its leaf under the head row's lock
-- (which made every writer of the archive queue on one row). It adds a leaf candidate instead, a row
-- of its own that no other writer touches; ledger_integrate(), one run at a time, numbers the
-- committed candidates after the head in candidate order, writes them to ledger_leaves and moves
-- the head, in one transaction. ledger_leaves and ledger_head keep their shape and every leaf its
-- number: an existing log carries on from its head.
CREATE TABLE ledger_candidates (
    -- Not gap-free and need not be: it only orders candidates; the leaf number comes at integration.
    -- GENERATED ALWAYS, and the application may insert only kind, record_id and digest (db/roles.py):
    -- it cannot choose a candidate's place in the order or its time.
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('message', 'template_snapshot', 'status_event', 'failure',
                                                'access', 'disposition', 'reconciliation', 'consent',
                                                'message_consent')),
    record_id    text NOT NULL,
    digest       text NOT NULL,
    -- clock_timestamp(): when the record's statement ran, not when its transaction began, so the
    -- integration lag measured from it is the wait for a number and nothing else.
    appended_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- A candidate is never changed, and leaves this table only by becoming a leaf (ledger_integrate()
-- marks its own transaction while it moves them).
CREATE FUNCTION refuse_unless_integrating() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('wa_archive.integrating', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;
CREATE TRIGGER ledger_candidates_append_only BEFORE UPDATE OR DELETE ON ledger_candidates
    FOR EACH ROW EXECUTE FUNCTION refuse_unless_integrating();

-- A record's transaction adds its candidate with a plain INSERT of (kind, record_id, digest): no
-- function call, no shared row, nothing but the row itself on the write path. The leaf hash is not
-- the writer's to give: the integrator computes it from those three fields as it writes the leaf.
-- ledger_append() stays, with its name, arguments and checks, for callers that use it; it adds the
-- same row and returns the candidate's id (it used to return a leaf number).
CREATE OR REPLACE FUNCTION ledger_append(p_kind text, p_record_id text, p_digest text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    candidate bigint;
BEGIN
    IF p_kind IS NULL OR p_record_id IS NULL OR p_digest IS NULL THEN
        RAISE EXCEPTION 'ledger_append: kind, record id and digest are all required';
    END IF;
    IF p_kind NOT IN ('message', 'template_snapshot', 'status_event', 'failure', 'access', 'disposition',
                      'reconciliation', 'consent', 'message_consent') THEN
        RAISE EXCEPTION 'ledger_append: % is not a kind of record the ledger holds', p_kind;
    END IF;
    INSERT INTO ledger_candidates (kind, record_id, digest) VALUES (p_kind, p_record_id, p_digest)
    RETURNING id INTO candidate;
    RETURN candidate;
END $$;
REVOKE ALL ON FUNCTION ledger_append(text, text, text) FROM PUBLIC;

-- The head now moves by a batch at a time (009 allowed one leaf): it still only grows, and only over
-- leaves that are there, each number once, so it can neither leave a gap nor fall back over leaves.
CREATE OR REPLACE FUNCTION ledger_head_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.size <= OLD.size
       OR (SELECT count(*) FROM ledger_leaves WHERE seq >= OLD.size AND seq < NEW.size) <> NEW.size - OLD.size THEN
        RAISE EXCEPTION 'ledger_head only grows over the leaves written after it: % refused', TG_OP;
    END IF;
    RETURN NEW;
END $$;

-- Integrates up to p_max committed candidates, oldest id first: numbers them after the head
-- without gaps, writes their leaves (appended_at: when the record was written), moves the head and
-- removes them, all in the caller's transaction. One run at a time: the advisory lock serialises
-- concurrent callers (each then sees what the one before left). A candidate whose transaction has
-- not committed is not seen, and is integrated by a later run. Returns each integrated leaf's
-- number and how long it waited for it (seconds).
CREATE FUNCTION ledger_integrate(p_max integer) RETURNS TABLE (seq bigint, waited double precision)
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
        SELECT n, kind, record_id, digest, ledger_leaf_hash(kind, record_id, digest), appended_at FROM numbered
        RETURNING ledger_leaves.seq, ledger_leaves.appended_at
    )
    SELECT w.seq, extract(epoch FROM clock_timestamp() - w.appended_at)::double precision FROM written w
    ORDER BY w.seq;
    SELECT count(*) INTO taken FROM ledger_leaves l WHERE l.seq >= head;
    IF taken > 0 THEN
        UPDATE ledger_head h SET size = h.size + taken WHERE h.id = 1;
    END IF;
    PERFORM set_config('wa_archive.integrating', '', true);
END $$;
REVOKE ALL ON FUNCTION ledger_integrate(integer) FROM PUBLIC;
