"""Hand-written first-order optimizers as pure functions over pytrees.

An :class:`Optimizer` is a pair of pure functions ``init(params) -> state`` and
``update(params, grads, state) -> (params, state)``. Both work on any pytree of floating
arrays (a dict like ``{'W1': ..., 'b1': ..., 'gamma1': ...}`` or a single array) and compose
with ``jax.jit``, ``jax.vmap`` and ``jax.lax.scan``.

Every state is a ``NamedTuple`` with a field ``hyperparams``: a dict of scalar float32 arrays
(``learning_rate``, ``momentum``, ...). Because they are arrays, not Python floats baked into a
trace, changing them never recompiles a jitted step, the current value is readable, and a
``jax.vmap`` over them trains several settings at once::

    opt = adam(learning_rate=1e-3)
    state = opt.init(params)
    state = set_hyperparams(state, learning_rate=schedule(epoch))
    params, state = jax.jit(opt.update)(params, grads, state)

Hyperparameters are stored in float32 and cast to each parameter's dtype inside ``update``;
updates are computed in each parameter's dtype (float64 parameters stay float64, though their
hyperparameters carry float32 precision). cs231n ``optim.py`` is the spec for every rule.
"""

from __future__ import annotations

import inspect
import itertools
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util as jtu

Params = Any
Grads = Any
State = Any

__all__ = [
    "OPTIMIZERS",
    "AdagradState",
    "AdamState",
    "MomentumState",
    "Optimizer",
    "RMSPropState",
    "SgdState",
    "adagrad",
    "adam",
    "adamw",
    "clip_by_global_norm",
    "get_hyperparam",
    "get_optimizer",
    "global_norm",
    "learning_rate",
    "nesterov_momentum",
    "rmsprop",
    "set_hyperparams",
    "sgd",
    "sgd_momentum",
]


class Optimizer(NamedTuple):
    """A pair of pure functions; see the module docstring."""

    init: Callable[[Params], State]
    update: Callable[[Params, Grads, State], tuple[Params, State]]


class SgdState(NamedTuple):
    hyperparams: dict[str, jax.Array]


class MomentumState(NamedTuple):
    """State of :func:`sgd_momentum` and :func:`nesterov_momentum` (cs231n ``velocity``)."""

    velocity: Params
    hyperparams: dict[str, jax.Array]


class RMSPropState(NamedTuple):
    """Running average of squared gradients (cs231n ``cache``)."""

    cache: Params
    hyperparams: dict[str, jax.Array]


class AdagradState(NamedTuple):
    """Running sum of squared gradients."""

    cache: Params
    hyperparams: dict[str, jax.Array]


class AdamState(NamedTuple):
    """``count``: int32 steps taken (cs231n ``t``); ``m``, ``v``: uncorrected moments."""

    count: jax.Array
    m: Params
    v: Params
    hyperparams: dict[str, jax.Array]


# ---------------------------------------------------------------------------------------------
# Hyperparameters


