-- POST pre-signed provider events, each once, in the order of the file EVENTS_FILE.
-- Each line of the file is "<header name>\t<header value>\t<body>": the body is the event as the
-- provider sends it (a few KB, JSON without newlines) and the header its signature, computed
-- when the file was made (the server's signature tolerance must cover the run). After the last
-- line the file starts over: those answers are re-deliveries (the bench makes enough lines).
local path = os.getenv("EVENTS_FILE")
local endpoint = os.getenv("ENDPOINT") or "/v1/webhooks/stripe"
local names, values, bodies = {}, {}, {}
for line in io.lines(path) do
  local name, value, body = line:match("^([^\t]+)\t([^\t]+)\t(.*)$")
  names[#names + 1] = name
  values[#values + 1] = value
  bodies[#bodies + 1] = body
end
local index = 0

request = function()
  index = index % #bodies + 1
  local headers = {["Content-Type"] = "application/json; charset=utf-8"}
  headers[names[index]] = values[index]
  return wrk.format("POST", endpoint, headers, bodies[index])
end

-- report.lua, next to this script: the figures benchmarks/run.py reads.
done = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "report.lua")
