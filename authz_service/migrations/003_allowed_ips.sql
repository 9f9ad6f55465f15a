-- Per-key client address allowlists (IPv4/IPv6 CIDRs; empty = any address). A change NOTIFYs
-- like every other decision input, so every replica drops the cached key.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS allowed_ips cidr[] NOT NULL DEFAULT '{}';

DROP TRIGGER IF EXISTS api_keys_notify_change ON api_keys;
CREATE TRIGGER api_keys_notify_change
    AFTER INSERT OR DELETE OR UPDATE OF key_hash, name, owner, environment, plan, rate_limit_minute,
        rate_limit_hour, scopes, expires_at, revoked_at, replaced_by, allowed_ips
    ON api_keys FOR EACH ROW EXECUTE FUNCTION api_keys_notify_change();
