-- POST what payhook forwards (a transaction.due envelope with the Standard Webhooks headers) to
-- the bench receiver, the same on every request: the receiver's own ceiling, without payhook.
wrk.method = "POST"
wrk.path = "/payhook"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["webhook-id"] = "payhook:wrk-ceiling"
wrk.headers["webhook-timestamp"] = tostring(os.time())
wrk.headers["webhook-signature"] = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="
wrk.body = '{"type":"transaction.due","timestamp":"2026-11-27T23:00:00.000000Z","attempt":1,' ..
  '"data":{"transaction_id":"wrk-1795000000-1","source_account":"acc_user_789",' ..
  '"destination_account":"acc_merchant_456","amount":1500,"currency":"INR",' ..
  '"status":"PROCESSING","created_at":"2026-11-27T22:59:55.000000Z","processed_at":null,' ..
  '"provider":null,"payment_state":null,"amount_refunded":null,"disputed":null}}'

-- report.lua, next to this script: the figures benchmarks/run.py reads.
done = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "report.lua")
