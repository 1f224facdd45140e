"""The web page's routes without a browser: GET / and /ui/{asset} serve the files of
server/ui/ byte for byte (embedded at build time) with their media types and a strict
Content-Security-Policy; the files load nothing from another origin and hold no inline script;
every answer, the API's too, says nosniff. The page in a browser: tests/ui/."""
import pathlib
import re

import pytest
import requests

from test_server_fixture import Server

UI = pathlib.Path(__file__).resolve().parents[2] / "server" / "ui"
TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(data_dir=tmp_path_factory.mktemp("data"))
    yield s
    s.stop()


def csp(r):
    return {d.split()[0]: d.split()[1:] for d in r.headers["Content-Security-Policy"].split("; ")}


def test_index_and_every_asset_are_served_as_built(server):
    files = sorted(UI.iterdir())
    assert {f.suffix for f in files} <= set(TYPES)
    assert "index.html" in [f.name for f in files]
    for f in files:
        r = requests.get(f"{server.url}/ui/{f.name}")
        assert r.status_code == 200, f.name
        assert r.content == f.read_bytes(), f"{f.name}: rebuild to embed the current file"
        assert r.headers["Content-Type"].split(";")[0] == TYPES[f.suffix]
    r = requests.get(server.url + "/")
    assert r.status_code == 200 and r.content == (UI / "index.html").read_bytes()
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert requests.head(server.url + "/").status_code == 200


def test_the_page_policy_is_strict(server):
    for path in ("/", "/ui/cam.js", "/ui/app.css"):
        r = requests.get(server.url + path)
        p = csp(r)
        assert p["default-src"] == ["'none'"]
        assert p["script-src"] == ["'self'"] and p["style-src"] == ["'self'"]
        assert p["connect-src"] == ["'self'"] and p["frame-ancestors"] == ["'none'"]
        assert not any("unsafe" in v for vs in p.values() for v in vs)
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"


def test_every_answer_says_nosniff_and_loads_nothing(server):
    for method, path in (("GET", "/health"), ("GET", "/openapi.json"), ("GET", "/nope"),
                         ("POST", "/cam"), ("GET", "/admin/jobs")):
        r = requests.request(method, server.url + path)
        assert r.headers["X-Content-Type-Options"] == "nosniff", path
        assert csp(r)["default-src"] == ["'none'"], path


@pytest.mark.parametrize("path", ["/ui/nope.js", "/ui/..%2Fsrv.c", "/ui/index.html.bak",
                                  "/ui/", "/ui", "/ui/a/b", "/index.html"])
def test_unknown_files_are_404_json(server, path):
    r = requests.get(server.url + path)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_other_methods_are_405(server):
    r = requests.post(server.url + "/", data=b"x")
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_the_files_load_nothing_from_elsewhere_and_inline_nothing():
    html = (UI / "index.html").read_text()
    # every script is a file of ours; no inline script, no event-handler attribute, no style
    # attribute (the policy would block them)
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert re.search(r'src="/ui/[a-z]+\.js"', tag), tag
    assert not re.search(r"<script\b[^>]*>(?!</script>)", html), "inline script"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html)
    referenced = set(re.findall(r'(?:src|href)="/ui/([^"]+)"', html))
    assert referenced == {f.name for f in UI.iterdir()} - {"index.html"}
    for f in UI.iterdir():
        text = f.read_text()
        assert not re.search(r"https?://", text.replace("http://127.0.0.1", "")), f.name
        assert "@import" not in text and "url(" not in text.replace("createObjectURL(", ""), f.name
        if f.suffix == ".js":
            # text from the server is set as text, never parsed as markup
            for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                        "eval(", "new Function"):
                assert bad not in text, f"{f.name}: {bad}"
            # the admin token lives in sessionStorage only
            assert "localStorage" not in text and "document.cookie" not in text, f.name
