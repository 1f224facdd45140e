"""Replicas follow the registry (--registry-watch-ms): two servers share one data directory,
as the compose file's replicas share the models volume; only the first has admin. A version
activated through the first one's /admin is served by the second within the watch period
(plus the load), while a client posting /cam to the second sees no failed request. A server
with --registry-watch-ms 0, or with --model, keeps what it serves; a corrupt pointer is
logged once and leaves the served model in place."""
import threading
import time

import requests

from test_admin_fixture import FAST, admin, admin_server, submit, synth, wait_job
from test_server_fixture import Server


def _served(s):
    r = s.get("/health/ready")
    return (r.json()["model"]["name"], r.json()["model"]["version"]) if r.ok else None


def _wait_served(s, want, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if _served(s) == want:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"still serving {_served(s)}, not {want}, after {timeout} s")


def _two_versions(tmp_path, bin_path):
    data = tmp_path / "data"
    synth(bin_path, data / "datasets" / "syn", count=12, seed=3)
    a = admin_server(data)
    j = submit(a, dict(FAST, dataset="syn", steps=2, model_name="m", activate=True, seed=1))
    wait_job(a, j["id"], until=("succeeded",), timeout=300)
    j = submit(a, dict(FAST, dataset="syn", steps=2, model_name="m", seed=2))
    wait_job(a, j["id"], until=("succeeded",), timeout=300)
    return data, a


def test_replica_serves_what_the_admin_replica_activates(tmp_path, bin_path):
    data, a = _two_versions(tmp_path, bin_path)
    b = Server("--device", "cpu", "--registry-watch-ms", "200", data_dir=data)
    still = Server("--device", "cpu", "--registry-watch-ms", "0", data_dir=data)
    try:
        assert _served(b) == ("m", 1) and _served(still) == ("m", 1)
        assert b.wait_line(r"watching .*ACTIVE every 200 ms", timeout=5)
        img = (data / "datasets" / "syn" / "JPEGImages" / "000000.jpg").read_bytes()
        stop, versions, errors = threading.Event(), [], []

        def client():
            sess = requests.Session()
            while not stop.is_set():
                try:
                    r = sess.post(b.url + "/cam", files={"image": ("x.jpg", img, "image/jpeg")},
                                  data={"outputs": "scores"}, timeout=60)
                    if r.status_code == 200:
                        versions.append(r.json()["model"]["version"])
                    else:
                        errors.append((r.status_code, r.text[:200]))
                except requests.RequestException as e:
                    errors.append(("exception", repr(e)))

        threads = [threading.Thread(target=client) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        r = admin(a, "POST", "/admin/models/m/versions/2/activate")
        assert r.status_code == 200, r.text
        took = _wait_served(b, ("m", 2), timeout=10)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(timeout=90)
        assert not errors, errors[:5]
        assert 1 in versions and versions[-1] == 2, versions[-10:]
        assert took < 10
        assert b.wait_line(r"serving model m version 2", timeout=5)
        # watch off: the start's choice stays
        assert _served(still) == ("m", 1)
        # and back, without load
        assert admin(a, "POST", "/admin/models/m/versions/1/activate").status_code == 200
        _wait_served(b, ("m", 1), timeout=10)
    finally:
        for s in (b, still, a):
            s.stop()
    assert b.proc.returncode == 0


def test_explicit_model_is_not_swapped_and_bad_pointer_is_logged_once(tmp_path, bin_path):
    data, a = _two_versions(tmp_path, bin_path)
    pinned = Server("--device", "cpu", "--registry-watch-ms", "100", "--model",
                    str(data / "models" / "m" / "1.safetensors"), data_dir=data)
    b = Server("--device", "cpu", "--registry-watch-ms", "100", data_dir=data)
    try:
        assert not pinned.wait_line(r"watching .*ACTIVE", timeout=0.5)
        assert admin(a, "POST", "/admin/models/m/versions/2/activate").status_code == 200
        _wait_served(b, ("m", 2), timeout=10)
        time.sleep(0.5)
        assert _served(pinned) == ("m", 1)
        a.stop()
        (data / "models" / "ACTIVE").write_text("garbage\n")
        assert b.wait_line(r"registry watch: .*corrupt", timeout=5)
        time.sleep(0.6)
        assert sum("corrupt" in line for line in b.lines) == 1
        assert _served(b) == ("m", 2)
        # a pointer naming a version that cannot be loaded: logged once, the old one served
        (data / "models" / "m" / "3.safetensors").write_bytes(b"not a model")
        (data / "models" / "ACTIVE").write_text("m 3\n")
        assert b.wait_line(r"cannot serve m version 3", timeout=5)
        time.sleep(0.6)
        assert sum("cannot serve m version 3" in line for line in b.lines) == 1
        assert _served(b) == ("m", 2)
        (data / "models" / "ACTIVE").write_text("m 1\n")
        _wait_served(b, ("m", 1), timeout=10)
    finally:
        for s in (pinned, b, a):
            s.stop()
    assert b.proc.returncode == 0 and pinned.proc.returncode == 0
