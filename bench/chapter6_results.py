"""The book's chapter-6 experiments, re-run on the bundled MNIST digits.

    python bench/chapter6_results.py [--backend numba|numpy] [--seed 0]

1. Batch normalization (the book's ``ch06/batch_norm_test.py``): 1,000
   training digits, 784-[100]x5-10, SGD lr 0.01, batch 100, 20 epochs, weights
   drawn with std 0.01: the plain net does not learn, the batch-normalised one does.
2. Optimizers (``ch06/optimizer_compare_mnist.py``): 784-[100]x4-10, batch 128,
   2,000 iterations, He init; the mean loss of the last 100 iterations for SGD
   (lr 0.01), Momentum, AdaGrad and Adam (the book's settings).

Prints one table per experiment. Every number comes from this run.
"""

import argparse
import time

import numpy as np

import scratchprop
from scratchprop.data import load_mnist


def batchnorm_experiment(M, backend, x, t, seed):
    x, t = x[:1000], t[:1000]
    rows = []
    for use_bn in (False, True):
        net = scratchprop.MultiLayerNetExtend(
            784, [100] * 5, 10, weight_init_std=0.01, use_batchnorm=use_bn, backend=backend, seed=seed
        )
        opt, rng = M.SGD(lr=0.01), np.random.default_rng(seed)
        accs = []
        for it in range(20 * 10):  # 20 epochs of 10 batches
            batch = rng.choice(1000, 100)
            opt.update(net.params, net.gradient(x[batch], t[batch]))
            if it % 10 == 9:
                accs.append(net.accuracy(x, t))
        rows.append(("with BatchNorm" if use_bn else "without", accs[0], accs[9], accs[-1]))
    print("1. weight init std 0.01, 784-[100]x5-10, SGD 0.01, 1,000 digits: training accuracy")
    print("| net | epoch 1 | epoch 10 | epoch 20 |\n|---|---:|---:|---:|")
    for name, a1, a10, a20 in rows:
        print(f"| {name} | {a1:.3f} | {a10:.3f} | {a20:.3f} |")


def optimizer_experiment(M, backend, x, t, seed):
    settings = {"SGD": {"lr": 0.01}, "Momentum": {"lr": 0.01}, "AdaGrad": {"lr": 0.01}, "Adam": {"lr": 0.001}}
    print("\n2. 784-[100]x4-10, He init, batch 128, 2,000 iterations: mean training loss")
    print("| optimizer | iterations 1-100 | 901-1000 | 1901-2000 | seconds |\n|---|---:|---:|---:|---:|")
    for name, hyper in settings.items():
        net = scratchprop.MultiLayerNet(784, [100] * 4, 10, backend=backend, seed=seed)
        opt, rng = getattr(M, name)(**hyper), np.random.default_rng(seed)
        losses = []
        start = time.perf_counter()
        for _ in range(2000):
            batch = rng.choice(len(x), 128)
            opt.update(net.params, net.gradient(x[batch], t[batch]))
            losses.append(float(net.last_layer.loss))
        secs = time.perf_counter() - start
        print(f"| {name} | {np.mean(losses[:100]):.3f} | {np.mean(losses[900:1000]):.3f} | "
              f"{np.mean(losses[1900:]):.3f} | {secs:.1f} |")  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="numba", choices=("numba", "numpy"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    M = scratchprop.get_backend(args.backend)
    (x, t), _ = load_mnist()
    print(f"backend {args.backend}, seed {args.seed}, bundled MNIST ({len(x)} training digits)\n")
    batchnorm_experiment(M, args.backend, x, t, args.seed)
    optimizer_experiment(M, args.backend, x, t, args.seed)


if __name__ == "__main__":
    main()
