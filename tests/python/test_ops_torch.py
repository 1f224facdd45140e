"""PyTorch parity of every op, forward and backward, on every device the build registers.

Random cases are generated with torch; the expected outputs are PyTorch's, computed in float64
from the same float32 inputs (forward by the functional op, gradients by autograd), so the
comparison measures the engine, not float32 rounding in the oracle. The engine side runs each op
through tests/tools/ecs_opcheck.c (case files in safetensors, see st_io.py). Tolerances are the
project's: relative L2 error 1e-5 for single ops, 1e-4 for convolution and batch-norm backward
and other long reductions.
"""
import subprocess

import numpy as np
import pytest
import st_io
import torch
import torch.nn.functional as F

TOL = 1e-5
TOL_LONG = 1e-4


def rel_l2(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    fin = np.isfinite(b)
    if not np.array_equal(a[~fin], b[~fin]):
        return float("inf")
    den = np.linalg.norm(b[fin])
    num = np.linalg.norm(a[fin] - b[fin])
    return num / den if den > 0 else num


def f32(t):
    return t.detach().to(torch.float32).numpy()


def spec(arr_or_shape, dtype="F32"):
    shape = arr_or_shape.shape if hasattr(arr_or_shape, "shape") else arr_or_shape
    return (dtype, tuple(int(s) for s in shape))


class Cases:
    """Collects op cases with their expected outputs, runs them all in one tool invocation per
    device and checks every output."""

    def __init__(self, exe, tmp_path):
        self.exe, self.tmp, self.items = exe, tmp_path, []

    def add(self, label, op, srcs, dsts, expect, tol=TOL, **params):
        """srcs: arrays (or None) for src0..; dsts: spec() tuples (or None) for dst0..;
        expect: {output name: expected array}."""
        self.items.append((label, op, srcs, dsts, expect, tol, params))

    def run(self, device):
        args = []
        for i, (label, op, srcs, dsts, _, _, params) in enumerate(self.items):
            tensors = {f"src{k}": np.ascontiguousarray(s) for k, s in enumerate(srcs) if s is not None}
            meta = {"op": op, **{k: str(v) for k, v in params.items()}}
            for k, d in enumerate(dsts):
                if d is not None:
                    meta[f"dst{k}"] = f"{d[0]}:" + ",".join(str(s) for s in d[1])
            cin, cout = self.tmp / f"{device}-{i}-in.st", self.tmp / f"{device}-{i}-out.st"
            st_io.save(cin, tensors, meta)
            args += [str(cin), str(cout)]
        r = subprocess.run([str(self.exe), "--device", device, "--threads", "2", *args],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"ecs_opcheck failed on {device}: {r.stderr}"
        errors = []
        for i, (label, op, _, _, expect, tol, params) in enumerate(self.items):
            got, _ = st_io.load(self.tmp / f"{device}-{i}-out.st")
            for name, want in expect.items():
                e = rel_l2(got[name], want)
                if not e <= tol:
                    errors.append(f"{device} {label} ({op} {params}) {name}: rel L2 {e:.3e} > {tol:.0e}")
        assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def opcheck(bin_path):
    return bin_path("ecs_opcheck")


@pytest.fixture(scope="module")
def devices(opcheck):
    out = subprocess.run([str(opcheck), "--list"], capture_output=True, text=True, check=True).stdout
    names = [line.split("\t")[0] for line in out.splitlines() if line.strip()]
    assert "cpu-ref" in names and "cpu" in names
    return names


@pytest.fixture
def cases(opcheck, tmp_path):
    return Cases(opcheck, tmp_path)


def run_all(cases, devices):
    assert cases.items
    for d in devices:
        cases.run(d)


def grads(fn, inputs, dy):
    """Runs fn on float64 leaves made from the float32 inputs; returns (out, [grads])."""
    leaves = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in inputs]
    y = fn(*leaves)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    return y.detach(), [leaf.grad for leaf in leaves]


def rnd(*shape, lo=-1.0, hi=1.0):
    return (torch.rand(*shape, dtype=torch.float32) * (hi - lo) + lo).numpy()


# ---- convolution ---------------------------------------------------------------------------

CONV = [  # n, c, h, w, o, kh, kw, stride, pad, dil, groups, bias
    (2, 4, 9, 8, 6, 3, 3, (1, 1), (1, 1), (1, 1), 1, True),
    (1, 4, 9, 8, 4, 3, 2, (2, 1), (1, 0), (1, 2), 2, True),
    (2, 3, 8, 7, 3, 3, 3, (1, 2), (2, 1), (2, 1), 3, False),  # depthwise, dilated
    (1, 6, 10, 10, 6, 3, 3, (2, 2), (1, 1), (1, 1), 6, True),  # depthwise, strided
    (1, 2, 5, 5, 4, 1, 1, (2, 2), (0, 0), (1, 1), 1, True),
    (2, 8, 12, 11, 16, 3, 3, (1, 1), (2, 2), (2, 2), 1, True),
    (1, 6, 7, 9, 4, 5, 3, (3, 2), (2, 1), (1, 1), 2, False),
]


def test_conv2d(cases, devices):
    torch.manual_seed(1)
    for i, (n, c, h, w, o, kh, kw, s, p, d, g, bias) in enumerate(CONV):
        x, wt = rnd(n, c, h, w), rnd(o, c // g, kh, kw)
        b = rnd(o) if bias else None
        fn = (lambda x_, w_, b_: F.conv2d(x_, w_, b_, s, p, d, g)) if bias else \
             (lambda x_, w_: F.conv2d(x_, w_, None, s, p, d, g))
        y0 = F.conv2d(torch.tensor(x), torch.tensor(wt), None if b is None else torch.tensor(b), s, p, d, g)
        dy = rnd(*y0.shape)
        y, gr = grads(fn, [x, wt] + ([b] if bias else []), dy)
        prm = dict(stride=f"{s[0]},{s[1]}", pad=f"{p[0]},{p[1]}", dil=f"{d[0]},{d[1]}", groups=g)
        cases.add(f"case {i}", "conv2d", [x, wt, b], [spec(y)], {"dst0": y}, **prm)
        cases.add(f"case {i}", "conv2d_bwd_data", [dy, wt], [spec(x)], {"dst0": gr[0]}, TOL_LONG, **prm)
        exp = {"dst0": gr[1]}
        if bias:
            exp["dst1"] = gr[2]
        cases.add(f"case {i}", "conv2d_bwd_weight", [x, dy], [spec(wt), spec(b) if bias else None],
                  exp, TOL_LONG, **prm)
    run_all(cases, devices)


# ---- batch norm ----------------------------------------------------------------------------

@pytest.mark.parametrize("training", [1, 0])
def test_batchnorm(cases, devices, training):
    torch.manual_seed(2 + training)
    eps, mom = 1e-5, 0.1
    for i, shape in enumerate([(2, 3, 5, 4), (4, 8, 3, 3), (3, 2, 1, 7)]):
        c = shape[1]
        x, gam, bet = rnd(*shape, lo=-2, hi=3), rnd(c, lo=0.5, hi=1.5), rnd(c)
        rm, rv = rnd(c, lo=-0.5, hi=0.5), rnd(c, lo=0.5, hi=2.0)
        rm_t, rv_t = torch.tensor(rm, dtype=torch.float64), torch.tensor(rv, dtype=torch.float64)
        dy = rnd(*shape)
        y, (dx, dg, db) = grads(
            lambda x_, g_, b_: F.batch_norm(x_, rm_t, rv_t, g_, b_, bool(training), mom, eps),
            [x, gam, bet], dy)
        xd = torch.tensor(x, dtype=torch.float64)
        if training:
            mean = xd.mean((0, 2, 3))
            invstd = 1 / torch.sqrt(xd.var((0, 2, 3), unbiased=False) + eps)
        else:
            mean, invstd = torch.tensor(rm, dtype=torch.float64), 1 / torch.sqrt(torch.tensor(rv, dtype=torch.float64) + eps)
        prm = dict(eps=eps, momentum=mom, training=training)
        exp = {"dst0": y, "src3": rm_t, "src4": rv_t}  # running stats after PyTorch's update
        dsts = [spec(x)]
        if training:
            exp.update(dst1=mean, dst2=invstd)
            dsts += [spec(mean), spec(invstd)]
        cases.add(f"shape {shape}", "batchnorm", [x, gam, bet, rm, rv], dsts, exp, TOL_LONG, **prm)
        cases.add(f"shape {shape}", "batchnorm_bwd", [x, dy, gam, f32(mean), f32(invstd)],
                  [spec(x), spec(gam), spec(gam)], {"dst0": dx, "dst1": dg, "dst2": db}, TOL_LONG, **prm)
    run_all(cases, devices)


# ---- element-wise, activations -------------------------------------------------------------

def test_elementwise(cases, devices):
    torch.manual_seed(4)
    a, b = rnd(2, 3, 4, 5, lo=-8, hi=8), rnd(2, 3, 4, 5)
    cases.add("", "copy", [a], [spec(a)], {"dst0": a})
    cases.add("", "fill", [], [spec(a)], {"dst0": np.full(a.shape, -1.25)}, a=-1.25)
    cases.add("", "scale", [a], [spec(a)], {"dst0": 1.5 * a.astype(np.float64) - 0.25}, a=1.5, b=-0.25)
    cases.add("", "add", [a, b], [spec(a)], {"dst0": 0.5 * a.astype(np.float64) + 2 * b}, a=0.5, b=2)
    cases.add("", "mul", [a, b], [spec(a)], {"dst0": a.astype(np.float64) * b})
    for clip, fn in [(0, F.relu), (6, F.relu6)]:
        y, (dx,) = grads(fn, [a], b)
        cases.add(f"clip {clip}", "relu", [a], [spec(a)], {"dst0": y}, clip=clip)
        cases.add(f"clip {clip}", "relu_bwd", [a, b], [spec(a)], {"dst0": dx}, clip=clip)
    run_all(cases, devices)


# ---- pooling, GAP, resize ------------------------------------------------------------------

POOL = [  # kind, shape, k, stride, pad, ceil_mode, count_include_pad
    ("max", (2, 3, 7, 7), (3, 3), (2, 2), (1, 1), 0, 1),
    ("max", (1, 2, 8, 8), (3, 3), (2, 2), (0, 0), 1, 1),
    ("max", (1, 2, 9, 6), (3, 2), (2, 1), (1, 1), 1, 1),
    ("max", (2, 2, 6, 5), (2, 2), (2, 2), (0, 0), 0, 1),
    ("avg", (2, 3, 7, 6), (3, 3), (2, 2), (1, 1), 1, 1),
    ("avg", (1, 3, 8, 7), (3, 3), (2, 2), (1, 1), 1, 0),
    ("avg", (1, 2, 5, 5), (3, 3), (1, 1), (1, 1), 0, 0),
    ("avg", (1, 2, 9, 9), (2, 3), (3, 2), (1, 0), 1, 1),
]


def test_pool2d(cases, devices):
    torch.manual_seed(5)
    for kind, shape, k, s, p, ceil, cip in POOL:
        x = rnd(*shape)
        if kind == "max":
            fn = lambda x_: F.max_pool2d(x_, k, s, p, ceil_mode=bool(ceil))  # noqa: E731
        else:
            fn = lambda x_: F.avg_pool2d(x_, k, s, p, ceil_mode=bool(ceil), count_include_pad=bool(cip))  # noqa: E731
        y0 = fn(torch.tensor(x))
        dy = rnd(*y0.shape)
        y, (dx,) = grads(fn, [x], dy)
        prm = dict(kind=kind, k=f"{k[0]},{k[1]}", stride=f"{s[0]},{s[1]}", pad=f"{p[0]},{p[1]}",
                   ceil_mode=ceil, count_include_pad=cip)
        cases.add(str(shape), "pool2d", [x], [spec(y)], {"dst0": y}, **prm)
        cases.add(str(shape), "pool2d_bwd", [x, dy], [spec(x)], {"dst0": dx}, **prm)
    run_all(cases, devices)


def test_gap(cases, devices):
    torch.manual_seed(6)
    x, dy = rnd(2, 5, 7, 6), rnd(2, 5)
    y, (dx,) = grads(lambda x_: x_.mean((2, 3)), [x], dy)
    cases.add("", "gap", [x], [spec(y)], {"dst0": y})
    cases.add("", "gap_bwd", [dy], [spec(x)], {"dst0": dx})
    run_all(cases, devices)


@pytest.mark.parametrize("size", [((5, 7), (9, 4)), ((4, 4), (2, 2)), ((3, 5), (11, 13)),
                                  ((8, 6), (3, 5)), ((6, 6), (6, 6)), ((7, 3), (1, 1))])
def test_resize_bilinear(cases, devices, size):
    torch.manual_seed(7)
    (h, w), (oh, ow) = size
    x, dy = rnd(2, 3, h, w), rnd(2, 3, oh, ow)
    y, (dx,) = grads(lambda x_: F.interpolate(x_, size=(oh, ow), mode="bilinear", align_corners=False), [x], dy)
    cases.add(str(size), "resize_bilinear", [x], [spec(y)], {"dst0": y})
    cases.add(str(size), "resize_bilinear_bwd", [dy], [spec(x)], {"dst0": dx})
    run_all(cases, devices)


# ---- channels and dropout ------------------------------------------------------------------

def test_concat_slice(cases, devices):
    torch.manual_seed(8)
    xs = [rnd(2, c, 3, 4) for c in (1, 3, 2)]
    y = np.concatenate(xs, axis=1)
    cases.add("", "concat", xs, [spec(y)], {"dst0": y}, n=3)
    a, b = rnd(3, 2), rnd(3, 5)
    cases.add("2d", "concat", [a, b], [spec((3, 7))], {"dst0": np.concatenate([a, b], 1)}, n=2)
    for off, ln in [(0, 1), (1, 3), (4, 2), (0, 6)]:
        cases.add(f"[{off}:{off + ln}]", "slice_c", [y], [spec((2, ln, 3, 4))], {"dst0": y[:, off:off + ln]},
                  offset=off)
    run_all(cases, devices)


def dropout_keep(seed, n, p):
    """ecs_dropout_keep (ecs/op.h) in numpy: splitmix64 of seed + golden * (i + 1)."""
    with np.errstate(over="ignore"):
        i = np.arange(n, dtype=np.uint64)
        z = np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15) * (i + np.uint64(1))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 16777216.0) >= np.float32(p)


