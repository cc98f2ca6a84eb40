-- wrk script: every request is DEPTH pipelined GET / (wrk counts each response)
local depth = tonumber(os.getenv("BENCH_PIPELINE_DEPTH") or "16")
init = function(args)
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format(nil, "/")
   end
   req = table.concat(r)
end

request = function()
   return req
end
