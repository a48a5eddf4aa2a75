-- post.lua - wrk script for oneplan's benchmark.
--
-- Why a script: wrk alone sends GETs and only counts status >= 400 as errors. A gateway can
-- answer 200 with a broken body (an error object, a stream cut short), so every response is
-- checked for a marker ("choices" / "[DONE]" for OpenAI JSON / SSE, "stop_reason" / "message_stop"
-- for Anthropic's) and counted per status class.
-- The request is formatted once per thread so the load generator stays cheap.
--
-- Arguments after `--`: BODY_FILE MARKER [AUTH_HEADER_VALUE] [MAX_RESPONSES_PER_THREAD]
--                       [EXTRA_HEADERS: "Name: value" lines joined by newlines]
-- Output: one line `WRK_JSON {...}` on stdout, parsed by bench/harness/loadgen.py.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local body = f:read("*a")
  f:close()
  marker = args[2]
  local headers = { ["Content-Type"] = "application/json" }
  if args[3] ~= nil and args[3] ~= "" and args[3] ~= "-" then
    headers["Authorization"] = args[3]
  end
  if args[5] ~= nil then
    for line in string.gmatch(args[5], "[^\n]+") do
      local name, value = string.match(line, "^([^:]+):%s*(.*)$")
      if name ~= nil then headers[name] = value end
    end
  end
  max_responses = tonumber(args[4] or "0") or 0
  req = wrk.format("POST", nil, headers, body)
  ok, bad, s2xx, s4xx, s429, s5xx, sother, seen = 0, 0, 0, 0, 0, 0, 0, 0
  first_bad = ""
end

function request()
  return req
end

function response(status, headers, body)
  seen = seen + 1
  if status >= 200 and status < 300 then
    s2xx = s2xx + 1
  elseif status == 429 then
    s429 = s429 + 1
  elseif status >= 400 and status < 500 then
    s4xx = s4xx + 1
  elseif status >= 500 then
    s5xx = s5xx + 1
  else
    sother = sother + 1
  end
  if status >= 200 and status < 300 and body ~= nil and string.find(body, marker, 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
    if first_bad == "" then
      first_bad = tostring(status) .. " " .. string.sub(tostring(body), 1, 300)
    end
  end
  if max_responses > 0 and seen >= max_responses then
    wrk.thread:stop()
  end
end

local function q(s)
  s = string.gsub(s, "\\", "\\\\")
  s = string.gsub(s, '"', '\\"')
  s = string.gsub(s, "[%c]", " ")
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local t = { ok = 0, bad = 0, s2xx = 0, s4xx = 0, s429 = 0, s5xx = 0, sother = 0 }
  local sample = ""
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do
      t[k] = t[k] + (thread:get(k) or 0)
    end
    local fb = thread:get("first_bad")
    if sample == "" and fb ~= nil then sample = fb end
  end
  local e = summary.errors
  local parts = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"bytes":%d', summary.bytes),
    string.format('"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d',
      e.connect, e.read, e.write, e.status, e.timeout),
    string.format('"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d',
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9)),
    string.format('"mean_us":%.1f,"max_us":%d', latency.mean, latency.max),
    string.format('"ok":%d,"bad":%d,"s2xx":%d,"s4xx":%d,"s429":%d,"s5xx":%d,"sother":%d',
      t.ok, t.bad, t.s2xx, t.s4xx, t.s429, t.s5xx, t.sother),
    '"first_bad":' .. q(sample),
  }
  io.write("WRK_JSON {" .. table.concat(parts, ",") .. "}\n")
end
