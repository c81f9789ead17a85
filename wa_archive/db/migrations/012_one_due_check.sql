-- Whether a message may go is decided in one place: recording its disposition and removing its rows
-- ask the same questions (held by the message's copy or by the holds themselves, within retention,
-- any media held or retained), and a rule added to one could otherwise be missing from the other.
CREATE FUNCTION refuse_unless_due(m messages, p_action text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp SET standard_conforming_strings = on AS $$
BEGIN
    IF cardinality(m.hold_cases) > 0 THEN
        RAISE EXCEPTION 'message % is on legal hold (%): % refused', m.id, m.hold_cases, p_action;
    END IF;
    -- The application can edit a message's copy of its holds; the holds themselves decide.
    IF EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND h.phone = m.contact_phone
               AND (h.since IS NULL OR m.ts >= h.since) AND (h.until IS NULL OR m.ts < h.until)) THEN
        RAISE EXCEPTION 'message % is under an active legal hold: % refused', m.id, p_action;
    END IF;
    IF m.retain_until IS NULL OR m.retain_until > now() THEN
        RAISE EXCEPTION 'message % is retained until %: % refused', m.id, m.retain_until, p_action;
    END IF;
    IF EXISTS (SELECT 1 FROM media d WHERE d.message_id = m.id
               AND (d.legal_hold OR d.retain_until IS NULL OR d.retain_until > now())) THEN
        RAISE EXCEPTION 'media of message % is held or retained: % refused', m.id, p_action;
    END IF;
END $$;
REVOKE ALL ON FUNCTION refuse_unless_due(messages, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION dispose_message_rows(p_message_id text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    m messages%ROWTYPE;
    carried text[];
BEGIN
    SELECT * INTO m FROM messages WHERE id = p_message_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM refuse_unless_due(m, 'disposal');
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
ALTER FUNCTION dispose_message_rows(text) SET standard_conforming_strings = on;

CREATE OR REPLACE FUNCTION record_disposition(p_message_id text, p_reason text, p_erasure_request_id bigint, p_record jsonb,
                                   p_run_id text) RETURNS SETOF dispositions
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    m messages%ROWTYPE;
BEGIN
    SELECT * INTO m FROM messages WHERE id = p_message_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % is not archived: no disposition to record', p_message_id;
    END IF;
    PERFORM refuse_unless_due(m, 'disposition');
    RETURN QUERY INSERT INTO dispositions (message_id, reason, policy_id, retain_until, erasure_request_id, record,
                                           run_id)
        VALUES (m.id, p_reason, m.retention_policy_id, m.retain_until, p_erasure_request_id, p_record, p_run_id)
        RETURNING *;
END $$;
ALTER FUNCTION record_disposition(text, text, bigint, jsonb, text) SET standard_conforming_strings = on;
