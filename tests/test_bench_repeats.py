"""``bench/repeats.py``: the train-step ratios of several benchmark runs, from synthetic JSON."""

import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "scratchprop_bench_repeats", Path(__file__).resolve().parent.parent / "bench" / "repeats.py"
)
repeats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(repeats)


def _run(tmp_path, name, medians):
    """A pytest-benchmark JSON with one float64 batch-32 train_step case per ``(api, backend)``."""
    benches = [
        {
            "name": f"{api}-{backend}",
            "stats": {"median": m},
            "extra_info": {
                "group": "train_step",
                "case": "train_step",
                "api": api,
                "backend": backend,
                "dtype": "float64",
                "batch": 32,
                "sizes": "784-100-10",
                "threads": 2,
            },
        }
        for (api, backend), m in medians.items()
    ]
    path = tmp_path / name
    path.write_text(json.dumps({"benchmarks": benches}))
    return str(path)


def test_ratios_per_run_and_across_runs(tmp_path):
    base = {
        ("TwoLayerNet", "numpy"): 500e-6,
        ("book", "numpy"): 450e-6,
        ("book", "numba"): 300e-6,
        ("torch", "torch"): 300e-6,
        ("gemm", "kernels"): 80e-6,
    }
    paths = [
        _run(tmp_path, f"r{i}.json", {**base, ("TwoLayerNet", "numba"): step})
        for i, step in enumerate((88e-6, 100e-6, 92e-6))
    ]
    rows = {
        name: (vals, med, lo, hi)
        for _, _, name, vals, med, lo, hi in repeats.summary([repeats.run_ratios(p) for p in paths])
    }
    vals, med, lo, hi = rows["numba/floor"]
    assert vals == pytest.approx([1.1, 1.25, 1.15])
    assert (med, lo, hi) == pytest.approx((1.15, 1.1, 1.25))
    assert rows["book numpy/numba"][1] == pytest.approx(1.5)
    assert rows["numba/torch"][0] == pytest.approx([88 / 300, 100 / 300, 92 / 300])
    text = repeats.render(paths)
    assert "| float64 | 32 | numba/floor | 1.15 | 1.1 - 1.25 | 1.1 1.25 1.15 |" in text


def test_a_case_missing_from_one_run(tmp_path):
    full = {("TwoLayerNet", "numba"): 90e-6, ("gemm", "kernels"): 80e-6}
    paths = [_run(tmp_path, "a.json", full), _run(tmp_path, "b.json", {("TwoLayerNet", "numba"): 90e-6})]
    rows = {
        name: (vals, med)
        for _, _, name, vals, med, _, _ in repeats.summary([repeats.run_ratios(p) for p in paths])
    }
    assert rows["numba/floor"] == ([pytest.approx(1.125), None], pytest.approx(1.125))
    assert "book numpy/numba" not in rows  # no run had both cases
    assert "1.12 -" in repeats.render(paths)


def test_scenario_ratios_per_run(tmp_path):
    def case(scenario, api, backend, median):
        return {
            "name": f"{scenario}-{api}-{backend}",
            "stats": {"median": 1.0},
            "extra_info": {
                "group": "scenario",
                "case": scenario,
                "api": api,
                "backend": backend,
                "dtype": "float64",
                "batch": 32,
                "sizes": "784-100-10",
                "threads": 2,
                "median_s": median,
            },
        }

    benches = [
        case("back_to_back", "TwoLayerNet", "numpy", 400e-6),
        case("back_to_back", "TwoLayerNet", "numba", 100e-6),
        case("pause_10ms", "TwoLayerNet", "numpy", 600e-6),
        case("pause_10ms", "TwoLayerNet", "numba", 300e-6),
    ]
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"benchmarks": benches}))
    got = repeats.scenario_ratios(str(path))
    assert got[("back_to_back", 32, "TwoLayerNet", "speed-up")] == pytest.approx(4.0)
    assert got[("pause_10ms", 32, "TwoLayerNet", "speed-up")] == pytest.approx(2.0)
    assert got[("pause_10ms", 32, "TwoLayerNet", "numba / back to back")] == pytest.approx(3.0)
    assert got[("pause_10ms", 32, "book", "speed-up")] is None
    assert "| pause_10ms | 32 | TwoLayerNet | numba / back to back | 3 | 3 - 3 | 3 |" in repeats.render(
        [str(path)]
    )


def test_layer_ratios_sum_forward_and_backward(tmp_path):
    def bench(case, backend, m):
        info = {"group": "layers", "case": case, "api": "layer", "backend": backend, "dtype": "float64"}
        return {"name": f"{case}-{backend}", "stats": {"median": m}, "extra_info": {**info, "batch": 4}}

    benches = [
        bench("Sigmoid.forward", "numpy", 3.0),
        bench("Sigmoid.backward", "numpy", 1.0),
        bench("Sigmoid.forward", "numba", 1.5),
        bench("Sigmoid.backward", "numba", 0.5),
        bench("Dropout.forward", "numpy", 1.0),  # no backward timed: no ratio
        bench("Dropout.forward", "numba", 1.0),
    ]
    path = tmp_path / "layers.json"
    path.write_text(json.dumps({"benchmarks": benches}))
    assert repeats.layer_ratios(str(path)) == {
        ("Sigmoid", "float64", 4): 2.0,
        ("Dropout", "float64", 4): None,
    }
    assert "| Sigmoid | float64 | 4 | 2 | 2 - 2 | 2 |" in repeats.render([str(path)])
