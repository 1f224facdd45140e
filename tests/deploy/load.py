#!/usr/bin/env python3
"""Closed-loop POST /cam load for the deployment test (tests/deploy/run.sh); standard library
only, so it runs with the host's python3.

CLIENTS threads each post IMAGE to URL/cam, wait for the answer, and post again, until the
stop file appears. A client never retries: every answer that is not a 200 with a JSON body,
and every connection error or timeout, is a failed request. On stop, one JSON summary goes to
--out: requests, failures (with the first few reasons), the answers' model (name, version)
with the time each was first and last seen, and the time of the first answer from each
model, so the caller can tell when a newly activated version reached the clients."""
import argparse
import http.client
import json
import os
import threading
import time
import urllib.parse
import uuid


def multipart(image: bytes, fields: dict) -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    parts = []
    for k, v in fields.items():
        parts.append(f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    parts.append(f'--{b}\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n'
                 f'Content-Type: image/jpeg\r\n\r\n'.encode() + image + b"\r\n")
    parts.append(f"--{b}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={b}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--labels", default="")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    fields = {"labels": a.labels} if a.labels else {}
    body, ctype = multipart(open(a.image, "rb").read(), fields)
    lock = threading.Lock()
    t0 = time.time()
    st = {"requests": 0, "ok": 0, "failed": 0, "reasons": [], "models": {}}
    stop = threading.Event()

    def record(ok, reason=None, model=None):
        now = round(time.time() - t0, 3)
        with lock:
            st["requests"] += 1
            if ok:
                st["ok"] += 1
                key = f"{model['name']}/{model['version']}"
                seen = st["models"].setdefault(key, {"count": 0, "first": now, "last": now})
                seen["count"] += 1
                seen["last"] = now
            else:
                st["failed"] += 1
                if len(st["reasons"]) < 20:
                    st["reasons"].append({"t": now, "reason": reason})

    def client():
        while not stop.is_set():
            conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=a.timeout)
            try:
                conn.request("POST", "/cam", body=body, headers={"Content-Type": ctype})
                r = conn.getresponse()
                data = r.read()
                if r.status == 200:
                    record(True, model=json.loads(data)["model"])
                else:
                    record(False, reason=f"HTTP {r.status}: {data[:200].decode(errors='replace')}")
            except Exception as e:  # every kind of failure counts, none is retried
                record(False, reason=repr(e))
            finally:
                conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(a.clients)]
    for t in threads:
        t.start()
    while not os.path.exists(a.stop_file):
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=a.timeout + 5)
    st["seconds"] = round(time.time() - t0, 3)
    st["t0"] = t0
    with open(a.out + ".tmp", "w") as f:
        json.dump(st, f, indent=1)
    os.replace(a.out + ".tmp", a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
