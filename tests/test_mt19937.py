"""``scratchprop.kernels.mt19937``: NumPy's global ``np.random.rand`` stream, bit for bit.

Each draw is checked against NumPy itself from the same saved state
(``get_state`` / ``rand`` / ``set_state``): the doubles bit for bit, and the
whole legacy state afterwards (key, pos, has_gauss, gauss) plus the next draws.
Starting points: fresh seeds (pos 624), mid-block positions after draws of odd
sizes, odd positions after 32-bit draws, and explicit positions 0, 1, 622,
623 (a double straddling a twist) and 624.
"""

import numpy as np
import pytest

from scratchprop.kernels import mt19937 as K

SIZES = [0, 1, 2, 311, 312, 313, 623, 624, 625, 10000, 100000]
SEEDS = [0, 1, 12345]


@pytest.fixture(autouse=True)
def keep_global_state():
    saved = np.random.get_state()
    yield
    np.random.set_state(saved)


def bits(a):
    return a.view(np.uint64 if a.dtype == np.float64 else np.uint32)


def assert_state_equal(got, want):
    assert got[0] == want[0] == "MT19937"
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2:] == want[2:]  # pos, has_gauss, cached gaussian


def start(kind, seed):
    """Put the global generator at one starting point."""
    np.random.seed(seed)
    if kind == "seeded":
        return
    if kind == "mid":  # doubles: pos even, mid-block
        np.random.rand(157)
        np.random.rand(3)
    elif kind == "odd":  # 32-bit draws: pos odd (or anything)
        np.random.randint(0, 10, size=5)
        np.random.rand(101)
        np.random.randint(0, 7, size=1)
    elif kind.startswith("pos"):
        st = np.random.get_state()
        np.random.set_state((st[0], st[1], int(kind[3:]), st[3], st[4]))
    else:
        raise ValueError(kind)


STARTS = ["seeded", "mid", "odd", "pos0", "pos1", "pos622", "pos623", "pos624"]


def reference(draw):
    """``(result, state after, next 5 doubles)`` of ``draw()`` run by NumPy; the state is put back."""
    before = np.random.get_state()
    want = draw()
    after = np.random.get_state()
    following = np.random.rand(5)
    np.random.set_state(before)
    return want, after, following


def check_follows(after, following):
    assert_state_equal(np.random.get_state(), after)
    assert np.array_equal(bits(np.random.rand(5)), bits(following))


@pytest.mark.parametrize("kind", STARTS)
@pytest.mark.parametrize("n", SIZES)
def test_fill_uniform_equals_numpy(n, kind):
    for seed in SEEDS if n <= 1000 else SEEDS[:1]:
        start(kind, seed)
        want, after, following = reference(lambda: np.random.rand(n))  # noqa: B023
        out = np.empty(n)
        lock, state = K.global_state()
        with lock:
            got = K.fill_uniform(state, out)
        assert got is out or np.shares_memory(got, out)
        assert np.array_equal(bits(out), bits(want)), (n, kind, seed)
        check_follows(after, following)


@pytest.mark.parametrize("kind", ["seeded", "odd", "pos623"])
def test_rand_like_numpy_and_consecutive_calls(kind):
    start(kind, 7)
    sizes = [1, 623, 2, 0, 312, 1001, 5]
    want, after, following = reference(lambda: np.concatenate([np.random.rand(k) for k in sizes]))
    got = np.concatenate([K.rand_like_numpy(k) for k in sizes])
    assert got.dtype == np.float64
    assert np.array_equal(bits(got), bits(want))
    check_follows(after, following)


def test_interleaved_with_numpy():
    np.random.seed(3)
    ref = np.random.rand(2 * (1 + 400 + 1 + 623 + 975))
    np.random.seed(3)
    parts = []
    for k in [1, 400, 1, 623, 975]:
        parts.append(K.rand_like_numpy(k))
        parts.append(np.random.rand(k))  # NumPy continues where the kernel stopped
    assert np.array_equal(bits(np.concatenate(parts)), bits(ref))


