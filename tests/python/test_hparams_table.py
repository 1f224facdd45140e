"""One table of hyper-parameters (engine/include/ecs/hparams.h), dumped by
`ecsnet info --hparams --json`, and everything that must agree with it: `ecsnet train`'s flags
and --help, POST /admin/train's validation, the model file's metadata (one key per value, the
old single-string format still loading), api/openapi.yaml's TrainRequest, docs/method.md's
table, and the defaults the Python tools carry (convert_pytorch.py, ecsnet_ref.py).

Every row is checked, so a row added to the table fails here until each surface has it."""
import json
import math
import pathlib
import subprocess
import sys

import pytest
import yaml

import st_io
from test_admin_fixture import admin, admin_server, submit, synth, wait_job

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "engine" / "scripts"))
import convert_pytorch as conv  # noqa: E402
import ecsnet_ref  # noqa: E402

NOT_TABLE = {"dataset", "base_model", "backbone", "model_name", "activate"}  # TrainRequest only
PREFIX = "ecsnet.hparam."


def ecsnet(bin_path, *args):
    return subprocess.run([str(bin_path("ecsnet")), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def table(bin_path):
    p = ecsnet(bin_path, "info", "--hparams", "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)["hparams"]
    for f in ("name", "key", "flag"):
        assert len({r[f] for r in rows}) == len(rows), f"duplicate {f}"
    return rows


def model_rows(table):
    return [r for r in table if r["scope"] == "model"]


# ---- values inside and outside each row's bounds, as JSON values --------------------------------

def inside(r):
    t = r["type"]
    if t == "boolean":
        return [True, False]
    if t == "string":
        return list(r["choices"])
    lo, hi = r["minimum"], r["maximum"]
    if t == "array":
        return [[int(lo)], [int(lo), int(hi)]]
    if t == "integer":
        return [int(lo), int(hi)]
    return [lo, hi, lo + (hi - lo) / 4]


def outside(r):
    t = r["type"]
    if t == "boolean":
        return ["yes", 1]
    if t == "string":
        return ["nonsense", 1]
    lo, hi = r["minimum"], r["maximum"]
    if t == "array":
        return [[], [int(lo) - 1], [int(hi) + 1], [1] * (r["max_items"] + 1), [1.5], 3]
    if t == "integer":
        return [int(lo) - 1, int(hi) + 1, 2.5, str(int(lo))]
    return [lo - max(abs(lo) / 2, 1e-3), hi + max(abs(hi) * 1e-3, 1e-3), "0.5"]


def other(r):
    """A value inside the bounds that is not the default (what the round trips set)."""
    t = r["type"]
    if t == "boolean":
        return not r["default"]
    if t == "string":
        return [c for c in r["choices"] if c != r["default"]][0]
    lo, hi = r["minimum"], r["maximum"]
    if t == "array":
        return [int(lo) + 1, int(lo) + 2]
    if t == "integer":
        return int(lo) + 1
    return round(lo + (hi - lo) / 4, 6)


def cli_args(r, v):
    if r["type"] == "boolean":
        return [r["flag"]] if v else [r.get("negation", r["flag"] + "=false")]
    if r["type"] == "array":
        return [r["flag"], ",".join(map(str, v))]
    return [r["flag"], str(v)]


def meta_value(r, text):
    """A model file's metadata text as the row's JSON value."""
    if r["type"] == "boolean":
        assert text in ("true", "false"), text
        return text == "true"
    if r["type"] == "array":
        return [int(x) for x in text.split(",")]
    if r["type"] == "integer":
        return int(text)
    return float(text)


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return a == b


# ---- the command line ---------------------------------------------------------------------------

def test_train_help_lists_every_row(bin_path, table):
    p = ecsnet(bin_path, "train", "--help")
    assert p.returncode == 0
    for r in table:
        assert r["flag"] in p.stdout, r
        if "negation" in r:
            assert r["negation"] in p.stdout, r
        assert r["doc"] in p.stdout, r


def test_cli_takes_every_row_within_its_bounds_only(bin_path, table, tmp_path):
    """In bounds, the command gets as far as opening the (missing) dataset: exit 1. Out of
    bounds, it is a usage error naming the flag: exit 2, one line."""
    base = ["train", "--data", tmp_path / "none", "--out", tmp_path / "m.safetensors"]
    for r in table:
        for v in inside(r):
            p = ecsnet(bin_path, *base, *cli_args(r, v))
            assert p.returncode == 1 and "none" in p.stderr, (r["name"], v, p.stderr)
        if r["type"] == "boolean":
            continue
        for v in outside(r):
            # the command line has text only: "0.5" is a number there, 3 a list of one rate
            if (r["type"] == "array") != isinstance(v, list) or \
                    (r["type"] in ("number", "integer") and isinstance(v, str)) or \
                    (r["type"] == "string" and not isinstance(v, str)):
                continue
            p = ecsnet(bin_path, *base, *cli_args(r, v))
            assert p.returncode == 2, (r["name"], v, p.stderr)
            assert len(p.stderr.strip().splitlines()) == 1 and r["flag"] in p.stderr, p.stderr


# ---- the admin API ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env(tmp_path_factory, bin_path):
    root = tmp_path_factory.mktemp("hparams")
    data = root / "data"
    synth(bin_path, data / "datasets" / "syn", count=12, seed=3)
    s = admin_server(data)
    yield s, data
    assert s.stop() == 0


def test_admin_takes_every_row_within_its_bounds_only(env, table):
    """Fields are checked before the dataset is looked up: a value in bounds gets as far as the
    missing dataset (422 naming "dataset"), one out of bounds or of the wrong JSON type is a
    422 naming its own key."""
    s, _ = env
    for r in table:
        for v in inside(r):
            res = admin(s, "POST", "/admin/train", json={"dataset": "nosuch", r["key"]: v})
            assert res.status_code == 422 and res.json()["error"]["field"] == "dataset", \
                (r["key"], v, res.text)
        for v in outside(r):
            res = admin(s, "POST", "/admin/train", json={"dataset": "nosuch", r["key"]: v})
            assert res.status_code == 422, (r["key"], v, res.text)
            err = res.json()["error"]
            assert err["code"] == "invalid_field" and err["field"] == r["key"], (v, err)
            assert r["key"] in err["message"]


def test_cli_admin_and_model_file_agree_on_every_value(env, table, bin_path, tmp_path):
    """Every model value set away from its default, once through POST /admin/train and once
    through `ecsnet train`: both model files carry each under its own key, with the same text,
    and the value sent; every run setting is taken by both too."""
    s, data = env
    values = {r["name"]: other(r) for r in table}
    values.update(steps=2, batch=2, crop=64, checkpoint_every=1, lr=0.001)
    rows = {r["name"]: r for r in table}
    body = {"dataset": "syn", "model_name": "every"}
    body.update({rows[n]["key"]: v for n, v in values.items() if n != "epochs"})  # steps given
    job = wait_job(s, submit(s, body)["id"], timeout=180)
    assert job["status"] == "succeeded", job
    _, served = st_io.load(data / "models" / "every" / "1.safetensors")

    args = ["train", "--data", data / "datasets" / "syn", "--out", tmp_path / "cli.safetensors",
            "--threads", "1", "--quiet"]
    for n, v in values.items():
        if n != "epochs":
            args += cli_args(rows[n], v)
    p = ecsnet(bin_path, *args)
    assert p.returncode == 0, p.stderr
    _, cli = st_io.load(tmp_path / "cli.safetensors")

    assert "hparams" not in served and "hparams" not in cli  # the old single string is gone
    for r in model_rows(table):
        key = PREFIX + r["name"]
        assert served[key] == cli[key], (key, served[key], cli[key])
        assert same(meta_value(r, served[key]), values[r["name"]]), (key, served[key])
    assert not [k for k in served if k.startswith(PREFIX) and k[len(PREFIX):] not in rows]


def test_new_model_defaults_match_the_table_and_the_converter(bin_path, table, tmp_path):
    d = synth(bin_path, tmp_path / "syn", count=8)
    m = tmp_path / "m.safetensors"
    p = ecsnet(bin_path, "train", "--data", d, "--out", m, "--steps", 1, "--batch", 2, "--crop", 64,
               "--quiet")
    assert p.returncode == 0, p.stderr
    _, meta = st_io.load(m)
    small = conv.default_hparams("small")
    for r in model_rows(table):
        key = PREFIX + r["name"]
        assert meta[key] == conv.hparam_text(r["name"], small[r["name"]]), key
        if r["name"] != "overlay_rates":  # the small backbone's rates differ from the table's
            assert same(meta_value(r, meta[key]), r["default"]), (key, meta[key], r["default"])


# ---- the model file: the old format still loads --------------------------------------------------

def test_old_single_string_format_still_loads(bin_path, tmp_path):
    """The shipped model is in the old format; a file rewritten into it with values away from
    the defaults loads with those values."""
    shipped = REPO / "models" / "ecsnet-synth-small.safetensors"
    tensors, meta = st_io.load(shipped)
    assert "hparams" in meta and not any(k.startswith(PREFIX) for k in meta)
    assert ecsnet(bin_path, "info", shipped).returncode == 0
    hp = json.loads(meta["hparams"])
    hp.update(delta=0.45, no_phi_filter=1, overlay_rates=[2, 5, 0, 0], lambda_ramp=0.3)
    meta["hparams"] = json.dumps(hp, separators=(",", ":"))
    old = tmp_path / "old.safetensors"
    st_io.save(old, tensors, meta)
    p = ecsnet(bin_path, "info", old)
    assert p.returncode == 0, p.stderr
    for text in ("delta 0.45", "no_phi_filter true", "overlay_rates 2,5", "lambda_ramp 0.3"):
        assert text in p.stdout, (text, p.stdout)


# ---- the documents and the Python tools ---------------------------------------------------------

def test_openapi_train_request_matches_the_table(table):
    doc = yaml.safe_load((REPO / "api" / "openapi.yaml").read_text())
    props = doc["components"]["schemas"]["TrainRequest"]["properties"]
    assert set(props) == {r["key"] for r in table} | NOT_TABLE
    for r in table:
        p = props[r["key"]]
        assert p["type"] == r["type"], r["key"]
        assert r["doc"] in p.get("description", ""), r["key"]
        if "auto" in r:
            assert "default" not in p, r["key"]
            assert "absent: auto" in p["description"] or "absent: from" in p["description"], r["key"]
        else:
            assert same(p["default"], r["default"]) if r["type"] in ("number", "integer") \
                else p["default"] == r["default"], r["key"]
        bounds = p["items"] if r["type"] == "array" else p
        if r["type"] in ("number", "integer", "array"):
            assert same(bounds["minimum"], r["minimum"]) and same(bounds["maximum"], r["maximum"]), r
        if r["type"] == "array":
            assert p["items"]["type"] == "integer" and p["minItems"] == 1
            assert p["maxItems"] == r["max_items"]
        if r["type"] == "string":
            assert p["enum"] == r["choices"]


def fmt(x):
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def doc_row(r):
    """The row of docs/method.md's table for r."""
    if "auto" in r:
        dflt = r["auto"]
    elif r["type"] == "array":
        dflt = ",".join(map(str, r["default"]))
    elif r["type"] == "boolean":
        dflt = "true" if r["default"] else "false"
    elif r["type"] == "string":
        dflt = r["default"]
    else:
        dflt = fmt(r["default"])
    if r["type"] in ("number", "integer", "array"):
        rng = f"{fmt(r['minimum'])}..{fmt(r['maximum'])}"
    elif r["type"] == "string":
        rng = ", ".join(r["choices"])
    else:
        rng = "true, false"
    flag = f"`{r['flag']}`" + (f", `{r['negation']}`" if "negation" in r else "")
    return f"| `{r['name']}` | {r['scope']} | `{r['key']}` | {flag} | {r['type']} | {dflt} | {rng} | {r['doc']} |"


def test_method_md_lists_every_row_as_the_table_has_it(table):
    text = (REPO / "docs" / "method.md").read_text()
    missing = [doc_row(r) for r in table if doc_row(r) not in text]
    assert not missing, "docs/method.md lacks or differs in these rows:\n" + "\n".join(missing)


def test_python_tools_carry_the_tables_defaults(table):
    rows = {r["name"]: r for r in table}
    big = conv.default_hparams("resnet38d")
    assert set(big) == {r["name"] for r in model_rows(table)}
    for name, v in big.items():
        r = rows[name]
        want = r["default"]
        if r["type"] == "array":
            assert [x for x in v if x] == want, name
        elif r["type"] == "boolean":
            assert bool(v) == want, name
        else:
            assert same(v, want), name
    for name, v in ecsnet_ref.INFER_HP.items():
        assert same(float(v), float(rows[name]["default"])), name
