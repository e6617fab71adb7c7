"""Every layer of ``scratchprop.layer_table.LAYERS``: Numba == NumPy, same errors, same bits.

The table says how to build, feed and break each layer; these tests run it
on both backends for every dtype mix, memory layout, shape, forward mode and
thread count. A new layer gets all of this by adding its table entry.
"""

import numba
import numpy as np
import pytest

import scratchprop.numba as NB
import scratchprop.numpy as NP
from scratchprop import tolerances
from scratchprop.layer_table import LAYERS

DTYPES = {
    "float64": (np.float64, np.float64),
    "float32": (np.float32, np.float32),
    "mixed": (np.float32, np.float64),
}
LAYOUTS = ["C", "F", "strided", "readonly"]
IDS = [s.name for s in LAYERS]


def layout(a, how):
    if not isinstance(a, np.ndarray) or a.ndim < 2 or how == "C":
        return a
    if how == "F":
        return np.asfortranarray(a)
    if how == "strided":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    a = a.copy()
    a.flags.writeable = False
    return a


def run(M, spec, xdt, pdt, shape, mode, how="C", seed=0):
    """Two forwards (stateful layers update their running statistics) and, in training, a backward."""
    rng = np.random.default_rng(seed)
    layer = spec.make(M, rng, pdt, shape)
    outs = []
    for k in range(2):
        args = spec.inputs(np.random.default_rng(seed + k), xdt, shape)
        np.random.seed(seed + k)  # Dropout draws its mask from np.random, as the book does
        outs.append(layer.forward(layout(args[0], how), *args[1:], **mode))
    dx = None
    if mode.get("train_flg", True):
        if spec.loss:
            dx = layer.backward(1)
        else:
            dout = np.random.default_rng(seed + 7).standard_normal(np.shape(outs[-1]))
            dx = layer.backward(layout(dout.astype(np.asarray(outs[-1]).dtype), how))
    state = {a: getattr(layer, a) for a in spec.state if mode.get("train_flg", True) or a[0] != "d"}
    return outs, dx, state


def assert_equiv(got, want, where):
    if want is None or isinstance(want, (int, tuple, str)) and not isinstance(want, np.generic):
        assert got == want, where
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (
        where,
        got.dtype,
        want.dtype,
        got.shape,
        want.shape,
    )
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=where)
        return
    tol = tolerances.equivalence(want.dtype)
    scale = float(np.max(np.abs(want), initial=0.0))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol["rtol"] * scale + tol["atol"], err_msg=where)


def assert_same_results(a, b, name):
    (o1, dx1, s1), (o2, dx2, s2) = a, b
    for k, (g, w) in enumerate(zip(o1, o2)):
        assert_equiv(g, w, f"{name} forward {k}")
    assert_equiv(dx1, dx2, f"{name} backward")
    assert s1.keys() == s2.keys()
    for key in s1:
        assert_equiv(s1[key], s2[key], f"{name}.{key}")


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    before = numba.get_num_threads()
    NB.set_num_threads(min(request.param, numba.config.NUMBA_NUM_THREADS))
    yield request.param
    NB.set_num_threads(before)


@pytest.mark.parametrize("how", LAYOUTS)
@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("spec", LAYERS, ids=IDS)
def test_numba_equals_the_reference(spec, dt, how, threads):
    xdt, pdt = DTYPES[dt]
    for shape in spec.shapes:
        for mode in spec.modes:
            want = run(NP, spec, xdt, pdt, shape, mode, how)
            got = run(NB, spec, xdt, pdt, shape, mode, how)
            assert_same_results(got, want, f"{spec.name}{shape}{mode}")


@pytest.mark.parametrize("spec", LAYERS, ids=IDS)
def test_numba_equals_the_reference_through_the_kernels(spec, kernels_always):
    # tiny arrays too, where the wrappers would otherwise run NumPy code
    for dt in DTYPES.values():
        for mode in spec.modes:
            assert_same_results(
                run(NB, spec, *dt, spec.shapes[0], mode), run(NP, spec, *dt, spec.shapes[0], mode), spec.name
            )


def _cases():
    return [(s, case) for s in LAYERS for case in s.errors]


