-- wrk script: GET /<code> with Zipf-like popularity over the codes in a file.
-- Usage: wrk -s bench/zipf.lua URL -- CODES_FILE [S] [count]
--   CODES_FILE  one short code a line, most popular first
--   S           Zipf exponent, default 1.0 (rank k is requested with weight 1/k^S)
--   count       also count responses by status (costs wrk a header parse per response)
-- done() prints one line "BENCH_JSON {...}" that bench/wrkrun.py reads.

local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

local requests, cdf = {}, {}
statuses = {}  -- global: done() reads it through thread:get

local function read_codes(path)
   local codes = {}
   for line in io.lines(path) do
      if #line > 0 then codes[#codes + 1] = line end
   end
   assert(#codes > 0, "no codes in " .. path)
   return codes
end

function init(args)
   local codes = read_codes(args[1])
   local s = tonumber(args[2] or "1.0")
   local total = 0
   for k = 1, #codes do
      total = total + 1 / k ^ s
      cdf[k] = total
      requests[k] = wrk.format("GET", "/" .. codes[k])
   end
   for k = 1, #codes do cdf[k] = cdf[k] / total end
   cdf[#codes] = 1.0  -- rounding must never leave a draw above the last bucket
   math.randomseed(os.time() * 100 + id)  -- LuaJIT seeds every thread alike otherwise
   if args[3] == "count" then
      response = function(status, headers, body)
         statuses[status] = (statuses[status] or 0) + 1
      end
   end
end

function request()
   local u, lo, hi = math.random(), 1, #cdf
   while lo < hi do  -- first k with cdf[k] >= u
      local mid = math.floor((lo + hi) / 2)
      if cdf[mid] < u then lo = mid + 1 else hi = mid end
   end
   return requests[lo]
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
