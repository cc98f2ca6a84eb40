-- wrk script: stop sending after a fixed number of requests (`wrk ... -s counted.lua URL
-- -- N`); each connection sends GET / with the command line's headers (-H). wrk's main
-- thread still sleeps for -d: the line printed at the limit tells the caller to send
-- SIGINT, on which wrk prints its summary at once.
local limit = 10000
local sent = 0

init = function(args)
   limit = tonumber(args[1] or limit)
   req = wrk.format(nil, "/")
end

request = function()
   sent = sent + 1
   if sent > limit then
      if sent == limit + 1 then
         io.write("bench: limit reached\n")
         io.flush()
      end
      wrk.thread:stop()
   end
   return req
end
