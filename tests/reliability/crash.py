"""Crash consistency: SIGKILL the server at random moments of a training job and restart it.

One training job (checkpoints every step, activation at the end) is killed KILLS times: most
kills at a random moment of the training steps (so some land inside a checkpoint write), the
last ones after the final step, while the model is saved, evaluated, registered and activated.
After every kill, with the server down: jobs.db passes PRAGMA integrity_check, every registry
version and the ACTIVE one are complete files, the checkpoint (when there is one) is complete;
then, with the server up again: the job is interrupted (or already succeeded) and is resumed.
At the end the job has succeeded at its last step and its model is active and served. Then
activations are hammered (two versions, back and forth) and the server killed amid them.

Usage: crash.py [--kills N] [--seed S] [--json FILE]. Exit 0 when every check held."""
import argparse
import json
import pathlib
import random
import signal
import sys
import tempfile
import threading
import time

from common import (FAST, admin, admin_server, jobs_db_ok, leftovers, model_complete,
                    registry_ok, submit, synth, wait_job)

STEPS = 60


def kill(s):
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait(timeout=10)
    s.stop()


def check_disk(data, jid, failures, k):
    for name, (ok, why) in (("jobs.db", jobs_db_ok(data)), ("registry", registry_ok(data))):
        if not ok:
            failures.append(f"kill {k}: {name}: {why}")
    ck = data / "jobs" / str(jid) / "checkpoint.safetensors"
    if ck.exists():
        ok, why = model_complete(ck)
        if not ok:
            failures.append(f"kill {k}: checkpoint: {why}")


def job_phase(s, jid):
    j = admin(s, "GET", f"/admin/jobs/{jid}").json()
    p = j.get("progress") or {}
    return j, p.get("step", 0), p.get("total_steps", STEPS)


def crash_job(data, kills, rng, log):
    failures, record = [], []
    body = dict(FAST, dataset="syn", steps=STEPS, checkpoint_every=1, seed=7, activate=True,
                model_name="crash")
    s = admin_server(data)
    jid = submit(s, body)["id"]
    for k in range(1, kills + 1):
        late = k > kills - 3  # the last kills: after the final step
        wait_job(s, jid, until=("running", "succeeded"))
        if late:  # as soon as the last step is in: saving, evaluating, registering, activating
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                j, step, total = job_phase(s, jid)
                if j["status"] != "running" or step >= total:
                    break
            time.sleep(rng.uniform(0.0, 0.05))
        else:
            time.sleep(rng.uniform(0.05, 1.2))
        j, step, _ = job_phase(s, jid)
        kill(s)
        left = leftovers(data)  # a kill inside a write leaves its temporary file
        check_disk(data, jid, failures, k)
        s = admin_server(data)
        swept = [f for f in leftovers(data) if f.startswith("jobs/")]
        if swept:
            failures.append(f"kill {k}: checkpoint temporary files left after restart: {swept}")
        j = admin(s, "GET", f"/admin/jobs/{jid}").json()
        ck = (j.get("checkpoint") or {}).get("step")
        rec = {"kill": k, "at_step": step, "after_final_step": late, "status": j["status"],
               "checkpoint_step": ck, "temp_files_left": left}
        record.append(rec)
        log(f"kill {k}: at step {step}{' (final phase)' if late else ''}; restarted: "
            f"{j['status']}, checkpoint {ck}, temp files {left}")
        if j["status"] == "interrupted":
            r = admin(s, "POST", f"/admin/jobs/{jid}/resume")
            if r.status_code != 202:
                failures.append(f"kill {k}: resume answered {r.status_code}: {r.text}")
        elif j["status"] != "succeeded":
            failures.append(f"kill {k}: the job is {j['status']}, not interrupted")
    j = wait_job(s, jid, until=("succeeded", "failed", "cancelled", "interrupted"), timeout=300)
    p = j["progress"] or {}
    if j["status"] != "succeeded" or p.get("step") != STEPS:
        failures.append(f"the job ended {j['status']} at step {p.get('step')}: {j.get('error')}")
    ready = s.get("/health/ready").json()
    model = (j.get("result") or {}).get("model")
    if not model or ready.get("model", {}).get("name") != model["name"]:
        failures.append(f"the served model {ready.get('model')} is not the job's {model}")
    s.stop()
    check_disk(data, jid, failures, "end")
    return s, jid, failures, record


def crash_activations(data, kills, rng, log):
    """Two versions activated back and forth by a client thread; the server killed amid it."""
    failures = []
    s = admin_server(data)
    versions = [v["version"] for v in
                admin(s, "GET", "/admin/models").json()["models"][0]["versions"]]
    if len(versions) < 2:
        submit(s, dict(FAST, dataset="syn", steps=2, model_name="crash", seed=1))
        wait_job(s, admin(s, "GET", "/admin/jobs").json()["jobs"][0]["id"],
                 until=("succeeded",), timeout=120)
        versions = [v["version"] for v in
                    admin(s, "GET", "/admin/models").json()["models"][0]["versions"]]
    for k in range(1, kills + 1):
        stop = threading.Event()

        def hammer(srv=s):
            i = 0
            while not stop.is_set():
                try:
                    admin(srv, "POST", f"/admin/models/crash/versions/{versions[i % 2]}/activate",
                          timeout=5)
                except Exception:
                    return
                i += 1

        t = threading.Thread(target=hammer, daemon=True)
        t.start()
        time.sleep(rng.uniform(0.2, 0.8))
        kill(s)
        stop.set()
        t.join(timeout=10)
        ok, why = registry_ok(data)
        if not ok:
            failures.append(f"activation kill {k}: {why}")
        s = admin_server(data)
        ready = s.get("/health/ready")
        log(f"activation kill {k}: registry {'ok' if ok else why}; ready {ready.status_code} "
            f"{ready.json().get('model', {}).get('version')}")
        if ready.status_code != 200:
            failures.append(f"activation kill {k}: not ready after restart: {ready.text}")
    s.stop()
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--activation-kills", type=int, default=3)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--json")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    t0 = time.monotonic()

    def log(msg):
        print(f"crash [{time.monotonic() - t0:5.1f}s] {msg}", flush=True)

    log(f"seed {a.seed}")
    import os
    build = pathlib.Path(os.environ["ECSNET_BUILD_DIR"])

    class Bin:
        def __call__(self, name):
            return build / "bin" / name

    with tempfile.TemporaryDirectory(prefix="ecsnet-crash-") as tmp:
        data = pathlib.Path(tmp) / "data"
        synth(Bin(), data / "datasets" / "syn", count=24, seed=3)
        _, _, failures, record = crash_job(data, a.kills, rng, log)
        failures += crash_activations(data, a.activation_kills, rng, log)
    summary = {"seed": a.seed, "kills": a.kills, "activation_kills": a.activation_kills,
               "kills_leaving_temp_files": sum(1 for r in record if r["temp_files_left"]),
               "kills_after_final_step": sum(1 for r in record if r["after_final_step"]),
               "failures": failures, "record": record,
               "seconds": round(time.monotonic() - t0, 1)}
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(summary, indent=1))
    for f in failures:
        print("crash: FAIL " + f, file=sys.stderr)
    log(f"{a.kills + a.activation_kills} kills, {len(failures)} failures, "
        f"{summary['kills_leaving_temp_files']} kills inside a write")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
