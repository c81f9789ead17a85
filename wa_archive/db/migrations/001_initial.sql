-- The archive index. Rows are written once; later events are new rows pointing at earlier ones.

CREATE TABLE deliveries (
    sha256        text PRIMARY KEY,              -- SHA-256 of the exact body bytes
    source        text NOT NULL,
    body          bytea NOT NULL,                -- the exact bytes Meta sent
    signature     text,                          -- the signature header as received
    remote_addr   text,
    updates       integer NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    id                    text PRIMARY KEY,      -- the provider's message id (wamid)
    source                text NOT NULL,
    direction             text NOT NULL CHECK (direction IN ('in', 'out')),
    type                  text NOT NULL,
    ts                    timestamptz NOT NULL,  -- message time, UTC
    raw_timestamp         text,
    phone_number_id       text,
    display_phone_number  text,
    waba_id               text,
    contact_phone         text,
    contact_wa_id         text,
    contact_user_id       text,
    contact_username      text,
    contact_name          text,
    text                  text,
    related_message_id    text,                  -- reply context, reaction target, edited or revoked original
    flags                 text[] NOT NULL DEFAULT '{}',
    archive_status        text NOT NULL CHECK (archive_status IN ('archived', 'failed')),
    payload               jsonb NOT NULL,
    first_delivery_sha256 text REFERENCES deliveries (sha256),
    archived_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_contact_phone_ts ON messages (contact_phone, ts DESC);
CREATE INDEX messages_ts ON messages (ts DESC);
CREATE INDEX messages_related ON messages (related_message_id) WHERE related_message_id IS NOT NULL;
CREATE INDEX messages_contact_wa_id ON messages (contact_wa_id);
CREATE INDEX messages_contact_user_id ON messages (contact_user_id);

CREATE TABLE media (
    message_id       text NOT NULL REFERENCES messages (id),
    position         integer NOT NULL,
    media_id         text NOT NULL,
    kind             text NOT NULL,
    status           text NOT NULL CHECK (status IN ('archived', 'failed')),
    storage_url      text,
    storage_key      text,
    size             bigint,
    sha256           text,                       -- ours, lowercase hex, computed while streaming
    provider_sha256  text,                       -- as the provider declared it
    mime_type        text,
    filename         text,
    stored_at        timestamptz,
    PRIMARY KEY (message_id, position),
    CHECK (status <> 'archived' OR (sha256 IS NOT NULL AND storage_key IS NOT NULL))
);
CREATE INDEX media_sha256 ON media (sha256);

-- Which deliveries carried which message (a message may arrive in several).
CREATE TABLE message_deliveries (
    message_id       text NOT NULL,
    delivery_sha256  text NOT NULL REFERENCES deliveries (sha256),
    PRIMARY KEY (message_id, delivery_sha256)
);

CREATE TABLE status_events (
    id               bigserial PRIMARY KEY,
    message_id       text NOT NULL,
    status           text NOT NULL,
    ts               timestamptz,
    raw_timestamp    text,
    recipient_id     text,
    payload          jsonb NOT NULL,
    delivery_sha256  text NOT NULL REFERENCES deliveries (sha256),
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, status, raw_timestamp)
);
CREATE INDEX status_events_message ON status_events (message_id);

-- Changes of other webhook fields, system errors and unparseable items: kept raw, never dropped.
CREATE TABLE webhook_events (
    delivery_sha256  text NOT NULL REFERENCES deliveries (sha256),
    position         integer NOT NULL,
    field            text NOT NULL,
    kind             text NOT NULL,
    waba_id          text,
    payload          jsonb NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_sha256, position)
);

-- Every failed attempt of every step, written by the attempt itself (Temporal keeps only the last).
CREATE TABLE archive_attempts (
    id           bigserial PRIMARY KEY,
    message_id   text NOT NULL,
    stage        text NOT NULL,
    media_id     text,
    attempt      integer NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    error_type   text NOT NULL,
    error        text NOT NULL,
    http_status  integer,
    workflow_id  text,
    run_id       text
);
CREATE INDEX archive_attempts_message ON archive_attempts (message_id, stage);

CREATE TABLE archive_failures (
    id               bigserial PRIMARY KEY,
    message_id       text NOT NULL,
    stage            text NOT NULL,
    media_id         text,
    workflow_id      text NOT NULL,
    run_id           text NOT NULL,
    retry_state      text,
    last_error_type  text,
    last_error       text,
    attempts         jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, stage, media_id)
);
CREATE INDEX archive_failures_message ON archive_failures (message_id);
