-- wrk script: POST /api/assign_queue_num for the benchmark event, each request from another client
-- address (X-Forwarded-For, read behind IDP_PROXY_HOPS=1), spread over 2^20 addresses in 10.0.0.0/8,
-- so the per-address join limit (100 a minute by default) is checked on every join but never reached.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = thread_id * 1000003
end

request = function()
  counter = counter + 1
  local n = counter % 1048576
  local address = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-Forwarded-For"] = address},
                    '{"event_id":"bench"}')
end
