#!/usr/bin/env python
"""The ratios of several runs of the same cases, side by side: each run, median, range.

Usage::

    for i in 1 2 3 4 5; do
        pytest bench/test_train_step.py -k "float64 and not torch" -q --benchmark-json=rep$i.json
    done
    python bench/repeats.py rep*.json > repeats.md

One run's ratios move with the machine's phase (a noisy 2-core VM: a case
can be 10 % slower a minute later). This prints, for every dtype and batch
of the ``train_step`` group, each run's ratios (every ratio from one run,
so its cases were timed side by side, seconds apart), and across runs the
median, min and max. The ratios are those of the project's speed targets:

* ``numba/floor``: ``TwoLayerNet(backend="numba").train_step`` over the step's
  five products through the kernels' BLAS;
* ``book numpy/numba``: the book's own class on NumPy layers over the same
  class on Numba layers (a speed-up: above 1 means Numba is faster);
* ``numpy/numba``: the ``TwoLayerNet`` reference over the fused step (a speed-up);
* ``numba/torch``: the fused step over torch eager (only when the runs timed torch).

Runs of the ``scenario`` group (``bench/test_scenarios.py``) get a second
table: per scenario, batch and net, the speed-up (numpy / numba in that
scenario) and what the scenario costs the numba step (its median over its
own back-to-back median, from the same run).

Runs of the ``layers`` group (``bench/test_layers.py``) get a third: per
layer, dtype and batch, the speed-up of forward + backward (the reference's
two medians over the Numba layer's).

Needs only the standard library (and ``report.py`` beside it).
"""

import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import SCENARIO_NETS, Table, cli, load, md_table, scenario_median  # noqa: E402

#: (column, numerator (api, backend), denominator (api, backend))
RATIOS = [
    ("numba/floor", ("TwoLayerNet", "numba"), ("gemm", "kernels")),
    ("book numpy/numba", ("book", "numpy"), ("book", "numba")),
    ("numpy/numba", ("TwoLayerNet", "numpy"), ("TwoLayerNet", "numba")),
    ("numba/torch", ("TwoLayerNet", "numba"), ("torch", "torch")),
]


def run_ratios(path):
    """``{(dtype, batch): {column: ratio or None}}`` of one run's ``train_step`` group."""
    _, index = load([path])
    t = Table(index)
    out = {}
    for dtype in t.values("dtype", group="train_step"):
        for batch in t.values("batch", group="train_step", dtype=dtype):
            row = {}
            for name, (na, nb), (da, db) in RATIOS:
                num = t.median(group="train_step", dtype=dtype, batch=batch, api=na, backend=nb)
                den = t.median(group="train_step", dtype=dtype, batch=batch, api=da, backend=db)
                row[name] = num / den if num is not None and den else None
            out[(dtype, batch)] = row
    return out


def spread(runs):
    """``[(key, [per-run value], median, min, max)]`` over ``runs``, dicts of ratios keyed alike.

    Keys in first-seen order; a key no run has a value for is left out.
    """
    keys = []
    for r in runs:
        keys += [k for k in r if k not in keys]
    rows = []
    for key in keys:
        vals = [r.get(key) for r in runs]
        have = [v for v in vals if v is not None]
        if have:
            rows.append((key, vals, statistics.median(have), min(have), max(have)))
    return rows


def summary(runs):
    """``[(dtype, batch, column, [per-run ratios], median, min, max)]`` over ``runs`` (run_ratios' results)."""
    flat = [
        {(dtype, batch, name): v for (dtype, batch), row in r.items() for name, v in row.items()}
        for r in runs
    ]
    return [(*key, vals, med, lo, hi) for key, vals, med, lo, hi in spread(flat)]


def scenario_ratios(path):
    """``{(scenario, batch, api, column): ratio or None}`` of one run's ``scenario`` group."""
    _, index = load([path])
    t = Table(index)
    out = {}
    for sizes, apis in SCENARIO_NETS:
        for batch in t.values("batch", group="scenario", sizes=sizes):
            for case in t.values("case", group="scenario", batch=batch, sizes=sizes):
                if case in ("user_dot", "train"):
                    continue
                for api in apis:
                    ref, ours, b2b = (
                        scenario_median(t, case=c, api=api, backend=b, batch=batch, sizes=sizes)[0]
                        for c, b in ((case, "numpy"), (case, "numba"), ("back_to_back", "numba"))
                    )
                    net = api if sizes == SCENARIO_NETS[0][0] else f"{sizes} {api}"
                    out[(case, batch, net, "speed-up")] = ref / ours if ref and ours else None
                    out[(case, batch, net, "numba / back to back")] = ours / b2b if ours and b2b else None
    return out


def layer_ratios(path):
    """``{(layer, dtype, batch): numpy / numba}`` of forward + backward, one run's ``layers`` group."""
    _, index = load([path])
    t = Table(index)
    out = {}
    for case in t.values("case", group="layers"):
        layer, pass_ = case.split(".")
        if pass_ != "forward":
            continue
        for dtype in t.values("dtype", group="layers", case=case):
            for batch in t.values("batch", group="layers", case=case, dtype=dtype):
                ref, ours = (
                    [
                        t.median(group="layers", case=f"{layer}.{p}", dtype=dtype, batch=batch, backend=b)
                        for p in ("forward", "backward")
                    ]
                    for b in ("numpy", "numba")
                )
                ok = None not in ref + ours
                out[(layer, dtype, batch)] = sum(ref) / sum(ours) if ok else None
    return out


def render(paths):
    runs = [run_ratios(p) for p in paths]
    f = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    rows = [
        [dtype, batch, name, f(med), f"{f(lo)} - {f(hi)}", " ".join(f(v) for v in vals)]
        for dtype, batch, name, vals, med, lo, hi in summary(runs)
    ]
    head = [
        f"Ratios over {len(paths)} runs (medians of each run; then across runs).",
        f"Runs: {', '.join(f'`{p}`' for p in paths)}.",
        f"`python bench/repeats.py {' '.join(paths)}`",
        "",
    ]
    out = head
    if rows:
        out += [
            "Train step:",
            "",
            md_table(["dtype", "batch", "ratio", "median of runs", "range", "each run"], rows),
            "",
        ]
    for title, of_run, cols in (
        ("Scenarios (`bench/scenarios.py`):", scenario_ratios, ["scenario", "batch", "net", "ratio"]),
        (
            "Layers, forward + backward, numpy / numba (`bench/test_layers.py`):",
            layer_ratios,
            ["layer", "dtype", "batch"],
        ),
    ):
        trows = [
            [*key, f(med), f"{f(lo)} - {f(hi)}", " ".join(f(v) for v in vals)]
            for key, vals, med, lo, hi in spread([of_run(p) for p in paths])
        ]
        if trows:
            out += [title, "", md_table([*cols, "median of runs", "range", "each run"], trows), ""]
    return "\n".join(out).rstrip("\n")


def main(argv=None):
    cli(__doc__, render, "pytest-benchmark JSON files, one per run", argv)


if __name__ == "__main__":
    main()