@pytest.mark.parametrize("p", [0.5, 0.1, 0.0, 1.0])
def test_dropout(cases, devices, p):
    torch.manual_seed(9)
    x, dy = rnd(2, 3, 5, 4), rnd(2, 3, 5, 4)
    seed = 12345678901234
    keep = dropout_keep(seed, x.size, p).reshape(x.shape)
    scale = 1.0 / (1.0 - p) if p < 1 else 0.0
    if 0 < p < 1:
        assert 0 < keep.mean() < 1
    y = np.where(keep, x.astype(np.float64) * scale, 0.0)
    mask = keep.astype(np.uint8)
    cases.add(f"p={p}", "dropout", [x], [spec(x), spec(x, "U8")], {"dst0": y, "dst1": mask}, p=p, seed=seed)
    cases.add(f"p={p}", "dropout_bwd", [dy, mask], [spec(x)],
              {"dst0": np.where(keep, dy.astype(np.float64) * scale, 0.0)}, p=p)
    run_all(cases, devices)


# ---- softmax and losses ----------------------------------------------------------------------

def class_mask(n, c, gen):
    m = (torch.rand(n, c, generator=gen) > 0.4).to(torch.float32)
    m[:, 0] = 1  # every row keeps a class
    return m.numpy()


@pytest.mark.parametrize("logp", [0, 1])
def test_softmax(cases, devices, logp):
    gen = torch.manual_seed(10 + logp)
    name = "log_softmax" if logp else "softmax"
    for shape, masked in [((2, 5, 3, 4), False), ((2, 5, 3, 4), True), ((4, 7), False), ((3, 6), True)]:
        x = rnd(*shape, lo=-4, hi=4)
        m = class_mask(shape[0], shape[1], gen) if masked else None
        dy = rnd(*shape)
        mb = None
        if m is not None:
            mb = torch.tensor(m, dtype=torch.bool).reshape(shape[:2] + (1,) * (len(shape) - 2))
            if logp:
                dy = np.where(mb.expand(shape).numpy(), dy, 0).astype(np.float32)  # -inf outputs carry no loss

        def fn(x_):
            if mb is not None:
                x_ = x_.masked_fill(~mb, float("-inf"))
            return F.log_softmax(x_, 1) if logp else F.softmax(x_, 1)

        y, (dx,) = grads(fn, [x], dy)
        lbl = f"{shape}{' masked' if masked else ''}"
        cases.add(lbl, name, [x, m], [spec(x)], {"dst0": y})
        cases.add(lbl, name + "_bwd", [f32(y), dy], [spec(x)], {"dst0": dx})
    run_all(cases, devices)


