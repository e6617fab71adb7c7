"""Central differences of the 2-layer net's loss, every parameter, incrementally.

A leaf module (NumPy and Numba only); ``scratchprop.numba_numgrad`` validates,
caches the base activations and calls these kernels.

The net is ``a1 = x @ W1 + b1``, ``h = relu(a1)``, ``s = h @ W2 + b2`` and the
loss ``f = (1/N) sum_n [ tsum_n * LSE(s_n) - sum_k T_nk s_nk ]`` (``T`` the
one-hot / probability targets, ``tsum_n = sum_k T_nk``, ``LSE`` the
log-sum-exp of a row). For every parameter and both signs the kernels compute
the loss of the whole batch with that one parameter replaced by its perturbed
value (``fp`` for ``+h``, ``fm`` for ``-h``), evaluated from cached base
activations instead of a full forward pass, and store either
``(fp - fm) / (2h)`` or both losses (for the caller to round to float32):

* ``W1[i, j]`` / ``b1[j]`` change only hidden unit ``j``: ``a1'[n, j]`` is
  ``a1[n, j] + (W1p[i, j] - W1[i, j]) * x[n, i]`` (``z1[n, j] + b1p[j]`` for
  the bias), ``d_n = relu(a1'[n, j]) - h[n, j]`` and the scores move along one
  row of ``W2``: ``s'_n = s_n + d_n * W2[j, :]``.
* ``W2[j, k]`` / ``b2[k]`` change only the score of class ``k``:
  ``s'_nk = s_nk + D_n``.

With ``p_n = softmax(s_n)`` and ``sh_n = s_n - max(s_n)``, the per-sample loss
is ``B_n + tsum_n * log(sum_k p_nk exp(delta_k)) - sum_k T_nk delta_k`` where
``delta = s'_n - s_n`` and ``B_n = tsum_n * LSE(s_n) - sum_k T_nk s_nk`` is
the base loss of sample ``n``; the batch loss is ``(sum_n B_n + changes) / N``.

``K(delta) = log(sum_k p_nk exp(delta_k))`` is evaluated as
``log1p(sum_k p_k expm1(delta_k))`` (exact functions; a max-shifted
log-sum-exp where that could overflow or cancel), or, in the vectorised
``W1`` loop, where ``delta = d * W2[j, :]``, by its power series in ``d``
(the cumulant generating function of ``W2[j, :]`` under ``p_n``)::

    K_nj(d) = sum_{q=1..R_TERMS} kappa_q d^q,   used when |d| * max_k |W2[j, k]| <= TAU.

The coefficients come from the moments ``a_q = sum_k p_k W2[j, k]^q / q!`` by
``kappa_r = a_r - (1/r) sum_{m<r} m kappa_m a_{r-m}`` (``(1 + u) K' = u'`` with
``u = sum a_q d^q``). Truncation bound: on the complex disc
``|d| <= r / wmax`` (``r = 1/2``), ``|u| <= e^r - 1 < 0.65``, so ``K`` is
analytic there with ``|K| <= M = -log(2 - e^r) < 1.05``, and Cauchy's estimate
``|kappa_q| <= M (wmax / r)^q`` bounds the tail for ``|d| wmax <= TAU`` by
``M (2 TAU)^(R+1) / (1 - 2 TAU) < 2.2e-19`` (``TAU = 0.01``, ``R = 10``): a
thousandth of one rounding of a loss near 1. Elements beyond ``TAU`` are
recomputed with the exact functions. The class-score shifts of ``W2`` / ``b2``
use the same series with ``W2[j, :]`` replaced by the unit vector ``e_k``
(``wmax = 1``, so ``|delta| <= TAU``). So every perturbed loss is the loss of
the perturbed net to within a few roundings; nothing about the central
difference itself is approximated.

Everything here is float64; the wrapper converts and rounds to the net's dtype.
``grad_w1`` runs blocks of rows on Numba's threads (``prange``; each block has
its own scratch and writes only its own rows, so results do not depend on the
thread count); ``grad_w1_serial`` is the same code on the calling thread. The
other parameters are few (``W2`` is ``D / C`` times smaller than ``W1``) and
run serially.
"""

import math

import numpy as np
from numba import njit, prange

from .config import PARALLEL, SERIAL, guard_cache

TAU = 0.01  #: largest ``|d| * max_k |W2[j, k]|`` the series is used for
R_TERMS = 10  #: terms of the series of ``K_nj(d)``
BIG = 600.0  #: above this a score shift is handled by a max-shifted log-sum-exp


