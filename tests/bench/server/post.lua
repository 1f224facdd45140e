-- post.lua - wrk script: POST /cam with one image as multipart/form-data, and a machine-readable
-- summary line. The image path comes from $BENCH_IMAGE, the outputs from $BENCH_OUTPUTS.
local path = os.getenv("BENCH_IMAGE")
local outputs = os.getenv("BENCH_OUTPUTS") or "cam,erased_cam,mask,scores"
local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
local image = f:read("*a")
f:close()

local boundary = "ecsnetbench7d1f0a"
wrk.method = "POST"
wrk.path = "/cam"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = table.concat({
  "--" .. boundary,
  'Content-Disposition: form-data; name="outputs"',
  "",
  outputs,
  "--" .. boundary,
  'Content-Disposition: form-data; name="image"; filename="bench.jpg"',
  "Content-Type: image/jpeg",
  "",
  image,
  "--" .. boundary .. "--",
  "",
}, "\r\n")

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d mean_us=%.0f p50_us=%d p99_us=%d max_us=%d " ..
    "non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, latency.mean, latency:percentile(50),
    latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
