"""Shared pytest fixtures: where the build is, and the reference framework's settings."""
import os
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def _build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("ECSNET_BUILD_DIR", REPO / "build")).resolve()


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def build_dir() -> pathlib.Path:
    return _build_dir()


@pytest.fixture(scope="session")
def bin_path(build_dir):
    """bin_path("ecsnet") -> path of a built binary; a missing binary is a failure, not a skip."""

    def find(name: str) -> pathlib.Path:
        p = build_dir / "bin" / name
        if not p.exists():
            pytest.fail(f"{p} is missing: build first (make build)")
        return p

    return find


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        pass
