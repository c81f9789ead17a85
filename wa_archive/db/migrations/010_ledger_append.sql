-- The ledger is appended to only through ledger_append(), owned by the schema owner: the
-- application role keeps SELECT on ledger_leaves and ledger_head but loses INSERT and UPDATE
-- (db_roles.py). A leaf written at a number the head did not give out would make every later
-- append collide with it, and a head moved without a leaf would leave a permanent gap.

-- The RFC 9162 leaf hash, SHA-256 over 0x00 || leaf bytes, where the leaf bytes are the canonical
-- JSON that wa_archive/ledger.py leaf_bytes() writes: keys sorted, no spaces, UTF-8, only quote,
-- backslash and control characters escaped (to_json escapes exactly those, the same way).
CREATE FUNCTION ledger_leaf_hash(p_kind text, p_record_id text, p_digest text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT sha256('\x00'::bytea || convert_to(
        '{"digest":' || to_json(p_digest)::text || ',"id":' || to_json(p_record_id)::text
        || ',"kind":' || to_json(p_kind)::text || '}', 'UTF8'))
$$;

-- Takes the next number under the head row's lock and writes the leaf in one statement, inside
-- the caller's transaction; returns the leaf's number (gapless).
CREATE FUNCTION ledger_append(p_kind text, p_record_id text, p_digest text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    appended bigint;
BEGIN
    IF p_kind IS NULL OR p_record_id IS NULL OR p_digest IS NULL THEN
        RAISE EXCEPTION 'ledger_append: kind, record id and digest are all required';
    END IF;
    IF p_kind NOT IN ('message', 'template_snapshot', 'status_event', 'failure', 'access', 'disposition') THEN
        RAISE EXCEPTION 'ledger_append: % is not a kind of record the ledger holds', p_kind;
    END IF;
    WITH head AS (UPDATE ledger_head SET size = size + 1 WHERE id = 1 RETURNING size - 1 AS seq)
    INSERT INTO ledger_leaves (seq, kind, record_id, digest, leaf_hash)
    SELECT seq, p_kind, p_record_id, p_digest, ledger_leaf_hash(p_kind, p_record_id, p_digest) FROM head
    RETURNING seq INTO appended;
    RETURN appended;
END $$;
REVOKE ALL ON FUNCTION ledger_append(text, text, text) FROM PUBLIC;

-- A dispositions row is written only here, for a message that is due right now: one written for a
-- retained message would take its place in the unique index and stop its disposal for good, and
-- one with invented retention would make a removal look lawful. The retention and policy recorded
-- are the message's own, never the caller's; the caller appends the row's ledger leaf and then
-- removes the rows with dispose_message_rows(), in the same transaction.
CREATE FUNCTION record_disposition(p_message_id text, p_reason text, p_erasure_request_id bigint, p_record jsonb,
                                   p_run_id text) RETURNS SETOF dispositions
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    m messages%ROWTYPE;
BEGIN
    SELECT * INTO m FROM messages WHERE id = p_message_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % is not archived: no disposition to record', p_message_id;
    END IF;
    IF cardinality(m.hold_cases) > 0 OR EXISTS (
            SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND h.phone = m.contact_phone
            AND (h.since IS NULL OR m.ts >= h.since) AND (h.until IS NULL OR m.ts < h.until)) THEN
        RAISE EXCEPTION 'message % is on legal hold: disposition refused', m.id;
    END IF;
    IF m.retain_until IS NULL OR m.retain_until > now() THEN
        RAISE EXCEPTION 'message % is retained until %: disposition refused', m.id, m.retain_until;
    END IF;
    IF EXISTS (SELECT 1 FROM media d WHERE d.message_id = m.id
               AND (d.legal_hold OR d.retain_until IS NULL OR d.retain_until > now())) THEN
        RAISE EXCEPTION 'media of message % is held or retained: disposition refused', m.id;
    END IF;
    RETURN QUERY INSERT INTO dispositions (message_id, reason, policy_id, retain_until, erasure_request_id, record,
                                           run_id)
        VALUES (m.id, p_reason, m.retention_policy_id, m.retain_until, p_erasure_request_id, p_record, p_run_id)
        RETURNING *;
END $$;
REVOKE ALL ON FUNCTION record_disposition(text, text, bigint, jsonb, text) FROM PUBLIC;
