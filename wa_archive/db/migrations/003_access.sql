-- Auditor access: full-text search, stable media ids for download links, and the access log.

ALTER TABLE messages ADD COLUMN search_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', coalesce(text, ''))) STORED;
CREATE INDEX messages_search_tsv ON messages USING gin (search_tsv);
CREATE INDEX messages_type_ts ON messages (type, ts DESC);

ALTER TABLE media ADD COLUMN archive_id uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX media_archive_id ON media (archive_id);
CREATE INDEX media_media_id ON media (media_id);

-- Every read of the archive: who, what, when, from where. Append-only: the trigger refuses
-- UPDATE and DELETE for everyone, the application included.
CREATE TABLE access_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    role         text NOT NULL,
    action       text NOT NULL,
    target       jsonb NOT NULL,
    remote_addr  text
);
CREATE INDEX access_log_at ON access_log (at);

CREATE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'access_log is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION access_log_append_only();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only();
