"""Disk full: the data directory on a small tmpfs, filled up.

A server with admin on serves the shipped model from its registry (on the tmpfs). The disk is
filled to within a few hundred KiB (room for jobs.db's rows, none for a checkpoint); then:
a training job fails with a clear error on the job, the server keeps answering /health and
/cam, the active model file is unchanged; after the filler is removed the next job succeeds.

The tmpfs is mounted in a private mount namespace (unshare -m as root, unshare -rm otherwise),
so it disappears with the process. Exit 0 when every check held, 77 when no namespace can be
made (outside CI only: with CI=true that is a failure)."""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
SIZE_MB = 48


def reexec_in_namespace():
    unshare = shutil.which("unshare")
    if unshare:
        flags = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
        env = dict(os.environ, ECSNET_DISKFULL_NS="1")
        probe = subprocess.run([unshare, *flags, "true"], capture_output=True)
        if probe.returncode == 0:
            os.execve(unshare, [unshare, *flags, "--propagation", "private", sys.executable,
                                *sys.argv], env)
    msg = "diskfull: cannot make a private mount namespace (unshare -m / -rm)"
    print(msg, file=sys.stderr)
    sys.exit(1 if os.environ.get("CI") == "true" else 77)


def sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def fill(path, leave):
    """Writes path until the filesystem has `leave` bytes free."""
    st = os.statvfs(path.parent)
    free = st.f_bavail * st.f_frsize
    with open(path, "ab") as f:
        chunk = b"\0" * (1 << 20)
        n = free - leave
        while n > 0:
            try:
                f.write(chunk[:min(n, len(chunk))])
                f.flush()
            except OSError:
                break
            n -= min(n, len(chunk))
    st = os.statvfs(path.parent)
    return st.f_bavail * st.f_frsize


def main():
    if os.environ.get("ECSNET_DISKFULL_NS") != "1":
        reexec_in_namespace()
    sys.path.insert(0, str(HERE))
    from common import FAST, admin, admin_server, submit, synth, wait_job

    build = pathlib.Path(os.environ["ECSNET_BUILD_DIR"])
    repo = HERE.parents[1]
    shipped = repo / "models" / "ecsnet-synth-small.safetensors"  # the synthetic model: fast, on every machine
    mnt = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"ecsnet-diskfull-{os.getpid()}"
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mnt)],
                   check=True)
    failures, record = [], {}
    t0 = time.monotonic()

    def log(m):
        print(f"diskfull [{time.monotonic() - t0:5.1f}s] {m}", flush=True)

    def check(cond, what):
        log(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures.append(what)

    data = mnt / "data"
    synth(lambda n: build / "bin" / n, data / "datasets" / "syn", count=16, seed=3)
    s = admin_server(data, env={"ECSNET_SHIPPED_MODEL": str(shipped)})
    try:
        active = (data / "models" / "ACTIVE").read_text().split()
        model_file = data / "models" / active[0] / f"{active[1]}.safetensors"
        before = sha(model_file)
        img = (data / "datasets" / "syn" / "JPEGImages").iterdir().__next__().read_bytes()
        left = fill(mnt / "filler", 256 * 1024)
        record["free_bytes_when_full"] = left
        log(f"filled: {left} bytes free of {SIZE_MB} MiB")
        r = admin(s, "POST", "/admin/train", json=dict(FAST, dataset="syn", steps=6, seed=1))
        record["submit_when_full"] = r.status_code
        if r.status_code == 202:
            job = wait_job(s, r.json()["id"], until=("succeeded", "failed"), timeout=120)
            record["job_when_full"] = {"status": job["status"], "error": job["error"]}
            check(job["status"] == "failed", f"the job on a full disk failed ({job['status']})")
            check(bool(job["error"]) and "space" in job["error"].lower(),
                  f"its error says why: {job['error']!r}")
        else:
            body = r.json()
            record["job_when_full"] = body
            check(r.status_code == 507 and body["error"]["code"] == "insufficient_storage",
                  f"a job that cannot be recorded is a 507: {r.status_code} {r.text}")
        check(s.get("/health/live").status_code == 200, "/health/live still answers")
        check(s.get("/health/ready").status_code == 200, "/health/ready still answers")
        c = s.post("/cam", files={"image": ("x.jpg", img, "image/jpeg")},
                   data={"outputs": "mask"}, timeout=60)
        check(c.status_code == 200, f"/cam still answers 200 ({c.status_code})")
        check(sha(model_file) == before, "the active model file is unchanged")
        check(not [p for p in data.rglob("*.tmp*")], "no temporary file is left behind")
        left = fill(mnt / "filler", 0)  # now not even a row fits
        r = admin(s, "POST", "/admin/train", json=dict(FAST, dataset="syn", steps=6, seed=1))
        record["submit_when_completely_full"] = {"free": left, "status": r.status_code}
        if r.status_code == 202:
            job = wait_job(s, r.json()["id"], until=("succeeded", "failed"), timeout=120)
            check(job["status"] == "failed", f"a job on a completely full disk fails "
                                             f"({job['status']}: {job['error']})")
        else:
            check(r.status_code == 507 and r.json()["error"]["code"] == "insufficient_storage",
                  f"a job that cannot be recorded is a 507: {r.status_code} {r.text}")
        check(s.get("/health/live").status_code == 200, "/health/live answers on a full disk")
        check(sha(model_file) == before, "the active model file is still unchanged")
        (mnt / "filler").unlink()
        log("filler removed")
        job = submit(s, dict(FAST, dataset="syn", steps=6, seed=1, activate=True))
        job = wait_job(s, job["id"], until=("succeeded", "failed"), timeout=120)
        record["job_after_freeing"] = job["status"]
        check(job["status"] == "succeeded", f"the next job succeeds ({job['status']}: "
                                            f"{job['error']})")
        ready = s.get("/health/ready").json()
        check(ready["model"]["name"] == "syn", "and its model is served")
    finally:
        s.stop()
        subprocess.run(["umount", str(mnt)])
    record["failures"] = failures
    out = os.environ.get("ECSNET_DISKFULL_JSON")
    if out:
        pathlib.Path(out).write_text(json.dumps(record, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
