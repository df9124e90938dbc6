-- wrk script for `python -m loadtests.bench`: GET the URL as fast as possible and print one line
-- "BENCH {json}" at the end for the bench to parse. No request() and no response(): wrk sends
-- its one prebuilt request and runs no Lua per request, so the generator costs least; answers
-- that are not 2xx/3xx are counted by wrk itself (errors.status).

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_s":%.6f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},' ..
    '"latency_ms":{"p50":%.3f,"p99":%.3f,"max":%.3f}}\n',
    summary.requests, summary.duration / 1e6,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