def test_ml_soft_margin(cases, devices):
    torch.manual_seed(12)
    for n, k in [(2, 20), (5, 3), (1, 1)]:
        x = rnd(n, k, lo=-6, hi=6)
        t = (torch.rand(n, k) > 0.5).to(torch.float32).numpy()
        dl = np.array([0.75], dtype=np.float32)
        tt = torch.tensor(t, dtype=torch.float64)
        loss, (dx,) = grads(lambda x_: F.multilabel_soft_margin_loss(x_, tt).reshape(1), [x], dl)
        cases.add(f"({n},{k})", "ml_soft_margin", [x, t], [spec((1,))], {"dst0": loss})
        cases.add(f"({n},{k})", "ml_soft_margin_bwd", [x, t, dl], [spec(x)], {"dst0": dx})
    run_all(cases, devices)


def test_masked_ce(cases, devices):
    gen = torch.manual_seed(13)
    for shape, masked in [((2, 5, 4, 3), False), ((2, 5, 4, 3), True), ((3, 4, 1, 6), True)]:
        n, c, h, w = shape
        x = rnd(*shape, lo=-4, hi=4)
        m = class_mask(n, c, gen) if masked else np.ones((n, c), np.float32)
        lab = torch.randint(0, c, (n, h, w), generator=gen)
        lab = torch.where(torch.tensor(m)[torch.arange(n)[:, None, None], lab] > 0, lab, torch.zeros_like(lab))
        lab[torch.rand(n, h, w, generator=gen) < 0.2] = 255
        mb = torch.tensor(m, dtype=torch.bool)[:, :, None, None]
        dl = np.array([1.5], dtype=np.float32)
        loss, (dx,) = grads(lambda x_: F.cross_entropy(x_.masked_fill(~mb, float("-inf")), lab,
                                                       ignore_index=255).reshape(1), [x], dl)
        lab32 = lab.to(torch.int32).numpy()
        count = np.array([(lab32 != 255).sum()], np.float32)
        src = [x, lab32, m if masked else None]
        lbl = f"{shape}{' masked' if masked else ''}"
        cases.add(lbl, "masked_ce", src, [spec((1,)), spec((1,))], {"dst0": loss, "dst1": count}, ignore_index=255)
        cases.add(lbl, "masked_ce_bwd", src + [dl], [spec(x)], {"dst0": dx}, ignore_index=255)
    # every pixel ignored: the loss and its gradient are 0 (PyTorch would give NaN)
    x = rnd(1, 3, 2, 2)
    lab = np.full((1, 2, 2), 255, np.int32)
    cases.add("all ignored", "masked_ce", [x, lab], [spec((1,))], {"dst0": np.zeros(1)})
    cases.add("all ignored", "masked_ce_bwd", [x, lab, None, np.ones(1, np.float32)], [spec(x)],
              {"dst0": np.zeros(x.shape)})
    run_all(cases, devices)


