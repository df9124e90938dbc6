-- wrk script for `python -m loadtests.bench`: POST /api/registrations as multipart with a JPEG,
-- a unique name per request, for a fixed window; then drain.
--
--   wrk ... -s register.lua URL -- WINDOW_S PHOTO_PATH RUN_TAG IDS_FILE
--
-- wrk cuts requests that are still in flight when its -d ends, and a cut registration may
-- still be stored. So registrations are sent only during the first WINDOW_S seconds; the rest
-- of -d is a drain in which each connection sends a cheap GET /nginx-health twice a second,
-- so every registration sent gets its answer, and "acknowledged" can be compared with what
-- the database holds. Throughput = registration answers / (last answer - first send).

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end

local CITIES = { "Quito", "Guayaquil", " quito ", "Cuenca", "Durán", "Santo Domingo", "Loja", "Manta" }
local HEALTH = '"service":"nginx"'
local threads = {}

function setup(thread)
  thread:set("index", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  window = tonumber(args[1])
  local handle = assert(io.open(args[2], "rb"))
  local photo = handle:read("*a")
  handle:close()
  tag = args[3]
  ids_file = args[4]
  photo_head = 'Content-Disposition: form-data; name="photo"; filename="id-card.jpg"\r\n' ..
    "Content-Type: image/jpeg\r\n\r\n" .. photo
  health = wrk.format("GET", "/nginx-health")
  statuses, ids = {}, {}
  sent, answered, draining = 0, 0, false
  first_sent, last_answer = 0, 0
end

local function letters(n)
  -- a counter spelled in letters: names must contain letters, and this keeps every one unique
  local out = ""
  repeat
    out = string.char(97 + n % 26) .. out
    n = math.floor(n / 26)
  until n == 0
  return out
end

function request()
  if index == 1 and not verified then
    -- wrk calls request() once on the first thread to check the script; that one is never sent
    verified = true
    return health
  end
  local t = now()
  if first_sent == 0 then
    first_sent = t
  end
  if t - first_sent >= window then
    draining = true
    return health
  end
  sent = sent + 1
  local name = "Bench " .. tag .. " " .. letters(index) .. " " .. letters(sent)
  local city = CITIES[sent % #CITIES + 1]
  -- a new boundary for every form, as browsers and HTTP libraries send them (the server's
  -- multipart parser compiles a pattern per boundary; a fixed one would always hit its cache)
  local boundary = "----BenchBoundary" .. tag .. index .. "x" .. sent
  local body = "--" .. boundary .. '\r\nContent-Disposition: form-data; name="name"\r\n\r\n' .. name .. "\r\n" ..
    "--" .. boundary .. '\r\nContent-Disposition: form-data; name="city"\r\n\r\n' .. city .. "\r\n" ..
    "--" .. boundary .. "\r\n" .. photo_head .. "\r\n--" .. boundary .. "--\r\n"
  local headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. boundary }
  return wrk.format("POST", "/api/registrations", headers, body)
end

function delay()
  if draining then
    return 500
  end
  return 0
end

function response(status, headers, body)
  if status == 200 and body and string.find(body, HEALTH, 1, true) then
    return
  end
  answered = answered + 1
  last_answer = now()
  statuses[status] = (statuses[status] or 0) + 1
  if status == 201 then
    table.insert(ids, string.match(body, '"id":"(%x+)"') or "?")
  end
end

function done(summary, latency, requests)
  local counts, parts = {}, {}
  local sent_total, answered_total, first, last = 0, 0, math.huge, 0
  local out = assert(io.open(threads[1]:get("ids_file"), "w"))
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
    for _, id in ipairs(thread:get("ids")) do
      out:write(id, "\n")
    end
    sent_total = sent_total + thread:get("sent")
    answered_total = answered_total + thread:get("answered")
    first = math.min(first, thread:get("first_sent"))
    last = math.max(last, thread:get("last_answer"))
  end
  out:close()
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"sent":%d,"answered":%d,"window_s":%.6f,"statuses":{%s},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d}}\n',
    sent_total, answered_total, last - first, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout, e.status))
end
