"""The fused net step of :mod:`.two_layer` with work on Numba's threads.

The caller decides when these may run. :func:`step_parallel` calls
threaded products between its ``prange`` regions: only for a BLAS that
shares Numba's thread pool (MKL on GNU OpenMP with Numba's ``omp`` layer),
so nothing spins against anything. :func:`step_split` calls only
one-thread products from inside its regions: for any BLAS whose thread
count can be set (MKL, or SciPy's OpenBLAS), on one Numba thread while
another pool may still spin (the same bits). Measured with SciPy's
OpenBLAS, batch 32 (float64): 117 us against 171 us for
:func:`.two_layer.step`; batch 100: 320 against 387.

* :func:`step_parallel` (large batches): the bias + ReLU and softmax row
  passes between the products on Numba's threads; bit-identical to
  :func:`.two_layer.step`. The mask + ``db1`` pass stays serial: ``db1``
  sums columns in row order, and split over columns on two cores each
  thread reads the rows the other just masked (cross-core lines), and
  wrote ``db1`` lines the other wrote too. Measured at 1000 x 100: 28 us
  serial against 51 us (mask over rows, then sums over 16 column chunks)
  and 275 us (both over 2 column halves).
* :func:`step_split` (small batches, SGD update only): ``W1``'s rows in
  fixed blocks, each block's forward product ``x[:, blk] @ W1[blk]`` and
  update ``W1[blk] -= lr * x[:, blk].T @ dh`` on the same thread, so no
  thread reads ``W1`` lines that another just wrote. Measured at a batch of
  32 (784-100-10, float64, MKL, 2 cores): 103 us against 158 us for
  :func:`.two_layer.step`, whose threaded update and forward products split
  ``W1`` differently and trade its cache lines between the cores every step
  (the forward + update pair alone: 147 us in place, 76 us into a buffer,
  83 us in blocks). From ~25k hidden activations the blocks' partial sums
  cost more than they save (batch 257: 751 us against 679 us).

Both are deterministic for any thread count: fixed blocks and row spans,
and sums in a fixed order.
"""
import numpy as np
from numba import njit, prange

from ._blas import blas_threads_local, gemm, small_threads_local
from .config import PARALLEL
from .two_layer import (_bad_labels, _bias_relu_rows, _mean_loss_db2, _rejected, _relu_mask_db1,
                        _second_layer_back, _sgd_vec, _softmax_dy_rows, _times,
                        _update_or_gradients)

__all__ = ["step_parallel", "step_split"]


@njit(**PARALLEL)
def step_parallel(x, labels, T, W1, b1, W2, b2, lr, update, h, s, y, dh, dW1_work, nchunks):
    """:func:`step` with its row passes on Numba's threads; the same bits as :func:`step`.

    For a BLAS that shares Numba's thread pool (MKL on GNU OpenMP with the
    ``omp`` layer): its workers are already awake after each product, so the
    row passes between products run on both cores instead of one. Rows go in
    ``nchunks`` fixed spans; ``db1``/``db2`` are summed per column in row
    order (serially, see above), and the loss from per-row values in row
    order, so the result does not depend on the thread count.
    """
    N = x.shape[0]
    dt = W1.dtype
    if _bad_labels(labels, T, W2.shape[1]):
        return _rejected(dt)

    _times(x, W1, h)                                     # 1
    for c in prange(nchunks):
        _bias_relu_rows(h, b1, c * N // nchunks, (c + 1) * N // nchunks)

    _times(h, W2, s)                                     # 2
    rowloss = np.empty(N)
    for c in prange(nchunks):
        _softmax_dy_rows(s, b2, labels, T, y, rowloss, c * N // nchunks, (c + 1) * N // nchunks)
    dy = s
    loss, db2 = _mean_loss_db2(rowloss, dy)

    _times(dy, W2, dh, True)                             # 3, before W2 changes
    db1 = _relu_mask_db1(h, dh)  # serial: see the module docstring

    return _update_or_gradients(x, h, dy, dh, W1, b1, W2, b2, lr, update, loss, db1, db2, dW1_work)


@njit(**PARALLEL)
def step_split(x, labels, T, W1, b1, W2, b2, lr, h, hp, s, y, dh, nblocks):
    """:func:`.two_layer.step` with ``update``, ``W1`` in ``nblocks`` row blocks (see above).

    ``hp (nblocks, N, H)`` is work space for the blocks' partial products
    (block 0 writes straight into ``h``);
    the rest as in :func:`.two_layer.step`. ``h`` sums the partials in block
    order, so results differ from :func:`.two_layer.step` by rounding only.
    Returns ``(status, loss)`` only (the update is done; boxing the four
    unused arrays of :func:`.two_layer.step`'s result cost ~1.5 us a call).
    """
    N, D = x.shape
    H = W1.shape[1]
    dt = W1.dtype
    if _bad_labels(labels, T, W2.shape[1]):
        return -1, 0.0
    one = dt.type(1)
    zero = dt.type(0)
    rate = dt.type(lr)

    outer = small_threads_local(1)  # see _blas.small_threads_local
    for c in prange(nblocks):                            # 1, W1 block by block
        r0 = c * D // nblocks
        r1 = (c + 1) * D // nblocks
        old = blas_threads_local(1)
        if c == 0:  # the first block's partial product straight into h
            gemm(False, False, one, x[:, r0:r1], W1[r0:r1], zero, h)
        else:
            gemm(False, False, one, x[:, r0:r1], W1[r0:r1], zero, hp[c])
        blas_threads_local(old)
    for c in range(1, nblocks):                          # partial sums in block order
        for i in range(N):                               # (a block loop inside did not vectorise:
            for j in range(H):                           # 4 us more at batch 32)
                h[i, j] += hp[c, i, j]
    _bias_relu_rows(h, b1, 0, N)
    dy, loss, db1, db2 = _second_layer_back(h, W2, b2, labels, T, s, y, dh)

    for c in prange(nblocks):                            # each block's rows by its own thread
        r0 = c * D // nblocks
        r1 = (c + 1) * D // nblocks
        old = blas_threads_local(1)
        gemm(True, False, -rate, x[:, r0:r1], dh, one, W1[r0:r1])
        if c == 0:  # the small W2 update on the calling thread, which reads W2 next step
            gemm(True, False, -rate, h, dy, one, W2)
        blas_threads_local(old)
    small_threads_local(outer)
    _sgd_vec(b1, db1, rate)
    _sgd_vec(b2, db2, rate)
    return 0, loss