def test_gauss_fields_untouched():
    for n in [1, 625, 10000]:
        np.random.seed(11)
        np.random.standard_normal()  # has_gauss = 1, a cached gaussian
        before = np.random.get_state()
        assert before[3] == 1
        want, after, following = reference(lambda: np.random.rand(n))  # noqa: B023
        got = K.rand_like_numpy(n)
        assert np.array_equal(bits(got), bits(want))
        check_follows(after, following)
        assert np.random.get_state()[3:] == before[3:]


def test_follows_seed_and_set_state():
    K.global_state()  # cached view
    for seed in [5, 6, 2**32 - 1]:
        np.random.seed(seed)
        want = np.random.rand(700)
        np.random.seed(seed)
        assert np.array_equal(bits(K.rand_like_numpy(700)), bits(want))
    np.random.seed(9)
    st = np.random.get_state()
    want = np.random.rand(50)
    np.random.rand(10)
    np.random.set_state(st)
    assert np.array_equal(bits(K.rand_like_numpy(50)), bits(want))


def test_view_is_the_generators_memory():
    np.random.seed(4)
    np.random.rand(17)
    lock, state = K.global_state()
    st = np.random.get_state()
    assert state.dtype == np.uint32 and state.shape == (K.N + 1,)
    assert np.array_equal(state[: K.N], st[1])
    assert int(state.view(np.int32)[K.N]) == st[2] == 34
    assert lock is np.random.mtrand._rand._bit_generator.lock
    assert K.global_state()[1] is state  # cached


def test_replaced_global_generator(monkeypatch):
    K.global_state()
    rs = np.random.RandomState(123)
    monkeypatch.setattr(np.random.mtrand, "_rand", rs)
    lock, state = K.global_state()
    assert lock is rs._bit_generator.lock
    want = np.random.RandomState(123).rand(1000)
    assert np.array_equal(bits(K.rand_like_numpy(1000)), bits(want))
    assert_state_equal(rs.get_state(), _after(123, 1000))

    monkeypatch.setattr(np.random.mtrand, "_rand", np.random.RandomState(np.random.PCG64(1)))
    with pytest.raises(TypeError, match="PCG64"):
        K.global_state()


def _after(seed, n):
    rs = np.random.RandomState(seed)
    rs.rand(n)
    return rs.get_state()


def dropout_input(n, dt, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(dt)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, -1.5], dtype=dt)
    k = min(n, special.size)
    x[rng.choice(n, size=k, replace=False)] = special[:k]
    return x


@pytest.mark.parametrize("dt", [np.float64, np.float32])
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("n", [1, 2, 312, 313, 625, 10000])
@pytest.mark.parametrize("kind", ["seeded", "odd", "pos623"])
def test_dropout_mask_equals_numpy(kind, n, ratio, dt):
    x = dropout_input(n, dt, n)
    start(kind, n + 1)

    def book():
        mask = np.random.rand(*x.shape) > ratio
        with np.errstate(invalid="ignore"):  # inf * 0
            return mask, x * mask

    (want_mask, want_out), after, following = reference(book)
    out = np.empty_like(x)
    mask = np.empty(n, dtype=bool)
    lock, state = K.global_state()
    with lock:
        K.dropout_mask(state, x, ratio, out, mask)
    assert out.dtype == want_out.dtype == np.dtype(dt)
    assert np.array_equal(mask, want_mask)
    assert np.array_equal(bits(out), bits(want_out))  # -0.0 and NaN bits too
    check_follows(after, following)


def test_dropout_mask_2d_flat_and_zero():
    x = dropout_input(6 * 70, np.float32, 0).reshape(6, 70)
    np.random.seed(1)
    mask_ref = np.random.rand(*x.shape) > 0.3
    want = x * mask_ref
    np.random.seed(1)
    out = np.empty(x.size, dtype=np.float32)
    mask = np.empty(x.size, dtype=bool)
    K.dropout_mask(K.global_state()[1], x.ravel(), 0.3, out, mask)
    assert np.array_equal(mask.reshape(x.shape), mask_ref)
    assert np.array_equal(bits(out.reshape(x.shape)), bits(want))
    before = np.random.get_state()
    K.dropout_mask(K.global_state()[1], x.ravel()[:0], 0.3, out[:0], mask[:0])
    assert_state_equal(np.random.get_state(), before)
