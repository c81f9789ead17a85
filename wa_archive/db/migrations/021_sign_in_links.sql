-- One-time sign-in links for the pages: a random code, bound to one API token, that opens one web
-- session. Only the code's SHA-256 is stored (the code itself is shown once, on the terminal that
-- asked for it); a link is spent when used_at is set, and dead after expires_at or once its token
-- is revoked. Not evidence: what a signed-in reader then reads is in the access log.
CREATE TABLE ui_sign_in_links (
    code_sha256  text PRIMARY KEY CHECK (code_sha256 ~ '^[0-9a-f]{64}$'),
    token_id     bigint NOT NULL REFERENCES api_tokens (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    -- A link lives at most an hour (the command's --minutes is checked too; this holds for any writer).
    CHECK (expires_at <= created_at + interval '60 minutes')
);
CREATE INDEX ui_sign_in_links_token ON ui_sign_in_links (token_id);
