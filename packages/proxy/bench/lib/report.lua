-- wrk script: spreads requests over a sample of routes and prints one JSON line of results.
-- Arguments (after --): path prefix, route count, sample size, path suffix.
-- Route i is <prefix><i>; requests cycle through `sample` routes spread evenly over the table.
local requests_table = {}
local next_index = 1

function init(args)
  local prefix = args[1] or "/"
  local count = tonumber(args[2] or "1")
  local sample = math.min(tonumber(args[3] or "1000"), count)
  local suffix = args[4] or ""
  for i = 0, sample - 1 do
    local route = math.floor(i * count / sample)
    requests_table[#requests_table + 1] = wrk.format(nil, prefix .. route .. suffix)
  end
  next_index = math.random(#requests_table)
end

function request()
  local r = requests_table[next_index]
  next_index = next_index % #requests_table + 1
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
