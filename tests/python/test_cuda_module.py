"""The CUDA backend as a module loaded at run time (build/lib/libecsnet-cuda.so).

A CPU server neither links nor maps cudart, cuBLAS or cuDNN and stays small; `--device cuda`
where the module is missing, cannot load or finds no GPU is one line on stderr and a failed
start (exit 1), for the server and the command line alike; `--device auto` falls back to the
CPU without a word; the module exports its one entry point. The no-GPU cases are skipped on a
machine with the NVIDIA driver (there `--device cuda` would start)."""
import ctypes
import io
import os
import re
import shutil
import subprocess
import time

import pytest
from PIL import Image

from conftest import REPO
from test_server_fixture import Server, server_binary

SHIPPED = REPO / "models" / "ecsnet-synth-small.safetensors"
CUDA_LIBS = re.compile(r"/lib(cudart|cudnn\w*|cublas(Lt)?|cuda|ecsnet-cuda)\.so")
RSS_BOUND_MB = 100


def cuda_built(build_dir):
    return "cuda=ON" in (build_dir / "ecsnet-config.txt").read_text().split()


def driver_present():
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


no_driver = pytest.mark.skipif(driver_present(), reason="the NVIDIA driver is installed here")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECSNET_")}
    env.update(extra)
    return env


def cuda_maps(pid):
    with open(f"/proc/{pid}/maps") as f:
        return sorted({m.group(0) for m in map(CUDA_LIBS.search, f) if m})


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) / 1024


def wait_ready(s, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if s.get("/health/ready").status_code == 200:
            return
        time.sleep(0.05)
    pytest.fail("the server never became ready")


def start_failure(data_dir, *args, env=None):
    """Runs a server that must fail to start: (exit status, stderr)."""
    p = subprocess.run([str(server_binary()), "--listen", "127.0.0.1:0", "--model", str(SHIPPED),
                        "--data-dir", str(data_dir), *args], capture_output=True, text=True,
                       timeout=60, env=clean_env(**(env or {})))
    return p.returncode, p.stderr


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    p = tmp_path_factory.mktemp("img") / "a.jpg"
    Image.new("RGB", (64, 48), (200, 120, 40)).save(p, format="JPEG")
    return p


def test_binaries_link_no_cuda_library(bin_path):
    if not shutil.which("ldd"):
        pytest.skip("no ldd")
    for name in ("ecsnet-server", "ecsnet", "backend_check", "bench_gpu"):
        out = subprocess.run(["ldd", str(bin_path(name))], capture_output=True, text=True).stdout
        assert not CUDA_LIBS.search(out), f"{name} links a CUDA library:\n{out}"


def test_cpu_server_maps_no_cuda_library_and_stays_small(tmp_path):
    # the deployment's own command line: default threads (one per core), the shipped model
    s = Server("--device", "cpu", "--model", str(SHIPPED), "--threads", "0",
               data_dir=tmp_path / "data")
    try:
        wait_ready(s)
        time.sleep(0.5)
        assert cuda_maps(s.proc.pid) == []
        rss = rss_mb(s.proc.pid)
        assert rss < RSS_BOUND_MB, f"idle RSS {rss:.1f} MB"
        # serving, the metrics and the registry listing leave the module alone too
        buf = io.BytesIO()
        Image.new("RGB", (96, 72), (30, 140, 200)).save(buf, format="JPEG")
        r = s.post("/cam", files={"image": ("a.jpg", buf.getvalue(), "image/jpeg")},
                   data={"outputs": "scores"})
        assert r.status_code == 200, r.text
        assert s.get("/metrics").status_code == 200
        assert s.get("/v1/models").status_code == 200
        assert cuda_maps(s.proc.pid) == []
    finally:
        assert s.stop() == 0


@no_driver
@pytest.mark.parametrize("module_path", [None, "empty"])
def test_auto_falls_back_to_cpu_quietly(tmp_path, module_path):
    env = {}
    if module_path:
        (tmp_path / "empty").mkdir()
        env["ECSNET_BACKEND_PATH"] = str(tmp_path / "empty")
    s = Server("--device", "auto", "--model", str(SHIPPED), env=env, data_dir=tmp_path / "data")
    try:
        wait_ready(s)
        assert s.wait_line(r"serving model .* on cpu$", timeout=1) is not None
        assert cuda_maps(s.proc.pid) == []
    finally:
        assert s.stop() == 0
    assert s.proc.stderr.read() == ""


@no_driver
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_device_without_gpu_is_one_line(device, build_dir, tmp_path):
    rc, err = start_failure(tmp_path / "data", "--device", device)
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("ecsnet-server: "), err
    assert f"'{device}'" in err
    assert ("no CUDA GPU answered" if cuda_built(build_dir) else "no CUDA backend") in err, err


def test_cuda_device_without_module_is_one_line(tmp_path, build_dir):
    if not cuda_built(build_dir):
        pytest.skip("this build has no CUDA backend")
    (tmp_path / "mod").mkdir()
    mod_env = {"ECSNET_BACKEND_PATH": str(tmp_path / "mod")}
    rc, err = start_failure(tmp_path / "data", "--device", "cuda", env=mod_env)
    assert rc == 1
    assert err.count("\n") == 1, err
    assert "libecsnet-cuda.so was not found" in err and str(tmp_path / "mod") in err, err
    # a file by that name that is no module
    (tmp_path / "mod" / "libecsnet-cuda.so").write_bytes(b"not a shared object")
    rc, err = start_failure(tmp_path / "data", "--device", "cuda:0", env=mod_env)
    assert rc == 1
    assert err.count("\n") == 1 and "cannot be loaded" in err, err


@no_driver
def test_cli_cuda_device_is_one_line(bin_path, build_dir, image, tmp_path):
    ecsnet = str(bin_path("ecsnet"))
    cam = [ecsnet, "cam", str(image), "--model", str(SHIPPED), "--out", str(tmp_path / "o")]
    p = subprocess.run(cam + ["--device", "cuda"], capture_output=True, text=True, timeout=60,
                       env=clean_env())
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("ecsnet: "), p.stderr
    assert "'cuda'" in p.stderr
    if cuda_built(build_dir):
        (tmp_path / "none").mkdir()
        p = subprocess.run(cam + ["--device", "cuda"], capture_output=True, text=True,
                           timeout=60, env=clean_env(ECSNET_BACKEND_PATH=str(tmp_path / "none")))
        assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
        assert "libecsnet-cuda.so was not found" in p.stderr
    p = subprocess.run(cam + ["--device", "tpu"], capture_output=True, text=True, timeout=60,
                       env=clean_env())
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    # auto is the CPU here, and writes the CAMs
    p = subprocess.run(cam + ["--device", "auto", "--labels", "cat"], capture_output=True,
                       text=True, timeout=120, env=clean_env())
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "o" / "mask.png").exists()


def test_module_exports_one_entry_point(build_dir):
    if not cuda_built(build_dir):
        pytest.skip("this build has no CUDA backend")
    mod = build_dir / "lib" / "libecsnet-cuda.so"
    assert mod.exists(), f"{mod} is missing"
    if not shutil.which("nm"):
        pytest.skip("no nm")
    out = subprocess.run(["nm", "-D", "--defined-only", str(mod)], capture_output=True,
                         text=True, check=True).stdout
    assert [l.split()[-1] for l in out.splitlines() if l.strip()] == ["ecs_backend_module_register"]
