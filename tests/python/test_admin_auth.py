"""Admin API: bearer-token failures, dataset names that would escape the data directory, 422s
naming the field, 404/405/409 answers, and the admin routes against their OpenAPI schemas with
the token (schemathesis), so every status they answer is documented."""
import os
import pathlib
import re
import subprocess
import sys

import pytest
import requests

from test_admin_fixture import AUTH, TOKEN, admin, admin_server, synth


@pytest.fixture(scope="module")
def env(tmp_path_factory, bin_path):
    root = tmp_path_factory.mktemp("admin-auth")
    data = root / "data"
    synth(bin_path, data / "datasets" / "syn", count=8)
    # a valid dataset outside the data directory, and a symbolic link to it from inside
    synth(bin_path, root / "outside", count=8)
    os.symlink(root / "outside", data / "datasets" / "evil")
    (root / "secret").mkdir()
    s = admin_server(data)
    yield s, root
    assert s.stop() == 0


def test_missing_or_wrong_token_is_401(env):
    s, _ = env
    cases = [{}, {"Authorization": "Bearer wrong-token-0123456789abc"},
             {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"},
             {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Bearer {TOKEN[:-1]}"}]
    for h in cases:
        for method, path in (("GET", "/admin/jobs"), ("POST", "/admin/train"),
                             ("DELETE", "/admin/jobs/1"), ("GET", "/admin/nothing")):
            r = requests.request(method, s.url + path, headers=h, json={"dataset": "syn"},
                                 timeout=10)
            assert r.status_code == 401, (h, path, r.text)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert r.json()["error"]["code"] == "unauthorized"
    # nothing was queued by any of them
    assert admin(s, "GET", "/admin/jobs").json()["jobs"] == []


def test_dataset_names_never_escape_the_datasets_folder(env):
    s, root = env
    for name in ("../secret", "..", "../../etc", "/etc", str(root / "outside"), "syn/../syn",
                 "syn/", ".hidden", "evil", "no-such-set", "a b", ""):
        r = admin(s, "POST", "/admin/train", json={"dataset": name, "steps": 1})
        assert r.status_code == 422, (name, r.text)
        err = r.json()["error"]
        assert err["field"] == "dataset", (name, err)
        assert err["message"].startswith("dataset"), err
    r = admin(s, "POST", "/admin/train", json={"dataset": "evil", "steps": 1})
    assert "outside" in r.json()["error"]["message"]
    r = admin(s, "POST", "/admin/eval", json={"dataset": "../secret"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "dataset"
    assert admin(s, "GET", "/admin/jobs").json()["jobs"] == []


def test_datasets_listing_with_validation_summary(env):
    s, _ = env
    r = admin(s, "GET", "/admin/datasets")
    assert r.status_code == 200, r.text
    ds = {d["name"]: d for d in r.json()["datasets"]}
    assert set(ds) == {"syn", "evil"}
    syn = ds["syn"]
    assert syn["ok"] is True and syn["classes"] == ["cat", "dog", "bird"]
    assert syn["train"] + syn["val"] == 8 and syn["val"] >= 1
    assert syn["masks"] == 8 and syn["missing"] == 0 and syn["problems"] == []
    # the link out is listed as refused, never opened
    assert ds["evil"]["ok"] is False and "outside" in ds["evil"]["error"]
    assert "classes" not in ds["evil"]


@pytest.mark.parametrize("body,field", [
    ({"steps": 2}, "dataset"),
    ({"dataset": "syn", "stpes": 2}, "stpes"),
    ({"dataset": "syn", "steps": 0}, "steps"),
    ({"dataset": "syn", "steps": 2.5}, "steps"),
    ({"dataset": "syn", "steps": "2"}, "steps"),
    ({"dataset": "syn", "steps": 2, "epochs": 1}, "steps"),
    ({"dataset": "syn", "batch_size": 0}, "batch_size"),
    ({"dataset": "syn", "learning_rate": -1}, "learning_rate"),
    ({"dataset": "syn", "delta": 1.5}, "delta"),
    ({"dataset": "syn", "theta": 0}, "theta"),
    ({"dataset": "syn", "warmup": 2}, "warmup"),
    ({"dataset": "syn", "overlay": 9}, "overlay"),
    # more dilation branches than rates (3 by default): refused at once, not a failed job
    ({"dataset": "syn", "overlay": 4}, "overlay"),
    ({"dataset": "syn", "backbone": "resnet38d", "overlay": 4}, "overlay"),
    ({"dataset": "syn", "overlay": 2, "overlay_rates": [2]}, "overlay"),
    ({"dataset": "syn", "no_erase": "yes"}, "no_erase"),
    ({"dataset": "syn", "activate": 1}, "activate"),
    ({"dataset": "syn", "seed": -1}, "seed"),
    ({"dataset": "syn", "model_name": "../x"}, "model_name"),
    ({"dataset": "syn", "model_name": ".x"}, "model_name"),
    ({"dataset": "syn", "backbone": "resnet1000"}, "backbone"),
    ({"dataset": "syn", "base_model": "nosuch"}, "base_model"),
    ({"dataset": "syn", "base_model": "nosuch/x"}, "base_model"),
    ({"dataset": "syn", "base_model": "../../x"}, "base_model"),
])
def test_invalid_train_requests_name_the_field(env, body, field):
    s, _ = env
    r = admin(s, "POST", "/admin/train", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_field" and err["field"] == field, err
    assert field in err["message"]


def test_overlay_within_its_rates_is_accepted(env):
    s, _ = env
    for body in ({"overlay": 3}, {"overlay": 2, "overlay_rates": [2, 3]},
                 {"overlay": 1, "overlay_rates": [5], "backbone": "vgg16d"}):
        r = admin(s, "POST", "/admin/train", json={"dataset": "syn", "steps": 1, **body})
        assert r.status_code == 202, (body, r.text)
        assert admin(s, "DELETE", f"/admin/jobs/{r.json()['id']}").status_code in (202, 409)


def test_bad_bodies_and_routes(env):
    s, _ = env
    r = admin(s, "POST", "/admin/train", data=b"{not json",
              headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    r = admin(s, "POST", "/admin/train", json=[1, 2])
    assert r.status_code == 400
    assert admin(s, "GET", "/admin/jobs/99").status_code == 404
    assert admin(s, "GET", "/admin/jobs/abc").status_code == 404
    assert admin(s, "DELETE", "/admin/jobs/99").status_code == 404
    assert admin(s, "POST", "/admin/jobs/99/resume").status_code == 404
    r = admin(s, "GET", "/admin/train")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    r = admin(s, "POST", "/admin/jobs")
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    assert admin(s, "GET", "/admin/unknown").status_code == 404
    r = admin(s, "POST", "/admin/models/none/versions/1/activate")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert admin(s, "DELETE", "/admin/models/none/versions/1").status_code == 404
    assert admin(s, "DELETE", "/admin/models/../versions/1").status_code == 404
    r = admin(s, "POST", "/admin/eval", json={"dataset": "syn"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "model"  # none served yet
    # an admin request is small JSON: a body past 1 MiB is refused before it is read
    r = admin(s, "POST", "/admin/train", data=b" " * (1 << 20 | 1),
              headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    # each route of the table is its own metrics series; unknown paths count as "other"
    m = requests.get(s.url + "/metrics", timeout=10).text
    assert re.search(r'ecsnet_requests_total\{route="/admin/jobs/\{id\}",status="404"\} [1-9]', m)
    assert 'ecsnet_requests_total{route="/admin/train",status="405"} 1' in m
    assert 'ecsnet_requests_total{route="/admin/train",status="413"} 1' in m
    assert re.search(r'ecsnet_requests_total\{route="other",status="404"\} [1-9]', m)
    assert 'route="/admin"' not in m


def test_admin_routes_against_the_schema_with_the_token(env):
    """Generated requests to every admin operation, authorised: each answer must be documented
    with a matching schema, and none may be a 500. No dataset the generator can name exists
    except syn; a job it might queue on syn is cancelled at the end."""
    s, _ = env
    exe = pathlib.Path(sys.executable).parent / "schemathesis"
    cmd = [str(exe), "run", s.url + "/openapi.json", "--tag", "admin",
           "-H", f"Authorization: Bearer {TOKEN}",
           "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
           "response_schema_conformance,response_headers_conformance",
           "--hypothesis-max-examples", "20", "--hypothesis-seed", "7",
           "--hypothesis-deadline", "5000", "-w", "1", "--no-color",
           "--stateful", "none"]  # one call at a time; test_server_stateful.py follows links
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    tail = r.stdout[-6000:] + r.stderr[-2000:]
    for job in admin(s, "GET", "/admin/jobs").json()["jobs"]:
        admin(s, "DELETE", f"/admin/jobs/{job['id']}")
    assert r.returncode == 0, tail
    assert re.search(r"\b10 passed\b", r.stdout), tail
    m = requests.get(s.url + "/metrics", timeout=10).text
    assert not re.search(r'status="500"', m), m
