"""Formats the key=value lines of bench_peak, bench_engine and bench_torch.py as the table
`make bench` prints, with the issue's targets and whether this run met them; with --contention,
the lines of tests/bench/contention.sh (phase=idle|loaded) as medians and slowdowns."""
import statistics
import sys


def parse(path):
    peak, rows = None, {}
    for line in open(path):
        kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
        if "peak_gflops" in kv:
            peak = kv
        elif "case" in kv:
            rows.setdefault(kv["case"], {})[kv.get("impl", "ecs")] = kv
    return peak, rows


TARGETS = {  # case prefix: (fraction of peak, x PyTorch, x ONNX Runtime)
    "conv3x3": (0.70, None, None),
    "resnet38d": (0.75, None, 0.95),
    "small": (None, 2.0, 0.95),
    "train": (None, 1.0, None),
    "lite0": (None, None, 1.2),  # ecsnet-imagenet-lite0's forward, batch 1 (issue #16)
}


def contention(path):
    """Median over rounds per (case, framework, phase); slowdown = loaded / idle."""
    ms = {}
    for line in open(path):
        kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
        if "case" in kv and "phase" in kv:
            ms.setdefault((kv["case"], kv.get("impl", "ecs"), kv["phase"]), []).append(float(kv["ms"]))
    hdr = f"{'case':<8}{'framework':<11}{'idle ms':>9}{'loaded ms':>11}{'loaded/idle':>13}{'rounds':>8}"
    print(hdr)
    print("-" * len(hdr))
    slow = {}
    for case in dict.fromkeys(k[0] for k in ms):
        for impl, name in (("ecs", "ecsnet"), ("torch", "PyTorch")):
            idle, loaded = ms.get((case, impl, "idle")), ms.get((case, impl, "loaded"))
            if not idle or not loaded:
                continue
            i, l = statistics.median(idle), statistics.median(loaded)
            slow[case, impl] = l / i
            print(f"{case:<8}{name:<11}{i:>9.2f}{l:>11.2f}{l / i:>12.2f}x{len(idle):>8}")
    for case in dict.fromkeys(k[0] for k in slow):
        if (case, "ecs") in slow and (case, "torch") in slow:
            e, t = slow[case, "ecs"], slow[case, "torch"]
            print(f"{case}: ecsnet slows down {e:.2f}x, PyTorch {t:.2f}x: target (ecsnet's slowdown "
                  f"<= PyTorch's) {'met' if e <= t else 'NOT met'}")
    print("medians over rounds of each round's median; loaded: a second process keeps every core "
          "busy (bench_peak --busy)")


def main():
    if sys.argv[1] == "--contention":
        contention(sys.argv[2])
        return
    peak, rows = parse(sys.argv[1])
    pk = float(peak["peak_gflops"]) if peak else None
    if peak:
        print(f"FMA peak ({peak['isa']}, {peak['threads']} threads): {pk:.1f} GFLOP/s per CPU-second "
              f"the threads got (wall clock under the current load: {peak['wall_gflops']})")
    hdr = f"{'case':<18}{'ecsnet ms':>11}{'GFLOP/s':>9}{'%peak':>7}{'torch ms':>10}{'ort ms':>9}" \
          f"{'xtorch':>8}{'xort':>7}  targets"
    print(hdr)
    print("-" * len(hdr))
    for case, impls in rows.items():
        e = impls.get("ecs")
        if not e:
            continue
        ms = float(e["ms"])
        gf = float(e["gflop"]) / (ms * 1e-3) if float(e.get("gflop", 0)) > 0 else None
        frac = gf / pk if gf and pk else None
        t = float(impls["torch"]["ms"]) / ms if "torch" in impls else None
        o = float(impls["ort"]["ms"]) / ms if "ort" in impls else None
        want = next((v for k, v in TARGETS.items() if case.startswith(k)), (None, None, None))
        verdict = []
        for name, got, need in (("peak", frac, want[0]), ("torch", t, want[1]), ("ort", o, want[2])):
            if need is None:
                continue
            if got is None:
                verdict.append(f"{name} >= {need:g}: not measured")
            else:
                verdict.append(f"{name} >= {need:g}: {'met' if got >= need else 'NOT met'}")

        def f(v, fmt):
            return format(v, fmt) if v is not None else "-"

        print(f"{case:<18}{ms:>11.1f}{f(gf, '.1f'):>9}{f(frac and frac * 100, '.0f'):>7}"
              f"{f(impls.get('torch', {}).get('ms') and float(impls['torch']['ms']), '.1f'):>10}"
              f"{f(impls.get('ort', {}).get('ms') and float(impls['ort']['ms']), '.1f'):>9}"
              f"{f(t, '.2f'):>8}{f(o, '.2f'):>7}  {'; '.join(verdict)}")
    print("ratios: other framework's median time / ecsnet's (above 1: ecsnet faster); medians of "
          "several runs on a possibly shared machine")
    print("GFLOP/s and %peak count each convolution's direct work (2 x k^2 x Cin x Cout per output "
          "pixel); the 3x3 stride-1 convolutions of inference run by Winograd F(4x4, 3x3) with 4x "
          "fewer multiplications, so these are effective rates and may pass 100% "
          "(ECSNET_WINOGRAD=0: oneDNN's direct convolutions only)")


if __name__ == "__main__":
    main()
