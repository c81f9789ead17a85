-- Contacts and consent: who each person was when a message was exchanged, and what they had agreed
-- to at that moment. Every table here is append-only: a profile is the history of what was seen,
-- never an overwrite, so a name or number that changes keeps its past.

-- One row per person the business talks to. The person is known only through identifiers.
CREATE TABLE contacts (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Which contact an identifier belongs to, from when. The current owner of an identifier is its
-- latest link (by linked_at, then id). A phone number that changes hands gets a new link to the
-- new person (reason 'changed_hands'); the old link stays as history, so nothing is silently merged.
-- Person identifiers (a business-scoped user id, a WhatsApp LID) never move between contacts.
CREATE TABLE contact_links (
    id          bigserial PRIMARY KEY,
    contact_id  bigint NOT NULL REFERENCES contacts (id),
    kind        text NOT NULL CHECK (kind IN ('phone', 'wa_id', 'bsuid', 'username', 'wasender_jid', 'wasender_lid')),
    value       text NOT NULL,
    linked_at   timestamptz NOT NULL,                 -- the time of the evidence that linked it
    reason      text NOT NULL CHECK (reason IN ('first_seen', 'changed_hands', 'recorded')),
    message_id  text,                                 -- the message that showed it, where one did
    consent_entry_id bigint,                          -- or the consent entry that named it
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX contact_links_identifier ON contact_links (kind, value, linked_at DESC, id DESC);
CREATE INDEX contact_links_contact ON contact_links (contact_id);

-- One row per archived message: the identifiers and profile name it showed, and the contact they
-- resolved to. Names over time are read from here (first and last seen, with their messages). A
-- sighting goes with its message when the message is disposed of.
CREATE TABLE contact_sightings (
    message_id  text PRIMARY KEY,
    contact_id  bigint NOT NULL REFERENCES contacts (id),
    seen_at     timestamptz NOT NULL,                 -- the message's time
    direction   text NOT NULL,
    source      text NOT NULL,
    phone       text,
    wa_id       text,
    bsuid       text,
    username    text,
    name        text,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX contact_sightings_contact ON contact_sightings (contact_id, seen_at);

-- The consent log. Each entry is one piece of evidence that a person opted in to or out of a
-- category of messages at a moment, with where it came from and who recorded it; each is a ledger
-- leaf (kind 'consent'). dedupe_key makes recording idempotent: the same evidence seen twice (a
-- redelivered webhook, a message in two deliveries) is one entry.
CREATE TABLE consent_entries (
    id                 bigserial PRIMARY KEY,
    contact_id         bigint NOT NULL REFERENCES contacts (id),
    phone              text,                          -- digits, as the evidence named the person
    business_phone_number_id text,                    -- the business number it applies to; NULL: all
    category           text NOT NULL DEFAULT 'marketing_messages',
    state              text NOT NULL CHECK (state IN ('opted_in', 'opted_out')),
    source             text NOT NULL CHECK (source IN ('user_preferences', 'system_message', 'send_failure',
                                                       'keyword', 'manual')),
    at                 timestamptz NOT NULL,          -- when the person agreed or withdrew
    recorded_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    recorded_by        text NOT NULL,                 -- a token's name, cli:<user>, or the webhook source
    recorded_role      text,
    evidence           text,                          -- free text or URL, Meta's detail, the keyword matched
    evidence_message_id text,                         -- the message kept as evidence
    evidence_delivery_sha256 text,                    -- the signed delivery that carried it
    detail             jsonb NOT NULL DEFAULT '{}'::jsonb,  -- the source's own fields (error code, language…)
    dedupe_key         text NOT NULL UNIQUE
);
CREATE INDEX consent_entries_contact ON consent_entries (contact_id, category, at DESC, id DESC);
CREATE INDEX consent_entries_phone ON consent_entries (phone);
CREATE INDEX consent_entries_at ON consent_entries (at);

-- The recipient's consent at the moment an outbound message was sent: judged once, when the
-- message is recorded, and never again (a ledger leaf, kind 'message_consent'). entry_id is the
-- entry that decided it (none for 'unknown'). template_category is the snapshot's, so a finding
-- can be named without re-reading Meta.
CREATE TABLE message_consent (
    message_id         text PRIMARY KEY,
    contact_id         bigint REFERENCES contacts (id),
    state              text NOT NULL CHECK (state IN ('opted_in', 'opted_out', 'unknown')),
    entry_id           bigint REFERENCES consent_entries (id),
    at                 timestamptz NOT NULL,          -- the send time it was judged at
    category           text NOT NULL DEFAULT 'marketing_messages',
    template_category  text,
    judged_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((state = 'unknown') = (entry_id IS NULL))
);
CREATE INDEX message_consent_state ON message_consent (state, at);

CREATE TRIGGER contacts_append_only BEFORE UPDATE OR DELETE ON contacts
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER contact_links_append_only BEFORE UPDATE OR DELETE ON contact_links
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER consent_entries_append_only BEFORE UPDATE OR DELETE ON consent_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
-- Sightings and send-time consent are never updated; they are deleted only with their message,
-- by dispose_message_rows() (the owner's function), which the trigger lets through.
CREATE FUNCTION refuse_unless_disposing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('wa_archive.disposing', true) = OLD.message_id THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;
CREATE TRIGGER contact_sightings_append_only BEFORE UPDATE OR DELETE ON contact_sightings
    FOR EACH ROW EXECUTE FUNCTION refuse_unless_disposing();
CREATE TRIGGER message_consent_append_only BEFORE UPDATE OR DELETE ON message_consent
    FOR EACH ROW EXECUTE FUNCTION refuse_unless_disposing();

CREATE OR REPLACE FUNCTION ledger_append(p_kind text, p_record_id text, p_digest text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    SET standard_conforming_strings = on AS $$
DECLARE
    appended bigint;
BEGIN
    IF p_kind IS NULL OR p_record_id IS NULL OR p_digest IS NULL THEN
        RAISE EXCEPTION 'ledger_append: kind, record id and digest are all required';
    END IF;
    IF p_kind NOT IN ('message', 'template_snapshot', 'status_event', 'failure', 'access', 'disposition',
                      'reconciliation', 'consent', 'message_consent') THEN
        RAISE EXCEPTION 'ledger_append: % is not a kind of record the ledger holds', p_kind;
    END IF;
    WITH head AS (UPDATE ledger_head SET size = size + 1 WHERE id = 1 RETURNING size - 1 AS seq)
    INSERT INTO ledger_leaves (seq, kind, record_id, digest, leaf_hash)
    SELECT seq, p_kind, p_record_id, p_digest, ledger_leaf_hash(p_kind, p_record_id, p_digest) FROM head
    RETURNING seq INTO appended;
    RETURN appended;
END $$;
REVOKE ALL ON FUNCTION ledger_append(text, text, text) FROM PUBLIC;

-- Disposal takes a message's sighting and send-time consent with it (012's version, plus those two):
-- the triggers above let the deletes through only for the message this function is removing. The
-- consent log and the identifier links are never disposed of: they are the evidence of consent.
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
    PERFORM set_config('wa_archive.disposing', m.id, true);
    DELETE FROM contact_sightings WHERE message_id = m.id;
    DELETE FROM message_consent WHERE message_id = m.id;
    PERFORM set_config('wa_archive.disposing', '', true);
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
