-- Daily reconciliation reports: what the archive saw on one UTC day and where each message id
-- ended up. Written once, like checkpoints: a day reconciled again (a late message archived since,
-- a gap explained) gets a new version beside the old ones, never an overwrite, so the first verdict
-- an auditor may have relied on stays readable. The latest version is what is shown.
CREATE TABLE reconciliation_reports (
    id                       bigserial PRIMARY KEY,
    report_date              date NOT NULL,
    version                  integer NOT NULL CHECK (version >= 1),
    status                   text NOT NULL CHECK (status IN ('green', 'red')),
    body                     text NOT NULL,          -- the exact canonical JSON that was hashed
    sha256                   text NOT NULL,          -- SHA-256 of body: the ledger leaf's digest
    checkpoint_tree_size     bigint,                 -- the checkpoint the report was made against
    checkpoint_root          text,
    workflow_id              text,
    run_id                   text,
    created_at               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (report_date, version),
    CHECK ((checkpoint_tree_size IS NULL) = (checkpoint_root IS NULL))
);

-- Append-only for everyone, the owner included (the application role gets only SELECT and INSERT
-- from db/roles.py, and TRUNCATE is refused by the guard it attaches to every evidence table).
CREATE TRIGGER reconciliation_reports_append_only BEFORE UPDATE OR DELETE ON reconciliation_reports
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- The ledger holds a leaf per report, appended in the report's own transaction.
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
                      'reconciliation') THEN
        RAISE EXCEPTION 'ledger_append: % is not a kind of record the ledger holds', p_kind;
    END IF;
    WITH head AS (UPDATE ledger_head SET size = size + 1 WHERE id = 1 RETURNING size - 1 AS seq)
    INSERT INTO ledger_leaves (seq, kind, record_id, digest, leaf_hash)
    SELECT seq, p_kind, p_record_id, p_digest, ledger_leaf_hash(p_kind, p_record_id, p_digest) FROM head
    RETURNING seq INTO appended;
    RETURN appended;
END $$;
REVOKE ALL ON FUNCTION ledger_append(text, text, text) FROM PUBLIC;

-- A day's reconciliation reads what arrived in a time window and the business numbers known.
CREATE INDEX IF NOT EXISTS deliveries_received_at ON deliveries (received_at);
CREATE INDEX IF NOT EXISTS outbound_sends_recorded_at ON outbound_sends (recorded_at);
CREATE INDEX IF NOT EXISTS status_events_recorded_at ON status_events (recorded_at);
CREATE INDEX IF NOT EXISTS messages_phone_number_ts ON messages (phone_number_id, ts DESC);
