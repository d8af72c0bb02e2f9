"""cs231n ``optim.py``: the update rules as ``(w, dw, config=None) -> (next_w, config)``.

Each rule fills missing ``config`` entries with the assignment's defaults
(``config.setdefault``), runs one step of the matching :mod:`jaxfc.optim` optimizer, and
stores the new optimizer state back into the same ``config`` dict (``velocity``, ``cache``,
``m``, ``v``, ``t``), which it returns. Hyperparameters are passed to the core in ``w``'s
dtype, so float64 weights get float64 arithmetic throughout.

Adam increments ``t`` before the bias correction (``t`` starts at 0), as in cs231n 2018+.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxfc import optim as core
from jaxfc.cs231n._convert import compute, to_numpy

__all__ = ["adam", "rmsprop", "sgd", "sgd_momentum"]

# config key -> field of the core optimizer state
_SLOTS = {
    "sgd": {},
    "sgd_momentum": {"velocity": "velocity"},
    "rmsprop": {"cache": "cache"},
    "adam": {"m": "m", "v": "v", "t": "count"},
}


@functools.cache
def _core_rule(name):
    """The jitted core update, its state type and hyperparameter names (learnt once)."""
    opt = core.get_optimizer(name)
    template = opt.init(jnp.zeros((1,), jnp.float32))
    return jax.jit(opt.update), type(template), tuple(template.hyperparams)


def _step(name, w, dw, config):
    update, state_type, hyper_names = _core_rule(name)
    w, dw = np.asarray(w), np.asarray(dw)
    slots = _SLOTS[name]
    arrays = [config[key] for key in slots if key != "t"]
    with compute(w, dw, *arrays):
        fields = {
            field: jnp.asarray(config[key], jnp.int32) if key == "t" else jnp.asarray(config[key])
            for key, field in slots.items()
        }
        hyperparams = {k: jnp.asarray(config[k], w.dtype) for k in hyper_names}
        next_w, state = update(w, dw, state_type(hyperparams=hyperparams, **fields))
        for key, field in slots.items():
            value = getattr(state, field)
            config[key] = int(value) if key == "t" else to_numpy(value)
        return to_numpy(next_w)


def sgd(w, dw, config=None):
    """Vanilla SGD: ``w -= learning_rate * dw``.

    config: ``learning_rate`` (1e-2).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    return _step("sgd", w, dw, config), config


def sgd_momentum(w, dw, config=None):
    """SGD with momentum: ``v = momentum * v - learning_rate * dw; w += v``.

    config: ``learning_rate`` (1e-2), ``momentum`` (0.9), ``velocity`` (zeros like w).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    config.setdefault("velocity", np.zeros_like(w))
    return _step("sgd_momentum", w, dw, config), config


def rmsprop(w, dw, config=None):
    """RMSProp: ``cache = decay_rate * cache + (1 - decay_rate) * dw**2;
    w -= learning_rate * dw / (sqrt(cache) + epsilon)``.

    config: ``learning_rate`` (1e-2), ``decay_rate`` (0.99), ``epsilon`` (1e-8), ``cache``
    (zeros like w).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", np.zeros_like(w))
    return _step("rmsprop", w, dw, config), config


def adam(w, dw, config=None):
    """Adam with bias correction: ``t += 1; m = beta1 * m + (1 - beta1) * dw;
    v = beta2 * v + (1 - beta2) * dw**2; w -= learning_rate * (m / (1 - beta1**t)) /
    (sqrt(v / (1 - beta2**t)) + epsilon)``.

    config: ``learning_rate`` (1e-3), ``beta1`` (0.9), ``beta2`` (0.999), ``epsilon`` (1e-8),
    ``m`` and ``v`` (zeros like w), ``t`` (0).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", np.zeros_like(w))
    config.setdefault("v", np.zeros_like(w))
    config.setdefault("t", 0)
    return _step("adam", w, dw, config), config
