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
