-- Outbound capture: API tokens, send records, content-addressed template snapshots, template events.

CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    role         text NOT NULL CHECK (role IN ('sender', 'auditor', 'operator', 'admin')),
    token_sha256 text NOT NULL UNIQUE,          -- only the hash is stored; the token is shown once
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- Every send seen by the proxy or the record API, accepted or rejected by Meta, exactly as exchanged.
CREATE TABLE outbound_sends (
    id               bigserial PRIMARY KEY,
    message_id       text,                       -- the wamid Meta returned; NULL when Meta rejected the send
    phone_number_id  text NOT NULL,
    via              text NOT NULL CHECK (via IN ('proxy', 'record')),
    request          jsonb NOT NULL,
    response         jsonb NOT NULL,
    http_status      integer,
    accepted         boolean NOT NULL,
    token_name       text,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX outbound_sends_message ON outbound_sends (message_id) WHERE message_id IS NOT NULL;

-- A template definition as fetched, keyed by the SHA-256 of its canonical JSON: written once.
CREATE TABLE template_snapshots (
    sha256       text PRIMARY KEY,
    waba_id      text,
    template_id  text,
    name         text NOT NULL,
    language     text NOT NULL,
    definition   jsonb NOT NULL,
    canonical    text NOT NULL,                  -- the exact bytes that were hashed
    fetched_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX template_snapshots_name ON template_snapshots (name, language);

ALTER TABLE messages ADD COLUMN template_sha256 text REFERENCES template_snapshots (sha256);
ALTER TABLE messages ADD COLUMN template_name text;
ALTER TABLE messages ADD COLUMN template_language text;
CREATE INDEX messages_template_name ON messages (template_name) WHERE template_name IS NOT NULL;
CREATE INDEX messages_direction_ts ON messages (direction, ts DESC);

-- Template lifecycle webhooks (status, quality, category, components): kept as events.
CREATE TABLE template_events (
    delivery_sha256  text NOT NULL REFERENCES deliveries (sha256),
    position         integer NOT NULL,
    field            text NOT NULL,
    waba_id          text,
    template_id      text,
    template_name    text,
    language         text,
    event            text,
    payload          jsonb NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_sha256, position)
);
CREATE INDEX template_events_template ON template_events (template_name, recorded_at);
