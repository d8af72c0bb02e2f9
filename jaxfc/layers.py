"""Layers as pure forward/backward pairs, named as in the cs231n assignment.

Each ``*_forward`` returns ``(out, cache)``; each ``*_backward(dout, cache)`` returns the
gradients of its inputs. Layers with running statistics (batch norm) return ``(out, state,
cache)``: the new :class:`BatchNormState` comes out explicitly and nothing is mutated. Caches
are pytrees of arrays, so forward and backward can be jitted separately.

``jaxfc.ops`` wraps every pair as a ``jax.custom_vjp`` whose backward is the hand-written one.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxfc._checks import check_floating, check_ndim, check_probability, is_concrete

Array = jax.Array

NORMALIZATIONS = (None, "batchnorm", "layernorm")


# --------------------------------------------------------------------------- affine


class AffineCache(NamedTuple):
    x: Array
    w: Array


def affine_forward(x: Array, w: Array, b: Array) -> tuple[Array, AffineCache]:
    """``out = x.reshape(N, D) @ w + b``.

    Args:
      x: inputs of shape (N, d1, ..., dk); flattened in C order to (N, D), D = d1*...*dk.
      w: weights of shape (D, M).
      b: biases of shape (M,).
    """
    check_floating("x", x)
    if jnp.ndim(x) < 1:
        raise ValueError(f"x must have a leading batch axis, got shape {jnp.shape(x)}")
    check_ndim("w", w, 2)
    check_ndim("b", b, 1)
    n = x.shape[0]
    d = 1
    for size in x.shape[1:]:
        d *= size
    if w.shape[0] != d:
        raise ValueError(
            f"x of shape {tuple(x.shape)} flattens to (N, {d}), but w has shape "
            f"{tuple(w.shape)}: expected w of shape ({d}, M)"
        )
    if b.shape[0] != w.shape[1]:
        raise ValueError(
            f"b has shape {tuple(b.shape)} but w has shape {tuple(w.shape)}: "
            f"expected b of shape ({w.shape[1]},)"
        )
    out = x.reshape(n, d) @ w + b[None, :]
    return out, AffineCache(x, w)


def affine_backward(dout: Array, cache: AffineCache) -> tuple[Array, Array, Array]:
    """Returns ``(dx, dw, db)``: ``dx = dout @ w.T`` (in x's shape), ``dw = x2.T @ dout``,
    ``db = sum(dout, axis=0)``."""
    x, w = cache
    x2 = x.reshape(x.shape[0], -1)
    dx = (dout @ w.T).reshape(x.shape)
    dw = x2.T @ dout
    db = jnp.sum(dout, axis=0)
    return dx, dw, db


# --------------------------------------------------------------------------- relu


def relu_forward(x: Array) -> tuple[Array, Array]:
    """``out = max(x, 0)``; the cache is x. Written as ``where(x > 0, x, 0)`` so that
    ``jax.grad`` of the forward also gives 0 at exactly 0 (``jnp.maximum`` would give 0.5)."""
    check_floating("x", x)
    return jnp.where(x > 0, x, jnp.zeros_like(x)), x


def relu_backward(dout: Array, cache: Array) -> Array:
    """``dx = dout * (x > 0)``: the gradient at exactly 0 is 0."""
    return jnp.where(cache > 0, dout, jnp.zeros_like(dout))


# --------------------------------------------------------------------------- batch norm


class BatchNormState(NamedTuple):
    """Running statistics of one batch-norm layer (non-trainable model state)."""

    running_mean: Array
    running_var: Array

    @classmethod
    def zeros(cls, num_features: int, dtype=jnp.float32) -> BatchNormState:
        """cs231n's initial statistics: mean 0, variance 0."""
        zeros = jnp.zeros((num_features,), dtype)
        return cls(zeros, zeros)


class BatchNormCache(NamedTuple):
    """Intermediates of the training-mode computational graph."""

    x_centered: Array
    inv_std: Array
    std: Array
    x_hat: Array
    gamma: Array


class LayerNormCache(NamedTuple):
    """Intermediates of layer norm (per-row statistics)."""

    x_centered: Array
    inv_std: Array
    std: Array
    x_hat: Array
    gamma: Array


class NormEvalCache(NamedTuple):
    """Evaluation mode is an affine map: ``dx = dout * gamma * inv_std``."""

    x_hat: Array
    inv_std: Array
    gamma: Array


def _check_norm_args(x, gamma, beta) -> None:
    check_floating("x", x)
    check_ndim("x", x, 2)
    for name, p in (("gamma", gamma), ("beta", beta)):
        if tuple(jnp.shape(p)) != (x.shape[1],):
            raise ValueError(
                f"{name} must have shape ({x.shape[1]},) to match x of shape "
                f"{tuple(x.shape)}, got shape {tuple(jnp.shape(p))}"
            )


def _normalize_with_batch_stats(x, gamma, beta, eps, axis, cache_type=BatchNormCache):
    mean = jnp.mean(x, axis=axis, keepdims=True)
    x_centered = x - mean
    var = jnp.mean(x_centered**2, axis=axis, keepdims=True)
    std = jnp.sqrt(var + eps)
    inv_std = 1.0 / std
    x_hat = x_centered * inv_std
    out = gamma[None, :] * x_hat + beta[None, :]
    return out, mean, var, cache_type(x_centered, inv_std, std, x_hat, gamma)


def batchnorm_forward(
    x: Array,
    gamma: Array,
    beta: Array,
    state: BatchNormState,
    *,
    train: bool,
    momentum: float = 0.9,
    eps: float = 1e-5,
) -> tuple[Array, BatchNormState, BatchNormCache | NormEvalCache]:
    """Batch normalization over the batch axis of x (N, D).

    Training: ``x_hat = (x - mean_B) / sqrt(var_B + eps)`` with the batch mean and the biased
    batch variance; ``out = gamma * x_hat + beta``; the running statistics become
    ``momentum * running + (1 - momentum) * batch_stat`` (cs231n's convention; PyTorch's
    ``momentum`` is our ``1 - momentum`` and it keeps the unbiased variance).
    Evaluation: normalize with the running statistics, returned unchanged.

    Returns ``(out, new_state, cache)``. ``train`` is a Python bool (static under jit).
    """
    _check_norm_args(x, gamma, beta)
    if not isinstance(state, BatchNormState):
        state = BatchNormState(*state)
    for name, s in zip(BatchNormState._fields, state, strict=True):
        if tuple(jnp.shape(s)) != (x.shape[1],):
            raise ValueError(
                f"state.{name} must have shape ({x.shape[1]},) to match x of shape "
                f"{tuple(x.shape)}, got shape {tuple(jnp.shape(s))}"
            )
    if train:
        out, mean, var, cache = _normalize_with_batch_stats(x, gamma, beta, eps, axis=0)
        new_state = BatchNormState(
            momentum * state.running_mean + (1 - momentum) * mean[0],
            momentum * state.running_var + (1 - momentum) * var[0],
        )
        return out, new_state, cache
    inv_std = 1.0 / jnp.sqrt(state.running_var + eps)
    x_hat = (x - state.running_mean[None, :]) * inv_std[None, :]
    out = gamma[None, :] * x_hat + beta[None, :]
    return out, state, NormEvalCache(x_hat, inv_std[None, :], gamma)


def _eval_norm_backward(dout, cache: NormEvalCache):
    dx = dout * cache.gamma[None, :] * cache.inv_std
    return dx, jnp.sum(dout * cache.x_hat, axis=0), jnp.sum(dout, axis=0)


def batchnorm_backward(dout: Array, cache) -> tuple[Array, Array, Array]:
    """``(dx, dgamma, dbeta)`` by walking the forward's computational graph node by node."""
    if isinstance(cache, NormEvalCache):
        return _eval_norm_backward(dout, cache)
    x_centered, inv_std, std, x_hat, gamma = cache
    n = dout.shape[0]
    dbeta = jnp.sum(dout, axis=0)
    dgamma = jnp.sum(dout * x_hat, axis=0)
    dx_hat = dout * gamma[None, :]
    # x_hat = x_centered * inv_std
    dinv_std = jnp.sum(dx_hat * x_centered, axis=0, keepdims=True)
    dx_centered = dx_hat * inv_std
    # inv_std = 1 / std;  std = sqrt(var + eps);  var = mean(x_centered ** 2)
    dstd = -dinv_std / std**2
    dvar = 0.5 * dstd / std
    dsquares = jnp.ones_like(x_centered) * dvar / n
    dx_centered = dx_centered + 2 * x_centered * dsquares
    # x_centered = x - mean;  mean = mean(x)
    dmean = -jnp.sum(dx_centered, axis=0, keepdims=True)
    dx = dx_centered + jnp.ones_like(x_centered) * dmean / n
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout: Array, cache) -> tuple[Array, Array, Array]:
    """Closed form of :func:`batchnorm_backward` (same cache, same result):

    ``dx = gamma * inv_std / N * (N * dout - sum(dout) - x_hat * sum(dout * x_hat))``.
    """
    if isinstance(cache, NormEvalCache):
        return _eval_norm_backward(dout, cache)
    _, inv_std, _, x_hat, gamma = cache
    n = dout.shape[0]
    dbeta = jnp.sum(dout, axis=0)
    dgamma = jnp.sum(dout * x_hat, axis=0)
    dx = (gamma[None, :] * inv_std / n) * (
        n * dout - dbeta[None, :] - x_hat * dgamma[None, :]
    )
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------- layer norm


