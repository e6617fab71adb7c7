"""The Numba backend's fast numerical gradient (``scratchprop.numba_numgrad``).

Every test compares with the NumPy reference's own numerical gradient (the
per-element loop), never with backprop: the requirement is "the same
numbers", within 1e-9 absolute in float64.
"""

import warnings

import numpy as np
import pytest

import scratchprop
from scratchprop import TwoLayerNet
from scratchprop import numpy as ref_backend
from scratchprop.numba_numgrad import _prepare, _run, float32_tolerance, net_numerical_gradient

KEYS = ("W1", "b1", "W2", "b2")
ATOL64 = 1e-9


def nets(D, H, C, std=0.1, seed=0, dtype=np.float64):
    """A reference net and an identical one for the hook (same parameters)."""
    return (
        TwoLayerNet(D, H, C, std, seed=seed, dtype=dtype),
        TwoLayerNet(D, H, C, std, seed=seed, dtype=dtype),
    )


def numba_net(D, H, C, std=0.1, seed=0, dtype=np.float64):
    return TwoLayerNet(D, H, C, std, backend="numba", seed=seed, dtype=dtype)


def random_biases(*nets_, seed=0):
    """Non-zero biases (so that b1/b2 perturbations cross ReLU kinks and move scores)."""
    rng = np.random.default_rng(seed)
    b1 = None
    for net in nets_:
        if b1 is None:
            b1 = 0.05 * rng.standard_normal(net.params["b1"].shape)
            b2 = 0.05 * rng.standard_normal(net.params["b2"].shape)
        net.params["b1"][...] = b1
        net.params["b2"][...] = b2


def targets(form, N, C, rng):
    labels = rng.integers(0, C, N)
    if form == "labels":
        return labels
    if form == "column":
        return labels.reshape(N, 1)
    if form == "onehot":
        return np.eye(C)[labels]
    if form == "soft":
        return rng.dirichlet(np.ones(C), N)
    raise ValueError(form)


def assert_same(got, want, atol=ATOL64):
    assert list(got) == list(want)
    for k in want:
        assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, k
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=atol, err_msg=k)


def snapshot(net):
    return {k: net.params[k].copy() for k in KEYS}


def assert_bit_exact(net, before):
    for k in KEYS:
        assert net.params[k].dtype == before[k].dtype
        assert net.params[k].tobytes() == before[k].tobytes(), k


# ----------------------------------------------------------------------------- float64 equality


@pytest.mark.parametrize("sizes", [(5, 4, 3), (20, 7, 4)])
@pytest.mark.parametrize("N", [1, 2, 3, 5])
@pytest.mark.parametrize("form", ["labels", "column", "onehot", "soft"])
def test_float64_equals_reference(sizes, N, form):
    rng = np.random.default_rng(hash((sizes, N, form)) % 2**32)
    ref, net = nets(*sizes, std=0.5, seed=N)
    random_biases(ref, net, seed=N)
    x = rng.standard_normal((N, sizes[0]))
    t = targets(form, N, sizes[2], rng)
    want = ref.numerical_gradient(x, t)
    before = snapshot(net)
    got = net_numerical_gradient(net, x, t)
    assert_same(got, want)
    assert_bit_exact(net, before)


@pytest.mark.parametrize("form", ["labels", "onehot", "soft"])
def test_one_sample_1d(form):
    rng = np.random.default_rng(3)
    ref, net = nets(6, 5, 4, std=0.5)
    random_biases(ref, net)
    x = rng.standard_normal(6)
    t = {"labels": 2, "onehot": np.eye(4)[2], "soft": rng.dirichlet(np.ones(4))}[form]
    assert_same(net_numerical_gradient(net, x, t), ref.numerical_gradient(x, t))
    if form == "labels":
        assert_same(net_numerical_gradient(net, x, np.array([2])), ref.numerical_gradient(x, np.array([2])))


def test_notebook_shape_mnist_like():
    """784 inputs, sparse non-negative pixels as in MNIST (most columns all zero)."""
    rng = np.random.default_rng(0)
    ref, net = nets(784, 10, 10, std=0.01)
    x = rng.random((3, 784)) * (rng.random((3, 784)) < 0.2)
    t = np.array([3, 7, 1])
    want = ref.numerical_gradient(x, t)
    got = net_numerical_gradient(net, x, t)
    assert_same(got, want)
    assert max(np.abs(got[k] - want[k]).max() for k in KEYS) < 1e-10


