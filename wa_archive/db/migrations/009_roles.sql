-- Least privilege: the application role holds only INSERT and SELECT on evidence (see db_roles.py,
-- re-applied by `migrate` after every run). What the archive must still remove or rewrite goes
-- through the functions and triggers below, owned by the schema owner, which re-check the rule
-- themselves instead of trusting the caller.

-- TRUNCATE skips row triggers, so it gets its own, attached by db_roles.py to every table that
-- holds evidence (new tables included). It fires for the owner too.
CREATE FUNCTION refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% holds evidence: TRUNCATE refused', TG_TABLE_NAME;
END $$;

-- The ledger's size only ever grows by one leaf at a time: a head moved back would let leaves be
-- appended over a gap, and one moved forward would leave one.
CREATE FUNCTION ledger_head_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.size <> OLD.size + 1 THEN
        RAISE EXCEPTION 'ledger_head only grows one leaf at a time: % refused', TG_OP;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_head_append_only BEFORE UPDATE OR DELETE ON ledger_head
    FOR EACH ROW EXECUTE FUNCTION ledger_head_append_only();

-- An archived media row is write-once: only its retention (which the retention guard lets grow)
-- and its legal-hold flag change later. A failed row may be completed once, by a later run.
CREATE FUNCTION media_write_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'archived' AND (
        (NEW.message_id, NEW.position, NEW.media_id, NEW.kind, NEW.status, NEW.storage_url, NEW.storage_key,
         NEW.size, NEW.sha256, NEW.provider_sha256, NEW.mime_type, NEW.filename, NEW.stored_at, NEW.archive_id)
        IS DISTINCT FROM
        (OLD.message_id, OLD.position, OLD.media_id, OLD.kind, OLD.status, OLD.storage_url, OLD.storage_key,
         OLD.size, OLD.sha256, OLD.provider_sha256, OLD.mime_type, OLD.filename, OLD.stored_at, OLD.archive_id)
    ) THEN
        RAISE EXCEPTION 'media %/% is archived: its object fields are write-once', OLD.message_id, OLD.position;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER media_write_once BEFORE UPDATE ON media
    FOR EACH ROW EXECUTE FUNCTION media_write_once();

-- Disposition's removal of one message's rows, for a caller that may not delete anything itself.
-- Runs with the owner's rights, so it re-checks everything a disposal needs: the message is past
-- retention, neither it nor any of its media is held or retained, and its disposition record (the
-- evidence of what is removed) is already written. The deliveries it may remove are found here,
-- from the message's own rows, never taken from the caller.
CREATE FUNCTION dispose_message_rows(p_message_id text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    m messages%ROWTYPE;
    carried text[];
BEGIN
    SELECT * INTO m FROM messages WHERE id = p_message_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF cardinality(m.hold_cases) > 0 THEN
        RAISE EXCEPTION 'message % is on legal hold (%): disposal refused', m.id, m.hold_cases;
    END IF;
    -- The application can edit a message's copy of its holds; the holds themselves decide.
    IF EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND h.phone = m.contact_phone
               AND (h.since IS NULL OR m.ts >= h.since) AND (h.until IS NULL OR m.ts < h.until)) THEN
        RAISE EXCEPTION 'message % is under an active legal hold: disposal refused', m.id;
    END IF;
    IF m.retain_until IS NULL OR m.retain_until > now() THEN
        RAISE EXCEPTION 'message % is retained until %: disposal refused', m.id, m.retain_until;
    END IF;
    IF EXISTS (SELECT 1 FROM media d WHERE d.message_id = m.id
               AND (d.legal_hold OR d.retain_until IS NULL OR d.retain_until > now())) THEN
        RAISE EXCEPTION 'media of message % is held or retained: disposal refused', m.id;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM dispositions WHERE message_id = m.id) THEN
        RAISE EXCEPTION 'message % has no disposition record: disposal refused', m.id;
    END IF;
    SELECT coalesce(array_agg(s), '{}') INTO carried FROM (
        SELECT delivery_sha256 FROM message_deliveries WHERE message_id = m.id
        UNION SELECT delivery_sha256 FROM status_events WHERE message_id = m.id) AS x(s);
    -- One statement (foreign keys are checked at its end); the deliveries need a second, which
    -- sees these rows gone.
    WITH a AS (DELETE FROM media WHERE message_id = m.id),
         b AS (DELETE FROM status_events WHERE message_id = m.id),
         c AS (DELETE FROM archive_failures WHERE message_id = m.id),
         d AS (DELETE FROM archive_attempts WHERE message_id = m.id),
         e AS (DELETE FROM outbound_sends WHERE message_id = m.id),
         f AS (DELETE FROM message_deliveries WHERE message_id = m.id)
    DELETE FROM messages WHERE id = m.id;
    -- A delivery's exact bytes go with the last record they carried; one shared with a message
    -- still retained stays (and with it that message's copy of the text).
    DELETE FROM deliveries d WHERE d.sha256 = ANY(carried)
        AND NOT EXISTS (SELECT 1 FROM message_deliveries x WHERE x.delivery_sha256 = d.sha256)
        AND NOT EXISTS (SELECT 1 FROM status_events x WHERE x.delivery_sha256 = d.sha256)
        AND NOT EXISTS (SELECT 1 FROM webhook_events x WHERE x.delivery_sha256 = d.sha256)
        AND NOT EXISTS (SELECT 1 FROM template_events x WHERE x.delivery_sha256 = d.sha256)
        AND NOT EXISTS (SELECT 1 FROM messages x WHERE x.first_delivery_sha256 = d.sha256);
    RETURN true;
END $$;
REVOKE ALL ON FUNCTION dispose_message_rows(text) FROM PUBLIC;
