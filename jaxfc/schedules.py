"""Learning-rate schedules: pure functions ``schedule(count) -> learning rate``.

A schedule is a plain callable. ``count`` may be a Python int or a (traced) integer array, so
schedules work inside ``jit`` and ``scan``; the result is a float32 scalar array. Arguments are
validated eagerly, when the schedule is built. A negative ``count`` is treated as 0.

The optimizers in :mod:`jaxfc.optim` keep the learning rate as an array hyperparameter; the
Solver applies a schedule once per epoch (or step) with::

    state = set_hyperparams(state, learning_rate=schedule(epoch))

which never recompiles the jitted update. ``step_decay(lr, lr_decay)`` is the cs231n Solver's
per-epoch ``lr_decay``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp

Schedule = Callable[[int | jax.Array], jax.Array]

__all__ = ["Schedule", "constant", "exponential_decay", "step_decay", "warmup_cosine"]


def _number(name, value, *, lo=None, lo_open=False, hi=None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    bad = not math.isfinite(v)
    if lo is not None:
        bad |= v <= lo if lo_open else v < lo
    if hi is not None:
        bad |= v > hi
    if bad:
        lo_s = "-inf" if lo is None else lo
        hi_s = "inf" if hi is None else hi
        raise ValueError(
            f"{name} must be finite and in {'(' if lo_open else '['}{lo_s}, {hi_s}], got {value!r}"
        )
    return v


def _integer(name, value, *, lo) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value!r}")
    return int(value)


def _count(count) -> jax.Array:
    c = jnp.asarray(count)
    if c.shape != ():
        raise ValueError(f"count must be a scalar, got shape {c.shape}")
    return jnp.maximum(c, 0)


def constant(lr: float) -> Schedule:
    """``lr`` at every count."""
    lr = _number("lr", lr, lo=0.0)

    def schedule(count):
        _count(count)
        return jnp.asarray(lr, jnp.float32)

    return schedule


def step_decay(lr: float, decay: float, every: int = 1) -> Schedule:
    """``lr * decay ** (count // every)``.

    With ``every=1`` and ``count`` the epoch this is the cs231n Solver's ``lr_decay`` (the rate is
    multiplied by ``decay`` after each epoch). PyTorch ``StepLR(step_size=every, gamma=decay)``.
    """
    lr = _number("lr", lr, lo=0.0)
    decay = _number("decay", decay, lo=0.0, lo_open=True)
    every = _integer("every", every, lo=1)

    def schedule(count):
        k = (_count(count) // every).astype(jnp.float32)
        return jnp.float32(lr) * jnp.float32(decay) ** k

    return schedule


def exponential_decay(
    lr: float, decay_rate: float, decay_steps: int, staircase: bool = False
) -> Schedule:
    """``lr * decay_rate ** (count / decay_steps)``; with ``staircase`` the exponent is floored.

    As Optax ``exponential_decay(lr, decay_steps, decay_rate, staircase=...)`` without its
    ``transition_begin`` / ``end_value``.
    """
    lr = _number("lr", lr, lo=0.0)
    decay_rate = _number("decay_rate", decay_rate, lo=0.0, lo_open=True)
    decay_steps = _integer("decay_steps", decay_steps, lo=1)
    if not isinstance(staircase, bool):
        raise TypeError(f"staircase must be a bool, got {staircase!r}")

    def schedule(count):
        p = _count(count).astype(jnp.float32) / decay_steps
        if staircase:
            p = jnp.floor(p)
        return jnp.float32(lr) * jnp.float32(decay_rate) ** p

    return schedule


def warmup_cosine(
    peak_lr: float,
    warmup_steps: int,
    total_steps: int,
    init_lr: float = 0.0,
    end_lr: float = 0.0,
) -> Schedule:
    """Linear warm-up from ``init_lr`` to ``peak_lr``, then cosine decay to ``end_lr``::

        count < warmup_steps:  init_lr + (peak_lr - init_lr) * count / warmup_steps
        otherwise:             end_lr + (peak_lr - end_lr) * (1 + cos(pi * p)) / 2,
                               p = min(1, (count - warmup_steps) / (total_steps - warmup_steps))

    So ``schedule(0) = init_lr`` (``peak_lr`` when ``warmup_steps=0``),
    ``schedule(warmup_steps) = peak_lr`` and ``schedule(count) = end_lr`` for
    ``count >= total_steps``. ``total_steps`` counts the warm-up, as Optax
    ``warmup_cosine_decay_schedule``'s ``decay_steps``.
    """
    peak_lr = _number("peak_lr", peak_lr, lo=0.0)
    init_lr = _number("init_lr", init_lr, lo=0.0)
    end_lr = _number("end_lr", end_lr, lo=0.0)
    warmup_steps = _integer("warmup_steps", warmup_steps, lo=0)
    total_steps = _integer("total_steps", total_steps, lo=1)
    if total_steps <= warmup_steps:
        raise ValueError(
            f"total_steps must be > warmup_steps, got total_steps={total_steps}, "
            f"warmup_steps={warmup_steps}"
        )

    def schedule(count):
        c = _count(count).astype(jnp.float32)
        warm = init_lr + (peak_lr - init_lr) * c / max(warmup_steps, 1)
        p = jnp.minimum((c - warmup_steps) / (total_steps - warmup_steps), 1.0)
        cos = end_lr + (peak_lr - end_lr) * 0.5 * (1.0 + jnp.cos(jnp.pi * p))
        return jnp.where(c < warmup_steps, warm, cos).astype(jnp.float32)

    return schedule