def layernorm_forward(
    x: Array, gamma: Array, beta: Array, *, eps: float = 1e-5
) -> tuple[Array, LayerNormCache]:
    """Layer normalization of x (N, D): each row normalized by its own mean and biased
    variance over the D features, then ``gamma * x_hat + beta``. The same in training and
    evaluation, and independent of the other rows of the batch."""
    _check_norm_args(x, gamma, beta)
    out, _, _, cache = _normalize_with_batch_stats(x, gamma, beta, eps, 1, LayerNormCache)
    return out, cache


def layernorm_backward(dout: Array, cache: LayerNormCache) -> tuple[Array, Array, Array]:
    """``(dx, dgamma, dbeta)``, closed form over the feature axis:
    ``dx = inv_std / D * (D * g - sum_j g - x_hat * sum_j(g * x_hat))`` with ``g = dout*gamma``."""
    _, inv_std, _, x_hat, gamma = cache
    d = dout.shape[1]
    dbeta = jnp.sum(dout, axis=0)
    dgamma = jnp.sum(dout * x_hat, axis=0)
    dx_hat = dout * gamma[None, :]
    dx = (inv_std / d) * (
        d * dx_hat
        - jnp.sum(dx_hat, axis=1, keepdims=True)
        - x_hat * jnp.sum(dx_hat * x_hat, axis=1, keepdims=True)
    )
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------- dropout


