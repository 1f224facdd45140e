"""Shared by the reliability checks (tests/reliability/): the server fixture and the admin
helpers of tests/python, and the on-disk integrity checks of the data directory."""
import pathlib
import sqlite3
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))

import st_io  # noqa: E402
from test_admin_fixture import (FAST, TOKEN, admin, admin_server, submit, synth,  # noqa: E402,F401
                                wait_job)
from test_server_fixture import Server  # noqa: E402,F401


def jobs_db_ok(data):
    """PRAGMA integrity_check of jobs.db (the server must be stopped)."""
    db = data / "jobs.db"
    if not db.exists():
        return True, "no jobs.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()
    return rows == [("ok",)], rows


def model_complete(path):
    """Every tensor of the file readable: a complete safetensors file with model metadata."""
    try:
        tensors, meta = st_io.load(path)
    except Exception as e:  # a truncated or torn file
        return False, f"{path}: {e}"
    if not tensors or "backbone" not in meta:
        return False, f"{path}: no tensors or no backbone"
    return True, ""


def registry_ok(data):
    """Every version loads, and ACTIVE (when present) names one that exists."""
    models = data / "models"
    if not models.exists():
        return True, "no registry"
    for f in sorted(models.glob("*/*.safetensors")):
        ok, why = model_complete(f)
        if not ok:
            return False, why
    active = models / "ACTIVE"
    if active.exists():
        parts = active.read_text().split()
        if len(parts) != 2:
            return False, f"ACTIVE is {active.read_text()!r}"
        target = models / parts[0] / f"{parts[1]}.safetensors"
        if not target.exists():
            return False, f"ACTIVE names {target}, which is missing"
        return model_complete(target)
    return True, ""


def leftovers(data):
    """Temporary files a write cut short left behind (proof a kill landed mid-write)."""
    return sorted(str(p.relative_to(data)) for p in data.rglob("*")
                  if p.is_file() and (".tmp" in p.name or p.name.startswith(".tmp")))
