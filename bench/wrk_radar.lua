-- Opens radar links: line i of $SIYU_BENCH_REQUESTS is a path, sent as GET by thread (i mod threads) with a
-- phone's User-Agent. $SIYU_BENCH_DELAY_MS (optional) paces each connection: a fixed rate below saturation.
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(os.getenv("SIYU_BENCH_THREADS"))
  pause = tonumber(os.getenv("SIYU_BENCH_DELAY_MS") or "0")
  local agent = "Mozilla/5.0 (Linux; Android 14) Chrome/126.0 Mobile Safari/537.36"
  reqs = {}
  local i = 0
  for line in io.lines(os.getenv("SIYU_BENCH_REQUESTS")) do
    if i % nthreads == tid then
      reqs[#reqs + 1] = wrk.format("GET", line, {["User-Agent"] = agent})
    end
    i = i + 1
  end
  sent = 0
end

function delay()
  return pause
end

function request()
  sent = sent + 1
  return reqs[((sent - 1) % #reqs) + 1]
end

function done(summary, latency, requests)
  local sent_total = 0
  for _, t in ipairs(threads) do
    sent_total = sent_total + t:get("sent")
  end
  io.write(string.format("LATENCY p50=%d p90=%d p99=%d max=%d\n", latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
  io.write(string.format("SUMMARY requests=%d duration_us=%d non2xx=%d timeout=%d connect=%d read=%d write=%d\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.timeout, summary.errors.connect,
    summary.errors.read, summary.errors.write))
end