@pytest.mark.parametrize("xform", ["float32", "uint8", "fortran", "strided", "images", "list", "int64"])
def test_input_forms(xform):
    rng = np.random.default_rng(1)
    ref, net = nets(12, 6, 4, std=0.3)
    base = rng.random((3, 12))
    x = {
        "float32": base.astype(np.float32),
        "uint8": (base * 255).astype(np.uint8),
        "fortran": np.asfortranarray(base),
        "strided": np.repeat(base, 2, axis=1)[:, ::2],
        "images": base.reshape(3, 3, 4),
        "list": base.tolist(),
        "int64": (base * 7).astype(np.int64),
    }[xform]
    t = np.array([0, 3, 1])
    want = ref.numerical_gradient(x, t)
    scale = max(1.0, float(np.max(np.abs(np.asarray(x, float)))))  # uint8 pixels: losses ~255x
    assert_same(net_numerical_gradient(net, x, t), want, atol=ATOL64 * scale)


@pytest.mark.parametrize("h", [1e-3, 1e-5, -1e-4, np.float32(1e-4), np.float64(2e-4), 1])
def test_other_steps(h):
    rng = np.random.default_rng(2)
    ref, net = nets(7, 5, 3, std=0.5)
    random_biases(ref, net)
    x = rng.standard_normal((3, 7))
    t = np.array([0, 2, 1])
    assert_same(net_numerical_gradient(net, x, t, h), ref.numerical_gradient(x, t, h))


def test_series_and_exact_paths_agree():
    rng = np.random.default_rng(4)
    _, net = nets(30, 12, 6, std=0.5)
    random_biases(net)
    x = rng.standard_normal((4, 30))
    t = np.array([0, 5, 2, 2])
    prep = _prepare(net, x, t, 1e-4)
    fast = _run(net, prep, 1e-4)
    exact = _run(net, prep, 1e-4, force_exact=True)
    for k in KEYS:
        np.testing.assert_allclose(fast[k], exact[k], rtol=0, atol=1e-12, err_msg=k)


def test_large_scores_use_the_exact_path_and_still_match():
    """Big inputs and weights: |d| * max|W2| beyond the series' range, scores in the hundreds."""
    rng = np.random.default_rng(5)
    ref, net = nets(10, 8, 5, std=3.0)
    random_biases(ref, net)
    x = 40 * rng.standard_normal((3, 10))
    t = np.array([4, 0, 2])
    want = ref.numerical_gradient(x, t)
    got = net_numerical_gradient(net, x, t)
    loss = abs(ref.loss(x, t))
    # each loss carries ~|loss| * 1e-16 of rounding in either implementation
    assert_same(got, want, atol=max(ATOL64, 64 * np.finfo(float).eps * loss / 2e-4))


def test_dead_units_and_kinks():
    """Hidden units that are dead for the whole batch, and pre-activations within h of zero."""
    ref, net = nets(6, 5, 3, std=0.5)
    for n in (ref, net):
        n.params["b1"][0] = -100.0  # unit 0 dead for every sample
        n.params["W1"][:, 1] = 0.0
        n.params["b1"][1] = 5e-5  # unit 1 at 5e-5: b1 +- h crosses the kink
    x = np.random.default_rng(6).standard_normal((3, 6))
    t = np.array([1, 2, 0])
    want = ref.numerical_gradient(x, t)
    got = net_numerical_gradient(net, x, t)
    assert_same(got, want)
    assert np.all(got["W1"][:, 0] == 0) and got["b1"][0] == 0


def test_lse_helpers_extreme_shifts():
    from scratchprop.kernels import numgrad as K

    def lse(v):
        m = v.max()
        return m + np.log(np.exp(v - m).sum())

    sh = np.array([0.0, -1.0, -3.0, -0.5])
    p = np.exp(sh) / np.exp(sh).sum()
    base = lse(sh)
    w = np.array([1.0, -2.0, 0.5, 3.0])
    for d in (0.0, 1e-8, -1e-3, 0.3, -5.0, 50.0, -300.0, 700.0, 1e4):
        np.testing.assert_allclose(
            K._lse_shift(sh, p, w, d, base), lse(sh + d * w) - base, rtol=1e-13, atol=1e-15, err_msg=str(d)
        )
    for k in range(4):
        for delta in (0.0, 1e-9, -2.0, 40.0, -800.0, 650.0, 5e3):
            v = sh.copy()
            v[k] += delta
            np.testing.assert_allclose(
                K._lse_shift1(sh, p, k, delta, base),
                lse(v) - base,
                rtol=1e-13,
                atol=1e-15,
                err_msg=f"{k} {delta}",
            )


# ----------------------------------------------------------------------------- float32


