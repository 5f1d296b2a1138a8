-- POST a transaction with a unique id on every request (per-thread prefix + counter).
-- DUPLICATE_EVERY=n makes every n-th request a re-delivery of an earlier id.
local counter = 0
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))
local dup_every = tonumber(os.getenv("DUPLICATE_EVERY") or "0")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  counter = counter + 1
  local n = counter
  if dup_every > 0 and counter % dup_every == 0 and counter > 1 then
    n = counter - 1
  end
  local body = string.format(
    '{"transaction_id":"wrk-%s-%d","source_account":"acc_user_789",' ..
    '"destination_account":"acc_merchant_456","amount":1500,"currency":"INR"}', prefix, n)
  return wrk.format(nil, "/v1/webhooks/transactions", nil, body)
end

response = function(status, headers, body)
  if status ~= 202 then
    io.stderr:write("unexpected status " .. status .. "\n")
  end
end