def _check_number(name, value, lo=None, hi=None, lo_open=False, hi_open=False):
    """Eager range check of a Python/numpy number; arrays only need to be scalars."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got bool {value!r}")
    if isinstance(value, numbers.Real):
        v = float(value)
        bad = not math.isfinite(v)
        if lo is not None:
            bad |= v <= lo if lo_open else v < lo
        if hi is not None:
            bad |= v >= hi if hi_open else v > hi
        if bad:
            lb = "(" if lo_open else "["
            rb = ")" if hi_open else "]"
            lo_s = "-inf" if lo is None else lo
            hi_s = "inf" if hi is None else hi
            raise ValueError(f"{name} must be finite and in {lb}{lo_s}, {hi_s}{rb}, got {value!r}")
        return
    shape = jnp.shape(value)
    if shape != ():
        raise ValueError(f"{name} must be a scalar, got shape {shape}")


def _float32_scalar(value) -> jax.Array:
    if isinstance(value, (int, float, np.number)):
        return jax.device_put(np.float32(value))  # no eager conversion to compile
    return jnp.asarray(value, dtype=jnp.float32)


def _hyperparams(**values) -> dict[str, jax.Array]:
    return {k: _float32_scalar(v) for k, v in values.items()}


def _hp(state, name, like):
    """Hyperparameter ``name`` cast to the dtype of array ``like``."""
    return state.hyperparams[name].astype(like.dtype)


def _hyperparams_of(state) -> dict:
    hp = getattr(state, "hyperparams", None)
    if not isinstance(hp, dict):
        raise TypeError(
            "expected an optimizer state with a 'hyperparams' dict field, "
            f"got {type(state).__name__}"
        )
    return hp


def get_hyperparam(state, name: str) -> jax.Array:
    """Current value of hyperparameter ``name`` (a float32 array) in an optimizer state."""
    hp = _hyperparams_of(state)
    if name not in hp:
        raise ValueError(f"unknown hyperparameter {name!r}; known: {sorted(hp)}")
    return hp[name]


def learning_rate(state) -> jax.Array:
    """Current learning rate of an optimizer state: ``get_hyperparam(state, 'learning_rate')``."""
    return get_hyperparam(state, "learning_rate")


def set_hyperparams(state, **values):
    """Return a copy of ``state`` with the given hyperparameters replaced.

    Values are cast to float32 scalars; traced values are fine (inside ``jit`` or ``vmap``).
    Unknown names raise ``ValueError`` listing the known ones. To run several values at once,
    ``jax.vmap`` over a function that calls this with a scalar.
    """
    hp = _hyperparams_of(state)
    unknown = sorted(set(values) - set(hp))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}; known: {sorted(hp)}")
    new = dict(hp)
    for name, value in values.items():
        arr = jnp.asarray(value)
        if arr.shape != ():
            raise ValueError(
                f"hyperparameter {name!r} must be a scalar, got shape {arr.shape}; "
                "jax.vmap over scalars to use several values"
            )
        new[name] = arr.astype(jnp.float32)
    return state._replace(hyperparams=new)


# ---------------------------------------------------------------------------------------------
# Pytree checks (run at trace time, so they cost nothing under jit)


def _path_str(path) -> str:
    return jtu.keystr(path, simple=True, separator="/") if path else "<root>"


def _as_float_tree(tree, what: str):
    """Leaves as JAX arrays; non-floating leaves raise TypeError naming the path."""
    tree = jtu.tree_map(jnp.asarray, tree)
    for path, leaf in jtu.tree_leaves_with_path(tree):
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(
                f"{what} leaf {_path_str(path)!r} must be a floating array, got dtype {leaf.dtype}"
            )
    return tree


def _check_like(params, other, what: str) -> None:
    """Raise ValueError naming the first path where ``other`` differs from ``params``."""
    p_leaves, p_def = jtu.tree_flatten_with_path(params)
    o_leaves, o_def = jtu.tree_flatten_with_path(other)
    if p_def != o_def:
        p_paths = [_path_str(p) for p, _ in p_leaves]
        o_paths = [_path_str(p) for p, _ in o_leaves]
        for a, b in itertools.zip_longest(p_paths, o_paths):
            if a != b:
                raise ValueError(
                    f"{what} tree structure differs from params at path {a or b!r} "
                    f"(params has {a!r}, {what} has {b!r}); "
                    f"params structure {p_def}, {what} structure {o_def}"
                )
        raise ValueError(
            f"{what} tree structure differs from params: params {p_def}, {what} {o_def}"
        )
    for (path, p), (_, o) in zip(p_leaves, o_leaves, strict=True):
        if jnp.shape(p) != jnp.shape(o):
            raise ValueError(
                f"{what} shape differs from params at path {_path_str(path)!r}: "
                f"params {jnp.shape(p)}, {what} {jnp.shape(o)}"
            )


def _prepare(params, grads, *state_trees):
    """Validate inputs; return params and grads cast to each parameter's dtype."""
    params = _as_float_tree(params, "params")
    grads = _as_float_tree(grads, "grads")
    _check_like(params, grads, "grads")
    for name, tree in state_trees:
        _check_like(params, tree, name)
    grads = jtu.tree_map(lambda w, g: g.astype(w.dtype), params, grads)
    return params, grads