@pytest.mark.parametrize("xdtype", [np.float32, np.uint8])
@pytest.mark.parametrize("form", ["labels", "soft"])
@pytest.mark.parametrize("std", [0.01, 0.5])
def test_float32_within_documented_tolerance(xdtype, form, std):
    rng = np.random.default_rng(7)
    ref, net = nets(15, 9, 5, std=std, dtype=np.float32)
    x = (rng.random((3, 15)) * (255 if xdtype is np.uint8 else 1)).astype(xdtype)
    t = targets(form, 3, 5, rng)
    want = ref.numerical_gradient(x, t)
    before = snapshot(net)
    got = net_numerical_gradient(net, x, t)
    tol = float32_tolerance(ref.loss(x, t))
    for k in KEYS:
        assert got[k].dtype == np.float32
        assert np.abs(got[k].astype(np.float64) - want[k]).max() <= tol, k
    assert_bit_exact(net, before)


def test_float32_net_with_float64_input_is_float64_arithmetic():
    """float64 x promotes the scores (and the losses) to float64, as in the reference."""
    rng = np.random.default_rng(8)
    ref, net = nets(15, 9, 5, std=0.3, dtype=np.float32)
    x = rng.random((3, 15))
    t = np.array([0, 1, 4])
    want = ref.numerical_gradient(x, t)
    got = net_numerical_gradient(net, x, t)
    for k in KEYS:
        assert got[k].dtype == np.float32
        np.testing.assert_allclose(got[k], want[k], rtol=2**-23, atol=ATOL64, err_msg=k)


# ----------------------------------------------------------------------------- invariants


def test_deterministic_and_thread_count_independent():
    import numba

    rng = np.random.default_rng(9)
    _, net = nets(300, 40, 10, std=0.1)  # large enough for the parallel W1 kernel
    x = rng.random((3, 300))
    t = np.array([1, 2, 3])
    before = snapshot(net)
    first = net_numerical_gradient(net, x, t)
    old = numba.get_num_threads()
    try:
        runs = []
        for n in sorted({1, old}):
            numba.set_num_threads(n)
            runs.append(net_numerical_gradient(net, x, t))
    finally:
        numba.set_num_threads(old)
    runs.append(net_numerical_gradient(net, x, t))
    for run in runs:
        for k in KEYS:
            assert run[k].tobytes() == first[k].tobytes(), k
    assert_bit_exact(net, before)


def test_parameters_never_written():
    """The hook reads the parameters only: it works on read-only views of them too."""
    rng = np.random.default_rng(10)
    ref, net = nets(8, 6, 3, std=0.5)
    x = rng.standard_normal((2, 8))
    t = np.array([0, 2])
    want = ref.numerical_gradient(x, t)
    before = snapshot(net)
    got = net_numerical_gradient(net, x, t)
    assert_bit_exact(net, before)
    assert_same(got, want)
    for k in KEYS:  # fresh arrays, not views of the parameters
        assert not np.shares_memory(got[k], net.params[k])


# ----------------------------------------------------------------------------- fallbacks and errors


