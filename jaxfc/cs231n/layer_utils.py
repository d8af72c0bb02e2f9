"""cs231n ``layer_utils.py``: "sandwich" layers built from :mod:`jaxfc.cs231n.layers`.

``affine_relu`` is the assignment's; ``affine_bn_relu`` and ``affine_ln_relu`` are the
sandwiches the batch-normalization notebook asks students to add. Caches are tuples of the
inner caches, as in the assignment. ``from jaxfc.cs231n.layer_utils import *`` also exports the
layers, like the assignment's module.
"""

from __future__ import annotations

from jaxfc.cs231n import layers
from jaxfc.cs231n.layers import *  # noqa: F403 - re-exported, as in the assignment
from jaxfc.cs231n.layers import (
    affine_backward,
    affine_forward,
    batchnorm_backward_alt,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
    relu_backward,
    relu_forward,
)

# The assignment's layer_utils starts with ``from cs231n.layers import *``, so its star-import
# also brings the layers; so does this one.
__all__ = [
    *layers.__all__,
    "affine_bn_relu_backward",
    "affine_bn_relu_forward",
    "affine_ln_relu_backward",
    "affine_ln_relu_forward",
    "affine_relu_backward",
    "affine_relu_forward",
]


def affine_relu_forward(x, w, b):
    """affine -> relu. Returns ``(out, cache)`` with ``cache = (fc_cache, relu_cache)``."""
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout, cache):
    """Returns ``(dx, dw, db)``."""
    fc_cache, relu_cache = cache
    return affine_backward(relu_backward(dout, relu_cache), fc_cache)


def affine_bn_relu_forward(x, w, b, gamma, beta, bn_param):
    """affine -> batchnorm -> relu; ``bn_param`` is updated in place. Returns ``(out, cache)``."""
    a, fc_cache = affine_forward(x, w, b)
    an, bn_cache = batchnorm_forward(a, gamma, beta, bn_param)
    out, relu_cache = relu_forward(an)
    return out, (fc_cache, bn_cache, relu_cache)


def affine_bn_relu_backward(dout, cache):
    """Returns ``(dx, dw, db, dgamma, dbeta)``."""
    fc_cache, bn_cache, relu_cache = cache
    dan = relu_backward(dout, relu_cache)
    da, dgamma, dbeta = batchnorm_backward_alt(dan, bn_cache)
    dx, dw, db = affine_backward(da, fc_cache)
    return dx, dw, db, dgamma, dbeta


def affine_ln_relu_forward(x, w, b, gamma, beta, ln_param):
    """affine -> layernorm -> relu. Returns ``(out, cache)``."""
    a, fc_cache = affine_forward(x, w, b)
    an, ln_cache = layernorm_forward(a, gamma, beta, ln_param)
    out, relu_cache = relu_forward(an)
    return out, (fc_cache, ln_cache, relu_cache)


def affine_ln_relu_backward(dout, cache):
    """Returns ``(dx, dw, db, dgamma, dbeta)``."""
    fc_cache, ln_cache, relu_cache = cache
    dan = relu_backward(dout, relu_cache)
    da, dgamma, dbeta = layernorm_backward(dan, ln_cache)
    dx, dw, db = affine_backward(da, fc_cache)
    return dx, dw, db, dgamma, dbeta