@njit(**SERIAL)
def series_coefficients(p, W2, out):
    """``out[n, q - 1, j] = kappa_q`` of ``K_nj(d) = log sum_k p[n, k] exp(d W2[j, k])``.

    ``p (N, C)`` softmax rows, ``W2 (H, C)``, ``out (N, R_TERMS, H)``.
    """
    N, C = p.shape
    H = W2.shape[0]
    a = np.empty(R_TERMS + 1)
    kap = np.empty(R_TERMS + 1)
    for n in range(N):
        for j in range(H):
            for q in range(R_TERMS + 1):
                a[q] = 0.0
            for k in range(C):
                w = W2[j, k]
                term = p[n, k]
                for q in range(1, R_TERMS + 1):
                    term = term * w / q
                    a[q] += term
            for r in range(1, R_TERMS + 1):
                acc = 0.0
                for m in range(1, r):
                    acc += m * kap[m] * a[r - m]
                kap[r] = a[r] - acc / r
                out[n, r - 1, j] = kap[r]


@njit(**SERIAL)
def _lse_shift(sh, p, w, d, log_m0):
    """``LSE(sh + d * w) - LSE(sh)`` for one row; ``p = softmax(sh)``, ``log_m0 = LSE(sh)``."""
    C = sh.shape[0]
    big = 0.0
    for k in range(C):
        v = d * w[k]
        if v > big:
            big = v
    if big <= BIG:
        u = 0.0
        for k in range(C):
            u += p[k] * math.expm1(d * w[k])
        if u >= -0.5:
            return math.log1p(u)
    mx = -np.inf
    for k in range(C):
        v = sh[k] + d * w[k]
        if v > mx:
            mx = v
    acc = 0.0
    for k in range(C):
        acc += math.exp(sh[k] + d * w[k] - mx)
    return mx + math.log(acc) - log_m0


@njit(**SERIAL)
def _lse_shift1(sh, p, k, delta, log_m0):
    """``LSE(sh') - LSE(sh)`` where ``sh'`` is ``sh`` with ``sh[k] += delta``."""
    if delta <= BIG:
        u = p[k] * math.expm1(delta)
        if u >= -0.5:
            return math.log1p(u)
    C = sh.shape[0]
    mx = -np.inf
    for c in range(C):
        v = sh[c] + delta if c == k else sh[c]
        if v > mx:
            mx = v
    acc = 0.0
    for c in range(C):
        v = sh[c] + delta if c == k else sh[c]
        acc += math.exp(v - mx)
    return mx + math.log(acc) - log_m0


@njit(**SERIAL)
def _relu(a):
    # the reference's mask semantics: zero where a <= 0
    return 0.0 if a <= 0.0 else a


@njit(**SERIAL)
def _hidden_loss(x, i, dW, j, a1, hb, sh, p, W2, TW, tsum, log_m0, Bsum):
    """Batch loss with ``a1[:, j] += dW * x[:, i]`` (exact functions)."""
    N = a1.shape[0]
    acc = 0.0
    for n in range(N):
        d = _relu(a1[n, j] + dW * x[n, i]) - hb[n, j]
        if d != 0.0:
            acc += tsum[n] * _lse_shift(sh[n], p[n], W2[j], d, log_m0[n]) - d * TW[n, j]
    return (Bsum + acc) / N


@njit(**SERIAL)
def _class_loss(delta, k, kappa1, sh, p, T, tsum, log_m0, Bsum, force_exact):
    """Batch loss with the class-``k`` scores moved by ``delta[n]``.

    ``kappa1 (N, R_TERMS, C)``: the series of ``log(1 + p_k expm1(delta))``
    (the same series as ``K_nj`` with ``W2[j, :]`` the unit vector ``e_k``),
    used for ``|delta| <= TAU``.
    """
    N = sh.shape[0]
    acc = 0.0
    for n in range(N):
        dn = delta[n]
        if dn != 0.0:
            if abs(dn) <= TAU and not force_exact:
                g = kappa1[n, R_TERMS - 1, k]
                for q in range(R_TERMS - 2, -1, -1):
                    g = g * dn + kappa1[n, q, k]
                L = g * dn
            else:
                L = _lse_shift1(sh[n], p[n], k, dn, log_m0[n])
            acc += tsum[n] * L - T[n, k] * dn
    return (Bsum + acc) / N


# Every kernel below takes, for its parameter: ``W`` (the stored values, float64),
# ``Wp, Wm`` (the perturbed values the reference stores, float64) unless
# ``add_h``, in which case they are ``W + hd`` / ``W - hd`` computed here (only
# valid for float64 parameters, where that is the reference's own rounding);
# and the outputs ``out0, out1``: with ``direct`` the gradient
# ``(f(+h) - f(-h)) / two_h`` goes to ``out0`` (``out1`` unused), otherwise the
# two losses go to ``out0`` / ``out1`` for the caller to round and difference.


