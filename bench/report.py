#!/usr/bin/env python
"""Turn a pytest-benchmark JSON (``--benchmark-json`` or a saved run) into markdown tables.

Usage::

    python bench/report.py results.json > table.md
    python bench/report.py part1.json part2.json > table.md     # runs split by group

Medians only. Ratios are time ratios: ``numba/numpy`` below 1 means Numba is
faster (0.25 = 4x faster). Rows are paired by the fields ``bench/cases.py``
puts in ``extra_info`` (group, case, api, backend, dtype, batch, sizes,
threads), never by test names. A missing cell (skipped backend, torch not
installed) prints as "-". Needs only the standard library.
"""

import argparse
import json
import sys
from collections import OrderedDict

KEY = ("group", "case", "api", "backend", "dtype", "batch", "sizes", "threads")


def fmt_time(s):
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    r = a / b
    return f"{r:.3g}"


def load(paths):
    """``(first file's JSON, {KEY tuple: benchmark})`` over every file (later files win)."""
    first, index = None, OrderedDict()
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        first = first or data
        for bench in data.get("benchmarks", []):
            info = bench.get("extra_info") or {}
            if "group" not in info or not bench.get("stats"):
                continue  # not one of ours, or a --benchmark-disable run
            index[tuple(info.get(k) for k in KEY)] = bench
    return first, index


class Table:
    def __init__(self, index):
        self.index = index

    def rows(self, **match):
        """Benchmarks whose extra_info has every ``match`` field."""
        for key, bench in self.index.items():
            info = dict(zip(KEY, key))
            if all(info.get(k) == v for k, v in match.items()):
                yield info, bench

    def median(self, **match):
        found = [b["stats"]["median"] for _, b in self.rows(**match)]
        return found[0] if len(found) == 1 else None

    def values(self, field, **match):
        seen = []
        for info, _ in self.rows(**match):
            if info[field] not in seen:
                seen.append(info[field])
        return seen  # first-seen order: the order of bench/cases.py


def md_table(header, rows):
    out = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < 1 else "---:" for i in range(len(header))) + "|",
    ]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def header_lines(data, paths):
    mi = data.get("machine_info", {})
    sp = mi.get("scratchprop", {})
    run = data.get("scratchprop", {})
    cpu = sp.get("cpu_model") or (mi.get("cpu") or {}).get("brand_raw") or mi.get("processor") or "?"
    versions = sp.get("versions", {})
    ver = ", ".join(f"{k} {v}" for k, v in versions.items() if v) or f"python {mi.get('python_version')}"
    if "python" not in versions:
        ver = f"python {mi.get('python_version', '?')}, " + ver
    blas_rt = "; ".join(
        f"{b.get('version') or '?'} ({b.get('threads')} threads)" for b in run.get("blas_runtime") or []
    )
    commit = data.get("commit_info", {})
    lines = [
        f"- **Machine**: {mi.get('node', '?')}, {mi.get('system', '?')} {mi.get('release', '')} {mi.get('machine', '')}".rstrip(),
        f"- **CPU**: {cpu} ({sp.get('logical_cpus', (mi.get('cpu') or {}).get('count', '?'))} logical CPUs, "
        f"{sp.get('usable_cpus', '?')} usable)",
        f"- **Threads**: Numba {run.get('numba_threads', '?')} ({run.get('numba_threading_layer', '?')} layer), "
        f"BLAS {', '.join(str(b.get('threads')) for b in run.get('blas_runtime') or []) or '?'}, "
        f"torch {run.get('torch_threads') or '-'}",
        f"- **Versions**: {ver}",
        f"- **BLAS**: NumPy built with {sp.get('numpy_blas', '?')}; loaded: {blas_rt or '?'}",
        f"- **Kernels' BLAS** (the numba backend's products): {run.get('kernels_blas', '?')}",
        f"- **Command**: `{run.get('command', '?')}`" + (" (smoke sizes)" if run.get("smoke") else ""),
        f"- **Date**: {data.get('datetime', '?')}; commit {str(commit.get('id', '?'))[:12]}"
        + (" (dirty)" if commit.get("dirty") else ""),
        f"- **Report**: `python bench/report.py {' '.join(paths)}`",
    ]
    if run.get("env"):
        lines.insert(3, "- **Environment**: " + " ".join(f"{k}={v}" for k, v in run["env"].items()))
    return lines