def _map_unzip(fn, n: int, params, *others):
    """Apply ``fn`` leafwise (it returns an ``n``-tuple) and unzip into ``n`` trees."""
    leaves, treedef = jtu.tree_flatten(params)
    other_leaves = [treedef.flatten_up_to(o) for o in others]
    outs = [fn(*xs) for xs in zip(leaves, *other_leaves, strict=True)]
    return tuple(treedef.unflatten([o[i] for o in outs]) for i in range(n))


def _zeros_like(x):
    """``jnp.zeros_like(x)``; for concrete arrays made on the host and placed like ``x``:
    an eager ``zeros_like`` compiles a program per shape (~30 ms for the first)."""
    if isinstance(x, np.ndarray):
        return jax.device_put(np.zeros_like(x))
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        return jax.device_put(np.zeros(x.shape, x.dtype), x.sharding if x.committed else None)
    return jnp.zeros_like(x)


def _zeros_like_tree(params):
    return jtu.tree_map(_zeros_like, params)


def _check_float_tree(tree, what: str) -> None:
    """Raise TypeError naming the path of a non-floating leaf (without converting)."""
    for path, leaf in jtu.tree_leaves_with_path(tree):
        dtype = leaf.dtype if hasattr(leaf, "dtype") else jnp.asarray(leaf).dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{what} leaf {_path_str(path)!r} must be a floating array, got dtype {dtype}"
            )


# ---------------------------------------------------------------------------------------------
# Optimizers


def sgd(learning_rate: float = 1e-2) -> Optimizer:
    """Vanilla stochastic gradient descent: ``w <- w - lr * dw``. Same in PyTorch/Optax.

    State: ``SgdState(hyperparams={'learning_rate'})``.
    """
    _check_number("learning_rate", learning_rate, lo=0.0)

    def init(params):
        _check_float_tree(params, "params")
        return SgdState(_hyperparams(learning_rate=learning_rate))

    def update(params, grads, state):
        params, grads = _prepare(params, grads)
        new = jtu.tree_map(lambda w, g: w - _hp(state, "learning_rate", w) * g, params, grads)
        return new, state

    return Optimizer(init, update)


