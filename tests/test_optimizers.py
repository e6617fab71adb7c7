"""The Numba optimizers equal the reference's: every optimizer, dtype, layout and parameter kind."""

import numpy as np
import pytest

import scratchprop._numba_optimizers as O
import scratchprop.numba as NB
import scratchprop.numpy as NP
from scratchprop import tolerances
from scratchprop.optimizers import OPTIMIZERS

NAMES = [cls.__name__ for cls in OPTIMIZERS.values()]
HYPER = {"SGD": {"lr": 0.1}, "Momentum": {"lr": 0.05, "momentum": 0.8}, "Nesterov": {"lr": 0.05}}


def problem(dtype, layout, seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"W1": (30, 20), "b1": (20,), "gamma1": (20,), "W2": (20, 7), "b2": (7,)}
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    if layout == "F":
        params["W1"] = np.asfortranarray(params["W1"])
    grads = [{k: rng.standard_normal(p.shape).astype(dtype) for k, p in params.items()} for _ in range(4)]
    if layout == "strided_grads":
        grads = [{k: np.repeat(g, 2, axis=-1)[..., ::2] for k, g in gs.items()} for gs in grads]
    if layout == "mixed_grads":
        grads = [{k: g.astype(np.float64) for k, g in gs.items()} for gs in grads]
    return params, grads


def run(M, name, dtype, layout):
    params, grads = problem(dtype, layout)
    ids = {k: id(p) for k, p in params.items()}
    opt = getattr(M, name)(**HYPER.get(name, {}))
    for g in grads:
        opt.update(params, g)
    assert {k: id(p) for k, p in params.items()} == ids, "parameters must be updated in place"
    return params, opt.state_dict()


