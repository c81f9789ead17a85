-- A checkpoint row covers only leaves already integrated into the log, and is the size of one.
--
-- The worker records each checkpoint it signs as a row, so the application role may insert here, and the
-- database cannot check an Ed25519 signature: readers pass over rows the archive did not sign
-- (integrity/checkpoints.py). What the database can refuse:
-- - a row beyond the integrated log: once in (the table is append-only), one far ahead, at a size no real
--   checkpoint had reached, used to be the latest checkpoint for good;
-- - a row larger than a checkpoint is: every reader reads and checks rows it then passes over, and one
--   body of megabytes (or nested a hundred thousand levels deep) made each of them slow, or fail.
-- Existing rows are left as they are (NOT VALID): `verify` names any the archive did not sign.
--
-- The function reads the head by its schema's name with a fixed search_path: a temporary table of the
-- caller's named ledger_head would otherwise be read in its place.
CREATE FUNCTION ledger_checkpoint_within_the_log() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    integrated bigint := (SELECT h.size FROM public.ledger_head h WHERE h.id = 1);
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

-- A real row: a body of about 200 bytes, a signature of 88, a root of 64, a key of 40.
ALTER TABLE ledger_checkpoints ADD CONSTRAINT ledger_checkpoints_the_size_of_one
    CHECK (octet_length(body) <= 1024 AND octet_length(signature) <= 128 AND octet_length(root_hash) <= 128
           AND octet_length(storage_key) <= 256) NOT VALID;

-- The head's own guard reads the leaves the same way (it runs inside the owner's integrator, whose
-- search_path is fixed; fixed here too, whoever calls it).
ALTER FUNCTION ledger_head_append_only() SET search_path = pg_catalog, public, pg_temp;
