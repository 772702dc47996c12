-- wrk script: GET a home feed as one of many users, each request with a bearer token from a file.
-- Usage: wrk -s bench/feed.lua URL -- TOKENS_FILE [PATH]
--   TOKENS_FILE  one bearer token a line
--   PATH         default /api/v1/feed?limit=20
-- Requests cycle through the tokens, each thread from its own offset, so every reader is read.
-- Answers of 400 and above are wrk's status errors. done() prints "BENCH_JSON {...}" like zipf.lua.

local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

local requests, next_one = {}, 1
statuses = {}  -- global: done() reads it through thread:get

function init(args)
   local path = args[2] or "/api/v1/feed?limit=20"
   for line in io.lines(args[1]) do
      if #line > 0 then
         requests[#requests + 1] = wrk.format("GET", path, {["Authorization"] = "Bearer " .. line})
      end
   end
   assert(#requests > 0, "no tokens in " .. args[1])
   next_one = (id * 7919) % #requests + 1
end

function request()
   local r = requests[next_one]
   next_one = next_one % #requests + 1
   return r
end

function done(summary, latency, reqs)
   local by_status, counts = {}, {}
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses") or {}) do
         by_status[status] = (by_status[status] or 0) + n
      end
   end
   for status, n in pairs(by_status) do
      counts[#counts + 1] = string.format('"%d": %d', status, n)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
      '"max_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"statuses": {%s}}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout,
      table.concat(counts, ", ")))
end