@njit(**SERIAL)
def _w1_rows(
    i0,
    i1,
    x,
    W,
    Wp,
    Wm,
    add_h,
    hd,
    a1,
    hb,
    kappa,
    wmax,
    sh,
    p,
    W2,
    TW,
    tsum,
    log_m0,
    Bsum,
    out0,
    out1,
    two_h,
    direct,
    force_exact,
):
    """Rows ``i0 <= i < i1`` of the ``W1`` central differences, with their own scratch."""
    N = x.shape[0]
    H = a1.shape[1]
    accp = np.empty(H)
    accm = np.empty(H)
    worst = np.empty(H)
    dp_row = np.empty(H)
    dm_row = np.empty(H)
    for i in range(i0, i1):
        for j in range(H):
            w = W[i, j]
            if add_h:
                dp_row[j] = (w + hd) - w
                dm_row[j] = (w - hd) - w
            else:
                dp_row[j] = Wp[i, j] - w
                dm_row[j] = Wm[i, j] - w
            accp[j] = 0.0
            accm[j] = 0.0
            worst[j] = 0.0
        for n in range(N):
            xi = x[n, i]
            ts = tsum[n]
            a1n = a1[n]
            hbn = hb[n]
            twn = TW[n]
            kn = kappa[n]
            for j in range(H):
                # +h
                a = a1n[j] + dp_row[j] * xi
                d = (0.0 if a <= 0.0 else a) - hbn[j]
                g = kn[R_TERMS - 1, j]
                for q in range(R_TERMS - 2, -1, -1):
                    g = g * d + kn[q, j]
                accp[j] += ts * (g * d) - d * twn[j]
                e = abs(d) * wmax[j]
                # -h
                a = a1n[j] + dm_row[j] * xi
                d = (0.0 if a <= 0.0 else a) - hbn[j]
                g = kn[R_TERMS - 1, j]
                for q in range(R_TERMS - 2, -1, -1):
                    g = g * d + kn[q, j]
                accm[j] += ts * (g * d) - d * twn[j]
                e = max(e, abs(d) * wmax[j])
                worst[j] = max(worst[j], e)
        for j in range(H):
            fp = (Bsum + accp[j]) / N
            fm = (Bsum + accm[j]) / N
            if force_exact or not worst[j] <= TAU:
                fp = _hidden_loss(x, i, dp_row[j], j, a1, hb, sh, p, W2, TW, tsum, log_m0, Bsum)
                fm = _hidden_loss(x, i, dm_row[j], j, a1, hb, sh, p, W2, TW, tsum, log_m0, Bsum)
            if direct:
                out0[i, j] = (fp - fm) / two_h
            else:
                out0[i, j] = fp
                out1[i, j] = fm


@njit(**PARALLEL)
def grad_w1(
    x,
    W,
    Wp,
    Wm,
    add_h,
    hd,
    a1,
    hb,
    kappa,
    wmax,
    sh,
    p,
    W2,
    TW,
    tsum,
    log_m0,
    Bsum,
    out0,
    out1,
    two_h,
    direct,
    nchunks,
    force_exact,
):
    """Central differences for ``W1 (D, H)``; ``a1'[n, j] = a1[n, j] + (w' - w) * x[n, i]``.

    ``x (N, D)``; ``a1, hb (N, H)`` base pre-activation and hidden output;
    ``kappa (N, R_TERMS, H)`` the series coefficients; ``wmax (H,)`` ``max_k |W2[j, k]|``;
    ``sh, p (N, C)`` shifted scores and softmax; ``TW (N, H)`` ``T @ W2.T``;
    ``tsum, log_m0 (N,)``; ``Bsum`` the sum of the base per-sample losses.
    Parallel over ``nchunks`` blocks of rows ``i``, each with its own scratch;
    nothing is shared but the outputs' disjoint rows, so the result does not
    depend on the thread count. ``force_exact`` skips the series (for testing
    the two paths against each other).
    """
    D = x.shape[1]
    for c in prange(nchunks):
        _w1_rows(
            c * D // nchunks,
            (c + 1) * D // nchunks,
            x,
            W,
            Wp,
            Wm,
            add_h,
            hd,
            a1,
            hb,
            kappa,
            wmax,
            sh,
            p,
            W2,
            TW,
            tsum,
            log_m0,
            Bsum,
            out0,
            out1,
            two_h,
            direct,
            force_exact,
        )


