"""Soak: minutes of mixed traffic against one server, with training jobs and model swaps.

Client threads send, round-robin, good POST /cam requests (JSON and PNG answers, 1x1 images
among them), bad ones (not an image, an unknown label, a bad parameter), aborted uploads (half
a body, then the socket closed), oversized ones (a declared body past --max-body), health,
metrics and model listings, and unknown routes. Meanwhile an admin thread trains short jobs
that activate their model (a swap each time), activates older versions back and forth, and
deletes versions no longer needed. The server's RSS and open descriptors are sampled all along;
RSS and descriptors are compared at quiet moments (no request in flight, no job running),
after the warm-up, every sixth of the rest and at the end.

Passes when: the server never dies, no answer is a 5xx, the quiet RSS grows by at most
--max-growth-mb over the first quiet sample, and the quiet descriptor count at the end equals
the first one.

Usage: soak.py --minutes M [--clients N] [--json FILE]"""
import argparse
import io
import json
import os
import pathlib
import random
import socket
import sys
import threading
import time

import requests

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import FAST, admin, admin_server, synth, wait_job  # noqa: E402


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def png(w, h, seed):
    from PIL import Image
    import numpy as np
    buf = io.BytesIO()
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr, "RGB").save(buf, format="PNG")
    return buf.getvalue()


class Tally:
    def __init__(self):
        self.mu = threading.Lock()
        self.by_kind = {}
        self.five = []
        self.busy = 0  # requests in flight

    def add(self, kind, status):
        with self.mu:
            d = self.by_kind.setdefault(kind, {})
            d[status] = d.get(status, 0) + 1
            if isinstance(status, int) and status >= 500:
                self.five.append((kind, status))


