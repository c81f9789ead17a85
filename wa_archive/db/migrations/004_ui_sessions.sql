-- Web sessions of signed-in auditors: only the SHA-256 of the cookie is stored.
CREATE TABLE ui_sessions (
    id_sha256   text PRIMARY KEY,
    token_id    bigint NOT NULL REFERENCES api_tokens (id),
    csrf        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
