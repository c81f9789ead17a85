-- Tamper-evident ledger: an append-only Merkle log (RFC 9162 style) of every archived record.
CREATE TABLE ledger_head (
    id    integer PRIMARY KEY CHECK (id = 1),
    size  bigint NOT NULL
);
INSERT INTO ledger_head VALUES (1, 0);

-- Leaf n is appended in the same transaction as the record it describes; the head row's lock
-- numbers leaves without gaps even with many writers.
CREATE TABLE ledger_leaves (
    seq          bigint PRIMARY KEY,
    kind         text NOT NULL,
    record_id    text NOT NULL,
    digest       text NOT NULL,          -- SHA-256 of the record's canonical form
    leaf_hash    bytea NOT NULL,         -- RFC 9162 leaf hash of kind, id and digest
    appended_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_leaves_record ON ledger_leaves (kind, record_id, seq DESC);

CREATE TABLE ledger_checkpoints (
    tree_size    bigint PRIMARY KEY,
    root_hash    text NOT NULL,
    body         text NOT NULL,          -- the exact signed bytes (canonical JSON)
    signature    text NOT NULL,          -- Ed25519, base64
    storage_key  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;
CREATE TRIGGER ledger_leaves_append_only BEFORE UPDATE OR DELETE ON ledger_leaves
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_checkpoints_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
