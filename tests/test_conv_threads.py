"""The convolution parallel across the batch (``kernels/conv_batch.py``, rule 4 of
``scratchprop.threads``): its chunks run at once give the bits of the chunks run in turn, any
thread count gives the reference's values, and NumPy's BLAS pool is held at one thread only
while it should be.
"""

import os
import signal
import time

import numba
import numpy as np
import pytest

import scratchprop
from scratchprop import _numba_conv as nb
from scratchprop import _numba_layers as nb_layers
from scratchprop import _numpy_conv as ref
from scratchprop import threads
from scratchprop.tolerances import equivalence

needs_numpys_blas = pytest.mark.skipif(
    threads.blas_threads() is None, reason="the kernels' BLAS is not NumPy's"
)


def _run(x, W, b, dout, relu, need_dx):
    conv = nb.Convolution(W, b, 1, 1)
    if relu:
        r = nb_layers.Relu()
        out = conv.forward_relu(x, r)
        dx = conv.backward_relu(dout, r, need_dx=need_dx)
    else:
        out = conv.forward(x)
        dx = conv.backward(dout) if need_dx else conv.backward_params(dout)
    return [out, conv.dW, conv.db] + ([dx] if need_dx else [])


def _case(N, dt, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, 3, 9, 8)).astype(dt)
    W, b = rng.standard_normal((5, 3, 3, 3)).astype(dt), rng.standard_normal(5).astype(dt)
    dout = rng.standard_normal((N, 5, 9, 8)).astype(dt)
    return x, W, b, dout


@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dt", [np.float64, np.float32])
@pytest.mark.parametrize("N", [1, 2, 7, 13])  # fewer images than threads or chunks, odd splits
def test_chunks_at_once_give_the_bits_of_chunks_in_turn(monkeypatch, N, dt, relu, need_dx):
    args = _case(N, dt)
    monkeypatch.setattr(threads, "CONV_MIN_ELEMENTS", 0)  # the same chunks either way
    with threads._REGION:  # another region running: the chunks one after another, here
        serial = _run(*args, relu, need_dx)
    threaded = _run(*args, relu, need_dx)  # at once, where there are threads
    for a, b in zip(threaded, serial):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    # under the threshold: the same chunks, in turn here: the same bits
    monkeypatch.setattr(threads, "CONV_MIN_ELEMENTS", 1 << 62)
    for a, b in zip(_run(*args, relu, need_dx), serial):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_chunks_follow_the_thread_count_and_the_sizes(monkeypatch):
    T = threads.get_num_threads()
    if T >= 2:
        assert threads.chunks(100) == (threads.CHUNKS_PER_THREAD * T, T)
        assert threads.chunks(3) == (min(3, threads.CHUNKS_PER_THREAD * T), T)  # one image each
    numba.set_num_threads(1)
    try:
        assert threads.chunks(100) == (1, 1)
    finally:
        numba.set_num_threads(T)


@pytest.mark.parametrize("dt", [np.float64, np.float32])
@pytest.mark.parametrize("n_threads", sorted({1, 2, numba.config.NUMBA_NUM_THREADS}))
def test_every_thread_count_gives_the_references_values(monkeypatch, dt, n_threads):
    x, W, b, dout = _case(7, dt, seed=3)
    monkeypatch.setattr(threads, "CONV_MIN_ELEMENTS", 0)
    before = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        got = _run(x, W, b, dout, False, True)
    finally:
        numba.set_num_threads(before)
    theirs = ref.Convolution(W, b, 1, 1)
    want = [theirs.forward(x)]
    dx = theirs.backward(dout)
    want += [theirs.dW, theirs.db, dx]
    tol = equivalence(dt)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert np.max(np.abs(g - w)) <= tol["rtol"] * np.max(np.abs(w)) + tol["atol"]