def dropout_mask(key: Array, shape, p, dtype=jnp.float32) -> Array:
    """Inverted-dropout mask: each entry is kept with probability ``1 - p`` and then scaled
    by ``1 / (1 - p)``, so the expected value of ``x * mask`` is x. ``p`` may be traced."""
    keep = jax.random.uniform(key, shape) >= p
    return keep.astype(dtype) / (1 - jnp.asarray(p, dtype))


def dropout_forward(
    x: Array, *, p, train: bool, key: Array | None = None
) -> tuple[Array, Array | None]:
    """Inverted dropout. ``p`` is the DROP probability (0 disables), as in PyTorch, Flax and
    the seed's ``FullyConnectedNet(dropout=...)``; not the keep probability of cs231n 2018+
    or stax's ``rate``.

    Training: ``out = x * mask`` (see :func:`dropout_mask`), mask drawn from ``key``.
    Evaluation, or a concrete ``p == 0``: the identity, and the cache is None.
    """
    check_floating("x", x)
    check_probability("p (dropout)", p)
    if not train or (is_concrete(p) and float(p) == 0.0):
        return x, None
    if key is None:
        raise ValueError(
            "dropout in training mode needs a PRNG key: pass key=jax.random.key(...) "
            "(or train=False, or p=0 to disable dropout)"
        )
    mask = dropout_mask(key, x.shape, p, x.dtype)
    return x * mask, mask


