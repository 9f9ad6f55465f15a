-- Usage records (usage_service): counts per key, route group and hour / UTC day, and where the
-- writer stands in Envoy's usage log. Counts and position change in one transaction.
CREATE TABLE IF NOT EXISTS usage_hourly (
    key_id        text        NOT NULL,  -- no foreign key: a deleted key's usage is still billed
    route         text        NOT NULL,
    hour          timestamptz NOT NULL,
    requests      bigint      NOT NULL DEFAULT 0,
    tokens        bigint      NOT NULL DEFAULT 0,
    client_errors bigint      NOT NULL DEFAULT 0,
    server_errors bigint      NOT NULL DEFAULT 0,
    rate_limited  bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, hour, route)
);
-- Retention deletes by hour; the admin export reads every key of a range.
CREATE INDEX IF NOT EXISTS usage_hourly_hour ON usage_hourly (hour);

CREATE TABLE IF NOT EXISTS usage_daily (
    key_id        text   NOT NULL,
    route         text   NOT NULL,
    day           date   NOT NULL,  -- UTC
    requests      bigint NOT NULL DEFAULT 0,
    tokens        bigint NOT NULL DEFAULT 0,
    client_errors bigint NOT NULL DEFAULT 0,
    server_errors bigint NOT NULL DEFAULT 0,
    rate_limited  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day, route)
);
CREATE INDEX IF NOT EXISTS usage_daily_day ON usage_daily (day);

-- One row per log the writer consumes (source: the log's path as the writer names it).
CREATE TABLE IF NOT EXISTS usage_log_position (
    source      text        PRIMARY KEY,
    identity    text        NOT NULL,  -- "<st_dev>:<st_ino>" of the file
    byte_offset bigint      NOT NULL,  -- end of the last complete line counted
    updated_at  timestamptz NOT NULL DEFAULT now()
);
