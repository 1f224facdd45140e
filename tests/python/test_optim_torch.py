"""The engine's optimisers against torch.optim: same initial parameters, same gradients at every
step, parameter groups with learning-rate multipliers and decay switches, the poly schedule,
a frozen tensor, and a save/resume through a training checkpoint in the middle of the run.
Final parameters and optimiser state must agree to float rounding. The files travel both ways
through the reference safetensors implementation, so the engine's reader and writer are checked
against it too."""
import subprocess

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import st_io

SHAPES = {
    "conv1.weight": (4, 3, 3, 3),
    "conv1.bias": (4,),
    "bn1.running_mean": (4,),
    "fc8.weight": (5, 4, 1, 1),
    "fc8.bias": (5,),
}
FROZEN = ["bn1.running_mean"]
# later entries override earlier ones for the names they match (as in the engine)
GROUPS = [("", 1.0, 1), ("conv1.bias", 2.0, 0), ("fc8.", 10.0, 1), ("fc8.bias", 20.0, 0)]
STEPS, MAX_STEPS, POWER = 7, 10, 0.9


def group_of(name):
    mult, decay = 1.0, 1
    for prefix, m, d in GROUPS:
        if name.startswith(prefix):
            mult, decay = m, d
    return mult, decay


def poly(base, step):
    return base * (1 - step / MAX_STEPS) ** POWER


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def run_torch(kind, hp, init, grads):
    params = {n: torch.tensor(v, requires_grad=n not in FROZEN) for n, v in init.items()}
    groups = []
    for n, p in params.items():
        if n in FROZEN:
            continue
        mult, decay = group_of(n)
        groups.append({"params": [p], "mult": mult, "weight_decay": hp["weight_decay"] if decay else 0.0})
    if kind == "sgd":
        opt = torch.optim.SGD(groups, lr=hp["lr"], momentum=hp["momentum"])
    else:
        opt = torch.optim.Adam(groups, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"])
    for k in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = poly(hp["lr"], k) * g["mult"]
        for n, p in params.items():
            if p.requires_grad:
                p.grad = torch.tensor(grads[k][n])
        opt.step()
    state = {}
    for n, p in params.items():
        if not p.requires_grad:
            continue
        s = opt.state[p]
        if kind == "sgd":
            state[f"optim.{n}.momentum"] = s["momentum_buffer"].numpy()
        else:
            state[f"optim.{n}.exp_avg"] = s["exp_avg"].numpy()
            state[f"optim.{n}.exp_avg_sq"] = s["exp_avg_sq"].numpy()
    return {n: p.detach().numpy() for n, p in params.items()}, state


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("resume_at", [0, 3])
def test_optimiser_matches_torch(kind, resume_at, bin_path, tmp_path):
    rng = np.random.default_rng(7)
    init = {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}
    grads = [{n: (rng.standard_normal(s) * 0.1).astype(np.float32) for n, s in SHAPES.items()}
             for _ in range(STEPS)]
    if kind == "sgd":
        hp = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}
    else:
        hp = {"lr": 1e-3, "weight_decay": 1e-4, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6}
    tensors = {f"p.{n}": v for n, v in init.items()}
    for k, gk in enumerate(grads):
        tensors.update({f"g.{k}.{n}": v for n, v in gk.items()})
    meta = {"kind": kind, "steps": STEPS, "max_steps": MAX_STEPS, "power": POWER,
            "groups": ";".join(f"{p}:{m}:{d}" for p, m, d in GROUPS), "frozen": ",".join(FROZEN),
            "resume_at": resume_at, **{k: repr(v) for k, v in hp.items()}}
    # the input comes from the reference implementation, the outputs are read back with it
    save_file(tensors, str(tmp_path / "in.safetensors"), metadata={k: str(v) for k, v in meta.items()})
    r = subprocess.run([str(bin_path("ecs_optimcheck")), str(tmp_path / "in.safetensors"),
                        str(tmp_path / "out.safetensors"), str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = load_file(str(tmp_path / "out.safetensors"))
    mine, _ = st_io.load(tmp_path / "out.safetensors")
    assert set(mine) == set(out) and all(np.array_equal(mine[k], out[k]) for k in out)
    want_p, want_s = run_torch(kind, hp, init, grads)
    for n, v in want_p.items():
        assert out[n].shape == v.shape
        if n in FROZEN:
            assert np.array_equal(out[n], init[n]), n
        else:
            assert not np.allclose(v, init[n]), f"{n} did not move: the comparison would be vacuous"
            assert rel(out[n], v) <= 1e-5, (n, rel(out[n], v))
    assert sorted(k for k in out if k.startswith("optim.") and k != "optim.step") == sorted(want_s)
    for n, v in want_s.items():
        assert rel(out[n], v) <= 1e-5, (n, rel(out[n], v))
    assert int(out["optim.step"][0]) == STEPS
    if resume_at:
        ck = load_file(str(tmp_path / "checkpoint.safetensors"))
        with safe_open(str(tmp_path / "checkpoint.safetensors"), framework="np") as f:
            assert f.metadata() == {"stage": "resume-test"}
        assert int(ck["optim.step"][0]) == resume_at
        assert set(SHAPES) <= set(ck)
