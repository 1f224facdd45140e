"""The HTTP API of the real ecsnet-server: every route, every input encoding of POST /cam, the
error bodies and statuses, request ids, CORS and the admin gate. No model is built in yet, so
a valid POST /cam ends in 503 model_not_ready (after full validation and decoding)."""
import base64
import json
import pathlib
import re

import pytest
import requests
import yaml

from test_server_fixture import jpeg_bytes, png_bytes, server, server_factory  # noqa: F401

REPO = pathlib.Path(__file__).resolve().parents[2]
ERROR_KEYS = {"error"}


def assert_error(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == ERROR_KEYS and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert re.fullmatch(r"[a-z][a-z0-9_]*", body["error"]["code"])
    assert body["error"]["message"]
    assert r.headers.get("X-Request-Id")
    if status == 503:
        assert int(r.headers["Retry-After"]) >= 1
    return body


def test_health_routes(server):
    for path in ("/health", "/health/live"):
        r = server.get(path)
        assert r.status_code == 200 and r.json() == {"status": "UP"}
    r = server.get("/health/ready")
    assert r.status_code == 503
    assert r.json()["status"] == "DOWN"
    assert int(r.headers["Retry-After"]) >= 1
    assert requests.head(server.url + "/health/live", timeout=5).status_code == 200


def test_models_routes(server):
    r = server.get("/v1/models")
    assert r.status_code == 200 and r.json() == {"models": []}
    assert_error(server.get("/v1/models/voc"), 404, "model_not_found")


def test_openapi_is_the_yaml(server):
    r = server.get("/openapi.json")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    with open(REPO / "api" / "openapi.yaml", encoding="utf-8") as f:
        assert r.json() == yaml.safe_load(f)


def test_unknown_route_and_method(server):
    assert_error(server.get("/nope"), 404, "not_found")
    r = requests.delete(server.url + "/health", timeout=5)
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["Allow"]
    r = server.get("/cam")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["Allow"].startswith("POST")


def test_request_ids(server):
    a, b = server.get("/health"), server.get("/health")
    assert re.fullmatch(r"[0-9a-f]{32}", a.headers["X-Request-Id"])
    assert a.headers["X-Request-Id"] != b.headers["X-Request-Id"]
    r = server.get("/nope", headers={"X-Request-Id": "client-id.42"})
    assert r.headers["X-Request-Id"] == "client-id.42"
    assert server.wait_line(r"request_id=client-id\.42") is not None
    # ids that would corrupt a log line or a header are replaced
    r = server.get("/health", headers={"X-Request-Id": "a b\"c"})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-Id"])
    r = server.post("/cam", data=b"x", headers={"Content-Type": "text/plain",
                                                "X-Request-Id": "err-1"})
    assert r.status_code == 415 and r.headers["X-Request-Id"] == "err-1"


def test_cors_off_by_default(server):
    r = server.get("/health", headers={"Origin": "http://example.org"})
    assert "Access-Control-Allow-Origin" not in r.headers
    r = requests.options(server.url + "/cam", timeout=5)
    assert r.status_code == 405


def test_cors_setting(server_factory):
    s = server_factory("--cors-origin", "*")
    r = s.get("/health", headers={"Origin": "http://example.org"})
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    r = requests.options(s.url + "/cam", headers={"Origin": "http://example.org",
                                                  "Access-Control-Request-Method": "POST"},
                         timeout=5)
    assert r.status_code == 204
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in r.headers["Access-Control-Allow-Headers"]


def test_admin_disabled_without_token(server):
    body = assert_error(server.get("/admin/jobs"), 403, "admin_disabled")
    assert "admin" in body["error"]["message"]
    assert_error(server.post("/admin/train", json={}), 403, "admin_disabled")


def test_admin_token(server_factory, tmp_path):
    token = "s3cret-token-0123456789"
    s = server_factory(env={"ECSNET_ADMIN_TOKEN": token})
    r = s.get("/admin/jobs")
    assert_error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(s.get("/admin/jobs", headers={"Authorization": "Bearer wrong"}), 401,
                 "unauthorized")
    assert_error(s.get("/admin/jobs", headers={"Authorization": "Bearer " + token + "x"}), 401,
                 "unauthorized")
    r = s.get("/admin/jobs", headers={"Authorization": "Bearer " + token})
    assert r.status_code == 200 and r.json() == {"jobs": []}  # the admin API: docs/admin.md
    f = tmp_path / "token"
    f.write_text(token + "\n")
    s2 = server_factory("--admin-token-file", str(f))
    assert s2.get("/admin/jobs", headers={"Authorization": "Bearer " + token}).status_code == 200
    assert s2.get("/admin/jobs").status_code == 401


# ---- POST /cam: the three encodings ------------------------------------------------------------

@pytest.mark.parametrize("path", ["/cam", "/v1/cam"])
def test_cam_raw_png_and_jpeg_validate_then_model_not_ready(server, path):
    for ctype, data in (("image/png", png_bytes()), ("image/jpeg", jpeg_bytes())):
        r = server.post(path + "?labels=cat,3&outputs=cam,mask&scales=1,1.5&flip=true",
                        data=data, headers={"Content-Type": ctype})
        body = assert_error(r, 503, "model_not_ready")
        assert "model" in body["error"]["message"]


def test_cam_multipart(server):
    files = {"image": ("a.png", png_bytes(), "image/png")}
    r = server.post("/cam", files=files, data={"labels": "cat", "outputs": "cam,scores"})
    assert_error(r, 503, "model_not_ready")
    # parameters may come from the query string as well, but not twice
    r = server.post("/cam?format=json", files=files, data={"labels": "cat"})
    assert_error(r, 503, "model_not_ready")
    r = server.post("/cam?labels=dog", files=files, data={"labels": "cat"})
    assert_error(r, 400, "duplicate_parameter")
    r = server.post("/cam", files={"picture": ("a.png", png_bytes(), "image/png")})
    assert_error(r, 400, "missing_image")


def test_cam_json_base64(server):
    b64 = base64.b64encode(jpeg_bytes()).decode()
    r = server.post("/cam", json={"image": b64, "labels": ["cat", 2], "outputs": ["mask"],
                                  "scales": [1, 0.5], "flip": False})
    assert_error(r, 503, "model_not_ready")
    r = server.post("/cam", json={"image": "data:image/jpeg;base64," + b64})
    assert_error(r, 503, "model_not_ready")
    assert_error(server.post("/cam", json={"image": "%%%"}), 400, "invalid_base64")
    assert_error(server.post("/cam", json={"labels": "cat"}), 400, "missing_image")
    assert_error(server.post("/cam", json={"image": b64, "colour": 1}), 422, "unknown_parameter")
    r = server.post("/cam", data='{"image": "', headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_json")
    r = server.post("/cam", data="[]", headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_json")


# ---- POST /cam: errors ---------------------------------------------------------------------------

def test_cam_media_types(server):
    assert_error(server.post("/cam", data=b"abc", headers={"Content-Type": "text/plain"}), 415,
                 "unsupported_media_type")
    r = requests.post(server.url + "/cam", data=b"abc", timeout=5,
                      headers={"Content-Type": ""})
    assert_error(r, 415, "unsupported_media_type")
    assert_error(server.post("/cam", data=b"abc", headers={"Content-Type": "nonsense"}), 400,
                 "invalid_content_type")
    # an image/jpeg body that is not an image at all
    assert_error(server.post("/cam", data=b"GIF89a" + b"\0" * 64,
                             headers={"Content-Type": "image/jpeg"}), 400, "invalid_image")
    assert_error(server.post("/cam", data=b"", headers={"Content-Type": "image/png"}), 400,
                 "missing_image")


def test_cam_malformed_multipart(server):
    hdr = {"Content-Type": "multipart/form-data; boundary=XX"}
    assert_error(server.post("/cam", data=b"--XX\r\nContent-Disposition: form-data; name=\"image\""
                             b"\r\n\r\n\x89PNG", headers=hdr), 400, "invalid_multipart")
    assert_error(server.post("/cam", data=b"no boundary here", headers=hdr), 400,
                 "invalid_multipart")
    r = server.post("/cam", data=b"x", headers={"Content-Type": "multipart/form-data"})
    assert_error(r, 400, "invalid_multipart")


def test_cam_truncated_and_corrupt_images(server):
    jpg = jpeg_bytes(128, 96)
    r = server.post("/cam", data=jpg[: len(jpg) // 2], headers={"Content-Type": "image/jpeg"})
    assert_error(r, 400, "invalid_image")
    png = bytearray(png_bytes(64, 64))
    r = server.post("/cam", data=bytes(png[:40]), headers={"Content-Type": "image/png"})
    assert_error(r, 400, "invalid_image")
    png[len(png) // 2] ^= 0xFF  # inside IDAT: a CRC or zlib error
    r = server.post("/cam", data=bytes(png), headers={"Content-Type": "image/png"})
    assert_error(r, 400, "invalid_image")
    assert server.get("/health/live").status_code == 200


@pytest.mark.parametrize("query,status,code", [
    ("labels=cat,cat", 422, "duplicate_label"),
    ("labels=%3Cscript%3E", 422, "unknown_label"),
    ("labels=cat,,dog", 422, "invalid_labels"),
    ("labels=" + ",".join(f"c{i}" for i in range(21)), 422, "too_many_labels"),
    ("outputs=cam,heatmap", 422, "unknown_output"),
    ("format=gif", 422, "unknown_format"),
    ("format=png", 400, "ambiguous_request"),
    ("format=png&outputs=cam&labels=a,b", 400, "ambiguous_request"),
    ("format=png&outputs=cam,mask", 400, "ambiguous_request"),
    ("format=png&outputs=cam&labels=a,b&label=c", 422, "unknown_label"),
    ("label=a", 400, "ambiguous_request"),
    ("scales=0.1", 422, "invalid_value"),
    ("scales=3", 422, "invalid_value"),  # past the engine's 2: a 422, never a 500
    ("scales=abc", 422, "invalid_value"),
    ("flip=maybe", 422, "invalid_value"),
    ("alpha_bg=1.5", 422, "invalid_value"),
    ("alpha_bg=-0.1", 422, "invalid_value"),
    ("alpha_bg=abc", 422, "invalid_value"),
    ("alpha_bg=nan", 422, "invalid_value"),
    ("alpha_bg=", 422, "invalid_value"),
    ("alpha_bg=0.3&alpha_bg=0.4", 400, "duplicate_parameter"),
    ("colour=red", 422, "unknown_parameter"),
])
def test_cam_parameter_errors(server, query, status, code):
    r = server.post("/cam?" + query, data=png_bytes(),
                    headers={"Content-Type": "image/png"})
    assert_error(r, status, code)


def test_cam_png_format_valid_requests_reach_the_model_check(server):
    for q in ("format=png&outputs=mask", "format=png&outputs=cam&labels=cat",
              "format=png&outputs=cam&labels=cat,dog&label=dog"):
        r = server.post("/cam?" + q, data=png_bytes(), headers={"Content-Type": "image/png"})
        assert_error(r, 503, "model_not_ready")


def test_metrics(server):
    server.get("/health/live")
    server.get("/nope")
    server.post("/cam", data=png_bytes(), headers={"Content-Type": "image/png"})
    r = server.get("/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    t = r.text
    assert 'ecsnet_requests_total{route="/health/live",status="200"} 1' in t
    assert 'ecsnet_requests_total{route="other",status="404"} 1' in t
    assert 'ecsnet_requests_total{route="/cam",status="503"} 1' in t
    assert re.search(r'ecsnet_request_duration_seconds_bucket\{route="/cam",le="\+Inf"\} 1', t)
    assert re.search(r"^ecsnet_decode_seconds_count 1$", t, re.M)
    for name in ("ecsnet_queue_depth 0", "ecsnet_queue_capacity 64", "ecsnet_workers 1",
                 "ecsnet_model_ready 0",
                 "ecsnet_inference_seconds_count 0"):
        assert re.search("^" + re.escape(name) + "$", t, re.M), name
    assert "ecsnet_model_info{" not in t  # no model, no series
    assert "ecsnet_batch_size" not in t  # requests run one at a time: no batch histogram
    # every sample line is well formed: name{labels} value
    for line in t.splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r'[a-z_]+(\{([a-z_]+="[^"]*",?)+\})? [0-9.e+-]+', line), line


def test_keeps_serving_after_bad_input(server):
    for junk in (b"\x00" * 100, b"--", b"\xff\xd8\xff" + b"\x00" * 50):
        server.post("/cam", data=junk, headers={"Content-Type": "image/jpeg"})
        server.post("/cam", data=junk, headers={"Content-Type": "multipart/form-data; boundary=-"})
    assert server.get("/health/live").status_code == 200
    assert server.proc.poll() is None
