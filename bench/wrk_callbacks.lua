-- Replays pre-signed, pre-encrypted callbacks: line i of $SIYU_BENCH_REQUESTS is "path<TAB>body" and goes
-- to thread (i mod threads), so threads never send each other's events.
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(os.getenv("SIYU_BENCH_THREADS"))
  reqs = {}
  local i = 0
  for line in io.lines(os.getenv("SIYU_BENCH_REQUESTS")) do
    if i % nthreads == tid then
      local tab = line:find("\t", 1, true)
      reqs[#reqs + 1] = wrk.format("POST", line:sub(1, tab - 1), {["Content-Type"] = "text/xml"}, line:sub(tab + 1))
    end
    i = i + 1
  end
  sent = 0
end

function request()
  sent = sent + 1
  return reqs[((sent - 1) % #reqs) + 1]
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(string.format("SENT %d %d\n", t:get("tid"), t:get("sent")))
  end
  io.write(string.format("LATENCY p50=%d p90=%d p99=%d max=%d\n", latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
  io.write(string.format("SUMMARY requests=%d duration_us=%d non2xx=%d timeout=%d connect=%d read=%d write=%d\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.timeout, summary.errors.connect,
    summary.errors.read, summary.errors.write))
end