def section_layers(t):
    rows = []
    layers = dict.fromkeys(c.split(".")[0] for c in t.values("case", group="layers"))
    for layer in layers:
        for dtype in t.values("dtype", group="layers", case=f"{layer}.forward"):
            for batch in t.values("batch", group="layers", case=f"{layer}.forward", dtype=dtype):
                m = {
                    (p, b): t.median(group="layers", case=f"{layer}.{p}", dtype=dtype, batch=batch, backend=b)
                    for p in ("forward", "backward")
                    for b in ("numpy", "numba")
                }
                both = {
                    b: m["forward", b] + m["backward", b]
                    if m["forward", b] is not None and m["backward", b] is not None
                    else None
                    for b in ("numpy", "numba")
                }
                rows.append(
                    [layer, dtype, batch]
                    + [fmt_time(m[p, b]) for p in ("forward", "backward") for b in ("numpy", "numba")]
                    + [fmt_ratio(both["numba"], both["numpy"])]
                )
    return (
        "Each layer alone, its input as in the book's MNIST nets (`scratchprop.layer_table`: Affine"
        " 784->100, SoftmaxWithLoss on (N, 10) with labels, the others on (N, 100)); layers with a"
        " training mode in training.",
        md_table(
            [
                "layer",
                "dtype",
                "batch",
                "fwd numpy",
                "fwd numba",
                "bwd numpy",
                "bwd numba",
                "fwd+bwd numba/numpy",
            ],
            rows,
        ),
    )


def section_chapter6(t):
    rows = []
    for batch in t.values("batch", group="chapter6"):
        m = {
            (a, b): t.median(group="chapter6", batch=batch, api=a, backend=b)
            for a in ("MultiLayerNetExtend", "book", "Adam")
            for b in ("numpy", "numba")
        }
        row = [batch]
        for a in ("MultiLayerNetExtend", "book", "Adam"):
            row += [fmt_time(m[a, "numpy"]), fmt_time(m[a, "numba"]), fmt_ratio(m[a, "numba"], m[a, "numpy"])]
        rows.append(row)
    return (
        "MultiLayerNetExtend 784-[100]x5-10 with BatchNorm and Dropout(0.5): one training step"
        " (`gradient`, then Adam's `update`), as our class and as the book-style class"
        " (`tests/booknet_extend.py`) on our NumPy or Numba layers and optimizer; and Adam's update alone."
        "",
        md_table(
            [
                "batch",
                "class numpy",
                "class numba",
                "speed-up",
                "book numpy",
                "book numba",
                "speed-up",
                "Adam numpy",
                "Adam numba",
                "speed-up",
            ],
            rows,
        ),  # fmt: skip
    )


def section_train(t):
    cols = [
        ("TwoLayerNet", "numpy"),
        ("TwoLayerNet", "numba"),
        ("book", "numpy"),
        ("book", "numba"),
        ("torch", "torch"),
        ("gemm", "blas"),
        ("gemm", "kernels"),
    ]
    names = [
        "TwoLayerNet numpy",
        "TwoLayerNet numba",
        "book+numpy",
        "book+numba",
        "torch",
        "floor numpy",
        "floor numba",
    ]
    rows = []
    for dtype in t.values("dtype", group="train_step"):
        for batch in t.values("batch", group="train_step", dtype=dtype):
            m = [t.median(group="train_step", dtype=dtype, batch=batch, api=a, backend=b) for a, b in cols]
            np_, nb, bnp, bnb, th, floor_np, floor_nb = m
            rows.append(
                [
                    dtype,
                    batch,
                    *map(fmt_time, m),
                    fmt_ratio(nb, np_),
                    fmt_ratio(bnb, bnp),
                    fmt_ratio(nb, th),
                    fmt_ratio(np_, floor_np),
                    fmt_ratio(nb, floor_nb),
                ]
            )
    return (
        "One SGD step (gradient + update) of the 784-100-10 net. *book* = the book's own "
        "TwoLayerNet class with drop-in layers. *floor* = the step's five matrix products "
        "(x@W1, h@W2, h.T@dy, dy@W2.T, x.T@dh) alone: *floor numpy* through NumPy's BLAS, "
        "*floor numba* as the fused kernel runs them (the BLAS the kernels call, see **BLAS** above, or "
        "small ones on the calling thread, `kernels/gemm.py`), so "
        "numpy/floor and numba/floor each compare a backend with its own products."
    ), md_table(
        [
            "dtype",
            "batch",
            *names,
            "numba/numpy",
            "book numba/numpy",
            "numba/torch",
            "numpy/floor",
            "numba/floor",
        ],
        rows,
    )


