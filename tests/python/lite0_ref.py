"""EfficientNet-Lite0 in PyTorch, built from the checkpoint's state dict: the reference the
engine's efficientnet_lite0 backbone is compared against (tests/python/test_lite0_torch.py).

The network follows the TF EfficientNet-Lite builder: stem 3x3/2 to 32 channels, 16 MBConv
blocks (1x1 expand, depthwise kxk, 1x1 project, no squeeze-excite), head 1x1 to 1280, every
activation ReLU6, batch norm eps 1e-3, a residual add where stride is 1 and channels in equal
channels out. padding="same" is TF's SAME padding (asymmetric where the input side is even and
the stride 2); padding="symmetric" pads (k-1)/2 on every side, the engine's convention. On
inputs of 32m+1 pixels a side the two are the same."""
import torch
import torch.nn.functional as F

# stage: kernel, stride, expand, repeats, channels out (real-photos.md, section 1.2)
STAGES = [(3, 1, 1, 1, 16), (3, 2, 6, 2, 24), (5, 2, 6, 2, 40), (3, 2, 6, 3, 80),
          (5, 1, 6, 3, 112), (5, 2, 6, 4, 192), (3, 1, 6, 1, 320)]
EPS = 1e-3


def blocks():
    """(kernel, stride, expand, channels in, channels out) of the 16 blocks."""
    out, cin = [], 32
    for k, s, e, r, cout in STAGES:
        for i in range(r):
            out.append((k, s if i == 0 else 1, e, cin, cout))
            cin = cout
    return out


def _pad(x, k, s, padding):
    if padding == "symmetric":
        p = (k - 1) // 2
        return F.pad(x, (p, p, p, p))
    h, w = x.shape[2], x.shape[3]
    ph = max((-(-h // s) - 1) * s + k - h, 0)
    pw = max((-(-w // s) - 1) * s + k - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


def _conv(x, w, s, padding, groups=1):
    k = w.shape[-1]
    return F.conv2d(_pad(x, k, s, padding), w, stride=s, groups=groups)


def _bn(x, sd, name):
    return F.batch_norm(x, sd[name + ".running_mean"], sd[name + ".running_var"],
                        sd[name + ".weight"], sd[name + ".bias"], False, 0.0, EPS)


def features(sd, x, padding="same"):
    """The ReLU6 head features (N, 1280, H/32, W/32) of x (N, 3, H, W), normalised."""
    x = F.relu6(_bn(_conv(x, sd["_conv_stem.weight"], 2, padding), sd, "_bn0"))
    for i, (k, s, e, cin, cout) in enumerate(blocks()):
        p = f"_blocks.{i}."
        y = x
        if e != 1:
            y = F.relu6(_bn(_conv(y, sd[p + "_expand_conv.weight"], 1, padding), sd, p + "_bn0"))
        y = _conv(y, sd[p + "_depthwise_conv.weight"], s, padding, groups=y.shape[1])
        y = F.relu6(_bn(y, sd, p + "_bn1"))
        y = _bn(_conv(y, sd[p + "_project_conv.weight"], 1, padding), sd, p + "_bn2")
        x = x + y if s == 1 and cin == cout else y
    return F.relu6(_bn(_conv(x, sd["_conv_head.weight"], 1, padding), sd, "_bn1"))


def cam_maps(sd, x, padding="same"):
    """Class maps: the classifier applied at every cell, bias included (N, 1000, h, w). Their
    mean over the cells is the logits, as fc(GAP(features)) + bias."""
    f = features(sd, x, padding)
    return torch.einsum("kc,nchw->nkhw", sd["_fc.weight"], f) + sd["_fc.bias"][None, :, None, None]


def logits(sd, x, padding="same"):
    f = features(sd, x, padding).mean((2, 3))
    return f @ sd["_fc.weight"].T + sd["_fc.bias"]


def normalise(rgb):
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float, (x - 127) / 128."""
    t = torch.as_tensor(rgb).permute(2, 0, 1).float()
    return ((t - 127.0) / 128.0)[None]