# ---- CAM normalisation and blur --------------------------------------------------------------

def test_maxmin_norm(cases, devices):
    torch.manual_seed(14)
    eps = 1e-5
    x = rnd(2, 4, 6, 5, lo=-1, hi=3)
    x[0, 1] = -1.0  # an all-negative map normalises to 0
    r = torch.relu(torch.tensor(x, dtype=torch.float64))
    mn, mx = r.amin((2, 3), keepdim=True), r.amax((2, 3), keepdim=True)
    y = torch.relu(r - mn - eps) / (mx - mn + eps)
    cases.add("", "maxmin_norm", [x], [spec(x)], {"dst0": y}, eps=eps)
    run_all(cases, devices)


@pytest.mark.parametrize("sigma,ksize,size", [(1.0, 5, (9, 8)), (2.5, 11, (12, 7)), (0.6, 3, (4, 5)),
                                              (3.0, 13, (5, 6))])
def test_gauss_blur(cases, devices, sigma, ksize, size):
    torch.manual_seed(15)
    x = rnd(2, 3, *size)
    r = ksize // 2
    g = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float64) ** 2 / (2 * sigma * sigma))
    c = x.shape[1]

    def blur(t):  # zero-padded separable blur
        t = F.conv2d(t, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, r), groups=c)
        return F.conv2d(t, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(r, 0), groups=c)

    xd = torch.tensor(x, dtype=torch.float64)
    y = blur(xd) / blur(torch.ones_like(xd))  # each output: the weighted mean inside the image
    cases.add(f"{size}", "gauss_blur", [x], [spec(x)], {"dst0": y}, sigma=sigma, ksize=ksize)
    run_all(cases, devices)


