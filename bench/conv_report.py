"""Summarise runs of the convnets group (``bench/test_convnets.py``) as markdown.

``python bench/conv_report.py run1.json run2.json ... [--torch t1.json t2.json ...]``

For each net, dtype and API: the Numba time, its speed-up over NumPy taken within each run (the
two cases timed one after the other), as the median over runs with the range in brackets, and
torch's time from its own runs (its own process).
"""

import json
import statistics
import sys

CASES = (
    "SimpleConvNet.train_step",
    "DeepConvNet.train_step",
    "SimpleConvNet.accuracy",
    "DeepConvNet.accuracy",
)


def load(path):
    out = {}
    for b in json.load(open(path))["benchmarks"]:
        e = b["extra_info"]
        out[(e["case"], e["dtype"], e["api"], e["backend"])] = b["stats"]["median"] * 1e3
    return out


def _ms(values):
    values = sorted(values)
    return f"{statistics.median(values):.1f} ({values[0]:.1f}-{values[-1]:.1f})"


def report(runs, torch_runs):
    print("| case | dtype | API | NumPy ms | Numba ms | Numba speed-up | torch ms |")
    print("|---|---|---|---:|---:|---:|---:|")
    for case in CASES:
        for dtype in ("float64", "float32"):
            for api in ("book", "net"):
                keys = [(case, dtype, api, b) for b in ("numpy", "numba")]
                pairs = [(r[keys[0]], r[keys[1]]) for r in runs if keys[0] in r and keys[1] in r]
                if not pairs:
                    continue
                ratios = sorted(a / b for a, b in pairs)
                tk = (case, dtype, "torch", "torch")
                torch = [t[tk] for t in torch_runs if tk in t]
                print(
                    f"| {case} | {dtype} | {api} | {_ms(a for a, _ in pairs)} | {_ms(b for _, b in pairs)} | "
                    f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}) | "
                    f"{_ms(torch) if torch and api == 'net' else ''} |"
                )


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    cut = args.index("--torch") if "--torch" in args else len(args)
    report([load(p) for p in args[:cut]], [load(p) for p in args[cut + 1 :]])
