"""The live server against its own /openapi.json with schemathesis: every documented route,
generated valid and invalid inputs, checking statuses, content types, headers and response
schemas, one call at a time (test_server_stateful.py follows the links). A 503 is expected (no
model yet), so instead of schemathesis's "no 5xx" check the test reads the server's own metrics
afterwards: not one 500 may have been answered."""
import re
import subprocess
import sys
import pathlib

from test_server_fixture import server, server_factory  # noqa: F401

VENV_BIN = pathlib.Path(sys.executable).parent


def test_schemathesis_against_live_server(server):
    cmd = [str(VENV_BIN / "schemathesis"), "run", server.url + "/openapi.json",
           "--checks", "all", "--exclude-checks", "not_a_server_error",
           "--hypothesis-max-examples", "25", "--hypothesis-seed", "20261129",
           "--hypothesis-deadline", "5000", "-w", "1", "--no-color",
           "--max-response-time", "5000", "--stateful", "none"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=280)
    tail = r.stdout[-6000:] + r.stderr[-2000:]
    assert r.returncode == 0, tail
    spec = server.get("/openapi.json").json()
    n_ops = sum(1 for item in spec["paths"].values() for m in item
                if m in ("get", "post", "put", "delete", "patch"))
    assert n_ops >= 25, n_ops  # the public routes, the web page, /admin and /labelstudio
    assert f"{n_ops} passed" in r.stdout, tail  # every operation of the contract
    m = server.get("/metrics").text
    assert not re.search(r'status="500"', m), m
    assert not re.search(r'status="other"', m), m
    # it really exercised POST /cam, not just the health routes
    cam = sum(int(v) for v in re.findall(r'ecsnet_requests_total\{route="/cam",status="\d+"\} (\d+)', m))
    assert cam >= 20, m
    assert server.get("/health/live").status_code == 200


# ---- with a real model: the 200 answers match their schemas too ----------------------------------

def test_model_responses_match_the_schema(tmp_path, bin_path):
    """Generated bodies never hold a decodable image, so the success schemas are checked here
    with real requests to a server serving a tiny model trained on the spot."""
    import base64
    import io

    import numpy as np
    import schemathesis
    from PIL import Image

    from test_server_fixture import Server

    ecsnet = str(bin_path("ecsnet"))
    subprocess.run([ecsnet, "synth", "--out", str(tmp_path / "syn"), "--count", "8", "--seed",
                    "5", "--size", "64", "--classes", "3"], check=True, capture_output=True)
    model = tmp_path / "tiny.safetensors"
    subprocess.run([ecsnet, "train", "--data", str(tmp_path / "syn"), "--out", str(model),
                    "--steps", "2", "--batch", "2", "--crop", "64", "--threads", "1", "--quiet"],
                   check=True, capture_output=True)
    s = Server("--model", str(model), "--device", "cpu", data_dir=tmp_path / "data")
    try:
        schema = schemathesis.from_uri(s.url + "/openapi.json")
        buf = io.BytesIO()
        rng = np.random.default_rng(1)
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(buf, "JPEG")
        b64 = base64.b64encode(buf.getvalue()).decode()
        outputs = ["cam", "erased_cam", "mask", "cam_mask", "ecs_mask", "head_mask", "scores",
                   "erased_image", "overlay"]
        cam = schema["/cam"]["POST"]
        for body, query in (({"image": b64, "outputs": outputs, "labels": ["cat", 2]}, None),
                            ({"image": b64}, None),
                            ({"image": b64}, {"outputs": "mask", "format": "png"}),
                            ({"image": b64, "labels": ["no-such-class"]}, None)):
            case = cam.make_case(body=body, media_type="application/json", query=query)
            r = case.call()
            assert r.status_code in (200, 422), r.text
            case.validate_response(r)
        for path, params in (("/v1/models", None), ("/v1/models/{name}", {"name": "tiny"}),
                             ("/health/ready", None)):
            case = schema[path]["GET"].make_case(path_parameters=params)
            r = case.call()
            assert r.status_code == 200, r.text
            case.validate_response(r)
    finally:
        assert s.stop() == 0


# ---- the engine's refusals never reach the client as a 500 ---------------------------------------

def test_values_the_engine_refuses_are_4xx(tmp_path, repo_root):
    """api/cam.c answers an engine error it has no mapping for as 500 inference_failed; each
    value the engine refuses (engine/src/model/infer.c: a label outside 1..K, alpha_bg outside
    0..1, more than 8 scales or one outside 0.25..2, an image under 8x8) must be stopped
    before it, as a 4xx that says why, or be served (docs/reliability/5xx-audit.md)."""
    import io

    import numpy as np
    from PIL import Image

    from test_server_fixture import Server

    def png(w, h):
        buf = io.BytesIO()
        rng = np.random.default_rng(w * 31 + h)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
        return buf.getvalue()

    s = Server("--model", str(repo_root / "models" / "ecsnet-synth-small.safetensors"),
               "--device", "cpu", data_dir=tmp_path / "data")
    try:
        k = len(s.get("/v1/models").json()["models"][0]["classes"])
        refused = [f"labels={k + 1}", "labels=4294967297", "labels=-1", "alpha_bg=1.5",
                   "alpha_bg=nan", "alpha_bg=-inf", "scales=" + ",".join(["1"] * 9),
                   "scales=0.2", "scales=2.5", "scales=nan", "scales=,", "label_topk=0",
                   "label_topk=21", f"labels=1&label={k}&format=png&outputs=cam"]
        for q in refused:
            r = s.post("/cam?" + q, data=png(20, 20), headers={"Content-Type": "image/png"})
            assert 400 <= r.status_code < 500, (q, r.status_code, r.text)
            assert r.json()["error"]["message"], (q, r.text)
        # at the edges of what is accepted, and under the engine's 8 px (upsampled)
        for (w, h), q in (((20, 20), "alpha_bg=0&scales=0.25,2&flip=true"),
                          ((20, 20), f"labels=0,{k}"), ((1, 1), "scales=0.25"),
                          ((8, 8), "scales=0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25"),
                          ((3, 600), "scales=0.25&refine=true")):
            r = s.post("/cam?" + q, data=png(w, h), headers={"Content-Type": "image/png"})
            assert r.status_code == 200, (w, h, q, r.text)
            assert (r.json()["width"], r.json()["height"]) == (w, h)
        m = s.get("/metrics").text
        assert not re.search(r'status="5\d\d"\} [1-9]', m), m
    finally:
        assert s.stop() == 0