@njit(**SERIAL)
def grad_w1_serial(
    x,
    W,
    Wp,
    Wm,
    add_h,
    hd,
    a1,
    hb,
    kappa,
    wmax,
    sh,
    p,
    W2,
    TW,
    tsum,
    log_m0,
    Bsum,
    out0,
    out1,
    two_h,
    direct,
    force_exact,
):
    """:func:`grad_w1` on the calling thread (small nets, or the OpenMP layer)."""
    _w1_rows(
        0,
        x.shape[1],
        x,
        W,
        Wp,
        Wm,
        add_h,
        hd,
        a1,
        hb,
        kappa,
        wmax,
        sh,
        p,
        W2,
        TW,
        tsum,
        log_m0,
        Bsum,
        out0,
        out1,
        two_h,
        direct,
        force_exact,
    )


@njit(**SERIAL)
def grad_b1(z1, W, Wp, Wm, add_h, hd, hb, sh, p, W2, TW, tsum, log_m0, Bsum, out0, out1, two_h, direct):
    """Central differences for ``b1 (H,)``; ``a1'[n, j] = z1[n, j] + b'[j]`` (``z1 = x @ W1``),
    the sum the reference forms."""
    N, H = z1.shape
    for j in range(H):
        w = W[j]
        fp = 0.0
        fm = 0.0
        for s in range(2):
            if add_h:
                b = w + hd if s == 0 else w - hd
            else:
                b = Wp[j] if s == 0 else Wm[j]
            acc = 0.0
            for n in range(N):
                d = _relu(z1[n, j] + b) - hb[n, j]
                if d != 0.0:
                    acc += tsum[n] * _lse_shift(sh[n], p[n], W2[j], d, log_m0[n]) - d * TW[n, j]
            if s == 0:
                fp = (Bsum + acc) / N
            else:
                fm = (Bsum + acc) / N
        if direct:
            out0[j] = (fp - fm) / two_h
        else:
            out0[j] = fp
            out1[j] = fm


@njit(**SERIAL)
def grad_w2(
    W, Wp, Wm, add_h, hd, hb, kappa1, sh, p, T, tsum, log_m0, Bsum, out0, out1, two_h, direct, force_exact
):
    """Central differences for ``W2 (H, C)``; ``s'[n, k] = s[n, k] + (w' - w) * h[n, j]``.

    Serial: with the series of ``kappa1`` an element costs about as much as
    a few ``W1`` elements, and ``W2`` is ``D / C`` times smaller than ``W1``.
    """
    H, C = W.shape
    N = hb.shape[0]
    delta = np.empty(N)
    for j in range(H):
        for k in range(C):
            w = W[j, k]
            dp = ((w + hd) if add_h else Wp[j, k]) - w
            dm = ((w - hd) if add_h else Wm[j, k]) - w
            for n in range(N):
                delta[n] = dp * hb[n, j]
            fp = _class_loss(delta, k, kappa1, sh, p, T, tsum, log_m0, Bsum, force_exact)
            for n in range(N):
                delta[n] = dm * hb[n, j]
            fm = _class_loss(delta, k, kappa1, sh, p, T, tsum, log_m0, Bsum, force_exact)
            if direct:
                out0[j, k] = (fp - fm) / two_h
            else:
                out0[j, k] = fp
                out1[j, k] = fm


@njit(**SERIAL)
def grad_b2(
    z2, s, W, Wp, Wm, add_h, hd, kappa1, sh, p, T, tsum, log_m0, Bsum, out0, out1, two_h, direct, force_exact
):
    """Central differences for ``b2 (C,)``; ``s'[n, k] = z2[n, k] + b'[k]`` (``z2 = h @ W2``),
    the sum the reference forms."""
    N, C = z2.shape
    delta = np.empty(N)
    for k in range(C):
        w = W[k]
        bp = w + hd if add_h else Wp[k]
        bm = w - hd if add_h else Wm[k]
        for n in range(N):
            delta[n] = (z2[n, k] + bp) - s[n, k]
        fp = _class_loss(delta, k, kappa1, sh, p, T, tsum, log_m0, Bsum, force_exact)
        for n in range(N):
            delta[n] = (z2[n, k] + bm) - s[n, k]
        fm = _class_loss(delta, k, kappa1, sh, p, T, tsum, log_m0, Bsum, force_exact)
        if direct:
            out0[k] = (fp - fm) / two_h
        else:
            out0[k] = fp
            out1[k] = fm


guard_cache(globals())
