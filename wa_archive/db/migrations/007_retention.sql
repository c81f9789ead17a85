-- Retention, legal hold, disposition and erasure requests.

-- Policies are versioned: a change is a new row, so a disposition can name the policy it acted
-- under. scope is a business phone-number id, a business display number (digits), or '*' (default).
CREATE TABLE retention_policies (
    id           bigserial PRIMARY KEY,
    scope        text NOT NULL,
    days         integer NOT NULL CHECK (days >= 1),
    legal_basis  text NOT NULL,
    set_by       text NOT NULL,
    set_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX retention_policies_scope ON retention_policies (scope, id DESC);

-- The specific scopes a message's business number can have a policy under (keys.business_scopes
-- without the '*'): its phone-number id and the digits of its display number.
CREATE FUNCTION business_scopes(phone_number_id text, display_phone_number text) RETURNS text[]
    LANGUAGE sql IMMUTABLE AS $$
    SELECT array_remove(array_remove(ARRAY[phone_number_id,
        regexp_replace(coalesce(display_phone_number, ''), '[^0-9]', '', 'g')], ''), NULL)
$$;

CREATE TABLE legal_holds (
    case_id      text PRIMARY KEY,
    phone        text NOT NULL,               -- the contact's phone, as stored in messages.contact_phone
    since        timestamptz,                 -- inclusive; NULL = from the beginning
    until        timestamptz,                 -- exclusive; NULL = open-ended, later messages too
    reason       text NOT NULL,
    set_by       text NOT NULL,
    set_at       timestamptz NOT NULL DEFAULT now(),
    released_by  text,
    released_at  timestamptz
);
CREATE INDEX legal_holds_active ON legal_holds (phone) WHERE released_at IS NULL;

-- Each row carries the retention granted to it and the cases holding it.
ALTER TABLE messages ADD COLUMN retain_until timestamptz;
ALTER TABLE messages ADD COLUMN retention_policy_id bigint REFERENCES retention_policies (id);
ALTER TABLE messages ADD COLUMN hold_cases text[] NOT NULL DEFAULT '{}';
ALTER TABLE media ADD COLUMN retain_until timestamptz;
ALTER TABLE media ADD COLUMN legal_hold boolean NOT NULL DEFAULT false;  -- as set on the object
CREATE INDEX messages_retain_until ON messages (retain_until) WHERE cardinality(hold_cases) = 0;
-- Small partial indexes for the daily run: held rows and objects (hold reconciliation), and rows
-- archived before retention was recorded (filled from the policy in force).
CREATE INDEX messages_held ON messages (id) WHERE cardinality(hold_cases) > 0;
CREATE INDEX media_held ON media (message_id) WHERE legal_hold;
CREATE INDEX messages_retention_unset ON messages (id) WHERE retain_until IS NULL;

-- Nothing within retention or on hold can be deleted, and retention once granted never shrinks,
-- whatever role or code path asks.
CREATE FUNCTION retention_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        -- (nested IFs: a record field exists only on its own table)
        IF TG_TABLE_NAME = 'messages' THEN
            IF cardinality(OLD.hold_cases) > 0 THEN
                RAISE EXCEPTION 'message % is on legal hold (%): delete refused', OLD.id, OLD.hold_cases;
            END IF;
        ELSIF OLD.legal_hold THEN
            RAISE EXCEPTION 'media %/% is on legal hold: delete refused', OLD.message_id, OLD.position;
        END IF;
        IF OLD.retain_until IS NULL OR OLD.retain_until > now() THEN
            RAISE EXCEPTION '% row is within retention (until %): delete refused', TG_TABLE_NAME, OLD.retain_until;
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.retain_until IS NOT NULL AND (NEW.retain_until IS NULL OR NEW.retain_until < OLD.retain_until) THEN
        RAISE EXCEPTION 'retention of a % row cannot be shortened (% to %)', TG_TABLE_NAME, OLD.retain_until, NEW.retain_until;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER messages_retention_guard BEFORE UPDATE OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION retention_guard();
CREATE TRIGGER media_retention_guard BEFORE UPDATE OR DELETE ON media
    FOR EACH ROW EXECUTE FUNCTION retention_guard();

-- What disposition removed: enough to prove what existed and that it was removed on time, without
-- keeping the content (or the contact's phone: only its keyed hash).
CREATE TABLE dispositions (
    id                bigserial PRIMARY KEY,
    message_id        text NOT NULL,
    disposed_at       timestamptz NOT NULL DEFAULT now(),
    reason            text NOT NULL CHECK (reason IN ('retention_expired', 'erasure_request')),
    policy_id         bigint REFERENCES retention_policies (id),
    retain_until      timestamptz NOT NULL,
    erasure_request_id bigint,
    record            jsonb NOT NULL,         -- message digest, payload hash, media hashes, removed rows
    run_id            text
);
CREATE UNIQUE INDEX dispositions_message ON dispositions (message_id);
CREATE TRIGGER dispositions_append_only BEFORE UPDATE OR DELETE ON dispositions
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

CREATE TABLE erasure_requests (
    id              bigserial PRIMARY KEY,
    phone           text NOT NULL,
    reason          text NOT NULL,
    requested_by    text NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL CHECK (status IN ('deferred', 'completed')),
    deferred_until  timestamptz,
    legal_basis     text,
    messages_removed integer NOT NULL DEFAULT 0,
    completed_at    timestamptz,
    outcome         text
);

-- Results of `storage check` (and the check at worker/serve start), kept for auditors.
CREATE TABLE storage_checks (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    store_url   text NOT NULL,
    ok          boolean NOT NULL,
    findings    jsonb NOT NULL,
    checked_by  text NOT NULL
);
