#!/usr/bin/env bash
# tests/bench/server/run.sh - ecsnet-server under load: throughput and p50/p99 latency of
# POST /cam for a 500x375 JPEG at 1, 2 and 8 concurrent clients (wrk on loopback, closed loop),
# against the engine's own time for the same requests, plus the batching question.
#
# What it reports, per client count: requests/s, latency p50/p99/mean (wrk), the mean time
# inside the model and in decoding (the server's /metrics histograms over the same run), and
# the overhead share = 1 - model time / latency: HTTP, multipart parsing, JPEG decoding, PNG
# and base64 encoding, i.e. everything the server adds. It is only meaningful while clients
# <= workers (beyond, latency includes queueing). Throughput at 8 clients against 2 shows
# whether extra clients cost anything once every worker is busy.
#
# Batching: bench_engine's small network at batch 1 and BENCH_BATCH per image, on one
# worker's threads: batching same-size requests only pays if the per-image time drops.
#
# Settings (environment):
#   ECSNET_BUILD_DIR  build with bin/ecsnet-server, bin/ecsnet, bin/bench_engine (./build)
#   ECSNET_PYTHON     interpreter with Pillow, to draw the JPEG (./.venv/bin/python)
#   BENCH_MODEL       model file (default: the shipped models/*.safetensors, else a small
#                     model trained here for a few steps: time does not depend on training)
#   BENCH_WORKERS (2) BENCH_THREADS (2, in total) BENCH_SECONDS (20 per client count)
#   BENCH_CLIENTS ("1 2 8 1:scores": client counts, N:OUTPUTS for other outputs than
#   BENCH_OUTPUTS; scores alone encode no PNG, which separates HTTP + decode from encoding)
#   BENCH_OUTPUTS (cam,erased_cam,mask,scores)  BENCH_BATCH (4)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=${ECSNET_BUILD_DIR:-$root/build}
py=${ECSNET_PYTHON:-$root/.venv/bin/python}
workers=${BENCH_WORKERS:-2}
threads=${BENCH_THREADS:-2}
seconds=${BENCH_SECONDS:-20}
clients=${BENCH_CLIENTS:-1 2 8 1:scores}
batch=${BENCH_BATCH:-4}
export BENCH_OUTPUTS=${BENCH_OUTPUTS:-cam,erased_cam,mask,scores}

