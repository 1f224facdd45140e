"""The README's shell examples that call the server (every ```sh block with a curl in it, but
the deployment's, which need Docker) run
here as written, against the real server on the shipped model: the address, build/bin/ and
/tmp/demo are the only things replaced. Each block must exit 0 and no answer may be an error,
so the examples stay true."""
import json
import pathlib
import re
import subprocess

import pytest

from conftest import REPO
from test_server_fixture import Server

SYNTH = REPO / "models" / "ecsnet-synth-small.safetensors"
# The model `make run` serves; the synthetic benchmark's examples need the synthetic one.
LITE0 = REPO / "models" / "ecsnet-imagenet-lite0.safetensors"


def blocks():
    """The curl examples; those that start containers are the deployment test's
    (tests/deploy/run.sh runs those commands on a dockerd of its own)."""
    text = (REPO / "README.md").read_text()
    return [b for b in re.findall(r"```sh\n(.*?)```", text, re.S)
            if "curl " in b and "docker" not in b]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    started = {}

    def get(model):
        if model not in started:
            if not model.exists():
                pytest.fail(f"{model} is missing: `make build` converts it")
            started[model] = Server("--model", str(model),
                                    data_dir=tmp_path_factory.mktemp("data"))
        return started[model]
    yield get
    for s in started.values():
        s.stop()


def test_there_are_examples():
    assert len(blocks()) >= 3


@pytest.mark.parametrize("i", range(len(blocks())))
def test_readme_example_runs(servers, build_dir, tmp_path, i):
    block = blocks()[i]
    served = servers(SYNTH if "synth" in block or "JPEGImages" in block else LITE0)
    demo = tmp_path / "demo"
    script = (block.replace("http://127.0.0.1:8080", served.url)
              .replace("build/bin/", f"{build_dir}/bin/")
              .replace("/tmp/demo", str(demo))
              .replace(".venv/share/", f"{REPO}/.venv/share/"))
    if "JPEGImages" in script and "synth" not in script:
        subprocess.run([str(build_dir / "bin" / "ecsnet"), "synth", "--out", str(demo), "--count",
                        "8", "--seed", "3"], check=True, capture_output=True)
    # Each curl's answer on its own line, to check none is an error.
    script = 'curl() { command curl "$@"; echo; }\n' + script
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr + p.stdout[-2000:]
    answers = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert answers or list(tmp_path.glob("*.png")), p.stdout[-500:]
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png.name
    for ln in answers:
        j = json.loads(ln)
        assert "error" not in j, ln[:300]
        for item in j.get("results", []):
            assert "result" in item and item["result"], item
