-- Token limits (docs/ratelimit.md#token-limits): tokens per minute / per day a key may use; NULL →
-- its plan's (none by default: no token limit). A change NOTIFYs like every other decision input.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS token_limit_per_minute integer
    CHECK (token_limit_per_minute > 0);
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS token_limit_per_day integer
    CHECK (token_limit_per_day > 0);

DROP TRIGGER IF EXISTS api_keys_notify_change ON api_keys;
CREATE TRIGGER api_keys_notify_change
    AFTER INSERT OR DELETE OR UPDATE OF key_hash, name, owner, environment, plan, rate_limit_minute,
        rate_limit_hour, scopes, expires_at, revoked_at, replaced_by, allowed_ips, signing_secret_enc,
        token_limit_per_minute, token_limit_per_day
    ON api_keys FOR EACH ROW EXECUTE FUNCTION api_keys_notify_change();
