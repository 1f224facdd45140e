"""PyTorch reference of ECS-Net as docs/method.md specifies it: the three backbones with
SEAM/PSA state_dict names, one training step (steps 1-12) and the inference outputs.

Written from the text of method.md, independently of the engine's C code, so that the engine
is compared against the specification rather than against itself."""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BGR_MEAN = (104.008, 116.669, 122.675)


# ---- dropout ------------------------------------------------------------------------------
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class DropStream:
    """The engine's dropout masks (op.h: ecs_dropout_keep; one seed per call drawn with
    splitmix64 from the ctx's seed), so that training steps with dropout can be compared."""

    def __init__(self, seed):
        self.rng = np.uint64(seed)

    def __call__(self, x, p):
        with np.errstate(over="ignore"):
            self.rng = self.rng + np.uint64(0x9E3779B97F4A7C15)
            seed = _mix(self.rng)
            i = np.arange(1, x.numel() + 1, dtype=np.uint64)
            z = _mix(seed + np.uint64(0x9E3779B97F4A7C15) * i)
        keep = (z >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 16777216.0) >= np.float32(p)
        mask = torch.from_numpy(keep.reshape(tuple(x.shape)).astype(np.float32))
        return x * mask * (1.0 / (1.0 - p))


DROP = None  # a DropStream to use the engine's masks, else PyTorch's dropout


def dropout(x, p, training):
    if training and p > 0 and DROP is not None:
        return DROP(x, p)
    return F.dropout(x, p, training)


RECORD = None  # a list to collect the inputs of the ReLUs and max-pools on a gradient path
NUDGE = None  # a callable (x, bias, on a gradient path) -> x shifted per channel (test fixtures)


def relu(x, bias=None):
    """F.relu; with RECORD set, also keeps its input when a gradient flows through it, so that a
    test can measure how far each element is from flipping the mask of the backward. bias: the
    parameter that adds to x per channel, where there is one; NUDGE may move it."""
    if NUDGE is not None and bias is not None:
        x = NUDGE(x, bias, x.requires_grad)
    if RECORD is not None and x.requires_grad:
        RECORD.append(("relu", x.detach(), bias))
    return F.relu(x)


def max_pool(x, k, s, p, conv=None):
    """F.max_pool2d, recorded as relu() is (which element wins each window). conv: (name, input,
    dilation) of the 3x3 convolution whose ReLU'd output x is, where there is one."""
    if RECORD is not None and x.requires_grad:
        RECORD.append(("pool", x.detach(), k, s, p, conv and (conv[0], conv[1].detach(), conv[2])))
    return F.max_pool2d(x, k, s, p)


# ---- backbones -------------------------------------------------------------------------
class Small(nn.Module):
    """4 conv layers (7/2, 5/2, 5/2, 3/1) with BN + ReLU, receptive field 47 px."""
    base_dil = 1

    def __init__(self, C):
        super().__init__()
        spec = [(3, 32, 7, 2), (32, 64, 5, 2), (64, 128, 5, 2), (128, 256, 3, 1)]
        for i, (a, b, k, s) in enumerate(spec, 1):
            setattr(self, f"conv{i}", nn.Conv2d(a, b, k, s, k // 2, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(b))
        self.fc8 = nn.Conv2d(256, C, 1, bias=False)

    def trunk(self, x):
        for i in range(1, 4):
            x = relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)), f"bn{i}.bias")
        return (x,)

    def head(self, t, dil):
        x = F.conv2d(t[0], self.conv4.weight, None, 1, dil, dil)
        return self.fc8(relu(self.bn4(x), "bn4.bias"))


