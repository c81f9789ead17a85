-- Self-healing intake. A delivery is stored before its work is handed to Temporal; when that
-- hand-off fails (Temporal down: the webhook answered 503) its bytes are in PostgreSQL but nothing
-- will archive them unless Meta redelivers. Each successful hand-off is recorded here, so the
-- Redrive Schedule can find the deliveries that have none and hand them over itself.

-- One row per way a delivery was handed over: by the webhook (its workflow starts, or its
-- IngestDelivery, accepted by Temporal), by a re-drive, or by the backfill below. Append-only. No
-- foreign key: a disposal removes a delivery's bytes, and the note that it was handed over may stay.
CREATE TABLE IF NOT EXISTS delivery_handoffs (
    delivery_sha256  text NOT NULL,
    how              text NOT NULL CHECK (how IN ('webhook', 'redrive', 'backfill')),
    handed_over_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_sha256, how)
);

-- Every re-drive run: what it handed over, and the horizon its scan may start from next time
-- (every delivery received before it is handed over), so that a run reads recent deliveries only,
-- not the whole archive every minute. Append-only.
CREATE TABLE IF NOT EXISTS redrive_runs (
    id          bigserial PRIMARY KEY,
    ran_at      timestamptz NOT NULL DEFAULT now(),
    horizon     timestamptz NOT NULL,
    redriven    text[] NOT NULL,          -- delivery sha256s handed over by this run
    failed      text[] NOT NULL,          -- delivery sha256s whose hand-off failed (tried again next run)
    more        boolean NOT NULL          -- the batch was full: more were waiting
);
CREATE INDEX IF NOT EXISTS redrive_runs_ran_at ON redrive_runs (ran_at DESC);

-- Deliveries stored before this migration were handed over by the webhook that answered 200, or
-- were answered 503 and left to Meta. So that an upgrade does not re-drive the whole history at
-- once, those with nothing left to do are marked handed over now: the ones that held no update, and
-- the ones whose fan-out ran (something records it) and each of whose messages reached a workflow's
-- end or was disposed of (a message row, archived or failed; a critical failure; a disposition).
-- The rest (a large delivery whose IngestDelivery never started; a message no workflow recorded)
-- are re-driven, one batch per run.
INSERT INTO delivery_handoffs (delivery_sha256, how)
SELECT d.sha256, 'backfill' FROM deliveries d
WHERE (d.updates = 0
       OR EXISTS (SELECT 1 FROM message_deliveries x WHERE x.delivery_sha256 = d.sha256)
       OR EXISTS (SELECT 1 FROM status_events x WHERE x.delivery_sha256 = d.sha256)
       OR EXISTS (SELECT 1 FROM webhook_events x WHERE x.delivery_sha256 = d.sha256)
       OR EXISTS (SELECT 1 FROM template_events x WHERE x.delivery_sha256 = d.sha256))
  AND NOT EXISTS (
    SELECT 1 FROM message_deliveries md
    WHERE md.delivery_sha256 = d.sha256
      AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = md.message_id)
      AND NOT EXISTS (SELECT 1 FROM archive_failures f WHERE f.message_id = md.message_id)
      AND NOT EXISTS (SELECT 1 FROM dispositions x WHERE x.message_id = md.message_id))
ON CONFLICT DO NOTHING;
