-- Every window of one request, decided atomically in one round trip.
-- KEYS[i]: the key of window i. Keys of one descriptor share a {hash tag} (Redis Cluster).
-- ARGV[1]: now in ms ('' = Redis TIME: every replica then agrees on the clock)
-- ARGV[2]: hits   ARGV[3]: 'c' commit or 'p' peek (no writes)   ARGV[4]: unique request token
-- ARGV[4i+1 .. 4i+4]: window i: algorithm (w sliding_window, f fixed_window, l sliding_log),
--                     limit, length in ms, enforced ('1'), shadow ('0'), quota group ('q<n>'),
--                     token check ('t': blocks unless one more hit fits, never charged) or
--                     token charge ('c': never blocks, charged with the hits even past the limit)
-- Returns {allowed, a_1, b_1, c_1, fit_1, a_2, ...}:
--   w: prev, cur, elapsed_ms    f: count, elapsed_ms, 0    l: count, frees_in_ms, 0
-- (counts include the hits when they were charged); fit: 1 when the hits fitted that window. A request is admitted when every
-- enforced window fits and, when there are quota groups, every window of at least one group
-- fits; then every window that fits is charged. A rejected request is not counted anywhere;
-- a shadow window never blocks and is charged only when it fits.
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local hits = tonumber(ARGV[2])
local commit = ARGV[3] == 'c'
local token = ARGV[4]
local allowed = 1
local out = {}
local fits, algos, limits, lengths, buckets, flags = {}, {}, {}, {}, {}, {}
local quota_fits = {}  -- quota group -> every window of it fits

-- Time until the j-th oldest log entry still in the window leaves it.
local function log_frees(key, floor, j, w)
  local e = redis.call('ZRANGEBYSCORE', key, '(' .. floor, '+inf', 'WITHSCORES', 'LIMIT', j - 1, 1)
  if #e == 0 then return 0 end
  return tonumber(e[2]) + w - now
end

for i = 1, #KEYS do
  local a = 4 * i + 1
  local algo, limit, w = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local key = KEYS[i]
  local flag = ARGV[a + 3]
  local h = hits
  if flag == 't' then h = 1 end
  local bucket = math.floor(now / w)
  local elapsed = now - bucket * w
  local fit
  if algo == 'w' then
    local v = redis.call('HMGET', key, 'b', 'p', 'c')
    local stored, prev, cur = tonumber(v[1]), 0, 0
    if stored == bucket then
      prev, cur = tonumber(v[2]), tonumber(v[3])
    elseif stored == bucket - 1 then
      prev = tonumber(v[3])  -- the stored bucket is now the previous one
    end
    -- prev * (w - elapsed) / w + cur + hits <= limit, in integers
    fit = prev * (w - elapsed) + (cur + h) * w <= limit * w
    out[4 * i - 2], out[4 * i - 1], out[4 * i] = prev, cur, elapsed
  elseif algo == 'f' then
    local v = redis.call('HMGET', key, 'b', 'c')
    local count = 0
    if tonumber(v[1]) == bucket then count = tonumber(v[2]) end
    fit = count + h <= limit
    out[4 * i - 2], out[4 * i - 1], out[4 * i] = count, elapsed, 0
  else
    local count
    if commit then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now - w)
      count = redis.call('ZCARD', key)
    else
      count = redis.call('ZCOUNT', key, '(' .. (now - w), '+inf')
    end
    fit = count + h <= limit
    out[4 * i - 2], out[4 * i - 1], out[4 * i] = count, 0, 0
  end
  if (flag == '1' or flag == 't') and not fit then allowed = 0 end
  if string.sub(flag, 1, 1) == 'q' then
    quota_fits[flag] = (quota_fits[flag] ~= false) and fit
  end
  out[4 * i + 1] = fit and 1 or 0
  fits[i], algos[i], limits[i], lengths[i], buckets[i] = fit, algo, limit, w, bucket
  flags[i] = flag
end

if next(quota_fits) ~= nil then
  local any_fits = false
  for _, group_fits in pairs(quota_fits) do
    if group_fits then any_fits = true end
  end
  if not any_fits then allowed = 0 end
end

for i = 1, #KEYS do
  local key, w = KEYS[i], lengths[i]
  local charge = commit and allowed == 1 and (fits[i] or flags[i] == 'c') and flags[i] ~= 't'
  if charge and algos[i] == 'w' then
    out[4 * i - 1] = out[4 * i - 1] + hits
    redis.call('HSET', key, 'b', buckets[i], 'p', out[4 * i - 2], 'c', out[4 * i - 1])
    -- Read as "previous" during the next bucket, then it can go.
    redis.call('PEXPIRE', key, 2 * w)
  elseif charge and algos[i] == 'f' then
    out[4 * i - 2] = out[4 * i - 2] + hits
    redis.call('HSET', key, 'b', buckets[i], 'c', out[4 * i - 2])
    redis.call('PEXPIRE', key, w - out[4 * i - 1] + 1000)
  elseif algos[i] == 'l' then
    if charge then
      for j = 1, hits do
        redis.call('ZADD', key, now, token .. ':' .. j)
      end
      redis.call('PEXPIRE', key, w)
      out[4 * i - 2] = out[4 * i - 2] + hits
    end
    local count = out[4 * i - 2]
    local j = 1
    if not fits[i] then j = count - limits[i] + hits end
    if count > 0 and j <= count then
      out[4 * i - 1] = log_frees(key, now - w, j, w)
    elseif count > 0 or not fits[i] then
      out[4 * i - 1] = w  -- more hits than the limit: never fits
    end
  end
end

out[1] = allowed
return out