class ResBlock(nn.Module):
    def __init__(self, cin, mid, cout, stride=1, first_dil=None, dil=1):
        super().__init__()
        first_dil = dil if first_dil is None else first_dil
        self.same = cin == cout and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(cin)
        self.conv_branch2a = nn.Conv2d(cin, mid, 3, stride, first_dil, first_dil, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(mid)
        self.conv_branch2b1 = nn.Conv2d(mid, cout, 3, 1, dil, dil, bias=False)
        if not self.same:
            self.conv_branch1 = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        b2 = relu(self.bn_branch2a(x))
        b1 = x if self.same else self.conv_branch1(b2)
        b2 = self.conv_branch2b1(relu(self.bn_branch2b1(self.conv_branch2a(b2))))
        return b1 + b2


class ResBlockBot(nn.Module):
    def __init__(self, cin, cout, dil, dropout):
        super().__init__()
        self.dil, self.p = dil, dropout
        self.bn_branch2a = nn.BatchNorm2d(cin)
        self.conv_branch2a = nn.Conv2d(cin, cout // 4, 1, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(cout // 4)
        self.conv_branch2b1 = nn.Conv2d(cout // 4, cout // 2, 3, 1, dil, dil, bias=False)
        self.bn_branch2b2 = nn.BatchNorm2d(cout // 2)
        self.conv_branch2b2 = nn.Conv2d(cout // 2, cout, 1, bias=False)
        self.conv_branch1 = nn.Conv2d(cin, cout, 1, bias=False)

    def pre(self, x):
        b2 = relu(self.bn_branch2a(x))
        b1 = self.conv_branch1(b2)
        b2 = dropout(relu(self.bn_branch2b1(self.conv_branch2a(b2))), self.p, self.training)
        return b2, b1

    def post(self, t, dil):
        b2 = F.conv2d(t[0], self.conv_branch2b1.weight, None, 1, dil, dil)
        b2 = dropout(relu(self.bn_branch2b2(b2)), self.p, self.training)
        return t[1] + self.conv_branch2b2(b2)

    def forward(self, x):
        return self.post(self.pre(x), self.dil)


class Resnet38d(nn.Module):
    base_dil = 4

    def __init__(self, C):
        super().__init__()
        self.conv1a = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.b2 = ResBlock(64, 128, 128, 2)
        self.b2_1 = ResBlock(128, 128, 128)
        self.b2_2 = ResBlock(128, 128, 128)
        self.b3 = ResBlock(128, 256, 256, 2)
        self.b3_1 = ResBlock(256, 256, 256)
        self.b3_2 = ResBlock(256, 256, 256)
        self.b4 = ResBlock(256, 512, 512, 2)
        for i in range(1, 6):
            setattr(self, f"b4_{i}", ResBlock(512, 512, 512))
        self.b5 = ResBlock(512, 512, 1024, 1, first_dil=1, dil=2)
        self.b5_1 = ResBlock(1024, 512, 1024, dil=2)
        self.b5_2 = ResBlock(1024, 512, 1024, dil=2)
        self.b6 = ResBlockBot(1024, 2048, 4, 0.3)
        self.b7 = ResBlockBot(2048, 4096, 4, 0.5)
        self.bn7 = nn.BatchNorm2d(4096)
        self.fc8 = nn.Conv2d(4096, C, 1, bias=False)

    def train(self, mode=True):  # batch norm is frozen in training
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def trunk(self, x):
        x = self.conv1a(x)
        for n in ["b2", "b2_1", "b2_2", "b3", "b3_1", "b3_2", "b4"] + [f"b4_{i}" for i in range(1, 6)] + [
                "b5", "b5_1", "b5_2", "b6"]:
            x = getattr(self, n)(x)
        return self.b7.pre(x)

    def head(self, t, dil):
        return self.fc8(relu(self.bn7(self.b7.post(t, dil))))


VGG = [("conv1_1", 3, 64, 1), ("conv1_2", 64, 64, 1), ("conv2_1", 64, 128, 1), ("conv2_2", 128, 128, 1),
       ("conv3_1", 128, 256, 1), ("conv3_2", 256, 256, 1), ("conv3_3", 256, 256, 1),
       ("conv4_1", 256, 512, 1), ("conv4_2", 512, 512, 1), ("conv4_3", 512, 512, 1),
       ("conv5_1", 512, 512, 2), ("conv5_2", 512, 512, 2), ("conv5_3", 512, 512, 2)]


class Vgg16d(nn.Module):
    base_dil = 1

    def __init__(self, C):
        super().__init__()
        for n, a, b, d in VGG:
            setattr(self, n, nn.Conv2d(a, b, 3, padding=d, dilation=d))
        self.fc6 = nn.Conv2d(512, 1024, 3, padding=1)
        self.fc7 = nn.Conv2d(1024, 1024, 1)
        self.fc8 = nn.Conv2d(1024, C, 1, bias=False)

    def trunk(self, x):
        for n, _, _, d in VGG:
            y = relu(getattr(self, n)(x), f"{n}.bias")
            if n in ("conv1_2", "conv2_2", "conv3_3"):
                y = max_pool(y, 3, 2, 1, (n, x, d))
            elif n == "conv4_3":
                y = max_pool(y, 3, 1, 1, (n, x, d))
            x = y
        return (x,)

    def head(self, t, dil):
        x = dropout(relu(F.conv2d(t[0], self.fc6.weight, self.fc6.bias, 1, dil, dil), "fc6.bias"), 0.5,
                    self.training)
        x = dropout(relu(self.fc7(x), "fc7.bias"), 0.5, self.training)
        return self.fc8(x)


BACKBONES = {"small": Small, "resnet38d": Resnet38d, "vgg16d": Vgg16d}


def forward(model, x, rates=()):
    """F, with the step-12 overlay when rates are given: H = H_0 + (1/K) sum_k H_k."""
    t = model.trunk(x)
    h = model.head(t, model.base_dil)
    for r in rates:
        h = h + model.head(t, r) / len(rates)
    return h


def randomise(model, seed):
    """Non-trivial weights and batch-norm statistics so that every parameter matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 4:
                fan = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=g) * math.sqrt(2.0 / fan))
            elif name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return model


def state_dict_np(model):
    return {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def normalise(rgb, backbone):
    x = rgb.astype(np.float32)
    if backbone == "vgg16d":
        x = x[..., ::-1] - np.array(BGR_MEAN, np.float32)
    else:
        x = (x / np.float32(255.0) - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].float()


# ---- the pieces of ECS ---------------------------------------------------------------------
def maxmin(h, eps=1e-5):
    """Step 3 per (n, c) over the map."""
    h = F.relu(h)
    mn = h.flatten(2).min(2)[0][..., None, None]
    mx = h.flatten(2).max(2)[0][..., None, None]
    return F.relu(h - mn - eps) / (mx - mn + eps)


def blur_params(h, w, sigma_factor):
    sigma = max(sigma_factor * min(h, w), 0.5)
    k = int(math.floor(4 * sigma)) + 1
    return sigma, k | 1


def blur(x, sigma, k):
    """Separable Gaussian, weights renormalised over the pixels inside the image."""
    r = k // 2
    g = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float64) ** 2 / (2 * sigma * sigma))
    c = x.shape[1]
    gx = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    gy = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    xd = x.double()
    ones = torch.ones_like(xd)
    num = F.conv2d(F.conv2d(xd, gx, padding=(0, r), groups=c), gy, padding=(r, 0), groups=c)
    den = F.conv2d(F.conv2d(ones, gx, padding=(0, r), groups=c), gy, padding=(r, 0), groups=c)
    # the engine renormalises each 1-D pass; for a separable kernel the product is the same
    return (num / den).to(x.dtype)


def resize(x, h, w):
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def grid(n):
    for _ in range(3):
        n = (n + 1) // 2
    return n


def step(model, images, labels, hp, ecs_phase=True, lam=1.0, overlay=None, beta=None, backward=True):
    """One ECS-Net iteration; returns a dict of losses, Phi counts and the reliable labels.
    Gradients accumulate in model's parameters (backward=False: the forward passes only)."""
    N, _, H, W = images.shape
    K = labels.shape[1]
    model.train()
    beta = beta if beta is not None else (hp["beta"] if hp["beta"] > 0 else (0.5 if min(H, W) >= 320 else 1.0))
    xb = resize(images, max(int(math.floor(H * beta)), 1), max(int(math.floor(W * beta)), 1)) if beta < 1 else images
    h = forward(model, xb)
    lcls = F.multilabel_soft_margin_loss(h.mean((2, 3))[:, 1:], labels)
    out = {"loss_cls": lcls, "loss_seg": torch.zeros(()), "phi": 0, "phi_fg": 0, "phi_bg": 0, "erased": 0}
    loss = lcls
    if ecs_phase:
        y = labels[:, :, None, None]
        with torch.no_grad():
            a = maxmin(h[:, 1:], hp["eps"]) * y
            s = a.max(1, keepdim=True)[0].clamp(min=0)
            su = resize(s, H, W)[:, 0]
            R = su > hp["delta"]
            sigma, k = blur_params(H, W, hp["sigma_factor"])
            ie = torch.where(R[:, None], blur(images, sigma, k), images)
            rates = overlay if overlay is not None else []
        with torch.set_grad_enabled(bool(hp.get("cls_on_erased", 0))):
            hp_ = forward(model, ie, rates)
        with torch.no_grad():
            a2 = maxmin(hp_[:, 1:], hp["eps"]) * y
            a0 = 1 - a2.max(1)[0].clamp(min=0)
            present = torch.cat([torch.ones(N, 1, dtype=torch.bool), labels > 0], 1)
            full = torch.cat([a0[:, None], a2], 1).masked_fill(~present[:, :, None, None], -1.0)
            sprime, lprime = full.max(1)
            fh, fw = hp_.shape[2:]
            rr = F.avg_pool2d(R[:, None].float(), 8, 8, ceil_mode=True)[:, 0] >= 0.5
            fg = (~rr) & (lprime != 0) & (sprime > hp["theta"])
            bg = (~rr) & (a0 > hp["theta"]) if hp["bg_in_phi"] else torch.zeros_like(fg)
            phi = fg | bg
            target = torch.where(phi, lprime, torch.full_like(lprime, 255))
        hr = resize(h, fh, fw) if h.shape[2:] != (fh, fw) else h
        logits = hr.masked_fill(~present[:, :, None, None], float("-inf"))
        if phi.any():
            lseg = F.nll_loss(F.log_softmax(logits, 1), target.long(), ignore_index=255)
        else:
            lseg = hr.sum() * 0
        loss = lcls
        if hp.get("cls_on_erased", 0):
            lcls2 = F.multilabel_soft_margin_loss(hp_.mean((2, 3))[:, 1:], labels)
            out["loss_cls_erased"] = lcls2
            loss = loss + lcls2
        loss = loss + lam * lseg
        out.update(loss_seg=lseg, phi=int(phi.sum()), phi_fg=int(fg.sum()), phi_bg=int((phi & ~fg).sum()),
                   erased=int(R.sum()), target=target, R=R, cells=phi.numel(),
                   score_up=su, sprime=sprime, full=full, in_r=rr)
    if backward:
        loss.backward()
    out["loss"] = loss
    return out


# ---- inference -------------------------------------------------------------------------
# The engine's defaults of the values inference reads (tests/python/test_hparams_table.py holds
# them to `ecsnet info --hparams --json`, the engine's table).
INFER_HP = {"delta": 0.6, "theta": 0.7, "sigma_factor": 0.08, "eps": 1e-5, "bg_in_phi": 1}


def infer(model, rgb, backbone, labels=None, scales=(1.0,), flip=False, alpha_bg=0.26, threshold=0.5,
          hp=None, want_erased=True):
    hp = hp or INFER_HP
    model.eval()
    Hh, Ww = rgb.shape[:2]
    x = normalise(rgb, backbone)
    out = {}
    with torch.no_grad():
        h1 = forward(model, x)
        scores = torch.sigmoid(h1.double().mean((2, 3))[0, 1:]).float()
        out["scores"] = scores.numpy()
        if labels is None:
            labels = [k + 1 for k in range(len(scores)) if scores[k] > threshold] or [int(scores.argmax()) + 1]
        labels = sorted(labels)
        out["labels"] = labels

        def cams_of(xin):
            acc = torch.zeros(len(labels), Hh, Ww)
            for sc in scales:
                sh, sw = max(int(math.floor(Hh * sc)), 1), max(int(math.floor(Ww * sc)), 1)
                for f in ([0, 1] if flip else [0]):
                    xs = xin if (sh, sw) == (Hh, Ww) else resize(xin, sh, sw)
                    if f:
                        xs = xs.flip(3)
                    hm = forward(model, xs)
                    if f:
                        hm = hm.flip(3)
                    acc += F.relu(resize(hm[:, labels], Hh, Ww))[0]
            return maxmin(acc[None], hp["eps"])[0]

        cams = cams_of(x)
        out["cams"] = cams.numpy()
        sc = torch.cat([torch.full((1, Hh, Ww), alpha_bg), cams], 0)
        ids = np.array([0] + labels)
        out["cam_mask"] = ids[sc.argmax(0).numpy()].astype(np.uint8)
        hu = resize(h1[:, [0] + labels], Hh, Ww)[0]
        out["head_mask"] = ids[hu.argmax(0).numpy()].astype(np.uint8)
        if want_erased:
            a = maxmin(h1[:, labels], hp["eps"])[0]
            s = a.max(0, keepdim=True)[0].clamp(min=0)
            R = resize(s[None], Hh, Ww)[0, 0] > hp["delta"]
            img = torch.from_numpy(rgb.astype(np.float32).transpose(2, 0, 1))[None]
            sigma, k = blur_params(Hh, Ww, hp["sigma_factor"])
            er = torch.where(R[None, None], blur(img, sigma, k), img)[0]
            er8 = np.floor(np.clip(er.numpy(), 0, 255) + np.float32(0.5)).astype(np.uint8).transpose(1, 2, 0)
            out["erase_region"] = R.numpy().astype(np.uint8)
            out["erased_image"] = er8
            ecams = cams_of(normalise(er8, backbone))
            out["erased_cams"] = ecams.numpy()
            mx, li = ecams.max(0)
            lab = torch.from_numpy(np.array(labels))[li]
            a0 = 1 - mx
            lab = torch.where(a0 >= mx, torch.zeros_like(lab), lab)
            keep = torch.where(lab != 0, mx > hp["theta"], (a0 > hp["theta"]) & bool(hp["bg_in_phi"])) & ~R
            out["ecs_mask"] = torch.where(keep, lab, torch.full_like(lab, 255)).numpy().astype(np.uint8)
            out["mask"] = np.where(keep.numpy(), out["ecs_mask"], out["cam_mask"]).astype(np.uint8)
    return out
