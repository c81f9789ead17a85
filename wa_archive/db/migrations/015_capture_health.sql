-- Capture health: silence is how a capture failure looks (a webhook subscription dropped, a token
-- expired, a proxy eating requests), so the archive watches for it.

-- The last webhook heard per business number: a Meta phone_number_id, or `wasender` for the
-- WASender session (its payloads do not reliably name the session's own number, and its sessionId
-- may be the API key). One small row per number, written by the webhook at most about once a minute
-- per number and process, so the hot path neither scans deliveries nor queues on one row's lock.
CREATE TABLE capture_numbers (
    number           text PRIMARY KEY,
    source           text NOT NULL,
    display_number   text,                       -- Meta's display_phone_number, as last seen
    watched_since    timestamptz NOT NULL DEFAULT now(),
    last_webhook_at  timestamptz                 -- NULL: listed in WA_ARCHIVE_SILENCE_NUMBERS, never heard
);

-- One row per silence episode: opened by the periodic check, closed when traffic comes back.
CREATE TABLE capture_silences (
    id               bigserial PRIMARY KEY,
    number           text NOT NULL REFERENCES capture_numbers (number),
    silent_since     timestamptz NOT NULL,       -- the last webhook heard before it (or when watching began)
    detected_at      timestamptz NOT NULL,
    alert_minutes    double precision NOT NULL,  -- the limit in force when it was detected
    ended_at         timestamptz,                -- the first webhook heard after it
    CHECK (ended_at IS NULL OR ended_at >= silent_since)
);
-- At most one open episode per number, however many checks overlap.
CREATE UNIQUE INDEX capture_silences_open ON capture_silences (number) WHERE ended_at IS NULL;
CREATE INDEX capture_silences_detected ON capture_silences (detected_at DESC);
