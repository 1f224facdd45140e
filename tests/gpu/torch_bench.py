"""PyTorch + cuDNN baseline for tests/gpu/bench_gpu.c: the same resnet38d (SEAM/PSA layout, with
fc8 to 1 + 20 channels), the same measurements, the same output lines.

Inference: batch norm from running statistics, no gradient. Training step: batch norm frozen
(eval mode, parameters fixed) as in SEAM, conv1a and b2 frozen, dropout active, then GAP of the
heat maps, multilabel soft margin loss and backward. cuDNN's autotuner is on, as the engine
searches its convolution algorithms once per shape. TF32 follows --tf32.

Prints "RESULT torch <fwd|train> <batch> <images/s> <ms/iter>" per measurement.
"""
import argparse
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResBlock(nn.Module):
    def __init__(self, cin, cmid, cout, stride=1, first_dilation=None, dilation=1):
        super().__init__()
        self.same_shape = cin == cout and stride == 1
        fd = dilation if first_dilation is None else first_dilation
        self.bn_branch2a = nn.BatchNorm2d(cin)
        self.conv_branch2a = nn.Conv2d(cin, cmid, 3, stride, padding=fd, dilation=fd, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(cmid)
        self.conv_branch2b1 = nn.Conv2d(cmid, cout, 3, padding=dilation, dilation=dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        b2 = F.relu(self.bn_branch2a(x))
        b1 = x if self.same_shape else self.conv_branch1(b2)
        b2 = self.conv_branch2a(b2)
        b2 = self.conv_branch2b1(F.relu(self.bn_branch2b1(b2)))
        return b1 + b2


class ResBlockBot(nn.Module):
    def __init__(self, cin, cout, stride=1, dilation=1, dropout=0.0):
        super().__init__()
        self.same_shape = cin == cout and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(cin)
        self.conv_branch2a = nn.Conv2d(cin, cout // 4, 1, stride, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(cout // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(cout // 4, cout // 2, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn_branch2b2 = nn.BatchNorm2d(cout // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(cout // 2, cout, 1, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        b2 = F.relu(self.bn_branch2a(x))
        b1 = x if self.same_shape else self.conv_branch1(b2)
        b2 = self.conv_branch2a(b2)
        b2 = self.dropout_2b1(F.relu(self.bn_branch2b1(b2)))
        b2 = self.conv_branch2b1(b2)
        b2 = self.dropout_2b2(F.relu(self.bn_branch2b2(b2)))
        b2 = self.conv_branch2b2(b2)
        return b1 + b2


class Resnet38d(nn.Module):
    def __init__(self, n_out=21):
        super().__init__()
        self.conv1a = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.b2 = ResBlock(64, 128, 128, stride=2)
        self.b2_1 = ResBlock(128, 128, 128)
        self.b2_2 = ResBlock(128, 128, 128)
        self.b3 = ResBlock(128, 256, 256, stride=2)
        self.b3_1 = ResBlock(256, 256, 256)
        self.b3_2 = ResBlock(256, 256, 256)
        self.b4 = ResBlock(256, 512, 512, stride=2)
        self.b4_1 = ResBlock(512, 512, 512)
        self.b4_2 = ResBlock(512, 512, 512)
        self.b4_3 = ResBlock(512, 512, 512)
        self.b4_4 = ResBlock(512, 512, 512)
        self.b4_5 = ResBlock(512, 512, 512)
        self.b5 = ResBlock(512, 512, 1024, stride=1, first_dilation=1, dilation=2)
        self.b5_1 = ResBlock(1024, 512, 1024, dilation=2)
        self.b5_2 = ResBlock(1024, 512, 1024, dilation=2)
        self.b6 = ResBlockBot(1024, 2048, stride=1, dilation=4, dropout=0.3)
        self.b7 = ResBlockBot(2048, 4096, dilation=4, dropout=0.5)
        self.bn7 = nn.BatchNorm2d(4096)
        self.fc8 = nn.Conv2d(4096, n_out, 1, bias=False)
        for p in list(self.conv1a.parameters()) + [p for n, m in self.named_children() if n.startswith("b2") for p in m.parameters()]:
            p.requires_grad = False
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                for p in m.parameters():
                    p.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        for m in self.modules():  # frozen batch norm, as SEAM trains it
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x):
        x = self.conv1a(x)
        for name in ["b2", "b2_1", "b2_2", "b3", "b3_1", "b3_2", "b4", "b4_1", "b4_2", "b4_3",
                     "b4_4", "b4_5", "b5", "b5_1", "b5_2", "b6", "b7"]:
            x = getattr(self, name)(x)
        return self.fc8(F.relu(self.bn7(x)))


def measure(model, batch, size, iters, warmup, train):
    dev = torch.device("cuda")
    x = torch.rand(batch, 3, size, size, device=dev) * 2 - 1
    t = (torch.rand(batch, 21, device=dev) < 0.2).float()
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        if train:
            for p in params:
                p.grad = None
            h = model(x)
            loss = F.multilabel_soft_margin_loss(h.mean(dim=(2, 3)), t)
            loss.backward()
        else:
            with torch.no_grad():
                model(x)

    model.train(train)
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    torch.cuda.synchronize()
    per = (time.perf_counter() - t0) / iters
    what = "train" if train else "fwd"
    print(f"RESULT torch {what} {batch} {batch / per:.2f} {1e3 * per:.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--tf32", type=int, default=0)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_bench: skipped: PyTorch sees no CUDA device")
        return 77
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = bool(a.tf32)
    torch.backends.cuda.matmul.allow_tf32 = bool(a.tf32)
    torch.manual_seed(1)
    model = Resnet38d().cuda()
    print(f"torch_bench: torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
          f"{torch.cuda.get_device_name(0)}, TF32 {'on' if a.tf32 else 'off'}", file=sys.stderr)
    for b in [int(v) for v in a.batches.split(",")]:
        measure(model, b, a.size, a.iters, a.warmup, False)
    if a.train_batch > 0:
        measure(model, a.train_batch, a.size, a.iters, a.warmup, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
