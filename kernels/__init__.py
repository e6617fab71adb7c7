"""Numba kernels of the chapter-5 and chapter-6 layers (installed as ``scratchprop.kernels``).

One algorithm per module, each with a naive loop version the fast kernel is
tested against: :mod:`.affine`, :mod:`.relu`, :mod:`.softmax_loss`,
:mod:`.two_layer` (the fused net step; :mod:`.two_layer_predict` the
forward pass alone),
:mod:`.numgrad` (numerical gradient).
Chapter 6: :mod:`.sigmoid` (backward; the forward is NumPy's vectorised exp),
:mod:`.dropout` (forward from given draws, backward; ``x * 0`` semantics),
:mod:`.batchnorm` (2-D train/test forward, backward, running statistics),
:mod:`.optim` (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam: one fused in-place pass per array),
:mod:`.mlp` (a fully connected net's whole training gradient in one call, through the layers' kernels),
:mod:`.mt19937` (``np.random.rand``'s generator on NumPy's own state: Dropout's masks).
Chapter 7: :mod:`.conv` (Convolution's unfold, fold and layout passes around the BLAS
products; max pooling and its backward), :mod:`.conv_batch` (the convolution parallel across
the batch: each thread's images unfolded, multiplied on one BLAS thread and laid out),
:mod:`.conv_direct` (a stride-1 convolution with no unfolded matrix, its products a
register-blocked micro-kernel in LLVM vector IR: where it pays, ``conv_batch`` takes it).
:mod:`._blas` calls BLAS ``gemm``/``gemv`` from ``@njit`` code
(NumPy's own OpenBLAS, so one thread pool with the user's NumPy); :mod:`.gemm` runs small
products on the calling thread instead (the same kind of micro-kernel; :mod:`.simd` holds
what the two share), and :mod:`.pair` larger ones as that kernel on this thread and
OpenBLAS's worker;
:mod:`.config` holds every JIT flag. When kernels may use threads is decided by the
callers (``scratchprop.threads``) and passed in as arguments.

Kernels are leaves: they import only NumPy, Numba and each other, never
``scratchprop``; validation and dtype promotion happen in the callers.

Caching: Numba keys a kernel's on-disk cache on its own source file only.
After editing :mod:`._blas`, :mod:`.config`, :mod:`.simd`, :mod:`.gemm`, :mod:`.pair` or
:mod:`.conv_direct` (which other kernels inline), or a kernel :mod:`.mlp` calls (:mod:`.affine`, :mod:`.batchnorm`,
:mod:`.mt19937`, :mod:`.softmax_loss`: its compiled code carries theirs),
delete ``__pycache__/*.nbi``/``*.nbc`` here, or the kernels load stale code.
"""
