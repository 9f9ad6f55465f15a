-- Request signing (opt-in per key): the key's signing secret, sealed with AES-GCM under a master
-- key that never reaches the database (authz_service/sealing.py). NULL: the key signs nothing.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS signing_secret_enc bytea;

DROP TRIGGER IF EXISTS api_keys_notify_change ON api_keys;
CREATE TRIGGER api_keys_notify_change
    AFTER INSERT OR DELETE OR UPDATE OF key_hash, name, owner, environment, plan, rate_limit_minute,
        rate_limit_hour, scopes, expires_at, revoked_at, replaced_by, allowed_ips, signing_secret_enc
    ON api_keys FOR EACH ROW EXECUTE FUNCTION api_keys_notify_change();
