#!/usr/bin/env python
"""Which thread pools a training process runs, and which of them spin when idle.

Usage::

    python bench/pools.py [--batch 32] [--steps 200]

Runs the Numba backend's train step (784-100-10, float64) alternating with a
NumPy product of the same size, as a notebook timing both would, then:

1. lists the BLAS/OpenMP libraries loaded (threadpoolctl) and the process's
   threads (``/proc/self/task``);
2. times the step and the NumPy product, each back to back and alternating;
3. after one step and one product, sleeps 300 ms and reports the CPU time
   each thread burned in the windows 0-10, 10-100 and 100-300 ms: a thread
   that burns CPU while the process waits is a spinning pool.

The measurements behind ``scratchprop.threads``; ``bench/THREADS.md`` shows
its output for the old and the new threading model. Linux only.
"""

import argparse
import os
import sys
import time

import numpy as np


def _cpu_ms():
    """``{tid: CPU ms}`` of this process's threads (run time in ns from ``/proc/.../schedstat``)."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as fh:
                out[int(tid)] = int(fh.read().split()[0]) / 1e6
        except (OSError, ValueError, IndexError):
            continue
    return out


def median_us(fn, before=None, n=200):
    """Median microseconds of ``fn()``, each call after ``before()`` (untimed)."""
    ts = []
    for _ in range(n):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return np.median(ts) * 1e6


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args(argv)

    from threadpoolctl import threadpool_info

    import scratchprop

    rng = np.random.default_rng(0)
    x, t = rng.random((args.batch, 784)), rng.integers(0, 10, args.batch)
    ours = scratchprop.TwoLayerNet(784, 100, 10, backend="numba", seed=0)
    ref = scratchprop.TwoLayerNet(784, 100, 10, backend="numpy", seed=0)
    step = lambda: ours.train_step(x, t, 0.01)  # noqa: E731
    user = lambda: ref.train_step(x, t, 0.01)  # noqa: E731 - the user's NumPy work
    for _ in range(5):
        step()
        user()

    print(f"scratchprop {scratchprop.__file__}")
    print("libraries (threadpoolctl):")
    for lib in threadpool_info():
        print(
            f"  {lib['user_api']:7s} {lib['internal_api']:9s} {lib.get('version')}  "
            f"{lib['num_threads']} threads  {os.path.basename(lib['filepath'])}"
        )
    print(f"threads in the process: {len(os.listdir('/proc/self/task'))}")

    n = args.steps
    print(f"\nbatch {args.batch}, medians of {n}:")
    print(f"  numba step, back to back          {median_us(step, n=n):8.0f} us")
    print(f"  numba step, after a NumPy step    {median_us(step, user, n):8.0f} us")
    print(f"  NumPy step, back to back          {median_us(user, n=n):8.0f} us")
    print(f"  NumPy step, after a numba step    {median_us(user, step, n):8.0f} us")

    step()
    user()
    marks = [0.0, 0.010, 0.100, 0.300]
    start = time.perf_counter()
    samples = []
    for m in marks:
        while time.perf_counter() - start < m:
            time.sleep(0.001)
        samples.append(_cpu_ms())
    main_tid = os.getpid()
    print("\nCPU ms burned by each thread while the process sleeps (after one step of each):")
    print("  thread         0-10 ms  10-100 ms  100-300 ms")
    for tid in sorted(samples[0]):
        burned = [samples[i + 1].get(tid, 0) - samples[i].get(tid, 0) for i in range(3)]
        label = "main" if tid == main_tid else str(tid)
        print(f"  {label:12s} {burned[0]:8.1f} {burned[1]:10.1f} {burned[2]:11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
