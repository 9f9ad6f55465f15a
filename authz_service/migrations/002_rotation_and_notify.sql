-- Rotation bookkeeping and cache invalidation for every authz replica.
-- Every statement is idempotent, so re-running this file changes nothing.

-- A rotated key points at its replacement; its revoked_at is the end of the grace period.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS replaced_by text REFERENCES api_keys (id);
CREATE INDEX IF NOT EXISTS api_keys_owner_idx ON api_keys (owner);

-- Any change that can alter an authorization decision NOTIFYs the key's hash on
-- 'api_key_changes'; each replica LISTENs and drops that hash from its cache. A trigger (not
-- the CLI) sends it, so a change made with plain SQL invalidates the caches too. Inserts notify
-- as well: they clear a cached "unknown key" answer. last_used_at is not in the column list,
-- so the batched last-used updates stay silent.
CREATE OR REPLACE FUNCTION api_keys_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('api_key_changes', '*');
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('api_key_changes', OLD.key_hash);
    ELSE
        PERFORM pg_notify('api_key_changes', NEW.key_hash);
        IF TG_OP = 'UPDATE' AND OLD.key_hash IS DISTINCT FROM NEW.key_hash THEN
            PERFORM pg_notify('api_key_changes', OLD.key_hash);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS api_keys_notify_change ON api_keys;
CREATE TRIGGER api_keys_notify_change
    AFTER INSERT OR DELETE OR UPDATE OF key_hash, name, owner, environment, plan, rate_limit_minute,
        rate_limit_hour, scopes, expires_at, revoked_at, replaced_by
    ON api_keys FOR EACH ROW EXECUTE FUNCTION api_keys_notify_change();

DROP TRIGGER IF EXISTS api_keys_notify_truncate ON api_keys;
CREATE TRIGGER api_keys_notify_truncate
    AFTER TRUNCATE ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION api_keys_notify_change();