def section_inference(t):
    cols = [
        ("TwoLayerNet", "numpy"),
        ("TwoLayerNet", "numba"),
        ("book", "numpy"),
        ("book", "numba"),
        ("torch", "torch"),
    ]
    rows = []
    for dtype in t.values("dtype", group="inference"):
        for n in t.values("batch", group="inference", dtype=dtype):
            m = [t.median(group="inference", dtype=dtype, batch=n, api=a, backend=b) for a, b in cols]
            rows.append(
                [
                    dtype,
                    n,
                    *map(fmt_time, m),
                    fmt_ratio(m[1], m[0]),
                    fmt_ratio(m[3], m[2]),
                    fmt_ratio(m[1], m[4]),
                ]
            )
    return "`accuracy(x, t)` (predict + arg-max) over the whole set, 784-100-10.", md_table(
        [
            "dtype",
            "samples",
            "TwoLayerNet numpy",
            "TwoLayerNet numba",
            "book+numpy",
            "book+numba",
            "torch",
            "numba/numpy",
            "book numba/numpy",
            "numba/torch",
        ],
        rows,
    )


def section_gradcheck(t):
    rows = []
    for api in t.values("api", group="gradcheck"):
        base = t.median(group="gradcheck", api=api, backend="numpy", case="numerical_gradient")
        for backend in t.values("backend", group="gradcheck", api=api):
            num = list(t.rows(group="gradcheck", api=api, backend=backend, case="numerical_gradient"))
            bp = t.median(group="gradcheck", api=api, backend=backend, case="gradient")
            if not num:
                continue
            info, bench = num[0]
            n = bench["stats"]["median"]
            extra = bench.get("extra_info", {})
            diff = extra.get("max_abs_diff")
            rows.append(
                [
                    api,
                    backend,
                    f"{info['sizes']}, batch {info['batch']}",
                    fmt_time(n),
                    fmt_time(bp),
                    fmt_ratio(n, bp),
                    fmt_ratio(n, base) if backend != "numpy" else "1",
                    f"{diff:.2g}" if isinstance(diff, float) else "-",
                    bench["stats"].get("rounds", "?"),
                ]
            )
    return (
        "The notebook's gradient check: `numerical_gradient` versus backprop `gradient` "
        "(float64). max |diff| = largest element difference between the two."
    ), md_table(
        [
            "net",
            "backend",
            "sizes",
            "numerical",
            "backprop",
            "numerical/backprop",
            "numerical vs numpy",
            "max abs diff",
            "rounds",
        ],
        rows,
    )


def section_compile(t):
    rows = []
    for info, bench in t.rows(group="compile"):
        e = bench.get("extra_info", {})
        rows.append(
            [
                info["case"],
                info["backend"],
                fmt_time(bench["stats"]["median"]),
                fmt_time(e.get("import_s")),
                fmt_time(e.get("first_step_s")),
                e.get("cache_files", "-"),
                bench["stats"].get("rounds", "?"),
            ]
        )
    return (
        "A fresh `python -c`: import + `TwoLayerNet(784, 100, 10)` + its first train step, timed "
        "as a whole subprocess (nothing subtracted). *cold_cache*: empty `NUMBA_CACHE_DIR`; "
        "*warm_cache*: the same directory after one run; *no_jit*: the NumPy backend. "
        "import / first step are measured inside the subprocess."
    ), md_table(
        ["case", "backend", "wall (median)", "import + net", "first step", "cache files", "rounds"], rows
    )


