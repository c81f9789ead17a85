-- Refused attempts in the access log. A 401 or 403 on a read is an entry of its own, marked
-- `refused` (its reason in the target, never the secret that was presented); every earlier row was
-- an allowed read. The default fills existing rows without rewriting them (no UPDATE runs, so the
-- append-only trigger is not involved), and their ledger digests do not change: the digest names the
-- outcome only when it is `refused`.
ALTER TABLE access_log ADD COLUMN IF NOT EXISTS outcome text NOT NULL DEFAULT 'allowed'
    CHECK (outcome IN ('allowed', 'refused'));
