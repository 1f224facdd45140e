"""Model hot swap under load: while clients send /cam requests without pause, the served model
is switched between two registry versions many times. Not one request may fail; every answer
comes from one of the two versions, and both are seen. Run it against a sanitizer build too
(ECSNET_BUILD_DIR=build-asan): a model freed while a request still used it would be reported
there, and the server's stderr is checked for it."""
import threading
import time

import requests

from test_admin_fixture import FAST, admin, admin_server, submit, synth, wait_job


def test_swap_under_concurrent_cam_load(tmp_path, bin_path):
    data = tmp_path / "data"
    synth(bin_path, data / "datasets" / "syn", count=12, seed=3)
    s = admin_server(data, "--workers", "2", "--queue", "64")
    try:
        a = submit(s, dict(FAST, dataset="syn", steps=2, model_name="m", activate=True, seed=1))
        wait_job(s, a["id"], until=("succeeded",), timeout=300)
        b = submit(s, dict(FAST, dataset="syn", steps=2, model_name="m", seed=2))
        wait_job(s, b["id"], until=("succeeded",), timeout=300)
        img = (data / "datasets" / "syn" / "JPEGImages" / "000000.jpg").read_bytes()

        stop = threading.Event()
        results, errors = [], []
        lock = threading.Lock()

        def client():
            sess = requests.Session()
            while not stop.is_set():
                try:
                    r = sess.post(s.url + "/cam", files={"image": ("x.jpg", img, "image/jpeg")},
                                  data={"outputs": "scores,cam"}, timeout=60)
                    with lock:
                        if r.status_code == 200:
                            results.append(r.json()["model"]["version"])
                        else:
                            errors.append((r.status_code, r.text[:200]))
                except requests.RequestException as e:
                    with lock:
                        errors.append(("exception", repr(e)))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        swaps = 0
        t_end = time.monotonic() + 6
        while time.monotonic() < t_end:
            v = 2 if swaps % 2 == 0 else 1
            r = admin(s, "POST", f"/admin/models/m/versions/{v}/activate")
            assert r.status_code == 200, r.text
            swaps += 1
            time.sleep(0.15)
        stop.set()
        for t in threads:
            t.join(timeout=90)
        assert not errors, errors[:5]
        assert swaps >= 10
        assert len(results) >= 20, len(results)
        assert set(results) == {1, 2}, set(results)
        # the last activation is what is served now
        last = 2 if (swaps - 1) % 2 == 0 else 1
        r = requests.post(s.url + "/cam", files={"image": ("x.jpg", img, "image/jpeg")},
                          data={"outputs": "scores"}, timeout=60)
        assert r.json()["model"] == {"name": "m", "version": last}
    finally:
        rc = s.stop()
    err = s.proc.stderr.read() if s.proc.stderr else ""
    assert "AddressSanitizer" not in err and "runtime error" not in err, err[-4000:]
    assert rc == 0, err[-2000:]