def section_threads(t):
    rows = []
    counts = t.values("threads", group="threads")
    for api, backend in (("TwoLayerNet", "numpy"), ("TwoLayerNet", "numba"), ("torch", "torch")):
        for dtype in t.values("dtype", group="threads", api=api, backend=backend):
            for batch in t.values("batch", group="threads", api=api, backend=backend, dtype=dtype):
                m = [
                    t.median(group="threads", api=api, backend=backend, dtype=dtype, batch=batch, threads=n)
                    for n in counts
                ]
                rows.append(
                    [
                        f"{api} {backend}" if api != backend else api,
                        dtype,
                        batch,
                        *map(fmt_time, m),
                        *(fmt_ratio(m[0], x) for x in m[1:]),
                    ]
                )
    return (
        "The train step with 1, 2, ... threads (Numba's, every BLAS's and torch's, restored afterwards). "
        "Speed-up = time with 1 thread / time with n."
    ), md_table(
        [
            "net",
            "dtype",
            "batch",
            *(f"{n} thread{'s' if n > 1 else ''}" for n in counts),
            *(f"speed-up x{n}" for n in counts[1:]),
        ],
        rows,
    )


def scenario_median(t, **match):
    """``(median, worst 0.5 s window)`` of one scenario case, or ``(None, None)``."""
    found = list(t.rows(group="scenario", **match))
    if len(found) != 1:
        return None, None
    e = found[0][1].get("extra_info", {})
    return e.get("median_s", found[0][1]["stats"]["median"]), e.get("worst_window_s")


def _mw(pair):
    m, w = pair
    return "-" if m is None else f"{fmt_time(m)} ({fmt_time(w)})"


#: The scenario group's nets: the cases' ``sizes`` and their ``{api: column label}``.
SCENARIO_NETS = (
    ("784-100-10", {"TwoLayerNet": "TwoLayerNet ", "book": "book+"}),
    ("SimpleConvNet", {"net": "SimpleConvNet ", "book": "book+"}),
)


def _scenario_tables(t, sizes, apis):
    """The scenario table and the user's-``np.dot`` table of the cases with ``sizes``, for the nets
    ``apis`` (``{api: label}``: a column's name is its label and the backend)."""
    rows = []
    for batch in t.values("batch", group="scenario", sizes=sizes):
        base = {
            api: scenario_median(t, case="back_to_back", api=api, backend="numba", batch=batch, sizes=sizes)[
                0
            ]
            for api in apis
        }
        for case in t.values("case", group="scenario", batch=batch, sizes=sizes):
            if case in ("user_dot", "train"):
                continue
            row = [case, batch]
            for api in apis:
                ref, ours = (
                    scenario_median(t, case=case, api=api, backend=b, batch=batch, sizes=sizes)
                    for b in ("numpy", "numba")
                )
                row += [
                    _mw(ref),
                    _mw(ours),
                    fmt_ratio(ref[0], ours[0]),
                    fmt_ratio(ours[0], base[api]) if case != "back_to_back" else "1",
                ]
            rows.append(row)
    head = ["scenario", "batch"]
    for label in apis.values():
        head += [f"{label}numpy", f"{label}numba", "speed-up", "numba / its back to back"]
    scen = md_table(head, rows)
    rows = []
    for batch in t.values("batch", group="scenario", case="user_dot", sizes=sizes):
        alone = scenario_median(t, case="user_dot", api="numpy", backend="none", batch=batch, sizes=sizes)
        row = [batch, _mw(alone)]
        for api in apis:
            for backend in ("numpy", "numba"):
                got = scenario_median(t, case="user_dot", api=api, backend=backend, batch=batch, sizes=sizes)
                row += [_mw(got), fmt_ratio(got[0], alone[0])]
        rows.append(row)
    head = ["batch", "np.dot alone"]
    for label in apis.values():
        head += [f"after {label}numpy", "slow-down", f"after {label}numba", "slow-down"]
    return scen, md_table(head, rows)


