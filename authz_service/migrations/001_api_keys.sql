-- API keys: only the SHA-256 of the key is stored; display_prefix is not secret.
CREATE TABLE IF NOT EXISTS api_keys (
    id                 text PRIMARY KEY,
    key_hash           text NOT NULL UNIQUE,
    display_prefix     text NOT NULL,
    name               text NOT NULL,
    owner              text NOT NULL,
    environment        text NOT NULL,
    plan               text NOT NULL DEFAULT 'free',
    rate_limit_minute  integer CHECK (rate_limit_minute > 0),
    rate_limit_hour    integer CHECK (rate_limit_hour > 0),
    scopes             text[] NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz,
    revoked_at         timestamptz,
    last_used_at       timestamptz
);
