-- Every change to a token that could make a remembered one wrong is announced on the channel
-- wa_archive_api_tokens (wa_archive/access/token_cache.py): a revocation, a new name, role or hash, a
-- deletion, a truncation. The notification is sent when the changing transaction commits, to every
-- webhook server listening, which then forgets every token it remembered. Whoever makes the change
-- (the `tokens revoke` command, or an administrator's own SQL) cannot leave it unannounced: the trigger
-- fires ALWAYS, in replica mode too (a superuser's session_replication_role = replica, logical
-- replication's apply, a restore with triggers disabled), and each listener checks at every heartbeat
-- that it is still there, still ALWAYS and unchanged, so an owner who disables it around a change is
-- caught by the next heartbeat. Writes of last_used_at alone (once a minute per token in use) announce
-- nothing.
CREATE FUNCTION announce_api_token_change() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_notify('wa_archive_api_tokens', TG_OP);
    RETURN NULL;
END $$;
CREATE TRIGGER api_tokens_announce_change
    AFTER UPDATE OF revoked_at, role, name, token_sha256 OR DELETE OR TRUNCATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION announce_api_token_change();
ALTER TABLE api_tokens ENABLE ALWAYS TRIGGER api_tokens_announce_change;
