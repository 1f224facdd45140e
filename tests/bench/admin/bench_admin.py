"""/cam latency with one closed-loop client, idle and while a training job runs.

The admin API trains on the serving engine; inference must keep priority (the job pauses
between ops while a request waits or runs). This measures what a client sees: the p50 and p90
of POST /cam with one client sending its next request as soon as the last answer arrives, first
with the server idle, then while a training job runs, and prints both with their ratio (the
target: within 2x). The job's own throughput meanwhile is printed too, from its progress, and
what the server process spent per request in each phase: CPU time and context switches (all
its threads; a training job that waited by polling would show up here as wake-ups)."""
import argparse
import io
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import requests
from PIL import Image

TOKEN = "bench-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def start(build, data, threads, train_threads):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECSNET_")}
    env.update(ECSNET_ADMIN_TOKEN=TOKEN, ECSNET_SHIPPED_MODEL="none")
    cmd = [f"{build}/bin/ecsnet-server", "--listen", "127.0.0.1:0", "--device", "cpu",
           "--workers", "1", "--threads", str(threads), "--train-threads", str(train_threads),
           "--data-dir", data, "--access-log", "off"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    for line in p.stdout:
        m = re.search(r"listening on .* port (\d+)", line)
        if m:
            return p, f"http://127.0.0.1:{m.group(1)}"
    raise SystemExit("bench_admin: the server did not start")


def wait(url, jid, until, timeout=600):
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        j = requests.get(f"{url}/admin/jobs/{jid}", headers=AUTH, timeout=10).json()
        if j["status"] in until:
            return j
        if j["status"] in ("failed", "cancelled", "interrupted"):
            raise SystemExit(f"bench_admin: job {jid} {j['status']}: {j.get('error')}")
        time.sleep(0.2)
    raise SystemExit(f"bench_admin: job {jid} timed out")


def latencies(url, img, n):
    out = []
    s = requests.Session()
    for _ in range(n):
        t0 = time.perf_counter()
        r = s.post(f"{url}/cam", files={"image": ("x.jpg", img, "image/jpeg")},
                   data={"outputs": "cam,mask,scores"}, timeout=60)
        out.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"bench_admin: /cam answered {r.status_code}: {r.text[:200]}")
    return out


def proc_counts(pid):
    """CPU seconds and context switches of the whole process so far."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    switches = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            for line in open(f"/proc/{pid}/task/{tid}/status"):
                if "ctxt_switches:" in line:
                    switches += int(line.split()[-1])
        except OSError:
            pass  # a thread that ended meanwhile
    return cpu, switches


def measured(url, img, n, pid):
    c0, s0 = proc_counts(pid)
    lat = latencies(url, img, n)
    c1, s1 = proc_counts(pid)
    return lat, (c1 - c0) * 1000 / n, (s1 - s0) / n


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("ECSNET_BUILD_DIR", "build"))
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-threads", type=int, default=1)
    ap.add_argument("--size", default="320x240", help="the /cam image, WxH")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        data = f"{tmp}/data"
        subprocess.run([f"{a.build}/bin/ecsnet", "synth", "--out", f"{data}/datasets/syn",
                        "--count", "48", "--seed", "3", "--size", "96", "--classes", "3"],
                       check=True, capture_output=True)
        p, url = start(a.build, data, a.threads, a.train_threads)
        try:
            train = {"dataset": "syn", "batch_size": 4, "crop": 96, "checkpoint_every": 50}
            r = requests.post(f"{url}/admin/train", headers=AUTH, timeout=10,
                              json=dict(train, steps=4, model_name="bench", activate=True))
            wait(url, r.json()["id"], ("succeeded",))
            rng = np.random.default_rng(1)
            arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=90)
            img = buf.getvalue()
            latencies(url, img, 5)  # warm-up: primitives, arenas
            idle, cpu_i, cs_i = measured(url, img, a.requests, p.pid)
            r = requests.post(f"{url}/admin/train", headers=AUTH, timeout=10,
                              json=dict(train, steps=100000, model_name="bench_bg"))
            jid = r.json()["id"]
            wait(url, jid, ("running",))
            j0 = requests.get(f"{url}/admin/jobs/{jid}", headers=AUTH, timeout=10).json()
            busy, cpu_b, cs_b = measured(url, img, a.requests, p.pid)
            j1 = requests.get(f"{url}/admin/jobs/{jid}", headers=AUTH, timeout=10).json()
            running = j1["status"] == "running"
            steps = ((j1["progress"] or {}).get("step", 0) - (j0["progress"] or {}).get("step", 0))
            requests.delete(f"{url}/admin/jobs/{jid}", headers=AUTH, timeout=10)
            wait(url, jid, ("cancelled",))
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
    p50i, p50b = statistics.median(idle), statistics.median(busy)
    print(f"image {w}x{h}, {a.requests} requests each, server --threads {a.threads} "
          f"--train-threads {a.train_threads}, one closed-loop client")
    print(f"idle:          p50 {p50i:7.1f} ms   p90 {pct(idle, 0.9):7.1f} ms   "
          f"server CPU {cpu_i:6.1f} ms, {cs_i:6.1f} context switches per request")
    print(f"while training: p50 {p50b:7.1f} ms   p90 {pct(busy, 0.9):7.1f} ms   "
          f"server CPU {cpu_b:6.1f} ms, {cs_b:6.1f} context switches per request   "
          f"(job running throughout: {running}; {steps} training steps meanwhile)")
    print(f"ratio p50 training/idle: {p50b / p50i:.2f} (target <= 2)")
    return 0 if running else 1


if __name__ == "__main__":
    sys.exit(main())