def _momentum_optimizer(learning_rate, momentum, step) -> Optimizer:
    """A velocity-based rule: ``step(w, g, v, mu, lr) -> (new_w, new_v)`` per leaf."""
    _check_number("learning_rate", learning_rate, lo=0.0)
    _check_number("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)

    def init(params):
        _check_float_tree(params, "params")
        return MomentumState(
            _zeros_like_tree(params),
            _hyperparams(learning_rate=learning_rate, momentum=momentum),
        )

    def update(params, grads, state):
        params, grads = _prepare(params, grads, ("state.velocity", state.velocity))

        def leaf(w, g, v):
            return step(w, g, v, _hp(state, "momentum", w), _hp(state, "learning_rate", w))

        new, velocity = _map_unzip(leaf, 2, params, grads, state.velocity)
        return new, state._replace(velocity=velocity)

    return Optimizer(init, update)


def sgd_momentum(learning_rate: float = 1e-2, momentum: float = 0.9) -> Optimizer:
    """SGD with momentum, cs231n form::

        v <- mu * v - lr * dw
        w <- w + v

    ``v`` starts at zero. PyTorch/Optax/stax store ``b <- mu * b + dw; w <- w - lr * b``
    instead. With a constant learning rate the two give identical parameters (``v = -lr * b``);
    when the learning rate changes they differ: here ``v`` keeps steps taken at the old rate,
    there the whole buffer is rescaled by the new one.

    State: ``MomentumState(velocity, hyperparams={'learning_rate', 'momentum'})``.
    """

    def step(w, g, v, mu, lr):
        v = mu * v - lr * g
        return w + v, v

    return _momentum_optimizer(learning_rate, momentum, step)


def nesterov_momentum(learning_rate: float = 1e-2, momentum: float = 0.9) -> Optimizer:
    """Nesterov momentum in the cs231n lecture-notes form (Bengio et al. 2012)::

        v_prev = v
        v <- mu * v - lr * dw
        w <- w - mu * v_prev + (1 + mu) * v

    ``dw`` is the gradient at the current ``w``. PyTorch (``nesterov=True``) and Optax
    (``nesterov=True``) use ``b <- mu * b + dw; w <- w - lr * (dw + mu * b)``; from zero state
    and a constant learning rate the parameters agree, as for :func:`sgd_momentum`.

    State: ``MomentumState(velocity, hyperparams={'learning_rate', 'momentum'})``.
    """

    def step(w, g, v_prev, mu, lr):
        v = mu * v_prev - lr * g
        return w - mu * v_prev + (1 + mu) * v, v

    return _momentum_optimizer(learning_rate, momentum, step)


def rmsprop(
    learning_rate: float = 1e-2, decay_rate: float = 0.99, epsilon: float = 1e-8
) -> Optimizer:
    """RMSProp, cs231n form::

        cache <- d * cache + (1 - d) * dw**2
        w <- w - lr * dw / (sqrt(cache) + eps)

    ``cache`` starts at zero; ``eps`` is outside the square root. PyTorch ``RMSprop`` matches
    (``alpha=0.99``, eps outside). Optax ``rmsprop`` defaults to ``decay=0.9`` and puts eps
    inside the square root.

    State: ``RMSPropState(cache, hyperparams={'learning_rate', 'decay_rate', 'epsilon'})``.
    """
    _check_number("learning_rate", learning_rate, lo=0.0)
    _check_number("decay_rate", decay_rate, lo=0.0, hi=1.0)
    _check_number("epsilon", epsilon, lo=0.0)

    def init(params):
        _check_float_tree(params, "params")
        return RMSPropState(
            _zeros_like_tree(params),
            _hyperparams(learning_rate=learning_rate, decay_rate=decay_rate, epsilon=epsilon),
        )

    def update(params, grads, state):
        params, grads = _prepare(params, grads, ("state.cache", state.cache))

        def leaf(w, g, c):
            d = _hp(state, "decay_rate", w)
            c = d * c + (1 - d) * g * g
            lr, eps = _hp(state, "learning_rate", w), _hp(state, "epsilon", w)
            return w - lr * g / (jnp.sqrt(c) + eps), c

        new, cache = _map_unzip(leaf, 2, params, grads, state.cache)
        return new, state._replace(cache=cache)

    return Optimizer(init, update)


def adagrad(learning_rate: float = 1e-2, epsilon: float = 1e-8) -> Optimizer:
    """Adagrad (Duchi et al. 2011), cs231n notes form::

        cache <- cache + dw**2
        w <- w - lr * dw / (sqrt(cache) + eps)

    ``cache`` starts at zero, eps outside the square root, as PyTorch (whose eps default is
    1e-10). Optax ``adagrad`` starts the accumulator at 0.1 and puts eps (1e-7) inside the root.

    State: ``AdagradState(cache, hyperparams={'learning_rate', 'epsilon'})``.
    """
    _check_number("learning_rate", learning_rate, lo=0.0)
    _check_number("epsilon", epsilon, lo=0.0)

    def init(params):
        _check_float_tree(params, "params")
        return AdagradState(
            _zeros_like_tree(params), _hyperparams(learning_rate=learning_rate, epsilon=epsilon)
        )

    def update(params, grads, state):
        params, grads = _prepare(params, grads, ("state.cache", state.cache))

        def leaf(w, g, c):
            c = c + g * g
            lr, eps = _hp(state, "learning_rate", w), _hp(state, "epsilon", w)
            return w - lr * g / (jnp.sqrt(c) + eps), c

        new, cache = _map_unzip(leaf, 2, params, grads, state.cache)
        return new, state._replace(cache=cache)

    return Optimizer(init, update)


_DecayMask = Any  # None | bool | pytree of bools | Callable[[str], bool]


def _default_decay(path, leaf) -> bool:
    for key in reversed(path):
        if isinstance(key, jtu.DictKey):
            return str(key.key).startswith("W")
        if isinstance(key, jtu.GetAttrKey):
            return key.name.startswith("W")
    return leaf.ndim >= 2


def _decay_flags(decay_mask: _DecayMask, params) -> list[bool]:
    """One static bool per leaf of ``params`` (flatten order): decay this leaf or not."""
    leaves = jtu.tree_leaves_with_path(params)
    if decay_mask is None:
        return [_default_decay(p, x) for p, x in leaves]
    if isinstance(decay_mask, bool):
        return [decay_mask] * len(leaves)
    if callable(decay_mask):
        return [bool(decay_mask(_path_str(p))) for p, _ in leaves]
    m_leaves, m_def = jtu.tree_flatten(decay_mask)
    p_def = jtu.tree_structure(params)
    if m_def != p_def:
        raise ValueError(f"decay_mask structure {m_def} differs from params structure {p_def}")
    return [bool(m) for m in m_leaves]


def _adam_like(learning_rate, beta1, beta2, epsilon, weight_decay, decay_mask) -> Optimizer:
    _check_number("learning_rate", learning_rate, lo=0.0)
    _check_number("beta1", beta1, lo=0.0, hi=1.0, hi_open=True)
    _check_number("beta2", beta2, lo=0.0, hi=1.0, hi_open=True)
    _check_number("epsilon", epsilon, lo=0.0)
    hp = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon)
    if weight_decay is not None:
        _check_number("weight_decay", weight_decay, lo=0.0)
        hp["weight_decay"] = weight_decay
        if not (decay_mask is None or isinstance(decay_mask, bool) or callable(decay_mask)):
            decay_mask = jtu.tree_map(bool, decay_mask)  # fail early on non-bool leaves

    def init(params):
        _check_float_tree(params, "params")
        return AdamState(
            jax.device_put(np.zeros((), np.int32)),
            _zeros_like_tree(params),
            _zeros_like_tree(params),
            _hyperparams(**hp),
        )

    def update(params, grads, state):
        params, grads = _prepare(params, grads, ("state.m", state.m), ("state.v", state.v))
        count = state.count + 1
        if weight_decay is None:
            flags = [False] * len(jtu.tree_leaves(params))
        else:
            flags = _decay_flags(decay_mask, params)
        treedef = jtu.tree_structure(params)
        flags_tree = treedef.unflatten(flags)

        def leaf(w, g, m, v, decay):
            b1, b2 = _hp(state, "beta1", w), _hp(state, "beta2", w)
            lr, eps = _hp(state, "learning_rate", w), _hp(state, "epsilon", w)
            t = count.astype(w.dtype)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            step = (m / (1 - b1**t)) / (jnp.sqrt(v / (1 - b2**t)) + eps)
            if decay:
                step = step + _hp(state, "weight_decay", w) * w
            return w - lr * step, m, v

        new, m, v = _map_unzip(leaf, 3, params, grads, state.m, state.v, flags_tree)
        return new, state._replace(count=count, m=m, v=v)

    return Optimizer(init, update)


