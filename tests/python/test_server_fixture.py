"""Starting and stopping the real ecsnet-server binary for the server tests.

Each server runs on a free port (--listen 127.0.0.1:0; the port is read from its start-up
line), with its stdout (events and access log) collected by a thread so the pipe never fills.
Other test_server_*.py modules import from here; the one test below checks the helper itself.
"""
import io
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib

import pytest
import requests

from conftest import _build_dir


def server_binary():
    p = _build_dir() / "bin" / "ecsnet-server"
    if not p.exists():
        pytest.fail(f"{p} is missing: build first")
    return p


class Server:
    def __init__(self, *args, env=None, data_dir=None):
        self.args = list(args)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ECSNET_")}
        full_env.update(env or {})
        # Without this the repository's models/*.safetensors would be served (the shipped
        # model): each test chooses its model explicitly.
        full_env.setdefault("ECSNET_SHIPPED_MODEL", "none")
        self.lines = []
        self._cv = threading.Condition()
        cmd = [str(server_binary()), "--listen", "127.0.0.1:0", "--threads", "1"] + self.args
        if data_dir is not None:
            cmd += ["--data-dir", str(data_dir)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=full_env, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        line = self.wait_line(r"listening on .* port (\d+)", timeout=10)
        if line is None:
            self.proc.kill()
            err = self.proc.stderr.read()
            raise RuntimeError(f"server did not start: {err}")
        self.port = int(re.search(r"port (\d+)", line).group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def _read(self):
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()

    def wait_line(self, pattern, timeout=5.0):
        """The first output line matching pattern, waiting for it; None if it never comes."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            # Once the process has exited, its last lines are whatever the reader drains.
            exited = self.proc.poll() is not None
            if exited:
                self._reader.join(timeout=max(0.0, deadline - time.monotonic()))
            with self._cv:
                for line in self.lines[seen:]:
                    if rx.search(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (exited and not self._reader.is_alive()):
                    return None
                self._cv.wait(min(left, 0.1))

    def get(self, path, **kw):
        kw.setdefault("timeout", 10)
        return requests.get(self.url + path, **kw)

    def post(self, path, **kw):
        kw.setdefault("timeout", 30)
        return requests.post(self.url + path, **kw)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=2)
        return self.proc.returncode


@pytest.fixture
def server_factory(tmp_path):
    started = []

    def make(*args, env=None):
        s = Server(*args, env=env, data_dir=tmp_path / "data")
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def server(server_factory):
    return server_factory()


# ---- images -------------------------------------------------------------------------------------

def png_bytes(w=48, h=32, mode="RGB"):
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(w * 1000 + h)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    img = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(w=48, h=32, quality=90, smooth=False):
    from PIL import Image
    import numpy as np

    if smooth:
        x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
        y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
        arr = np.broadcast_to((x + y) / 2, (h, w, 3)).astype(np.uint8)
    else:
        arr = np.random.default_rng(7).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_declared(w, h, bit_depth=8, color_type=2, idat=b""):
    """A PNG whose IHDR declares w x h, with the given (possibly tiny) IDAT payload."""
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def png_bomb(w, h):
    """A valid 1-bit grey PNG of w x h zero pixels: a few KB that decode to w*h pixels."""
    row = b"\x00" + b"\x00" * ((w + 7) // 8)
    comp = zlib.compressobj(9)
    out = [comp.compress(row * 256) for _ in range(h // 256)]
    out.append(comp.compress(row * (h % 256)))
    out.append(comp.flush())
    return png_declared(w, h, bit_depth=1, color_type=0, idat=b"".join(out))


def jpeg_declared(w, h):
    """A real small JPEG with its SOF0 frame size rewritten to w x h."""
    data = bytearray(jpeg_bytes(16, 16))
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", data, i + 5, h, w)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def test_fixture_starts_and_stops(server):
    r = server.get("/health/live")
    assert r.status_code == 200
    assert server.wait_line(r'"GET /health/live" 200') is not None
    assert server.stop() == 0