def test_non_finite_inputs_fall_back_to_the_reference():
    rng = np.random.default_rng(11)
    ref, net = nets(5, 4, 3, std=0.5)
    x = rng.standard_normal((2, 5))
    x[0, 1] = np.inf
    t = np.array([0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = ref.numerical_gradient(x, t)
        got = net_numerical_gradient(net, x, t)
    for k in KEYS:
        np.testing.assert_array_equal(got[k], want[k])


def test_zero_step_falls_back_to_the_reference():
    ref, net = nets(4, 3, 2, std=0.5)
    x = np.random.default_rng(12).standard_normal((2, 4))
    t = np.array([0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = ref.numerical_gradient(x, t, 0.0)
        got = net_numerical_gradient(net, x, t, 0.0)
    for k in KEYS:
        np.testing.assert_array_equal(got[k], want[k])


class _Tanh:
    """A non-standard hidden layer."""

    def forward(self, x):
        self.out = np.tanh(x)
        return self.out


def test_non_standard_layers_use_the_reference_loop():
    ref, net = nets(5, 4, 3, std=0.5)
    for n in (ref, net):
        n.layers["Relu1"] = _Tanh()
    x = np.random.default_rng(13).standard_normal((2, 5))
    t = np.array([2, 0])
    got = net_numerical_gradient(net, x, t)
    want = ref.numerical_gradient(x, t)
    for k in KEYS:
        np.testing.assert_array_equal(got[k], want[k])


class _DecayNet(TwoLayerNet):
    """A subclass whose loss adds weight decay: the hook must not assume the plain loss."""

    def loss(self, x, t):
        return super().loss(x, t) + 0.5 * 0.1 * np.sum(self.params["W1"] ** 2)


def test_overridden_loss_uses_the_reference_loop():
    ref = _DecayNet(5, 4, 3, 0.5, seed=0)
    net = _DecayNet(5, 4, 3, 0.5, seed=0)
    x = np.random.default_rng(14).standard_normal((2, 5))
    t = np.array([2, 0])
    got = net_numerical_gradient(net, x, t)
    want = ref.numerical_gradient(x, t)
    for k in KEYS:
        np.testing.assert_array_equal(got[k], want[k])


def test_replaced_parameter_array_uses_the_reference_loop():
    """params["W2"] no longer the array the layer holds: the reference perturbs a dead copy."""
    ref, net = nets(5, 4, 3, std=0.5)
    for n in (ref, net):
        n.params["W2"] = n.params["W2"].copy()
    x = np.random.default_rng(15).standard_normal((2, 5))
    t = np.array([2, 0])
    got = net_numerical_gradient(net, x, t)
    want = ref.numerical_gradient(x, t)
    assert np.all(want["W2"] == 0)
    for k in KEYS:
        np.testing.assert_array_equal(got[k], want[k])


BAD_INPUTS = {
    "x features": (np.zeros((2, 6)), np.array([0, 1])),
    "x scalar": (np.float64(1.0), np.array([0])),
    "x complex": (np.zeros((2, 5), complex), np.array([0, 1])),
    "empty batch": (np.zeros((0, 5)), np.zeros(0, int)),
    "label range": (np.zeros((2, 5)), np.array([0, 3])),
    "label float": (np.zeros((2, 5)), np.array([0.5, 1.0])),
    "t shape": (np.zeros((2, 5)), np.array([0, 1, 2])),
    "t rows": (np.zeros((2, 5)), np.array([[0.5, 0.2, 0.2], [0, 0, 1]])),
    "t negative": (np.zeros((2, 5)), np.array([[1.5, -0.5, 0.0], [0, 0, 1]])),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_raise_the_reference_errors(case):
    x, t = BAD_INPUTS[case]
    ref, net = nets(5, 4, 3)
    before = snapshot(net)
    with pytest.raises(Exception) as want:
        ref.numerical_gradient(x, t)
    with pytest.raises(type(want.value)) as got:
        net_numerical_gradient(net, x, t)
    assert str(got.value) == str(want.value)
    assert_bit_exact(net, before)


@pytest.mark.parametrize("which", KEYS)
def test_read_only_parameter_raises_the_reference_error(which):
    ref, net = nets(5, 4, 3)
    x, t = np.zeros((2, 5)), np.array([0, 1])
    for n in (ref, net):
        n.params[which].flags.writeable = False
    with pytest.raises(ValueError) as want:
        ref.numerical_gradient(x, t)
    with pytest.raises(ValueError) as got:
        net_numerical_gradient(net, x, t)
    assert str(got.value) == str(want.value)


# ----------------------------------------------------------------------------- through the backend


def test_numba_backend_uses_the_hook():
    import scratchprop.numba as nb_backend

    assert nb_backend.net_numerical_gradient is net_numerical_gradient
    assert not hasattr(ref_backend, "net_numerical_gradient")


@pytest.mark.parametrize("form", ["labels", "onehot"])
def test_numba_backend_equals_reference(form):
    rng = np.random.default_rng(16)
    ref = TwoLayerNet(20, 7, 4, 0.5, seed=3)
    net = numba_net(20, 7, 4, 0.5, seed=3)
    x = rng.standard_normal((3, 20))
    t = targets(form, 3, 4, rng)
    before = snapshot(net)
    assert_same(net.numerical_gradient(x, t), ref.numerical_gradient(x, t))
    assert_bit_exact(net, before)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_gradcheck_passes_on_both_backends(backend):
    net = TwoLayerNet(8, 6, 3, weight_init_std=0.5, seed=0, backend=backend)
    x = np.random.default_rng(0).standard_normal((3, 8))
    report = scratchprop.gradcheck(net, x, np.array([0, 2, 1]))
    assert report.passed and report.params_restored, str(report)
    assert report.loss_evaluations == 2 * (8 * 6 + 6 + 6 * 3 + 3)


def test_gradcheck_reports_agree_between_backends():
    rng = np.random.default_rng(17)
    x = rng.random((3, 50))
    t = np.array([4, 1, 9])
    reports = [
        scratchprop.gradcheck(TwoLayerNet(50, 20, 10, seed=1, backend=b), x, t) for b in ("numpy", "numba")
    ]
    assert all(r.passed for r in reports)
    for a, b in zip(*(r.params for r in reports)):
        assert a.name == b.name
        assert abs(a.max_abs - b.max_abs) <= ATOL64
