-- A checkpoint row covers only leaves already integrated into the log.
--
-- The worker records each checkpoint it signs as a row, so the application role may insert here, and the
-- database cannot check an Ed25519 signature: readers pass over rows the archive did not sign
-- (integrity/checkpoints.py). What the database can refuse is a row beyond the integrated log: once in
-- (the table is append-only), one far ahead, at a size no real checkpoint had reached, used to be the
-- latest checkpoint for good. Existing rows are left as they are: `verify` names any not signed.
CREATE FUNCTION ledger_checkpoint_within_the_log() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    integrated bigint := (SELECT size FROM ledger_head WHERE id = 1);
BEGIN
    IF NEW.tree_size IS NULL OR NEW.tree_size < 1 OR NEW.tree_size > integrated THEN
        RAISE EXCEPTION 'a checkpoint of tree size % refused: the integrated log has % leaves',
            NEW.tree_size, integrated USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION ledger_checkpoint_within_the_log() FROM PUBLIC;
CREATE TRIGGER ledger_checkpoints_within_the_log BEFORE INSERT ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_checkpoint_within_the_log();
