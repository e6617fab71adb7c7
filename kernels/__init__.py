"""Numba kernels of the chapter-5 layers (installed as ``scratchprop.kernels``).

One algorithm per module, each with a naive loop version the fast kernel is
tested against: :mod:`.affine`, :mod:`.relu`, :mod:`.softmax_loss`,
:mod:`.two_layer` (the fused net step; :mod:`.two_layer_threads` its
threaded variants, :mod:`.two_layer_predict` the forward pass alone),
:mod:`.numgrad` (numerical gradient). :mod:`._blas` calls BLAS ``gemm``/``gemv`` from ``@njit`` code
(:mod:`._blas_lib` decides which library: MKL or SciPy's OpenBLAS);
:mod:`.config` holds every JIT flag and threshold.

Kernels are leaves: they import only NumPy, Numba and each other, never
``scratchprop``; validation and dtype promotion happen in the callers.

Caching: Numba keys a kernel's on-disk cache on its own source file only.
After editing :mod:`._blas` or :mod:`.config` (which other kernels inline),
delete ``__pycache__/*.nbi``/``*.nbc`` here, or the kernels load stale code.
"""