@pytest.mark.parametrize("dt", [np.float64, np.float32])
@pytest.mark.parametrize("piece", [1, 7, 64])  # columns per product piece: 72 per image here
def test_products_in_pieces_give_the_references_values(monkeypatch, dt, piece):
    x, W, b, dout = _case(5, dt, seed=4)
    whole = _run(x, W, b, dout, False, True)
    assert nb._pieces(5, 27)[0] in (0, 7407)  # one product per block: this case has 360 columns
    monkeypatch.setattr(nb, "MIN_PIECE", 1)
    monkeypatch.setattr(nb._blas, "SMALL_GEMM_MACS", 5 * 27 * piece)
    assert nb._pieces(5, 27) == (piece, piece)
    got = _run(x, W, b, dout, False, True)
    tol = equivalence(dt)
    for g, w in zip(got, whole):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert np.max(np.abs(g - w)) <= tol["rtol"] * np.max(np.abs(w)) + tol["atol"]
    assert [g.tobytes() for g in got] == [g.tobytes() for g in _run(x, W, b, dout, False, True)]
    # dW's product (A transposed) takes the small path only with at most 1200 outputs: whole above
    monkeypatch.setattr(nb._blas, "SMALL_GEMM_MACS", 40 * 31 * piece)
    assert nb._pieces(40, 31) == (piece, 0)


def test_run_chunks_runs_every_chunk_once_and_passes_errors_on():
    T = threads.get_num_threads()
    for at_once in (False, True):
        seen = []
        threads.run_chunks(
            lambda c, w, tag, seen=seen: seen.append((c, w, tag)), 9, ("x",), 10, 0 if at_once else 11
        )
        assert sorted(c for c, _, _ in seen) == list(range(9)) and {tag for *_, tag in seen} == {"x"}
        assert {w for _, w, _ in seen} <= set(range(T if at_once else 1))

    for bad in (0, 1, 5):  # the calling thread's chunk, another's, a later one
        ran = []

        def fail(c, w, bad=bad, ran=ran):
            ran.append(c)
            if c == bad:
                raise ValueError(f"chunk {c}")

        with pytest.raises(ValueError, match=f"chunk {bad}"):
            threads.run_chunks(fail, 6, (), 10, 0)
        assert len(ran) == len(set(ran))  # no chunk twice, and the others stopped taking new ones
        assert threads._REGION.acquire(blocking=False)  # released after the error
        threads._REGION.release()


