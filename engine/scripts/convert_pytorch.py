#!/usr/bin/env python3
"""Convert a PyTorch checkpoint (SEAM, PSA, EfficientNet-Lite0 or ours) into an ecsnet model file.

    convert_pytorch.py CHECKPOINT.pth --backbone resnet38d --classes classes.txt --out MODEL.safetensors
    convert_pytorch.py efficientnet-lite0-57934424.pth --backbone efficientnet_lite0 \
        --synonyms classification_classes_ILSVRC2012.txt --out models/ecsnet-imagenet-lite0.safetensors \
        --meta licence="..." --meta origin="..."

The tensor names stay those of the PyTorch state_dict. What the converter changes, it records
in the model file's metadata and says on stderr:
  - a classifier without a background channel (PSA: K outputs) gets a zero-initialised channel
    0, and the metadata says bg_channel_added = 1;
  - keys the model does not use (SEAM's PCM layers f8_3, f8_4, f9; num_batches_tracked) are
    dropped and listed;
  - efficientnet_lite0 (efficientnet-lite-pytorch's state dict names): its classifier _fc
    (K, 1280) and _fc.bias become fc8.weight (1 + K, 1280, 1, 1) and fc8.bias (1 + K), with a
    zero background channel 0; batch norm keeps its own statistics (the engine applies eps 1e-3);
  - --synonyms FILE reads one class a line as comma-separated synonyms (ImageNet's
    classification_classes_ILSVRC2012.txt): the class's name is its first synonym, and a name
    that an earlier class already has gets " 2" (" 3", ...) appended (ImageNet: "crane" 135 and
    "crane 2" 518, "maillot" 639 and "maillot 2" 640, ecsnet ids); every synonym list is kept in
    the metadata as class_synonyms;
  - --groups FILE (engine/scripts/imagenet-groups.tsv) reads named groups of classes, one a line:
    name, TAB, 0-based class indices ("281-285,339"), TAB, why; the metadata "groups" holds them
    as "name:id,id,...;name:..." with ecsnet ids (index + 1), which the engine reads;
  - --scores softmax|sigmoid records how the classifier was trained (metadata "scores": the
    engine turns logits into scores that way; an ImageNet classifier is softmax-trained);
  - a missing key or a wrong shape is an error naming the key (exit status 1).
Usage errors exit with status 2.
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

SMALL = [(3, 32, 7), (32, 64, 5), (64, 128, 5), (128, 256, 3)]
R38 = [("b2", 64, 128, 128, 0), ("b2_1", 128, 128, 128, 0), ("b2_2", 128, 128, 128, 0),
       ("b3", 128, 256, 256, 0), ("b3_1", 256, 256, 256, 0), ("b3_2", 256, 256, 256, 0),
       ("b4", 256, 512, 512, 0)] + [(f"b4_{i}", 512, 512, 512, 0) for i in range(1, 6)] + [
       ("b5", 512, 512, 1024, 0), ("b5_1", 1024, 512, 1024, 0), ("b5_2", 1024, 512, 1024, 0),
       ("b6", 1024, 512, 2048, 1), ("b7", 2048, 1024, 4096, 1)]
STRIDED = {"b2", "b3", "b4"}
# efficientnet_lite0's 16 blocks: kernel, stride, expansion, channels in, channels out
LITE0 = [(3, 1, 1, 32, 16), (3, 2, 6, 16, 24), (3, 1, 6, 24, 24), (5, 2, 6, 24, 40), (5, 1, 6, 40, 40),
         (3, 2, 6, 40, 80), (3, 1, 6, 80, 80), (3, 1, 6, 80, 80), (5, 1, 6, 80, 112),
         (5, 1, 6, 112, 112), (5, 1, 6, 112, 112), (5, 2, 6, 112, 192), (5, 1, 6, 192, 192),
         (5, 1, 6, 192, 192), (5, 1, 6, 192, 192), (3, 1, 6, 192, 320)]
VGG = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
       ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv4_1", 256, 512),
       ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv5_1", 512, 512), ("conv5_2", 512, 512),
       ("conv5_3", 512, 512)]


def _bn(d, name, c):
    for s in ("weight", "bias", "running_mean", "running_var"):
        d[f"{name}.{s}"] = (c,)


def expected_keys(backbone, C):
    """The tensors of an ecsnet model, name -> shape, in the engine's order."""
    d = {}
    if backbone == "small":
        for i, (a, b, k) in enumerate(SMALL, 1):
            d[f"conv{i}.weight"] = (b, a, k, k)
            _bn(d, f"bn{i}", b)
        d["fc8.weight"] = (C, 256, 1, 1)
    elif backbone == "resnet38d":
        d["conv1a.weight"] = (64, 3, 3, 3)
        for n, cin, mid, cout, bot in R38:
            _bn(d, f"{n}.bn_branch2a", cin)
            if bot:
                d[f"{n}.conv_branch2a.weight"] = (cout // 4, cin, 1, 1)
                _bn(d, f"{n}.bn_branch2b1", cout // 4)
                d[f"{n}.conv_branch2b1.weight"] = (cout // 2, cout // 4, 3, 3)
                _bn(d, f"{n}.bn_branch2b2", cout // 2)
                d[f"{n}.conv_branch2b2.weight"] = (cout, cout // 2, 1, 1)
            else:
                d[f"{n}.conv_branch2a.weight"] = (mid, cin, 3, 3)
                _bn(d, f"{n}.bn_branch2b1", mid)
                d[f"{n}.conv_branch2b1.weight"] = (cout, mid, 3, 3)
            if bot or cin != cout or n in STRIDED:
                d[f"{n}.conv_branch1.weight"] = (cout, cin, 1, 1)
        _bn(d, "bn7", 4096)
        d["fc8.weight"] = (C, 4096, 1, 1)
    elif backbone == "vgg16d":
        for n, a, b in VGG:
            d[f"{n}.weight"] = (b, a, 3, 3)
            d[f"{n}.bias"] = (b,)
        d["fc6.weight"], d["fc6.bias"] = (1024, 512, 3, 3), (1024,)
        d["fc7.weight"], d["fc7.bias"] = (1024, 1024, 1, 1), (1024,)
        d["fc8.weight"] = (C, 1024, 1, 1)
    elif backbone == "efficientnet_lite0":
        d["_conv_stem.weight"] = (32, 3, 3, 3)
        _bn(d, "_bn0", 32)
        for i, (k, s, e, cin, cout) in enumerate(LITE0):
            mid, p = cin * e, f"_blocks.{i}."
            if e != 1:
                d[p + "_expand_conv.weight"] = (mid, cin, 1, 1)
                _bn(d, p + "_bn0", mid)
            d[p + "_depthwise_conv.weight"] = (mid, 1, k, k)
            _bn(d, p + "_bn1", mid)
            d[p + "_project_conv.weight"] = (cout, mid, 1, 1)
            _bn(d, p + "_bn2", cout)
        d["_conv_head.weight"] = (1280, 320, 1, 1)
        _bn(d, "_bn1", 1280)
        d["fc8.weight"], d["fc8.bias"] = (C, 1280, 1, 1), (C,)
    else:
        raise ValueError(f"unknown backbone {backbone!r}")
    return d


NORM = {"small": "imagenet", "resnet38d": "imagenet", "vgg16d": "caffe_bgr", "efficientnet_lite0": "tf128"}
BACKBONES = list(NORM)


# The model rows of the engine's table (engine/include/ecs/hparams.h; `ecsnet info --hparams
# --json` dumps it, and tests/python/test_hparams_table.py holds these defaults to it). Each is
# written as its own metadata key, "ecsnet.hparam.NAME", in the text the engine reads.
BOOL_HPARAMS = ("bg_in_phi", "cls_on_erased", "no_erase", "no_overlay", "no_phi_filter")


def default_hparams(backbone):
    return {"beta": 0.0, "delta": 0.6, "theta": 0.7, "sigma_factor": 0.08, "lambda": 1.0,
            "lambda_ramp": 0.5, "warmup": 0.6, "eps": 1e-5, "overlay_k": -1,
            "overlay_rates": [2, 3, 4, 0] if backbone == "small" else [8, 12, 16, 0],
            "bg_in_phi": 1, "cls_on_erased": 1, "no_erase": 0, "no_overlay": 0, "no_phi_filter": 0,
            "input_side": 0, "input_max_aspect": 4.0}


class ConvertError(Exception):
    pass


def hparam_text(name, v):
    """A hyper-parameter's value as the engine's table reads it: true/false, "8,12,16", numbers."""
    if name in BOOL_HPARAMS:
        return "true" if v else "false"
    if name == "overlay_rates":
        r = [int(x) for x in v]
        while r and r[-1] == 0:
            r.pop()
        return ",".join(map(str, r))
    return "%.9g" % v if isinstance(v, float) else str(int(v))




def unique_names(synonyms):
    """The first synonym of each class, made unique: a name an earlier class has gets " 2", " 3"..."""
    names, seen = [], {}
    for syn in synonyms:
        if not syn or not syn[0]:
            raise ConvertError(f"class {len(names) + 1} has no name")
        base = syn[0]
        n = seen.get(base, 0) + 1
        seen[base] = n
        name = base if n == 1 else f"{base} {n}"
        while name in names:  # a suffixed name that is itself a class name
            n += 1
            seen[base] = n
            name = f"{base} {n}"
        names.append(name)
    return names


def read_synonyms(path):
    with open(path, encoding="utf-8") as f:
        return [[s.strip() for s in ln.split(",") if s.strip()] for ln in f if ln.strip()]


def read_groups(path, K):
    """The groups table: [(name, [ecsnet ids])], checked against K classes."""
    groups = []
    with open(path, encoding="utf-8") as f:
        for n, ln in enumerate(f, 1):
            if not ln.strip() or ln.startswith("#"):
                continue
            cols = ln.rstrip("\n").split("\t")
            if len(cols) < 2 or not cols[0].strip():
                raise ConvertError(f"{path}:{n}: expected NAME<TAB>MEMBERS<TAB>WHY")
            ids = []
            for part in cols[1].split(","):
                a, _, b = part.strip().partition("-")
                lo, hi = int(a), int(b or a)
                if not 0 <= lo <= hi < K:
                    raise ConvertError(f"{path}:{n}: member {part.strip()} outside 0..{K - 1}")
                ids.extend(range(lo + 1, hi + 2))
            name = cols[0].strip()
            if any(name == g for g, _ in groups) or ":" in name or ";" in name:
                raise ConvertError(f"{path}:{n}: group name {name!r} twice or with ':' or ';'")
            groups.append((name, ids))
    return groups


def groups_text(groups):
    return ";".join(f"{g}:{','.join(map(str, ids))}" for g, ids in groups)


def lite0_classifier(state):
    """efficientnet-lite-pytorch's _fc (K, 1280) + bias -> fc8 with a zero background channel."""
    if "_fc.weight" in state and "fc8.weight" not in state:
        w = np.asarray(state.pop("_fc.weight"), np.float32)
        b = np.asarray(state.pop("_fc.bias"), np.float32) if "_fc.bias" in state else np.zeros(w.shape[0], np.float32)
        state["fc8.weight"] = np.concatenate([np.zeros((1, w.shape[1]), np.float32), w])[:, :, None, None]
        state["fc8.bias"] = np.concatenate([np.zeros(1, np.float32), b])
        return True
    return False


def convert(state, backbone, classes, hparams=None, alpha_bg=0.26, provenance="", meta_extra=None):
    """state: name -> numpy array. Returns (tensors, metadata, dropped names)."""
    K = len(classes)
    if K < 1:
        raise ConvertError("no classes given")
    if len(set(classes)) != K:
        raise ConvertError("class names must be unique")
    exp = expected_keys(backbone, 1 + K)
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    out, added = {}, False
    if backbone == "efficientnet_lite0":
        added = lite0_classifier(state)
    for name, shape in exp.items():
        if name not in state:
            raise ConvertError(f"missing key {name} (is this a {backbone} checkpoint?)")
        a = np.asarray(state[name], dtype=np.float32)
        if name == "fc8.weight" and a.ndim == 4 and a.shape[0] == K and tuple(a.shape[1:]) == shape[1:]:
            a = np.concatenate([np.zeros((1,) + a.shape[1:], np.float32), a])  # PSA: no background
            added = True
        if tuple(a.shape) != tuple(shape):
            raise ConvertError(f"{name} has shape {list(a.shape)}, a {backbone} model with {K} classes "
                               f"needs {list(shape)}")
        out[name] = np.ascontiguousarray(a)
    dropped = sorted(k for k in state if k not in exp)
    hp = default_hparams(backbone)
    unknown = sorted(set(hparams or {}) - set(hp))
    if unknown:
        raise ConvertError(f"unknown hyper-parameters: {', '.join(unknown)} (known: {', '.join(hp)})")
    hp.update(hparams or {})
    meta = {"format": "ecsnet-model/2", "backbone": backbone, "normalisation": NORM[backbone],
            "classes": json.dumps(list(classes), ensure_ascii=False),
            **{f"ecsnet.hparam.{k}": hparam_text(k, v) for k, v in hp.items()},
            "bg_channel_added": "1" if added else "0", "alpha_bg": repr(float(alpha_bg)),
            "label_threshold": "0.5",
            "provenance": provenance + (f"; dropped: {','.join(dropped)}" if dropped else "")}
    meta.update(meta_extra or {})
    return out, meta, dropped


def save_safetensors(path, tensors, meta):
    """Atomic: temporary file in the same folder, fsync, rename."""
    header, off, blobs = {}, 0, []
    for name, a in tensors.items():
        b = a.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".convert-")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # a model file like any other, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            f.write(len(h).to_bytes(8, "little"))
            f.write(h)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_checkpoint(path):
    import torch

    obj = torch.load(path, map_location="cpu")
    for key in ("state_dict", "model", "net"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: not a state_dict")
    return {k: v.detach().cpu().numpy() for k, v in obj.items() if hasattr(v, "detach")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--backbone", required=True, choices=BACKBONES)
    cls = ap.add_mutually_exclusive_group(required=True)
    cls.add_argument("--classes", help="classes.txt (one object class a line) or a comma-separated list")
    cls.add_argument("--synonyms", help="one class a line as comma-separated synonyms; the first names it")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                    help="extra metadata (licence, origin), repeatable")
    ap.add_argument("--out", required=True)
    ap.add_argument("--alpha-bg", type=float, default=0.26)
    ap.add_argument("--hparams", default="{}", help="JSON object overriding hyper-parameters")
    ap.add_argument("--groups", help="named groups of classes (engine/scripts/imagenet-groups.tsv)")
    ap.add_argument("--scores", choices=["sigmoid", "softmax"], default="sigmoid",
                    help="how the classifier's logits become scores (softmax: an ImageNet classifier)")
    a = ap.parse_args(argv)
    extra = {}
    for kv in a.meta:
        k, eq, v = kv.partition("=")
        if not eq or not k:
            ap.error(f"--meta {kv!r}: expected KEY=VALUE")
        extra[k] = v
    try:
        if a.synonyms:
            syn = read_synonyms(a.synonyms)
            classes = unique_names(syn)
            extra["class_synonyms"] = json.dumps(syn, ensure_ascii=False, separators=(",", ":"))
        elif os.path.exists(a.classes):
            with open(a.classes) as f:
                classes = [ln.strip() for ln in f if ln.strip() and ln.strip() != "background"]
        else:
            classes = [c.strip() for c in a.classes.split(",") if c.strip()]
        extra["scores"] = a.scores
        if a.groups:
            extra["groups"] = groups_text(read_groups(a.groups, len(classes)))
        hp = json.loads(a.hparams)
        state = load_checkpoint(a.checkpoint)
        tensors, meta, dropped = convert(state, a.backbone, classes, hp, a.alpha_bg,
                                         f"converted from {os.path.basename(a.checkpoint)}", extra)
        save_safetensors(a.out, tensors, meta)
    except (ConvertError, OSError, ValueError) as e:
        print(f"convert_pytorch: {a.checkpoint}: {e}", file=sys.stderr)
        return 1
    if dropped:
        print(f"convert_pytorch: dropped {len(dropped)} unused keys: {', '.join(dropped)}", file=sys.stderr)
    if meta["bg_channel_added"] == "1":
        print("convert_pytorch: fc8 had no background channel: added channel 0, zero-initialised",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
