-- Sliding-window counters for every window of one request, decided atomically.
-- KEYS[i]: base key of window i (all share one {hash tag}, so this runs on Redis Cluster)
-- ARGV[1]: hits; ARGV[2i], ARGV[2i+1]: limit and length in seconds of window i
-- Returns {allowed, prev_1, cur_1, elapsed_ms_1, prev_2, ...}; cur includes the hits when allowed.
-- Rejected requests are not counted. Time is the Redis server's, so all replicas agree.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hits = tonumber(ARGV[1])
local allowed = 1
local out = {}
local cur_keys = {}
local window_ms = {}

for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i])
  local w = tonumber(ARGV[2 * i + 1]) * 1000
  local bucket = math.floor(now_ms / w)
  local elapsed = now_ms - bucket * w
  local cur_key = KEYS[i] .. ':' .. bucket
  local prev = tonumber(redis.call('GET', KEYS[i] .. ':' .. (bucket - 1)) or '0')
  local cur = tonumber(redis.call('GET', cur_key) or '0')
  if prev * (w - elapsed) / w + cur + hits > limit then
    allowed = 0
  end
  cur_keys[i] = cur_key
  window_ms[i] = w
  out[3 * i - 2] = prev
  out[3 * i - 1] = cur
  out[3 * i] = elapsed
end

if allowed == 1 then
  for i = 1, #KEYS do
    out[3 * i - 1] = redis.call('INCRBY', cur_keys[i], hits)
    -- The bucket is read as "previous" during the next window, then it can go.
    redis.call('PEXPIRE', cur_keys[i], 2 * window_ms[i] + 1000)
  end
end

table.insert(out, 1, allowed)
return out