def test_a_slow_thread_takes_fewer_chunks():
    # the chunks go to whichever thread is free: one slowed thread (a core shared with a spinning
    # BLAS worker) leaves the rest to the others instead of holding the region up
    if threads.get_num_threads() < 2:
        pytest.skip("one thread")
    took = []

    def chunk(c, w):
        took.append(w)
        time.sleep(0.03 if w == 0 else 0.005)

    threads.run_chunks(chunk, 16, (), 10, 0)
    assert len(took) == 16 and took.count(0) < took.count(1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_run_chunks_works_in_a_forked_child():
    # the executor survives a fork but its threads do not: the child must make its own
    threads.run_chunks(lambda c, w: None, 2, (), 10, 0)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the chunks ran
        seen = []
        try:
            threads.run_chunks(lambda c, w, seen=seen: seen.append(c), 2, (), 10, 0)
        finally:
            os._exit(0 if sorted(seen) == [0, 1] else 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("run_chunks hung in a forked child")
    assert os.waitstatus_to_exitcode(status) == 0


@needs_numpys_blas
def test_one_thread_blas_restores_the_pools_count_even_after_an_error():
    before = threads.blas_threads()
    with pytest.raises(RuntimeError), threads.one_thread_blas() as ok:
        assert ok and threads.blas_threads() == 1
        raise RuntimeError
    assert threads.blas_threads() == before


@needs_numpys_blas
def test_one_thread_blas_holds_nest_and_overlap_across_threads():
    import threading

    before = threads.blas_threads()
    inside, leave = threading.Event(), threading.Event()

    def other():
        with threads.one_thread_blas():
            inside.set()
            leave.wait(5)

    t = threading.Thread(target=other)
    with threads.one_thread_blas():
        t.start()
        assert inside.wait(5)
        with threads.one_thread_blas():  # nested in this thread
            assert threads.blas_threads() == 1
    assert threads.blas_threads() == 1  # the other thread still holds it
    leave.set()
    t.join()
    assert threads.blas_threads() == before


@needs_numpys_blas
@pytest.mark.parametrize("name", ["DeepConvNet", "SimpleConvNet"])
def test_a_numba_convnet_holds_the_blas_pool_for_its_step(monkeypatch, name):
    net = getattr(scratchprop, name)(backend="numba", seed=0)
    seen = []
    affine = net.layers["Affine1"]
    forward = affine.forward

    def spy(x):
        seen.append(threads.blas_threads())
        return forward(x)

    monkeypatch.setattr(affine, "forward", spy)
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one thread: the hold changes nothing")
    numba_before, blas_before = numba.get_num_threads(), threads.blas_threads()
    threads.set_num_threads(2)  # a pool of two, whatever ran before
    try:
        x, t = np.random.default_rng(0).random((2, 1, 28, 28)), np.array([1, 2])
        net.gradient(x, t)
        net.accuracy(x, t)
        assert seen == [1, 1]
        assert threads.blas_threads() == 2
    finally:
        numba.set_num_threads(numba_before)
        threads._blas_controller().set_num_threads(blas_before)


@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_dense_products_in_a_hold_run_across_our_threads(monkeypatch, dt, need_dx):
    # a convnet's whole-step hold: Affine's products by rows of the batch and of dW, on our threads
    rng = np.random.default_rng(5)
    x, W, b = (rng.standard_normal(s).astype(dt) for s in ((7, 13), (13, 6), (6,)))
    dout = rng.standard_normal((7, 6)).astype(dt)
    ran = []
    for name in ("forward_rows", "backward_rows"):
        kernel = getattr(nb_layers._K_affine, name)
        monkeypatch.setattr(
            nb_layers._K_affine, name, lambda t, *a, k=kernel, n=name: (ran.append((n, t)), k(t, *a))[1]
        )

    def run():
        layer = nb_layers.Affine(W, b)
        out = layer.forward(x)
        dx = layer.backward(dout) if need_dx else layer.backward_params(dout)
        return [out, layer.dW, layer.db] + ([dx] if need_dx else [])

    plain = run()
    assert not ran  # no hold: the usual kernels
    monkeypatch.setattr(threads, "DENSE_MIN_MACS", 0)
    with threads.one_thread_blas():
        at_once = run()
        with threads._REGION:  # another region running: the chunks in turn, here
            in_turn = run()
    C = min(7, threads.get_num_threads())
    assert sorted(set(ran)) == [(n, c) for n in ("backward_rows", "forward_rows") for c in range(C)]
    tol = equivalence(dt)
    for a, s, p in zip(at_once, in_turn, plain):
        assert a.dtype == p.dtype and a.tobytes() == s.tobytes()
        assert np.max(np.abs(a - p)) <= tol["rtol"] * np.max(np.abs(p)) + tol["atol"]


@needs_numpys_blas
@pytest.mark.parametrize("need_dx", [True, False])
def test_an_affine_fed_images_holds_the_blas_pool_for_its_own_call(monkeypatch, need_dx):
    # the user's own convnet class: an Affine after a convolution or pooling (4-D input) holds
    # NumPy's pool for its call, as the convolution does, and no longer; a 2-D input does not
    rng = np.random.default_rng(6)
    x4 = rng.standard_normal((5, 2, 3, 4))
    W, b = rng.standard_normal((24, 7)), rng.standard_normal(7)
    dout = rng.standard_normal((5, 7))
    monkeypatch.setattr(threads, "BLAS_MIN_MACS", 0)  # the 2-D products in BLAS on any machine
    seen = []
    for name in ("forward", "backward", "forward_rows", "backward_rows"):
        kernel = getattr(nb_layers._K_affine, name)
        monkeypatch.setattr(
            nb_layers._K_affine,
            name,
            lambda *a, k=kernel, n=name: (
                seen.append((n, threads.blas_held(), threads.blas_threads())),
                k(*a),
            )[1],
        )

    def run(x):
        layer = nb_layers.Affine(W, b)
        out = layer.forward(x)
        dx = layer.backward(dout) if need_dx else layer.backward_params(dout)
        return [out, layer.dW, layer.db] + ([dx.reshape(len(x), -1)] if need_dx else [])

    before = threads.blas_threads()
    flat = run(x4.reshape(5, -1))
    assert seen == [("forward", False, before), ("backward", False, before)]
    seen.clear()
    images = run(x4)
    assert seen == [("forward", True, 1), ("backward", True, 1)]  # short products: here, on one thread
    assert not threads.blas_held() and threads.blas_threads() == before
    for a, f in zip(images, flat):
        assert a.shape == f.shape and a.tobytes() == f.tobytes()
    seen.clear()
    monkeypatch.setattr(threads, "DENSE_MIN_MACS", 0)  # long ones: across our threads
    across = run(x4)
    assert {n for n, _, _ in seen} == {"forward_rows", "backward_rows"}
    assert all(held for _, held, _ in seen)
    tol = equivalence(np.float64)
    for a, f in zip(across, flat):
        assert np.max(np.abs(a - f)) <= tol["rtol"] * np.max(np.abs(f)) + tol["atol"]
