"""The layer pairs as differentiable ops: ``jax.custom_vjp`` functions whose backward is
the hand-written one from :mod:`jaxfc.layers` and :mod:`jaxfc.losses`.

``jax.grad`` of a composition of these ops runs our backward passes, and the ops compose
with ``jit`` and ``vmap`` like any JAX function::

    def net(params, x, y):
        h = ops.relu(ops.affine(x, params["W1"], params["b1"]))
        return ops.softmax_cross_entropy(ops.affine(h, params["W2"], params["b2"]), y)

    grads = jax.grad(net)(params, x, y)

Configuration that changes the computation (train/eval, eps, momentum) is static.
Non-trainable inputs (labels, running statistics, dropout masks) get zero cotangents.
"""

from __future__ import annotations

import functools

import jax

from jaxfc import layers, losses

Array = jax.Array


@jax.custom_vjp
def affine(x: Array, w: Array, b: Array) -> Array:
    """``x.reshape(N, -1) @ w + b`` (see :func:`jaxfc.layers.affine_forward`)."""
    return layers.affine_forward(x, w, b)[0]


affine.defvjp(layers.affine_forward, lambda cache, dout: layers.affine_backward(dout, cache))


@jax.custom_vjp
def relu(x: Array) -> Array:
    """``max(x, 0)``, gradient 0 at 0."""
    return layers.relu_forward(x)[0]


relu.defvjp(layers.relu_forward, lambda cache, dout: (layers.relu_backward(dout, cache),))


@functools.cache
def _batchnorm_op(train: bool, momentum: float, eps: float, alt: bool):
    def forward(x, gamma, beta, state):
        out, new_state, cache = layers.batchnorm_forward(
            x, gamma, beta, state, train=train, momentum=momentum, eps=eps
        )
        return (out, new_state), cache

    def backward(cache, cotangents):
        dout, _ = cotangents
        bwd = layers.batchnorm_backward_alt if alt else layers.batchnorm_backward
        dx, dgamma, dbeta = bwd(dout, cache)
        return dx, dgamma, dbeta, None

    op = jax.custom_vjp(lambda x, gamma, beta, state: forward(x, gamma, beta, state)[0])
    op.defvjp(forward, backward)
    return op


def batchnorm(
    x: Array,
    gamma: Array,
    beta: Array,
    state: layers.BatchNormState,
    *,
    train: bool,
    momentum: float = 0.9,
    eps: float = 1e-5,
    alt: bool = True,
) -> tuple[Array, layers.BatchNormState]:
    """Batch norm returning ``(out, new_state)``. The running statistics are not trainable:
    their cotangent is zero. ``alt`` picks the closed-form backward (default) or the
    step-by-step one."""
    return _batchnorm_op(bool(train), float(momentum), float(eps), bool(alt))(
        x, gamma, beta, layers.BatchNormState(*state)
    )


@functools.cache
def _layernorm_op(eps: float):
    def forward(x, gamma, beta):
        return layers.layernorm_forward(x, gamma, beta, eps=eps)

    op = jax.custom_vjp(lambda x, gamma, beta: forward(x, gamma, beta)[0])
    op.defvjp(forward, lambda cache, dout: layers.layernorm_backward(dout, cache))
    return op


def layernorm(x: Array, gamma: Array, beta: Array, *, eps: float = 1e-5) -> Array:
    """Layer norm over the feature axis of x (N, D)."""
    return _layernorm_op(float(eps))(x, gamma, beta)


@jax.custom_vjp
def _apply_dropout_mask(x: Array, mask: Array) -> Array:
    return x * mask


_apply_dropout_mask.defvjp(
    lambda x, mask: (x * mask, mask),
    lambda mask, dout: (layers.dropout_backward(dout, mask), None),
)


def dropout(x: Array, *, p, train: bool, key: Array | None = None) -> Array:
    """Inverted dropout with DROP probability ``p`` (see :func:`jaxfc.layers.dropout_forward`)."""
    out, mask = layers.dropout_forward(x, p=p, train=train, key=key)
    return x if mask is None else _apply_dropout_mask(x, mask)


def _loss_op(loss_pair):
    @jax.custom_vjp
    def op(scores, y):
        return loss_pair(scores, y)[0]

    def forward(scores, y):
        loss, dscores = loss_pair(scores, y)
        return loss, dscores

    op.defvjp(forward, lambda dscores, g: (g * dscores, None))
    return op


softmax_cross_entropy = _loss_op(losses.softmax_loss)
softmax_cross_entropy.__doc__ = "Mean softmax cross-entropy; backward from ``softmax_loss``."

multiclass_hinge = _loss_op(losses.svm_loss)
multiclass_hinge.__doc__ = "Mean multiclass hinge loss; backward from ``svm_loss``."