@pytest.mark.parametrize("spec, case", _cases(), ids=[f"{s.name}-{c}" for s, c in _cases()])
def test_same_error_on_both_backends(spec, case):
    caught = []
    for M in (NP, NB):
        with pytest.raises((TypeError, ValueError)) as info:
            spec.errors[case](M)()
        caught.append((type(info.value), str(info.value)))
    assert caught[0] == caught[1]
    assert spec.name in caught[0][1] or case == "bad_ratio" and "Dropout" in caught[0][1]


def _bits(results):
    outs, dx, state = results
    arrays = [*outs, dx, *state.values()]
    return [np.asarray(a).tobytes() if a is not None else None for a in arrays]


@pytest.mark.parametrize("spec", LAYERS, ids=IDS)
def test_same_bits_for_a_thread_count(spec):
    shape = max(spec.shapes, key=lambda s: int(np.prod(s)))
    before = numba.get_num_threads()
    try:
        for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            NB.set_num_threads(n)
            for mode in spec.modes:
                first = _bits(run(NB, spec, np.float64, np.float64, shape, mode, seed=3))
                assert _bits(run(NB, spec, np.float64, np.float64, shape, mode, seed=3)) == first
    finally:
        NB.set_num_threads(before)


@pytest.mark.parametrize("shape", [(100, 100), (7, 311), (3, 2, 200)])
def test_dropout_masks_and_generator_state_are_the_books(shape, monkeypatch):
    # the Numba Dropout runs np.random.rand's MT19937 on the global state in place; without it
    # (another global generator) it draws through np.random.rand: both must leave the same state
    x = np.random.default_rng(0).standard_normal(shape)
    np.random.seed(42)
    want = NP.Dropout(0.4).forward(x)
    after = np.random.get_state()
    from scratchprop.kernels import mt19937

    for patched in (False, True):
        if patched:
            monkeypatch.setattr(
                mt19937, "global_state", lambda: (_ for _ in ()).throw(TypeError("not MT19937"))
            )
        np.random.seed(42)
        layer = NB.Dropout(0.4)
        np.testing.assert_array_equal(layer.forward(x), want)
        state = np.random.get_state()
        assert state[2:] == after[2:] and np.array_equal(state[1], after[1])


def _same_bits(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype, got.shape, want.shape)
    assert got.tobytes() == want.tobytes()


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply")  # -inf * 0, both backends
@pytest.mark.parametrize("n", [1, 100, 400, 1023, 1024, 4095, 4096, 16384])
@pytest.mark.parametrize("dt", ["float64", "float32", ">f8", "float16"])
@pytest.mark.parametrize("name", ["Sigmoid", "Dropout"])
def test_small_and_kernel_paths_give_the_references_bits(name, dt, n):
    # below the kernels' size the Numba layers run the reference's ufuncs with fewer checks and
    # allocations (the kernels pay from different sizes, e.g. Dropout's): the same bits at every size,
    # -0.0 and NaN included, for every float dtype (the others take the reference's own code)
    x = np.random.default_rng(n).standard_normal(n).astype(dt) * 40
    x[:3] = np.array([-0.0, np.nan, -np.inf])[: min(3, n)]
    d = np.random.default_rng(n + 1).standard_normal(n).astype(dt)
    got, want = [], []
    for M, into in ((NB, got), (NP, want)):
        layer = getattr(M, name)()
        np.random.seed(n)
        with np.errstate(over="raise"):  # neither backend warns (the reference silences exp's overflow)
            if name == "Sigmoid":
                into += [layer.forward(x), layer.backward(d), layer.out]
            else:
                into += [layer.forward(x), layer.backward(d), layer.mask, np.random.rand()]
    for g, w in zip(got, want):
        _same_bits(g, w)


def test_small_paths_leave_odd_inputs_to_the_reference():
    # a 0-d input, a dout of another dtype, a mask the user replaced with floats: the reference's result
    for M in (NB, NP):
        assert isinstance(M.Sigmoid().forward(np.float64(0.5) * np.ones(())), np.float64)
    x = np.linspace(-3, 3, 50)
    pairs = []
    for M in (NB, NP):
        s = M.Sigmoid()
        s.forward(x)
        do = M.Dropout()
        do.forward(x)
        do.mask = np.linspace(0, 1, 50)
        pairs.append((s.backward(x.astype(np.float32)), do.backward(x)))
    for g, w in zip(*pairs):
        _same_bits(g, w)
