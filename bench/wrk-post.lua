-- POST a JSON body with wrk, plain keep-alive or pipelined.
--   plain: wrk -t1 -c100 -d5s --latency -s wrk-post.lua URL -- 100
--   pipe : BENCH_DEPTH=24 wrk ... -s wrk-post.lua URL -- 100
-- The body is bench/payload-1k.json (or $BENCH_BODY), sent with
-- Content-Type: application/json (or $BENCH_CTYPE).  Plain mode keeps wrk's static, pre-built
-- request (no request() function, as stats.lua); with BENCH_DEPTH > 1 each
-- request() returns BENCH_DEPTH concatenated requests, as pipeline.lua does.
-- The summary line comes from the shared wrkstats.lua ($BENCH_WRKSTATS, else
-- a wrkstats.lua next to this file).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local wrkstats = dofile(os.getenv("BENCH_WRKSTATS") or (dir .. "wrkstats.lua"))
local f = assert(io.open(os.getenv("BENCH_BODY") or (dir .. "payload-1k.json"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CTYPE") or "application/json"

local depth = tonumber(os.getenv("BENCH_DEPTH") or "1") or 1
local conns = 100

init = function(args)
   conns = tonumber(args[1]) or conns
end

if depth > 1 then
   local batch
   request = function()
      if not batch then
         local r = {}
         for i = 1, depth do r[i] = wrk.format() end
         batch = table.concat(r)
      end
      return batch
   end
end

done = function(summary, latency, requests)
   wrkstats.report(summary, latency, conns, depth)
end
