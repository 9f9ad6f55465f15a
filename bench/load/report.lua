-- wrk script for bench/: cycles pre-built requests (one per API key, or one per signed request)
-- and prints the result
-- as one JSON line, prefixed BENCH_RESULT, that bench/load/wrk.py parses.
-- Arguments after `--`: METHOD PATH BODY_FILE KEYS_FILE CONTENT_TYPE ("-" for none).

local prebuilt = {}
local index = 0

local function read_file(path)
  if path == nil or path == "-" or path == "" then return nil end
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  return data
end

function init(args)
  local method, path, body_file, keys_file, content_type = args[1], args[2], args[3], args[4], args[5]
  local body = read_file(body_file)
  local headers = {}
  if body ~= nil then headers["Content-Type"] = content_type end
  if keys_file ~= nil and keys_file ~= "-" then
    for line in io.lines(keys_file) do
      -- "key" or, for signed requests, "key<TAB>path<TAB>timestamp<TAB>signature"
      local key, signed_path, stamp, signature = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)$")
      headers["Authorization"] = "Bearer " .. (key or line)
      headers["X-Signature-Timestamp"], headers["X-Signature"] = stamp, signature
      prebuilt[#prebuilt + 1] = wrk.format(method, signed_path or path, headers, body)
    end
  end
  if #prebuilt == 0 then
    headers["Authorization"] = nil
    prebuilt[1] = wrk.format(method, path, headers, body)
  end
  -- Threads start at different keys (wrk seeds each thread differently).
  index = math.random(#prebuilt) - 1
end

function request()
  index = index % #prebuilt + 1
  return prebuilt[index]
end

local PERCENTILES = {}
for p = 1, 99 do PERCENTILES[#PERCENTILES + 1] = p end
PERCENTILES[#PERCENTILES + 1] = 99.5
PERCENTILES[#PERCENTILES + 1] = 99.9
PERCENTILES[#PERCENTILES + 1] = 99.99

function done(summary, latency, requests)
  local points = {}
  for _, p in ipairs(PERCENTILES) do
    points[#points + 1] = string.format("[%g,%d]", p, latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"mean_us":%.1f,"max_us":%d,"percentiles":[%s]}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, table.concat(points, ",")))
end