def adam(
    learning_rate: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
) -> Optimizer:
    """Adam, Kingma & Ba (2015) Algorithm 1, as in cs231n::

        t <- t + 1
        m <- b1 * m + (1 - b1) * dw
        v <- b2 * v + (1 - b2) * dw**2
        mhat = m / (1 - b1**t);  vhat = v / (1 - b2**t)
        w <- w - lr * mhat / (sqrt(vhat) + eps)

    ``m`` and ``v`` are stored uncorrected; the step count is incremented before the bias
    correction. Same as PyTorch ``Adam`` and Optax ``adam`` (eps outside the root, ``eps_root=0``).

    State: ``AdamState(count, m, v, hyperparams={'learning_rate', 'beta1', 'beta2',
    'epsilon'})`` with ``count`` an int32 array.
    """
    return _adam_like(learning_rate, beta1, beta2, epsilon, None, None)


def adamw(
    learning_rate: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    weight_decay: float = 1e-2,
    decay_mask: _DecayMask = None,
) -> Optimizer:
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019)::

        (t, m, v, mhat, vhat as in adam)
        w <- w - lr * (mhat / (sqrt(vhat) + eps) + wd * w)      for decayed leaves
        w <- w - lr * mhat / (sqrt(vhat) + eps)                 for the others

    The decay is scaled by the learning rate, as in PyTorch ``AdamW`` (default ``wd=1e-2``) and
    Optax ``adamw`` (default ``wd=1e-4``); the paper's Algorithm 2 uses a separate schedule
    multiplier instead of ``lr``.

    ``decay_mask`` picks the decayed leaves (static, resolved when ``update`` is traced):

    * ``None`` (default): leaves whose innermost dict key (or attribute name) starts with
      ``'W'``, so weights decay and biases ``b*``, ``gamma*``, ``beta*`` do not. A leaf with no
      name anywhere on its path (a bare array, a list) decays when ``ndim >= 2``.
    * a pytree of bools with the structure of ``params``;
    * a callable ``path_str -> bool``, where ``path_str`` is like ``'W1'`` or ``'layers/0/W'``;
    * a bool, for all leaves or none.

    State: ``AdamState(count, m, v, hyperparams)`` with ``hyperparams`` as in :func:`adam` plus
    ``'weight_decay'``.
    """
    return _adam_like(learning_rate, beta1, beta2, epsilon, weight_decay, decay_mask)


# ---------------------------------------------------------------------------------------------
# Wrappers


def global_norm(tree) -> jax.Array:
    """``sqrt(sum of squares of all leaves)``, accumulated in at least float32."""
    leaves = jtu.tree_leaves(tree)
    total = jnp.zeros((), jnp.float32)
    for x in leaves:
        x = jnp.asarray(x)
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        total = total + jnp.sum(x * x)
    return jnp.sqrt(total)


def clip_by_global_norm(optimizer: Optimizer, max_norm: float) -> Optimizer:
    """Wrap ``optimizer`` so that gradients are first rescaled to global norm <= ``max_norm``::

        norm = sqrt(sum over leaves of sum(dw**2))
        dw <- dw * min(1, max_norm / norm)

    As ``torch.nn.utils.clip_grad_norm_`` (without its 1e-6 in the denominator) and Optax
    ``clip_by_global_norm``. The state is the inner optimizer's state with ``'max_norm'`` added
    to its ``hyperparams`` (so ``learning_rate(state)`` and ``set_hyperparams`` keep working).
    """
    _check_number("max_norm", max_norm, lo=0.0, lo_open=True)

    def init(params):
        state = optimizer.init(params)
        hp = _hyperparams_of(state)
        if "max_norm" in hp:
            raise ValueError("optimizer already has a 'max_norm' hyperparameter (clipped twice?)")
        return state._replace(hyperparams={**hp, **_hyperparams(max_norm=max_norm)})

    def update(params, grads, state):
        params, grads = _prepare(params, grads)
        norm = global_norm(grads)
        limit = get_hyperparam(state, "max_norm").astype(norm.dtype)
        over = norm > limit
        scale = jnp.where(over, limit / jnp.where(over, norm, 1), 1)
        grads = jtu.tree_map(lambda g: g * scale.astype(g.dtype), grads)
        return optimizer.update(params, grads, state)

    return Optimizer(init, update)


# ---------------------------------------------------------------------------------------------
# Registry

_REGISTRY: dict[str, Callable[..., Optimizer]] = {
    "sgd": sgd,
    "sgd_momentum": sgd_momentum,
    "nesterov_momentum": nesterov_momentum,
    "rmsprop": rmsprop,
    "adagrad": adagrad,
    "adam": adam,
    "adamw": adamw,
}
_ALIASES = {"momentum": "sgd_momentum", "nesterov": "nesterov_momentum"}

OPTIMIZERS: tuple[str, ...] = tuple(_REGISTRY)


def get_optimizer(name: str, **config) -> Optimizer:
    """Build an optimizer by name, e.g. ``get_optimizer('adam', learning_rate=1e-3)``.

    Names: ``OPTIMIZERS`` plus aliases ``'momentum'`` and ``'nesterov'``. An unknown name or
    config key raises ``ValueError`` listing the valid ones.
    """
    canonical = _ALIASES.get(name, name) if isinstance(name, str) else name
    if canonical not in _REGISTRY:
        raise ValueError(
            f"unknown optimizer {name!r}; valid names: {list(OPTIMIZERS)}, aliases: {_ALIASES}"
        )
    factory = _REGISTRY[canonical]
    valid = list(inspect.signature(factory).parameters)
    unknown = sorted(set(config) - set(valid))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} for optimizer {name!r}; valid: {valid}")
    return factory(**config)
