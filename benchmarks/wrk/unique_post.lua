-- POST a transaction with a unique id on every request (per-thread prefix + counter).
-- Environment: DUPLICATE_EVERY=n makes every n-th request a re-delivery of the previous id;
-- COUNT=n stops sending after n answers (one thread; wrk itself runs on until -d, so the caller
-- ends it); RATE=r paces the connections to about
-- r requests/s in total (CONNECTIONS must then be the -c value).
local counter = 0
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))
local dup_every = tonumber(os.getenv("DUPLICATE_EVERY") or "0")
local count = tonumber(os.getenv("COUNT") or "0")
local rate = tonumber(os.getenv("RATE") or "0")
local connections = tonumber(os.getenv("CONNECTIONS") or "1")
local sent = 0
local made = 0
local started = nil

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  made = made + 1
  started = started or os.time()
  counter = counter + 1
  local n = counter
  if dup_every > 0 and counter % dup_every == 0 then
    n = counter - 1
  end
  local body = string.format(
    '{"transaction_id":"wrk-%s-%d","source_account":"acc_user_789",' ..
    '"destination_account":"acc_merchant_456","amount":1500,"currency":"INR"}', prefix, n)
  return wrk.format(nil, "/v1/webhooks/transactions", nil, body)
end

if rate > 0 then
  -- Pace to RATE per second on average: each connection waits about CONNECTIONS/RATE seconds
  -- before a request, a little less while behind schedule, a little more once ahead (wrk's Lua
  -- only has whole-second clocks, so the schedule is kept per second).
  delay = function()
    local interval = 1000 * connections / rate
    if made >= rate * (os.time() - started + 1) then
      return math.floor(interval * 1.5)
    end
    return math.floor(interval * 0.8)
  end
end

-- A response() callback makes wrk hand every response to Lua, which costs wrk enough CPU to
-- skew latency on a 2-core machine: define it only when counting. Non-2xx answers are counted
-- by wrk itself either way (summary.errors.status, printed as ERRORS below).
if count > 0 then
  response = function(status, headers, body)
    sent = sent + 1
    if sent >= count then
      wrk.thread:stop()
    end
  end
end

-- report.lua, next to this script: the figures benchmarks/run.py reads.
done = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "report.lua")