def section_scenarios(t):
    (dense, dense_apis), (convnet, conv_apis) = SCENARIO_NETS
    scen, user = _scenario_tables(t, dense, dense_apis)
    conv = ""
    if t.values("batch", group="scenario", sizes=convnet):
        c_scen, c_user = _scenario_tables(t, convnet, conv_apis)
        conv = (
            "\n\nThe same scenarios around SimpleConvNet's Adam step (the book's `train_convnet.py` step, "
            "float64 weights): `SimpleConvNet(backend=...)` and the book-style class on each backend's "
            "layers and Adam.\n\n" + c_scen + "\n\n" + c_user
        )
    rows = []
    for backend in ("numpy", "numba"):
        found = [b for i, b in t.rows(group="scenario", case="train", backend=backend)]
        if found:
            e = found[0].get("extra_info", {})
            rows.append(
                [
                    backend,
                    e.get("epochs", "?"),
                    fmt_time(e.get("wall_s")),
                    f"{e.get('samples_per_wall_s', 0):,.0f}",
                    f"{e.get('step_share', 0):.0%}",
                    f"{e.get('eval_share', 0):.0%}",
                    f"{e.get('other_share', 0):.0%}",
                ]
            )
    train = (
        md_table(
            [
                "backend",
                "epochs",
                "wall (quickest of 3)",
                "samples/s of wall",
                "train_step",
                "evaluation",
                "other",
            ],
            rows,
        )
        if rows
        else ""
    )
    text = (
        "The train step as users run it (`bench/scenarios.py`), 784-100-10, float64 weights. "
        "Each cell: median (worst 0.5 s window). *speed-up* = numpy / numba in that scenario; "
        "*numba / its back to back* = what the scenario costs the numba step. *alternate*: "
        "each backend's step alternates with the other's, so its numpy column is also the "
        "user's NumPy work next to ours. The second table times the user's own `np.dot` "
        "(1000x784 @ 784x100) right after a step of each kind. The third is the training loop of "
        "`scratchprop train` end to end on the bundled data (defaults: batch 100, lr 0.1; "
        "shares of the wall time after the first step)."
    )
    return text, scen + "\n\n" + user + ("\n\n" + train if train else "") + conv


SECTIONS = [
    ("scenario", "Speed in a user's process", section_scenarios),
    ("layers", "Layers", section_layers),
    ("train_step", "Train step", section_train),
    ("chapter6", "Chapter 6: MultiLayerNetExtend and Adam", section_chapter6),
    ("inference", "Inference", section_inference),
    ("gradcheck", "Gradient check", section_gradcheck),
    ("compile", "Start-up and JIT compile", section_compile),
    ("threads", "Thread scaling", section_threads),
]


def render(paths):
    data, index = load(paths)
    if data is None:
        raise SystemExit("no input")
    t = Table(index)
    extra = []
    for path in paths[1:]:  # later files replace the earlier timings of the same cases
        with open(path, encoding="utf-8") as fh:
            later = json.load(fh)
        run = later.get("scratchprop", {})
        kinds = sorted({(b.get("extra_info") or {}).get("backend", "?") for b in later.get("benchmarks", [])})
        extra.append(
            f"- **Replaced from** `{path}` ({', '.join(kinds)} cases): `{run.get('command', '?')}`; "
            f"kernels' BLAS in that process: {run.get('kernels_blas', '?')}"
        )
    out = [
        "# scratchprop benchmarks",
        "",
        *header_lines(data, paths),
        *extra,
        "",
        'Medians. Ratios are time ratios: *a/b* < 1 means *a* is faster. "-" = not run.',
        "",
    ]
    if not index:
        out.append("_No timings in this file (a `--benchmark-disable` run?)._")
    for group, title, fn in SECTIONS:
        if not any(True for _ in t.rows(group=group)):
            continue
        text, table = fn(t)
        out += [f"## {title}", "", text, "", table, ""]
    return "\n".join(out)


def cli(doc, render_paths, json_help, argv=None):
    """The scripts' command line: JSON paths in, ``render_paths(paths)`` (markdown) to stdout."""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("json", nargs="+", help=json_help)
    args = p.parse_args(argv)
    sys.stdout.write(render_paths(args.json) + "\n")


def main(argv=None):
    cli(__doc__, render, "pytest-benchmark JSON file(s)", argv)


if __name__ == "__main__":
    main()