# ---- bad input: a clear error, never a crash ---------------------------------------------------

@pytest.mark.parametrize("op,srcs,dsts,params,needle", [
    ("conv2d", [np.zeros((1, 4, 5, 5), np.float32), np.zeros((2, 3, 3, 3), np.float32)], [("F32", (1, 2, 3, 3))],
     {"groups": 1}, "weight"),
    ("conv2d", [np.zeros((1, 2, 5, 5), np.float32), np.zeros((2, 2, 3, 3), np.float32)], [("F32", (1, 2, 4, 4))],
     {}, "must have shape"),
    ("pool2d", [np.zeros((1, 1, 4, 4), np.float32)], [("F32", (1, 1, 2, 2))], {"kind": "max", "k": 2, "pad": 2},
     "padding"),
    ("masked_ce", [np.zeros((1, 3, 2, 2), np.float32), np.full((1, 2, 2), 7, np.int32)], [("F32", (1,))], {},
     "label 7"),
    ("softmax", [np.zeros((2, 3), np.float32), np.ones((3, 2), np.float32)], [("F32", (2, 3))], {}, "class mask"),
    ("gauss_blur", [np.zeros((1, 1, 4, 4), np.float32)], [("F32", (1, 1, 4, 4))], {"ksize": 4}, "odd"),
    ("nonsense", [], [], {}, "unknown op"),
])
def test_bad_cases_are_clear_errors(opcheck, tmp_path, op, srcs, dsts, params, needle):
    meta = {"op": op, **{k: str(v) for k, v in params.items()}}
    for k, d in enumerate(dsts):
        meta[f"dst{k}"] = f"{d[0]}:" + ",".join(str(s) for s in d[1])
    st_io.save(tmp_path / "in.st", {f"src{k}": s for k, s in enumerate(srcs)}, meta)
    r = subprocess.run([str(opcheck), "--device", "cpu-ref", str(tmp_path / "in.st"), str(tmp_path / "out.st")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert needle in r.stderr, r.stderr
    assert not (tmp_path / "out.st").exists()
