"""cs231n ``layers.py``: the assignment's layer functions, computed by :mod:`jaxfc.layers`
and :mod:`jaxfc.losses`.

NumPy in, NumPy out. Caches are the assignment's where it fixes them (``(x, w, b)`` for affine,
``x`` for relu, ``(dropout_param, mask)`` for dropout) and the core's cache NamedTuples (as
NumPy) for the normalizations. ``bn_param`` and ``dropout_param`` are read and updated in place
as in the assignment. Float64 inputs compute in float64 (see :mod:`jaxfc.cs231n`).

Dropout: ``dropout_param['p']`` is the DROP probability (this project's seed; the cs231n
2018+ notebooks use the keep probability). The mask is drawn from NumPy's global generator,
``(np.random.rand(*x.shape) >= p) / (1 - p)``, after ``np.random.seed(dropout_param['seed'])``
when a seed is given.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxfc import layers as core
from jaxfc import losses as core_losses
from jaxfc._checks import check_labels, check_probability
from jaxfc.cs231n._convert import compute, labels, to_numpy, tree_to_numpy

__all__ = [
    "affine_backward",
    "affine_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "batchnorm_forward",
    "dropout_backward",
    "dropout_forward",
    "layernorm_backward",
    "layernorm_forward",
    "relu_backward",
    "relu_forward",
    "softmax_loss",
    "svm_loss",
]

_affine_forward = jax.jit(core.affine_forward)
_affine_backward = jax.jit(core.affine_backward)
_relu_forward = jax.jit(core.relu_forward)
_relu_backward = jax.jit(core.relu_backward)
_batchnorm_forward = jax.jit(core.batchnorm_forward, static_argnames=("train", "momentum", "eps"))
_batchnorm_backward = jax.jit(core.batchnorm_backward)
_batchnorm_backward_alt = jax.jit(core.batchnorm_backward_alt)
_layernorm_forward = jax.jit(core.layernorm_forward, static_argnames=("eps",))
_layernorm_backward = jax.jit(core.layernorm_backward)
_dropout_backward = jax.jit(core.dropout_backward)
_svm_loss = jax.jit(core_losses.svm_loss)
_softmax_loss = jax.jit(core_losses.softmax_loss)


def affine_forward(x, w, b):
    """``out = x.reshape(N, D) @ w + b`` for x of shape (N, d_1, ..., d_k), w (D, M), b (M,).

    Returns ``(out, cache)`` with ``cache = (x, w, b)``.
    """
    x, w, b = np.asarray(x), np.asarray(w), np.asarray(b)
    with compute(x, w, b):
        out, _ = _affine_forward(x, w, b)
        return to_numpy(out), (x, w, b)


def affine_backward(dout, cache):
    """Returns ``(dx, dw, db)``, with dx in the shape of x."""
    x, w, _ = cache
    dout = np.asarray(dout)
    with compute(dout, x, w):
        dx, dw, db = _affine_backward(dout, core.AffineCache(x, w))
        return to_numpy(dx), to_numpy(dw), to_numpy(db)


def relu_forward(x):
    """``out = max(0, x)``; returns ``(out, cache)`` with ``cache = x``."""
    x = np.asarray(x)
    with compute(x):
        out, _ = _relu_forward(x)
        return to_numpy(out), x


def relu_backward(dout, cache):
    """``dx = dout * (x > 0)``."""
    dout = np.asarray(dout)
    with compute(dout, cache):
        return to_numpy(_relu_backward(dout, cache))


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalization of x (N, D), as in the assignment.

    ``bn_param``: ``mode`` ('train' or 'test', required), ``eps`` (1e-5), ``momentum`` (0.9),
    ``running_mean`` and ``running_var`` (zeros of shape (D,) when missing). In training the
    batch mean and biased variance normalize x and the running statistics become
    ``momentum * running + (1 - momentum) * batch``; in test mode the running statistics
    normalize x. The new statistics are stored back into ``bn_param`` (new NumPy arrays).

    Returns ``(out, cache)``.
    """
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    x, gamma, beta = np.asarray(x), np.asarray(gamma), np.asarray(beta)
    _, D = x.shape
    running_mean = np.asarray(bn_param.get("running_mean", np.zeros(D, dtype=x.dtype)))
    running_var = np.asarray(bn_param.get("running_var", np.zeros(D, dtype=x.dtype)))
    if mode not in ("train", "test"):
        raise ValueError(f'Invalid forward batchnorm mode "{mode}"')
    with compute(x, gamma, beta, running_mean, running_var):
        out, state, cache = _batchnorm_forward(
            x,
            gamma,
            beta,
            core.BatchNormState(running_mean, running_var),
            train=mode == "train",
            momentum=float(momentum),
            eps=float(eps),
        )
        bn_param["running_mean"] = to_numpy(state.running_mean)
        bn_param["running_var"] = to_numpy(state.running_var)
        return to_numpy(out), tree_to_numpy(cache)


