-- wrk script for benches/load/run.sh.
-- Sends the same pre-signed Twilio client notification on every request, each
-- with its own I-Twilio-Idempotency-Token (as Twilio does: with one fixed token
-- the proxy's dedupe would answer every request but the first without
-- forwarding), and prints one machine-readable "BENCH_RESULT ..." line.
--
-- Environment (set by run.sh):
--   BENCH_BODY_FILE   file with the exact request body (no trailing newline)
--   BENCH_SIGNATURE   value of X-Twilio-Signature
--   BENCH_COUNT_2XX   "1": also count every non-2xx status with a response()
--                     callback (stricter than wrk's own status>399 count, but
--                     wrk then copies headers/body of every response, which
--                     costs client CPU; off by default)
-- The request path + query come from the URL argument of wrk.

local body_file = os.getenv("BENCH_BODY_FILE")
if not body_file then
  error("BENCH_BODY_FILE is not set")
end
local f = assert(io.open(body_file, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Twilio-Signature"] = os.getenv("BENCH_SIGNATURE") or ""

-- One token per request; the thread id keeps tokens of several wrk threads apart.
local counter = 0
-- Each wrk process needs its own prefix (the proxy remembers tokens for minutes): the table
-- address differs per process (ASLR), the time per run.
local prefix = "bench-" .. os.time() .. "-" .. tostring({}):gsub("table: ", "") .. "-"
function request()
  counter = counter + 1
  wrk.headers["I-Twilio-Idempotency-Token"] = prefix .. counter
  return wrk.format(nil, nil, nil, nil)
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

if os.getenv("BENCH_COUNT_2XX") == "1" then
  non2xx = 0
  first_bad_status = 0
  function response(status, headers, resp_body)
    if status < 200 or status > 299 then
      non2xx = non2xx + 1
      if first_bad_status == 0 then
        first_bad_status = status
      end
    end
  end
end

function done(summary, latency, requests)
  local non2xx_total = -1
  local first_bad = 0
  if os.getenv("BENCH_COUNT_2XX") == "1" then
    non2xx_total = 0
    for _, t in ipairs(threads) do
      non2xx_total = non2xx_total + (t:get("non2xx") or 0)
      local fb = t:get("first_bad_status") or 0
      if first_bad == 0 and fb ~= 0 then first_bad = fb end
    end
  end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d rps=%.2f p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f"
      .. " status_errors=%d non2xx=%d first_bad_status=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    summary.requests, summary.duration, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, non2xx_total, first_bad, e.connect, e.read, e.write, e.timeout))
end