@pytest.mark.parametrize("layout", ["C", "F", "strided_grads", "mixed_grads"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", NAMES)
def test_numba_optimizer_equals_the_reference(name, dtype, layout):
    (want, want_state), (got, got_state) = run(NP, name, dtype, layout), run(NB, name, dtype, layout)
    tol = tolerances.equivalence(dtype)
    for k in want:
        assert got[k].dtype == want[k].dtype
        np.testing.assert_allclose(got[k], want[k], rtol=tol["rtol"], atol=tol["atol"], err_msg=k)
    assert got_state.keys() == want_state.keys()
    for k in want_state:
        np.testing.assert_allclose(got_state[k], want_state[k], rtol=tol["rtol"], atol=tol["atol"], err_msg=k)


@pytest.mark.parametrize("name", NAMES)
def test_python_float_params_as_in_the_book(name):
    # the book's optimizer_compare_naive.py: scalar parameters, rebound in the dict
    out = []
    for M in (NP, NB):
        params, opt = {"x": -7.0, "y": 2.0}, getattr(M, name)(**HYPER.get(name, {}))
        for _ in range(5):
            opt.update(params, {"x": params["x"] / 10.0, "y": 2.0 * params["y"]})
        out.append(params)
    assert out[0] == pytest.approx(out[1], rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_same_error_before_any_update(name):
    msgs = []
    for M in (NP, NB):
        params = {"W": np.ones((3, 4))}
        before = params["W"].copy()
        with pytest.raises(ValueError) as info:
            getattr(M, name)().update(params, {"W": np.ones((4, 3))})
        np.testing.assert_array_equal(params["W"], before)
        msgs.append(str(info.value))
    assert msgs[0] == msgs[1] and name in msgs[0]


def adam_problem(n_params=11, seed=1):
    rng = np.random.default_rng(seed)
    params = {f"p{i}": rng.standard_normal((3 + i, 4) if i % 2 else (5 + i,)) for i in range(n_params)}
    grads = [{k: rng.standard_normal(p.shape) for k, p in params.items()} for _ in range(5)]
    return params, grads


def per_key(opt, params, grads):
    """The Numba optimizer's update one parameter at a time (the path before ``_Each``)."""
    getattr(NP, type(opt).__name__).update(opt, params, grads)


@pytest.mark.parametrize("name", NAMES)
def test_updates_many_parameters_in_a_few_calls_with_the_same_bits(name):
    (pa, grads), (pb, _) = adam_problem(), adam_problem()  # 11 parameters: one call of 8, one of 3
    a, b = getattr(NB, name)(**HYPER.get(name, {})), getattr(NB, name)(**HYPER.get(name, {}))
    for g in grads:
        a.update(pa, g)
        per_key(b, pb, g)
        assert a._each is not None  # the fast path, after the first update
        for k in pb:
            np.testing.assert_array_equal(pa[k], pb[k])
            for slot in a._slots:
                np.testing.assert_array_equal(getattr(a, slot)[k], getattr(b, slot)[k])


@pytest.mark.parametrize("name", NAMES)
def test_fast_path_follows_new_arrays_and_state(name):
    (pa, grads), (pb, _) = adam_problem(), adam_problem()
    a, b = getattr(NB, name)(**HYPER.get(name, {})), getattr(NB, name)(**HYPER.get(name, {}))
    a.update(pa, grads[0])
    per_key(b, pb, grads[0])
    pa["p3"], pb["p3"] = pa["p3"].copy(), pb["p3"].copy()  # a parameter replaced in the dict
    a.update(pa, grads[1])
    per_key(b, pb, grads[1])
    state = b.state_dict()
    a.load_state_dict(state)  # new state arrays
    b.load_state_dict(state)
    for g in grads[2:]:
        a.update(pa, g)
        per_key(b, pb, g)
    for k in pb:
        np.testing.assert_array_equal(pa[k], pb[k])
    for slot in a._slots:  # a state array replaced: the update follows it
        getattr(a, slot)["p0"] = getattr(a, slot)["p0"].copy()
        before = getattr(a, slot)["p0"].copy()
        a.update(pa, grads[0])
        assert not np.array_equal(getattr(a, slot)["p0"], before)


def test_adam_fast_path_gives_the_references_errors_and_changes_nothing():
    params, grads = adam_problem()
    opt = NB.Adam()
    opt.update(params, grads[0])
    before = {k: p.copy() for k, p in params.items()}
    bad = dict(grads[1])
    bad["p4"] = bad["p4"][:-1]
    with pytest.raises(ValueError, match="p4"):
        opt.update(params, bad)
    del bad["p4"]
    with pytest.raises(ValueError, match="p4"):
        opt.update(params, bad)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert opt.iter == 1


@pytest.mark.parametrize("name", NAMES)
def test_fast_path_takes_gradients_a_kernel_made(monkeypatch, name):
    # arrays that Numba boxes carry a float64 dtype equal to NumPy's but not the same object
    params, grads = adam_problem()
    opt, calls = getattr(NB, name)(**HYPER.get(name, {})), []
    opt.update(params, grads[0])
    real = O._fused
    monkeypatch.setattr(O, "_fused", lambda *a: calls.append(1) or real(*a))
    copied = np.dtype("f8", copy=True)
    opt.update(params, {k: g.view(copied) for k, g in grads[1].items()})
    assert not calls  # no parameter took the one-call-each path


DIVIDING = ["AdaGrad", "RMSprop", "Adam"]  # bound by the divider: large parameters split with BLAS's worker


def _spy_split(monkeypatch):
    """The results of ``kernels.optim.run_update``'s calls from now on, with no convnet's hold lately
    (one from an earlier test would keep the update on this thread for ``BLAS_SPIN_S``)."""
    from scratchprop import threads

    monkeypatch.setattr(threads, "_HELD", [*threads._HELD[:2], -1e9])
    ran, real = [], O._K.run_update
    monkeypatch.setattr(O._K, "run_update", lambda *a: ran.append(real(*a)) or ran[-1])
    return ran


def large_problem(dtype, seed=2):
    """Parameters in the order of a net's: a first layer over the split size, small ones after
    (nine: two calls of ``EACH``), gradients in fresh arrays each step."""
    rng = np.random.default_rng(seed)
    n = O._threads.UPDATE_PAIR_MIN_ELEMENTS
    shapes = [(n // 50 + 3, 50), (50,), (50, 40), (40,), (40,), (40,), (40, 10), (10,), (1,)]
    params = {f"p{i}": rng.standard_normal(s).astype(dtype) for i, s in enumerate(shapes)}
    grads = [{k: rng.standard_normal(p.shape).astype(dtype) for k, p in params.items()} for _ in range(4)]
    return params, grads


@pytest.mark.skipif(not O._K.share_address(np.float64), reason="no BLAS worker to share with here")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", DIVIDING)
def test_large_parameters_split_with_blas_worker_give_the_same_bits(monkeypatch, name, dtype):
    ran = _spy_split(monkeypatch)
    (pa, grads), (pb, _) = large_problem(dtype), large_problem(dtype)
    a, b = getattr(NB, name)(**HYPER.get(name, {})), getattr(NB, name)(**HYPER.get(name, {}))
    for g in grads:
        a.update(pa, g)
        per_key(b, pb, g)
        for k in pb:
            np.testing.assert_array_equal(pa[k], pb[k])
            for slot in a._slots:
                np.testing.assert_array_equal(getattr(a, slot)[k], getattr(b, slot)[k])
    assert ran == [True] * (len(grads) - 1)  # split from the second update on
    rec, _ = a._each.pair
    first = rec[1, 5 + 4]  # the worker's piece of p0: more than half, the other parameters are here
    assert rec[1, 1] == 1 and pa["p0"].size / 2 < first < pa["p0"].size


@pytest.mark.skipif(not O._K.share_address(np.float64), reason="no BLAS worker to share with here")
@pytest.mark.parametrize("name", DIVIDING)
def test_split_update_falls_back_to_this_thread_with_the_same_bits(monkeypatch, name):
    from scratchprop import threads

    ctl = threads._blas_controller()
    ran = _spy_split(monkeypatch)
    (pa, grads), (pb, _) = large_problem(np.float64), large_problem(np.float64)
    hyper = dict(HYPER.get(name, {}), lr=np.float32(0.01))  # a float32 lr: the split only where a
    # scalar it makes is float64 (Adam's lr_t), which the kernel then takes as it is
    a, b = getattr(NB, name)(**hyper), getattr(NB, name)(**hyper)
    c, pc = getattr(NB, name)(**HYPER.get(name, {})), large_problem(np.float64)[0]
    d, pd = getattr(NB, name)(**HYPER.get(name, {})), large_problem(np.float64)[0]
    for g in grads:
        a.update(pa, g)
        per_key(b, pb, g)
        before, asked, fast = ctl.num_threads, len(ran), c._each is not None
        ctl.set_num_threads(1)  # the user's own limit (no hold): the worker is not asked
        try:
            c.update(pc, g)
        finally:
            ctl.set_num_threads(before)
        assert ran[asked:] == ([False] if fast else [])  # asked, and declined: *_each ran
        per_key(d, pd, g)
    assert a._each.pair is not None and c._each.pair is not None
    for k in pb:
        np.testing.assert_array_equal(pa[k], pb[k])
        np.testing.assert_array_equal(pc[k], pd[k])


def test_small_parameters_or_plain_updates_do_not_split():
    params, _ = adam_problem()  # all far below the split size
    opt = NB.Adam()
    opt.update(params, {k: np.zeros_like(p) for k, p in params.items()})
    opt.update(params, {k: np.zeros_like(p) for k, p in params.items()})
    assert opt._each.pair is None
    big, grads = large_problem(np.float64)
    sgd = NB.SGD()
    for g in grads[:2]:
        sgd.update(big, g)
    assert sgd._each.fn == 0 and sgd._each.pair is None  # bound by memory: here


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_copied_optimizer_updates_the_copies_not_the_originals(how):
    import copy
    import pickle

    params, grads = large_problem(np.float64)
    opt = NB.Adam()
    for g in grads[:2]:
        opt.update(params, g)  # the fast path's records made, of these arrays
    copied = pickle.loads(pickle.dumps((params, opt))) if how == "pickle" else copy.deepcopy((params, opt))
    before = {k: p.copy() for k, p in params.items()}
    want_params, want = copy.deepcopy(params), NB.Adam()
    want.load_state_dict(opt.state_dict())
    for g in grads[2:]:
        copied[1].update(copied[0], g)
        per_key(want, want_params, g)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])  # the originals untouched
        np.testing.assert_array_equal(copied[0][k], want_params[k])


@pytest.mark.skipif(not O._K.share_address(np.float64), reason="no BLAS worker to share with here")
def test_split_updates_from_several_threads_at_once_give_each_its_own_bits(monkeypatch):
    import threading

    ran, got = _spy_split(monkeypatch), {}

    def train(i):
        params, grads = large_problem(np.float64, seed=10 + i)
        opt = NB.Adam()
        for _ in range(10):
            for g in grads:
                opt.update(params, g)
        got[i] = params

    threads_ = [threading.Thread(target=train, args=(i,)) for i in range(4)]
    for t in threads_:
        t.start()
    for t in threads_:
        t.join()
    assert ran and all(ran)
    for i in range(4):
        params, grads = large_problem(np.float64, seed=10 + i)
        want = NB.Adam()
        for _ in range(10):
            for g in grads:
                per_key(want, params, g)
        for k in params:
            np.testing.assert_array_equal(got[i][k], params[k])


@pytest.mark.skipif(not O._K.share_address(np.float64), reason="no BLAS worker to share with here")
def test_no_split_while_a_convnet_trains(monkeypatch):
    from scratchprop import threads

    ran = _spy_split(monkeypatch)
    params, grads = large_problem(np.float64)
    opt = NB.Adam()
    opt.update(params, grads[0])
    opt.update(params, grads[1])
    assert ran == [True]
    with threads.one_thread_blas():  # a convnet's step: the worker is left asleep
        pass
    opt.update(params, grads[2])
    assert ran == [True]
    threads._HELD[2] -= threads.BLAS_SPIN_S  # as if its spin time had passed
    opt.update(params, grads[3])
    assert ran == [True, True]