for b in ecsnet-server ecsnet bench_engine; do
  [[ -x $build/bin/$b ]] || { echo "server/run.sh: $build/bin/$b is missing: build first" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "server/run.sh: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "server/run.sh: curl is not installed" >&2; exit 1; }

tmp=$(mktemp -d)
srv_pid=
cleanup() {
  if [[ -n $srv_pid ]]; then kill -TERM "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

model=${BENCH_MODEL:-}
if [[ -z $model ]]; then
  model=$(ls "$root"/models/*.safetensors 2>/dev/null | head -1 || true)
fi
if [[ -z $model ]]; then
  echo "server/run.sh: no model given or shipped: training a small one for a few steps" >&2
  "$build/bin/ecsnet" synth --out "$tmp/syn" --count 8 --seed 1 --size 64 --classes 3 >/dev/null
  "$build/bin/ecsnet" train --data "$tmp/syn" --out "$tmp/model.safetensors" --steps 2 \
    --batch 2 --crop 64 --threads "$threads" --quiet >/dev/null
  model=$tmp/model.safetensors
fi

export BENCH_IMAGE=$tmp/bench.jpg
"$py" - "$BENCH_IMAGE" <<'PY'
import sys
import numpy as np
from PIL import Image
h, w = 375, 500
y, x = np.mgrid[0:h, 0:w].astype(np.float32)
img = np.stack([128 + 100 * np.sin(x / 37), 128 + 100 * np.cos(y / 23), (x + y) / 4], -1)
img[((x - 320) ** 2 + (y - 170) ** 2) < 90 ** 2] = [230, 200, 40]
img += np.random.default_rng(0).normal(0, 12, img.shape)
Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(sys.argv[1], quality=90)
PY

ECSNET_SHIPPED_MODEL=none OMP_WAIT_POLICY=passive "$build/bin/ecsnet-server" \
  --listen 127.0.0.1:0 --model "$model" --device cpu --workers "$workers" --threads "$threads" \
  --queue 64 --access-log off --request-timeout-ms 600000 --data-dir "$tmp/data" \
  >"$tmp/server.log" 2>&1 &
srv_pid=$!
port=
for _ in $(seq 100); do
  port=$(sed -n 's/.*listening on .* port \([0-9]*\).*/\1/p' "$tmp/server.log")
  [[ -n $port ]] && break
  kill -0 "$srv_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n $port ]] || { echo "server/run.sh: the server did not start" >&2; exit 1; }
url=http://127.0.0.1:$port
echo "server/run.sh: $(grep -m1 'serving model' "$tmp/server.log" | sed 's/^[^ ]* info //')," \
  "$workers workers, $threads threads, outputs $BENCH_OUTPUTS" >&2

# warm-up: every worker allocates its arena and primitives once
for _ in $(seq $((workers * 2))); do
  curl -sf -o /dev/null -F "image=@$BENCH_IMAGE" -F "outputs=$BENCH_OUTPUTS" "$url/cam"
done

metric() { # sum and count of a histogram in /metrics
  curl -sf "$url/metrics" | awk -v n="$1" '$1 == n"_sum" {s=$2} $1 == n"_count" {c=$2} END {print s+0, c+0}'
}

wait_idle() { # requests left over by the last run (wrk stops mid-queue) must not count in the next
  for _ in $(seq 600); do
    curl -sf "$url/metrics" | grep -qx 'ecsnet_requests_in_flight 1' && return 0 # this request
    sleep 0.2
  done
  echo "server/run.sh: the server did not become idle" >&2
  exit 1
}

results=$tmp/results
: >"$results"
for spec in $clients; do
  c=${spec%%:*}
  outs=$BENCH_OUTPUTS
  [[ $spec == *:* ]] && outs=${spec#*:}
  echo "server/run.sh: $c client(s), outputs $outs, ${seconds}s" >&2
  wait_idle
  read -r is0 ic0 < <(metric ecsnet_inference_seconds)
  read -r ds0 dc0 < <(metric ecsnet_decode_seconds)
  line=$(BENCH_OUTPUTS=$outs wrk -t1 -c"$c" -d"${seconds}s" --timeout 120s -s "$here/post.lua" \
    "$url/cam" | grep '^RESULT')
  wait_idle
  read -r is1 ic1 < <(metric ecsnet_inference_seconds)
  read -r ds1 dc1 < <(metric ecsnet_decode_seconds)
  echo "clients=$c outputs=$outs $line infer_s=$(awk "BEGIN{print $is1-$is0}") infer_n=$((ic1 - ic0))" \
    "decode_s=$(awk "BEGIN{print $ds1-$ds0}") decode_n=$((dc1 - dc0))" >>"$results"
done

echo "server/run.sh: batching: bench_engine small, batch 1 and $batch, $((threads / workers > 0 ? threads / workers : 1)) thread(s)" >&2
bt=$((threads / workers > 0 ? threads / workers : 1))
b1=$("$build/bin/bench_engine" small --size 384 --batch 1 --runs 5 --threads "$bt" 2>/dev/null)
bn=$("$build/bin/bench_engine" small --size 384 --batch "$batch" --runs 3 --threads "$bt" 2>/dev/null)

python3 - "$results" "$workers" "$b1" "$bn" "$batch" <<'PY'
import sys
rows = [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in open(sys.argv[1])]
workers = int(sys.argv[2])
print(f"{'clients':>7} {'outputs':<26} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'model ms':>9}"
      f" {'decode ms':>9} {'overhead':>8} {'n':>5} {'errors':>6}")
for r in rows:
    n = int(r["requests"])
    rps = n / (int(r["duration_us"]) / 1e6)
    mean = float(r["mean_us"]) / 1e3
    inf = float(r["infer_s"]) * 1e3 / max(int(r["infer_n"]), 1)
    dec = float(r["decode_s"]) * 1e3 / max(int(r["decode_n"]), 1)
    over = 1 - inf / mean if mean > 0 else float("nan")
    errs = sum(int(r[k]) for k in ("non2xx", "connect", "read", "write", "timeout"))
    ov = f"{100 * over:7.1f}%" if int(r["clients"]) <= workers else "  (queue)"
    print(f"{r['clients']:>7} {r['outputs']:<26} {rps:7.2f} {int(r['p50_us']) / 1e3:8.1f} {int(r['p99_us']) / 1e3:8.1f}"
          f" {mean:8.1f} {inf:9.1f} {dec:9.2f} {ov:>8} {n:5d} {errs:6d}")
def ms(line):
    return float(dict(kv.split("=", 1) for kv in line.split())["ms"])
b = int(sys.argv[5])
one, many = ms(sys.argv[3]), ms(sys.argv[4]) / b
print(f"batching (small network, 384 px): {one:.1f} ms per image at batch 1, {many:.1f} ms per "
      f"image at batch {b}: {'pays' if many < 0.9 * one else 'does not pay'} "
      f"({100 * (1 - many / one):+.0f}% per image)")
PY
