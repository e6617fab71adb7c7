"""pytest configuration for ``pytest bench`` (plain ``pytest`` only collects ``tests/``).

Adds to pytest-benchmark's output:

* ``machine_info["scratchprop"]``: CPU model, core counts, package versions,
  NumPy's BLAS build (stable facts, so ``--benchmark-compare`` only warns
  when they really differ);
* ``output_json["scratchprop"]``: the exact command, smoke mode, thread
  counts, Numba's threading layer, the BLAS libraries loaded at run time.

``bench/report.py`` reads both.
"""

import os
import shlex
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # `bench` importable under any --import-mode
    sys.path.insert(0, _ROOT)

from bench import _env  # noqa: E402

try:  # before anything starts Numba's threads, the layer scratchprop.threads prefers
    from scratchprop.threads import prefer_threading_layer

    prefer_threading_layer()
except ImportError:
    pass

_CMD_ENV = (
    "SCRATCHPROP_BENCH_SMOKE",
    "NUMBA_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "SCRATCHPROP_BLAS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
)


def _command(config):
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in _CMD_ENV if k in os.environ]
    return " ".join(env + ["pytest", shlex.join(config.invocation_params.args)]).strip()


def pytest_report_header(config):
    return f"scratchprop bench: smoke={_env.SMOKE} threads={_env.default_threads()} cpu={_env.cpu_model()!r}"


def pytest_benchmark_update_machine_info(config, machine_info):
    env = _env.environment()
    machine_info["scratchprop"] = {
        k: env[k] for k in ("cpu_model", "logical_cpus", "usable_cpus", "versions", "numpy_blas")
    }


def pytest_benchmark_update_json(config, benchmarks, output_json):
    env = _env.environment()
    output_json["scratchprop"] = {
        "command": _command(config),
        "cwd": str(config.invocation_params.dir),
        **{
            k: env[k]
            for k in (
                "smoke",
                "numba_threads",
                "numba_threading_layer",
                "torch_threads",
                "blas_runtime",
                "kernels_blas",
                "env",
                "executable",
            )
        },
    }
