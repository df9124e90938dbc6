-- wrk script for `python -m loadtests.bench`: the very same POST every time, for both sides.
--
--   wrk ... -s post.lua URL -- BODY_FILE CONTENT_TYPE IDS_FILE
--
-- Method, headers and body are fixed in init(), so wrk sends one prebuilt request and runs no
-- Lua to make a request (a fresh body per request made the generator the bottleneck). The one
-- thing done per answer is counting its status and keeping the id of a 201 (a pattern match on
-- a small body), so every acknowledged registration can be looked up in the database after.
-- No Idempotency-Key is sent: these are plain, distinct POSTs.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local handle = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = handle:read("*a")
  handle:close()
  wrk.headers["Content-Type"] = args[2]
  ids_file = args[3]
  statuses, ids = {}, {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 201 then
    ids[#ids + 1] = string.match(body, '"id":"(%x+)"') or "?"
  end
end

function done(summary, latency, requests)
  local counts, parts = {}, {}
  local out = assert(io.open(threads[1]:get("ids_file"), "w"))
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
    for _, id in ipairs(thread:get("ids")) do
      out:write(id, "\n")
    end
  end
  out:close()
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_s":%.6f,"statuses":{%s},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},' ..
    '"latency_ms":{"p50":%.3f,"p99":%.3f,"max":%.3f}}\n',
    summary.requests, summary.duration / 1e6, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
