-- wrk script for bench/soak.py: one traffic kind per wrk process, 1 request in
-- MALFORMED_EVERY malformed (a header line without a colon: the server must answer 4xx).
--   wrk ... -s soak.lua URL -- KIND MALFORMED_EVERY DELAY_MS
-- KIND: keepalive | close | pipelined | upload | download. Each response is checked
-- (status and body length); done() prints one line "SOAK k=v ..." with the counts of every
-- thread: sent, malformed, ok (2xx with the right body), bad_body, s4xx, other (any other
-- status), plus wrk's socket errors.
local kind, every, delay_ms = "keepalive", 100, 0
local DEPTH = 16
local BLOB = 1048576
local threads = {}
sent, malformed, ok, bad_body, s4xx, other = 0, 0, 0, 0, 0, 0

local good, bad, expect_len, pipelined_ok, batches, upload_body

setup = function(thread)
   table.insert(threads, thread)
end

init = function(args)
   kind = args[1] or kind
   every = tonumber(args[2] or every)
   delay_ms = tonumber(args[3] or delay_ms)
   if delay_ms > 0 then
      -- wrk looks for delay() after init; it also waits it before a reconnect's request
      delay = function() return delay_ms end
   end
   local close = {["Connection"] = "close", ["Host"] = "soak"}
   local keep = {["Host"] = "soak"}
   if kind == "close" then
      good = wrk.format("GET", "/", close)
      bad = "GET / HTTP/1.1\r\nHost: soak\r\nConnection: close\r\nthis line has no colon\r\n\r\n"
      expect_len = 13
   elseif kind == "upload" then
      upload_body = string.rep("u", BLOB)
      good = wrk.format("POST", "/upload", {["Host"] = "soak",
                        ["Content-Type"] = "application/octet-stream"}, upload_body)
      bad = "POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 12\r\nContent-Length: 13\r\n\r\n0123456789ab"
      expect_len = #tostring(BLOB)
   elseif kind == "download" then
      good = wrk.format("GET", "/blob", keep)
      bad = "GET /blob HTTP/1.1\r\nHost: soak\r\nthis line has no colon\r\n\r\n"
      expect_len = BLOB
   else
      good = wrk.format("GET", "/", keep)
      bad = "GET / HTTP/1.1\r\nHost: soak\r\nthis line has no colon\r\n\r\n"
      expect_len = 13
   end
   if kind == "pipelined" then
      -- the malformed request is the last of its batch: the server answers it 4xx and
      -- closes, and no valid request of the batch is lost with the connection
      local r = {}
      for i = 1, DEPTH do r[i] = good end
      pipelined_ok = table.concat(r)
      r[DEPTH] = bad
      pipelined_bad = table.concat(r)
      batches = 0
   end
end

request = function()
   if kind == "pipelined" then
      batches = batches + 1
      sent = sent + DEPTH
      -- one batch in every/DEPTH carries one malformed request: 1 in ~every requests
      if batches % math.max(1, math.floor(every / DEPTH)) == 0 then
         malformed = malformed + 1
         return pipelined_bad
      end
      return pipelined_ok
   end
   sent = sent + 1
   if sent % every == 0 then
      malformed = malformed + 1
      return bad
   end
   return good
end

response = function(status, headers, body)
   if status >= 200 and status < 300 then
      if #body == expect_len then ok = ok + 1 else bad_body = bad_body + 1 end
   elseif status >= 400 and status < 500 then
      s4xx = s4xx + 1
   else
      other = other + 1
   end
end

done = function(summary, latency, requests)
   local t = {sent = 0, malformed = 0, ok = 0, bad_body = 0, s4xx = 0, other = 0}
   for _, thread in ipairs(threads) do
      for k, _ in pairs(t) do t[k] = t[k] + (thread:get(k) or 0) end
   end
   local e = summary.errors
   io.write(string.format(
      "SOAK sent=%d malformed=%d ok=%d bad_body=%d s4xx=%d other=%d responses=%d " ..
      "connect=%d read=%d write=%d timeout=%d status=%d\n",
      t.sent, t.malformed, t.ok, t.bad_body, t.s4xx, t.other, summary.requests,
      e.connect, e.read, e.write, e.timeout, e.status))
end
