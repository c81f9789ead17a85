-- A revoked token stays revoked. The application role may set revoked_at (`wa-archive tokens revoke`
-- runs as it), and could set it back to NULL or move it: a leaked token an administrator revoked could
-- be brought back with the database's credentials alone, and the revocation's time rewritten. Now the
-- first revocation is the last word on a token, for every role with the trigger in force.
CREATE FUNCTION api_token_revocation_is_final() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'token % was revoked at %: a revocation is final', OLD.name, OLD.revoked_at;
    END IF;
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION api_token_revocation_is_final() FROM PUBLIC;
CREATE TRIGGER api_tokens_revocation_is_final BEFORE UPDATE OF revoked_at ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION api_token_revocation_is_final();