def raw_send(port, head, body=b"", close_after=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(head + body[:close_after] if close_after is not None else head + body)
        if close_after is not None:
            return "aborted"
        data = b""
        while b"\r\n" not in data:
            b = s.recv(4096)
            if not b:
                break
            data += b
        return int(data.split(b" ", 2)[1]) if data else "closed"
    finally:
        s.close()


def client(s, tally, stop, pause, images, rng):
    url = s.url
    kinds = ["cam_json", "cam_png", "cam_tiny", "not_image", "bad_label", "bad_param",
             "aborted", "oversized", "health", "metrics", "models", "unknown"]
    while not stop.is_set():
        if pause.is_set():
            time.sleep(0.05)
            continue
        kind = rng.choice(kinds)
        with tally.mu:
            tally.busy += 1
        try:
            if kind == "cam_json":
                r = requests.post(url + "/cam", files={"image": ("a.png", images["small"])},
                                  data={"outputs": "mask,cam,scores"}, timeout=60)
            elif kind == "cam_png":
                r = requests.post(url + "/cam?format=png&outputs=mask", data=images["small"],
                                  headers={"Content-Type": "image/png"}, timeout=60)
            elif kind == "cam_tiny":
                r = requests.post(url + "/cam", files={"image": ("a.png", images["tiny"])},
                                  timeout=60)
            elif kind == "not_image":
                r = requests.post(url + "/cam", files={"image": ("a.png", b"not a picture")},
                                  timeout=60)
            elif kind == "bad_label":
                r = requests.post(url + "/cam", files={"image": ("a.png", images["small"])},
                                  data={"labels": "zebra"}, timeout=60)
            elif kind == "bad_param":
                r = requests.post(url + "/cam?scales=9", data=images["small"],
                                  headers={"Content-Type": "image/png"}, timeout=60)
            elif kind == "aborted":
                body = images["small"]
                head = (b"POST /cam HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body))
                tally.add(kind, raw_send(s.port, head, body, close_after=len(body) // 2))
                continue
            elif kind == "oversized":
                head = (b"POST /cam HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                        b"Content-Length: 5000000\r\n\r\n")
                tally.add(kind, raw_send(s.port, head))
                continue
            elif kind == "health":
                r = requests.get(url + rng.choice(["/health/live", "/health/ready"]), timeout=30)
            elif kind == "metrics":
                r = requests.get(url + "/metrics", timeout=30)
            elif kind == "models":
                r = requests.get(url + "/v1/models", timeout=30)
            else:
                r = requests.get(url + "/no/such/route", timeout=30)
            tally.add(kind, r.status_code)
        except requests.RequestException as e:
            tally.add(kind, type(e).__name__)
        except OSError as e:
            tally.add(kind, type(e).__name__)
        finally:
            with tally.mu:
                tally.busy -= 1


def trainer(s, stop, events, rng, pause, idle):
    """Short jobs that activate their model, activations back and forth, deletions."""
    n = 0
    while not stop.is_set():
        if pause.is_set():
            idle.set()
            time.sleep(0.05)
            continue
        idle.clear()
        try:
            r = admin(s, "POST", "/admin/train",
                      json=dict(FAST, dataset="syn", steps=8, seed=n, activate=True,
                                model_name="soak"))
            if r.status_code != 202:
                events.append(("train_submit", r.status_code))
                time.sleep(1)
                continue
            job = wait_job(s, r.json()["id"], until=("succeeded", "failed"), timeout=300)
            events.append(("job", job["status"]))
            n += 1
            vs = [v["version"] for v in
                  admin(s, "GET", "/admin/models").json()["models"][-1]["versions"]]
            if len(vs) >= 2:  # an older version activated, then the newest again
                for v in (vs[-2], vs[-1]):
                    r = admin(s, "POST", f"/admin/models/soak/versions/{v}/activate")
                    events.append(("activate", r.status_code))
            for v in vs[:-3]:  # keep the registry small
                r = admin(s, "DELETE", f"/admin/models/soak/versions/{v}")
                events.append(("delete", r.status_code))
        except Exception as e:  # noqa: BLE001 - recorded, judged below
            events.append(("trainer_error", repr(e)))
            time.sleep(1)
        stop.wait(rng.uniform(0.5, 2.0))


def quiet_sample(pid, tally, pause, idle):
    """(RSS MB, descriptors) with no request in flight and no job running."""
    pause.set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with tally.mu:
            if tally.busy == 0 and idle.is_set():
                break
        time.sleep(0.05)
    time.sleep(1.0)  # closed connections reaped, the job's threads gone
    out = (round(rss_kb(pid) / 1024, 1), fds(pid))
    pause.clear()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=20)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=None, help="seconds (default: 15%%)")
    ap.add_argument("--max-growth-mb", type=float, default=20)
    ap.add_argument("--json")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-admin", action="store_true", help="requests only: no jobs, no swaps")
    a = ap.parse_args()
    total = a.minutes * 60
    warm = a.warmup if a.warmup is not None else max(20.0, 0.15 * total)
    build = pathlib.Path(os.environ["ECSNET_BUILD_DIR"])
    repo = HERE.parents[1]
    shipped = repo / "models" / "ecsnet-synth-small.safetensors"  # the synthetic model: fast, on every machine
    import tempfile
    tmp = tempfile.TemporaryDirectory(prefix="ecsnet-soak-")
    data = pathlib.Path(tmp.name) / "data"
    synth(lambda n: build / "bin" / n, data / "datasets" / "syn", count=16, seed=3)
    s = admin_server(data, "--workers", "2", "--max-body", "1048576",
                     env={"ECSNET_SHIPPED_MODEL": str(shipped), "ECSNET_ACCESS_LOG": "off"})
    pid = s.proc.pid
    rng = random.Random(a.seed)
    images = {"small": png(64, 48, 1), "tiny": png(1, 1, 2)}
    tally, events, stop, pause = Tally(), [], threading.Event(), threading.Event()
    idle = threading.Event()
    threads = [threading.Thread(target=client, args=(s, tally, stop, pause, images,
                                                     random.Random(a.seed + i)), daemon=True)
               for i in range(a.clients)]
    if a.no_admin:
        idle.set()
    else:
        threads.append(threading.Thread(target=trainer, args=(s, stop, events, rng, pause, idle),
                                        daemon=True))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    # the live curve every `step` s; a quiet sample (no request, no job) after the warm-up,
    # then every `quiet_every` s and at the end: those are what is compared
    curve, quiet, died = [], [], False
    step = max(2.0, total / 120)
    quiet_every = max(20.0, (total - warm) / 6)
    next_quiet = warm
    while time.monotonic() - t0 < total:
        time.sleep(step)
        if s.proc.poll() is not None:
            died = True
            break
        el = time.monotonic() - t0
        curve.append({"t_s": round(el, 1), "rss_mb": round(rss_kb(pid) / 1024, 1),
                      "fds": fds(pid)})
        print(f"soak [{el:6.1f}s] RSS {curve[-1]['rss_mb']:6.1f} MB  fds {curve[-1]['fds']:3d}",
              flush=True)
        if el >= next_quiet and total - el > quiet_every / 2:
            rss, n = quiet_sample(pid, tally, pause, idle)
            quiet.append({"t_s": round(el, 1), "rss_mb": rss, "fds": n})
            print(f"soak: quiet at {el:.0f}s: RSS {rss} MB, {n} fds", flush=True)
            next_quiet = el + quiet_every
    if not died:
        rss, n = quiet_sample(pid, tally, pause, idle)
        quiet.append({"t_s": round(time.monotonic() - t0, 1), "rss_mb": rss, "fds": n})
    stop.set()
    for t in threads:
        t.join(timeout=120)
    fd_warm = quiet[0]["fds"] if quiet else None
    fd_end = quiet[-1]["fds"] if len(quiet) > 1 else None
    after = [q["rss_mb"] for q in quiet]
    growth = (max(after) - after[0]) if after else 0.0
    requests_total = sum(sum(v.values()) for v in tally.by_kind.values())
    rc = s.stop() if not died else s.proc.returncode
    failures = []
    if died:
        failures.append(f"the server died (exit {s.proc.returncode})")
    if tally.five:
        failures.append(f"{len(tally.five)} 5xx answers: {tally.five[:10]}")
    if growth > a.max_growth_mb:
        failures.append(f"RSS grew {growth:.1f} MB after the warm-up (limit {a.max_growth_mb})")
    if fd_warm is None or fd_end != fd_warm:
        failures.append(f"descriptors: {fd_warm} after the warm-up, {fd_end} at the end")
    bad_events = [e for e in events if e[0] in ("trainer_error", "train_submit")
                  or (e[0] == "job" and e[1] != "succeeded")
                  or (e[0] in ("activate", "delete") and e[1] != 200)]
    if bad_events:
        failures.append(f"admin: {bad_events[:10]}")
    if rc not in (0, None):
        failures.append(f"the server stopped with {rc}")
    summary = {"minutes": a.minutes, "clients": a.clients, "warmup_s": warm,
               "requests": requests_total, "by_kind": tally.by_kind,
               "jobs": sum(1 for e in events if e[0] == "job"),
               "activations": sum(1 for e in events if e[0] == "activate"),
               "deletions": sum(1 for e in events if e[0] == "delete"),
               "rss_mb_after_warmup": after[0] if after else None,
               "rss_mb_max_after_warmup": max(after) if after else None,
               "rss_mb_end": after[-1] if after else None,
               "rss_growth_mb": round(growth, 1), "fds_after_warmup": fd_warm,
               "fds_end": fd_end, "five_xx": len(tally.five), "crashes": int(died),
               "quiet": quiet, "curve": curve, "failures": failures}
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(summary, indent=1))
    print(f"soak: {requests_total} requests, {summary['jobs']} jobs, "
          f"{summary['activations']} activations, {summary['deletions']} deletions; RSS "
          f"{summary['rss_mb_after_warmup']} -> max {summary['rss_mb_max_after_warmup']} MB "
          f"(+{summary['rss_growth_mb']}), fds {fd_warm} -> {fd_end}, 5xx {len(tally.five)}, "
          f"crashes {int(died)}")
    for f in failures:
        print("soak: FAIL " + f, file=sys.stderr)
    tmp.cleanup()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