def _norm_backward(fn, dout, cache):
    dout = np.asarray(dout)
    with compute(dout, *jax.tree_util.tree_leaves(cache)):
        return tuple(to_numpy(g) for g in fn(dout, cache))


def batchnorm_backward(dout, cache):
    """Returns ``(dx, dgamma, dbeta)``, walking the computational graph node by node."""
    return _norm_backward(_batchnorm_backward, dout, cache)


def batchnorm_backward_alt(dout, cache):
    """Returns ``(dx, dgamma, dbeta)`` from the simplified closed form."""
    return _norm_backward(_batchnorm_backward_alt, dout, cache)


def layernorm_forward(x, gamma, beta, ln_param):
    """Layer normalization of each row of x (N, D); ``ln_param['eps']`` defaults to 1e-5.

    The same in training and test. Returns ``(out, cache)``.
    """
    eps = ln_param.get("eps", 1e-5)
    x, gamma, beta = np.asarray(x), np.asarray(gamma), np.asarray(beta)
    with compute(x, gamma, beta):
        out, cache = _layernorm_forward(x, gamma, beta, eps=float(eps))
        return to_numpy(out), tree_to_numpy(cache)


def layernorm_backward(dout, cache):
    """Returns ``(dx, dgamma, dbeta)``."""
    return _norm_backward(_layernorm_backward, dout, cache)


def draw_dropout_mask(dropout_param, shape, dtype):
    """The mask of the assignment's ``dropout_forward`` in training mode.

    Reseeds NumPy's global generator with ``dropout_param['seed']`` when present, then keeps
    each entry with probability ``1 - p`` and scales it by ``1 / (1 - p)``.
    """
    _start_dropout(dropout_param)
    return _keep_mask(dropout_param["p"], shape, dtype)


def _start_dropout(dropout_param):
    check_probability("dropout_param['p']", dropout_param["p"])
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])


def _keep_mask(p, shape, dtype):
    return ((np.random.rand(*shape) >= p) / (1 - p)).astype(dtype)


def dropout_forward(x, dropout_param):
    """Inverted dropout.

    ``dropout_param``: ``p`` (the DROP probability), ``mode`` ('train' or 'test'), optional
    ``seed`` (reseeds NumPy's global generator at every call, in either mode). Training:
    ``out = x * mask`` with the mask of :func:`draw_dropout_mask`; test: ``out = x``.
    Returns ``(out, cache)`` with ``cache = (dropout_param, mask)`` (mask None in test mode).
    """
    mode = dropout_param["mode"]
    x = np.asarray(x)
    _start_dropout(dropout_param)
    if mode == "train":
        mask = _keep_mask(dropout_param["p"], x.shape, x.dtype)
        out = x * mask
    elif mode == "test":
        mask, out = None, x
    else:
        raise ValueError(f'Invalid forward dropout mode "{mode}"')
    return out.astype(x.dtype, copy=False), (dropout_param, mask)


def dropout_backward(dout, cache):
    """``dx = dout * mask`` in training mode, ``dx = dout`` in test mode."""
    dropout_param, mask = cache
    mode = dropout_param["mode"]
    if mode == "train":
        dout = np.asarray(dout)
        with compute(dout, mask):
            return to_numpy(_dropout_backward(dout, mask))
    if mode == "test":
        return dout
    raise ValueError(f'Invalid backward dropout mode "{mode}"')


def _loss(fn, x, y):
    x, y = np.asarray(x), labels(y)
    if x.ndim == 2:
        check_labels(y, x.shape[0], x.shape[1])
    with compute(x):
        loss, dx = fn(x, y)
        return np.asarray(loss)[()], to_numpy(dx)


def svm_loss(x, y):
    """Multiclass SVM loss (margin 1), mean over the N rows of x (N, C); y holds labels in
    [0, C). Returns ``(loss, dx)``."""
    return _loss(_svm_loss, x, y)


def softmax_loss(x, y):
    """Softmax cross-entropy, mean over the N rows of x (N, C); y holds labels in [0, C).
    Returns ``(loss, dx)``."""
    return _loss(_softmax_loss, x, y)