def dropout_backward(dout: Array, cache: Array | None) -> Array:
    """``dx = dout * mask`` (the identity when the forward was)."""
    return dout if cache is None else dout * cache


# --------------------------------------------------------------------------- sandwiches


def affine_relu_forward(x: Array, w: Array, b: Array):
    """affine -> relu. Returns ``(out, (affine_cache, relu_cache))``."""
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout: Array, cache) -> tuple[Array, Array, Array]:
    """Returns ``(dx, dw, db)``."""
    fc_cache, relu_cache = cache
    return affine_backward(relu_backward(dout, relu_cache), fc_cache)


class FCBlockCache(NamedTuple):
    affine: AffineCache
    norm: BatchNormCache | LayerNormCache | NormEvalCache | None
    relu: Array
    dropout: Array | None


def affine_norm_relu_dropout_forward(
    x: Array,
    w: Array,
    b: Array,
    gamma: Array | None = None,
    beta: Array | None = None,
    bn_state: BatchNormState | None = None,
    *,
    normalization: str | None = None,
    train: bool = False,
    dropout=0.0,
    key: Array | None = None,
    momentum: float = 0.9,
    eps: float = 1e-5,
) -> tuple[Array, BatchNormState | None, FCBlockCache]:
    """affine -> [batchnorm | layernorm] -> relu -> [dropout], one hidden block of
    ``FullyConnectedNet``. Returns ``(out, new_bn_state, cache)``; the state is None unless
    ``normalization == 'batchnorm'``. ``dropout`` is the drop probability."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
        )
    a, fc_cache = affine_forward(x, w, b)
    norm_cache = None
    if normalization == "batchnorm":
        if bn_state is None:
            raise ValueError("normalization='batchnorm' needs bn_state (a BatchNormState)")
        a, bn_state, norm_cache = batchnorm_forward(
            a, gamma, beta, bn_state, train=train, momentum=momentum, eps=eps
        )
    elif normalization == "layernorm":
        a, norm_cache = layernorm_forward(a, gamma, beta, eps=eps)
    out, relu_cache = relu_forward(a)
    out, dropout_cache = dropout_forward(out, p=dropout, train=train, key=key)
    state = bn_state if normalization == "batchnorm" else None
    return out, state, FCBlockCache(fc_cache, norm_cache, relu_cache, dropout_cache)


def affine_norm_relu_dropout_backward(dout: Array, cache: FCBlockCache):
    """Returns ``(dx, dw, db, dgamma, dbeta)``; dgamma and dbeta are None without a norm."""
    da = relu_backward(dropout_backward(dout, cache.dropout), cache.relu)
    dgamma = dbeta = None
    if isinstance(cache.norm, NormEvalCache):
        da, dgamma, dbeta = _eval_norm_backward(da, cache.norm)
    elif isinstance(cache.norm, LayerNormCache):
        da, dgamma, dbeta = layernorm_backward(da, cache.norm)
    elif cache.norm is not None:
        da, dgamma, dbeta = batchnorm_backward_alt(da, cache.norm)
    dx, dw, db = affine_backward(da, cache.affine)
    return dx, dw, db, dgamma, dbeta
