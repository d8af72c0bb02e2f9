"""Tests for jaxfc.layers: every hand-written backward against ``jax.vjp`` and numeric
gradients (float64), eager and jitted; known values; batch-norm, layer-norm and dropout
semantics; argument errors."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from jaxfc import layers
from jaxfc.gradcheck import numerical_vjp as library_numerical_vjp
from jaxfc.gradcheck import rel_error
from jaxfc.layers import BatchNormState

TOL = 1e-7
# Hypothesis examples share the function-scoped x64 context: that is intended.
x64_settings = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]


# ----------------------------------------------------------------------------- helpers


def numerical_vjps(f: Callable, xs: tuple, dout, h: float = 1e-3):
    """Numeric ``sum_j dout_j * d out_j / d x_i`` for every element i of every input (float64).

    ``f(xs) -> (out, kink)`` is a batched function (``jax.vmap`` over every entry of xs); kink
    (or None) holds values whose sign must not change within a step (the input of a relu, the
    margins of a hinge). Centered differences at steps h and h/2, combined by one Richardson
    step (error O(h^4)); all perturbed points go through one call of f. Returns
    ``(grads, crossed)``, crossed True when a perturbed point changed the sign pattern of kink
    (that difference straddles a kink and is no derivative).

    A batched matmul can round an output that x_i does not touch differently at different batch
    positions, so output differences within a few ulps of the output are dropped: they are
    below what a finite difference resolves.

    Why not ``jaxfc.gradcheck.numerical_vjp``: it compiles a fresh function on every call
    (about a second per input here), too slow for hypothesis; its h=1e-5 centered difference
    also has more rounding error. test_numeric_helper_agrees_with_gradcheck ties the two.
    """
    xs = [np.asarray(x, np.float64) for x in xs]
    sizes = [x.size for x in xs]
    total = sum(sizes)
    steps = np.array([h, -h, h / 2, -h / 2])
    points, offset = [], 0
    for x in xs:  # point (s, offset_k + i) perturbs element i of input k by steps[s]
        batch = np.broadcast_to(x.reshape(-1), (4, total, x.size)).copy()
        batch[:, offset + np.arange(x.size), np.arange(x.size)] += steps[:, None]
        points.append(jnp.asarray(batch.reshape((4 * total, *x.shape))))
        offset += x.size
    outs, kinks = f(tuple(points))
    outs = np.asarray(outs, np.float64).reshape(4, total, -1)
    crossed = False
    if kinks is not None:
        kinks = np.sign(np.asarray(kinks)).reshape(4 * total, -1)
        crossed = bool(np.any(kinks != kinks[:1]) or np.any(kinks == 0))
    dout = np.asarray(dout, np.float64).reshape(-1)

    def weighted_difference(plus, minus):
        diff = plus - minus
        ulps = 8 * np.finfo(np.float64).eps * np.maximum(np.abs(plus), np.abs(minus))
        return np.where(np.abs(diff) <= ulps, 0.0, diff) @ dout

    d_h = weighted_difference(outs[0], outs[1]) / (2 * h)
    d_h2 = weighted_difference(outs[2], outs[3]) / h
    flat = (4 * d_h2 - d_h) / 3
    bounds = np.cumsum([0, *sizes])
    grads = [flat[a:b].reshape(x.shape) for a, b, x in zip(bounds, bounds[1:], xs, strict=False)]
    return grads, crossed


# ----------------------------------------------------------------------------- cases
# A case is a forward of the differentiable inputs ``xs`` (a tuple) and of ``aux`` (a dict of
# non-differentiable inputs: batch-norm state, dropout p and key), the hand-written backward
# returning one gradient per entry of ``xs``, and a maker of random float64 inputs from the
# shape parameters (n, dims, m): n samples of feature shape dims, m outputs of an affine layer.


class Case(NamedTuple):
    name: str
    forward: Callable[[tuple, dict], tuple[Any, Any]]
    backward: Callable[[Any, Any], tuple]
    make: Callable[[np.random.Generator, int, tuple, int], tuple[tuple, dict]]
    relu_input: Callable[[Any], Any] | None = None  # cache -> input of the relu (its kink)
    # Inputs whose gradient is identically zero: compared in absolute terms.
    zero_grads: tuple[int, ...] = ()


def _bn_state(rng, d):
    return BatchNormState(rng.standard_normal(d), rng.uniform(0.5, 2.0, d))


def _norm_params(rng, d):
    return 1.0 + 0.5 * rng.standard_normal(d), rng.standard_normal(d)


def make_affine(rng, n, dims, m):
    d = math.prod(dims)
    x = rng.standard_normal((n, *dims))
    return (x, rng.standard_normal((d, m)), rng.standard_normal(m)), {}


def make_x(rng, n, dims, m):
    return (rng.standard_normal((n, *dims)),), {}


def make_norm(rng, n, dims, m):
    d = math.prod(dims)
    x = 3.0 * rng.standard_normal((n, d)) + rng.standard_normal(d)
    return (x, *_norm_params(rng, d)), {"state": _bn_state(rng, d)}


def _dropout_aux(rng):
    return {"p": rng.uniform(0.1, 0.7), "key": jax.random.key(int(rng.integers(2**31)))}


def make_dropout(rng, n, dims, m):
    return make_x(rng, n, dims, m)[0], _dropout_aux(rng)


def make_block(with_norm: bool):
    def make(rng, n, dims, m):
        (x, w, b), _ = make_affine(rng, n, dims, m)
        aux = {**_dropout_aux(rng), "state": _bn_state(rng, m)}
        return ((x, w, b, *_norm_params(rng, m)) if with_norm else (x, w, b)), aux

    return make


def affine_fwd(xs, aux):
    return layers.affine_forward(*xs)


def relu_fwd(xs, aux):
    return layers.relu_forward(*xs)


def relu_bwd(dout, cache):
    return (layers.relu_backward(dout, cache),)


def bn_fwd(train: bool):
    def fwd(xs, aux):
        out, _, cache = layers.batchnorm_forward(*xs, aux["state"], train=train)
        return out, cache

    return fwd


def layernorm_fwd(xs, aux):
    return layers.layernorm_forward(*xs)


def dropout_fwd(xs, aux):
    return layers.dropout_forward(*xs, p=aux["p"], train=True, key=aux["key"])


def dropout_bwd(dout, cache):
    return (layers.dropout_backward(dout, cache),)


def affine_relu_fwd(xs, aux):
    return layers.affine_relu_forward(*xs)


def block_fwd(normalization, train: bool, dropout: bool):
    def fwd(xs, aux):
        x, w, b, *norm = xs
        gamma, beta = norm if norm else (None, None)
        out, _, cache = layers.affine_norm_relu_dropout_forward(
            x, w, b, gamma, beta, aux["state"], normalization=normalization, train=train,
            dropout=aux["p"] if dropout else 0.0, key=aux["key"] if dropout else None,
        )
        return out, cache

    return fwd


def block_bwd(num_inputs: int):
    def bwd(dout, cache):
        grads = layers.affine_norm_relu_dropout_backward(dout, cache)
        assert len(grads) == 5
        assert all(g is None for g in grads[num_inputs:])  # no norm: dgamma = dbeta = None
        return grads[:num_inputs]

    return bwd


def _block_cases():
    cases = []
    for norm in (None, "batchnorm", "layernorm"):
        for train, drop in ((True, False), (True, True), (False, False)):
            if norm is None and not train:
                continue  # the same computation as training without dropout
            # In training, batch norm normalizes a shift of a feature away: db == 0.
            zero = (2,) if norm == "batchnorm" and train else ()
            mode = ("train" if train else "eval") + ("+dropout" if drop else "")
            cases.append(Case(
                f"affine_{norm or 'nonorm'}_relu_dropout[{mode}]", block_fwd(norm, train, drop),
                block_bwd(3 if norm is None else 5), make_block(norm is not None),
                relu_input=block_relu_input, zero_grads=zero,
            ))
    return cases


def block_relu_input(cache):
    return cache.relu


def relu_input(cache):
    return cache


def affine_relu_input(cache):
    return cache[1]


BN_TRAIN, BN_EVAL = bn_fwd(True), bn_fwd(False)
CASES = [
    Case("affine", affine_fwd, layers.affine_backward, make_affine),
    Case("relu", relu_fwd, relu_bwd, make_x, relu_input=relu_input),
    Case("batchnorm[train]", BN_TRAIN, layers.batchnorm_backward, make_norm),
    Case("batchnorm_alt[train]", BN_TRAIN, layers.batchnorm_backward_alt, make_norm),
    Case("batchnorm[eval]", BN_EVAL, layers.batchnorm_backward, make_norm),
    Case("batchnorm_alt[eval]", BN_EVAL, layers.batchnorm_backward_alt, make_norm),
    Case("layernorm", layernorm_fwd, layers.layernorm_backward, make_norm),
    Case("dropout", dropout_fwd, dropout_bwd, make_dropout),
    Case("affine_relu", affine_relu_fwd, layers.affine_relu_backward, make_affine,
         relu_input=affine_relu_input),
    *_block_cases(),
]
CASE_PARAMS = [pytest.param(c, id=c.name) for c in CASES]


def build(case: Case, seed: int, n: int, dims: tuple, m: int):
    """Float64 inputs, aux and an upstream gradient for ``case``."""
    rng = np.random.default_rng(seed)
    xs, aux = case.make(rng, n, dims, m)
    xs = tuple(jnp.asarray(x, jnp.float64) for x in xs)
    if "state" in aux:
        aux["state"] = BatchNormState(*(jnp.asarray(s, jnp.float64) for s in aux["state"]))
    out_shape = jax.eval_shape(lambda xs: case.forward(xs, aux)[0], xs).shape
    dout = jnp.asarray(rng.standard_normal(out_shape), jnp.float64)
    return xs, aux, dout


@functools.cache
def references(forward, relu_input):
    """One compiled function per forward (the cases of batchnorm and batchnorm_alt share it):
    ``(points, xs, aux, dout) -> ((outs, kinks) at every point, jax.vjp of out wrt xs)``."""

    def out_and_kink(xs, aux):
        out, cache = forward(xs, aux)
        return out, None if relu_input is None else relu_input(cache)

    def refs(points, xs, aux, dout):
        _, vjp = jax.vjp(lambda *xs: forward(xs, aux)[0], *xs)
        return jax.vmap(out_and_kink, in_axes=(0, None))(points, aux), vjp(dout)

    return jax.jit(refs)


# When the numeric comparison measures the finite difference rather than the backward, the
# example is not used for it (hypothesis draws another):
# - an entry below RESOLVABLE, nonzero by a chance cancellation: the difference resolves an
#   entry to about 1e-13 (rounding of O(1) outputs over the step);
# - a normalized group (batch-norm column, layer-norm row) with a standard deviation below
#   MIN_NORM_STD: the output curves on that scale and the O(h^4) truncation error grows as
#   (h / std)^4 (about 1e-6 at std 0.03 with h = 1e-3).
RESOLVABLE = 1e-4
MIN_NORM_STD = 0.1


class GradErrors(NamedTuple):
    vjp: float  # max relative error against jax.vjp
    numeric: float  # max relative error against numeric gradients (0 when not compared)
    usable: bool  # numerics comparable: no step straddled a kink, see RESOLVABLE, MIN_NORM_STD


def norm_stds(cache) -> np.ndarray:
    """The standard deviations (sqrt(var + eps)) a training-mode norm divided by, if any; none
    for groups of one element, which normalize to a constant 0."""
    norm = cache.norm if isinstance(cache, layers.FCBlockCache) else cache
    if isinstance(norm, (layers.BatchNormCache, layers.LayerNormCache)):
        if norm.x_centered.size > norm.std.size:
            return np.asarray(norm.std)
    return np.ones(1)


def check_gradients(case: Case, xs, aux, dout, numeric: bool = True) -> GradErrors:
    """Errors of the (eager) hand-written backward against jax.vjp and numeric gradients, max
    over inputs. Inputs whose gradient is identically zero are checked here in absolute terms.
    """
    _, cache = case.forward(xs, aux)
    grads = case.backward(dout, cache)
    assert len(grads) == len(xs)
    ref = []

    def batched(points):
        outs, vjp = references(case.forward, case.relu_input)(points, xs, aux, dout)
        ref.extend(vjp)
        return outs

    nums, crossed = numerical_vjps(batched, xs, dout)
    err_vjp = err_num = 0.0
    usable = not crossed and float(np.min(norm_stds(cache))) >= MIN_NORM_STD
    for k, (x, g, r, num) in enumerate(zip(xs, grads, ref, nums, strict=True)):
        assert g.shape == x.shape and g.dtype == jnp.float64, (case.name, k, g.shape, g.dtype)
        if k in case.zero_grads:
            scale = float(np.max(np.abs(dout))) * max(1.0, float(np.max(np.abs(x))))
            for name, v in (("manual", g), ("vjp", r), ("numeric", num)):
                if name != "numeric" or numeric:
                    assert np.max(np.abs(v)) <= 1e-9 * scale, (case.name, k, name, v)
            continue
        err_vjp = max(err_vjp, rel_error(g, r))
        r = np.abs(np.asarray(r))
        usable &= not np.any((r > 0) & (r < RESOLVABLE))
        if numeric:
            err_num = max(err_num, rel_error(g, num))
    return GradErrors(err_vjp, err_num, usable or not numeric)


# ----------------------------------------------------------------------------- gradients
# Shapes (n, dims, m): N = 1, N = 2, k-dimensional inputs; few of them, so that compiled
# functions are reused across examples.
SHAPES = [(1, (2, 3, 4), 3), (2, (5,), 4), (4, (2, 3), 3)]
SEEDS = st.integers(0, 2**32 - 1)


def numeric_is_meaningful(case: Case, n: int) -> bool:
    """False where dx is O(eps) in every entry, so that any finite difference is rounding: a
    batch of 2 normalized in training (x_hat = +-1 up to eps). Such shapes are checked
    against jax.vjp only."""
    return not (n == 2 and "train" in case.name and "batchnorm" in case.name)


@pytest.mark.parametrize("case", CASE_PARAMS)
@x64_settings
@given(shape=st.sampled_from(SHAPES), seed=SEEDS)
def test_backward_matches_vjp_and_numeric(x64, case, shape, seed):
    xs, aux, dout = build(case, seed, *shape)
    errors = check_gradients(case, xs, aux, dout, numeric_is_meaningful(case, shape[0]))
    assert errors.vjp <= TOL, (case.name, errors)
    assume(errors.usable)  # a step straddled a relu kink, or an entry is below resolution
    assert errors.numeric <= TOL, (case.name, errors)


@pytest.mark.parametrize("name", ["affine", "layernorm", "affine_relu"])
def test_numeric_helper_agrees_with_gradcheck(x64, name):
    case = next(c for c in CASES if c.name == name)
    xs, aux, dout = build(case, 0, *SHAPES[2])
    nums, crossed = numerical_vjps(
        lambda points: references(case.forward, case.relu_input)(points, xs, aux, dout)[0],
        xs, dout,
    )
    assert not crossed
    for k, num in enumerate(nums):
        def f(v, k=k):
            return case.forward((*xs[:k], v, *xs[k + 1 :]), aux)[0]

        assert rel_error(num, library_numerical_vjp(f, xs[k], dout)) <= 1e-7, (name, k)


def test_gradient_error_table(x64, capsys):
    """Max relative errors per layer, three usable seeds per shape (the first from 1000 on);
    printed (run with -s) and bounded."""
    rows = []
    for case in CASES:
        worst_vjp = worst_num = 0.0
        for shape in SHAPES:
            seeds = iter(range(1000, 1020))
            for _ in range(3):
                while not (errors := check_gradients(
                    case, *build(case, next(seeds), *shape), numeric_is_meaningful(case, shape[0])
                )).usable:
                    pass
                worst_vjp, worst_num = max(worst_vjp, errors.vjp), max(worst_num, errors.numeric)
        rows.append((case.name, worst_vjp, worst_num))
    with capsys.disabled():
        print("\nmax relative error of the hand-written backward (float64)")
        print(f"{'layer':46s} {'vs jax.vjp':>11s} {'vs numeric':>11s}")
        for name, e_vjp, e_num in rows:
            print(f"{name:46s} {e_vjp:11.2e} {e_num:11.2e}")
    for name, e_vjp, e_num in rows:
        assert e_vjp <= TOL and e_num <= TOL, (name, e_vjp, e_num)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("case", CASE_PARAMS)
@x64_settings
@given(seed=SEEDS)
def test_backward_transformed_separately(x64, case, transform, seed):
    """Forward and backward transformed on their own: the cache crosses the boundary as a
    pytree of arrays with its structure (NamedTuple types included) intact, and the results
    equal the eager ones (checked against jax.vjp and numerics above). One shape (k-dim
    inputs), so that each case compiles once."""
    xs, aux, dout = build(case, seed, *SHAPES[2])
    out, cache = transform(case.forward)(xs, aux)
    eager_out, eager_cache = case.forward(xs, aux)
    assert jax.tree.structure(cache) == jax.tree.structure(eager_cache)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(cache))
    chex.assert_trees_all_close(cache, eager_cache, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out, eager_out, rtol=1e-12, atol=1e-12)
    grads = transform(case.backward)(dout, cache)
    eager_grads = case.backward(dout, eager_cache)
    for k, (g, e) in enumerate(zip(grads, eager_grads, strict=True)):
        assert g.shape == xs[k].shape
        assert rel_error(g, e) <= 1e-12 or np.max(np.abs(g - e)) <= 1e-12, (case.name, k)


@x64_settings
@given(nd=st.sampled_from([(1, 3), (2, 5), (4, 6), (7, 1)]), seed=SEEDS)
def test_batchnorm_backward_equals_alt(x64, nd, seed):
    """The graph walk and the closed form agree to rounding: dx relative to the size of its
    terms, gamma * inv_std * |dout| (the terms cancel to O(eps) for a batch of 2)."""
    n, d = nd
    xs, aux, dout = build(CASES[2], seed, n, (d,), 1)
    for forward in (BN_TRAIN, BN_EVAL):
        _, cache = forward(xs, aux)
        dx, dgamma, dbeta = layers.batchnorm_backward(dout, cache)
        dx_alt, dgamma_alt, dbeta_alt = layers.batchnorm_backward_alt(dout, cache)
        scale = np.abs(np.asarray(xs[1]) * np.asarray(cache.inv_std)) * np.max(np.abs(dout))
        assert np.max(np.abs(dx - dx_alt) / scale) <= 1e-12
        np.testing.assert_allclose(dgamma, dgamma_alt, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(dbeta, dbeta_alt, rtol=1e-12, atol=1e-300)


# ----------------------------------------------------------------------------- known values


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("x_shape", [(1, 3), (2, 2, 3, 4), (5, 7)])
def test_affine_matches_numpy(x64, transform, x_shape):
    rng = np.random.default_rng(0)
    d, m = math.prod(x_shape[1:]), 4
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal((d, m)), rng.standard_normal(m)
    out, cache = transform(layers.affine_forward)(jnp.asarray(x), jnp.asarray(w), jnp.asarray(b))
    expected = np.array([[sum(x.reshape(x_shape[0], d)[i, k] * w[k, j] for k in range(d)) + b[j]
                          for j in range(m)] for i in range(x_shape[0])])
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    dout = rng.standard_normal((x_shape[0], m))
    dx, dw, db = transform(layers.affine_backward)(jnp.asarray(dout), cache)
    np.testing.assert_allclose(dx, (dout @ w.T).reshape(x_shape), rtol=1e-12)
    np.testing.assert_allclose(dw, x.reshape(x_shape[0], d).T @ dout, rtol=1e-12)
    np.testing.assert_allclose(db, dout.sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_relu_known_values(transform):
    x = jnp.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    out, cache = transform(layers.relu_forward)(x)
    np.testing.assert_array_equal(out, [[0.0, 0.0, 0.0, 0.5, 3.0]])
    dx = transform(layers.relu_backward)(jnp.full((1, 5), 2.0), cache)
    np.testing.assert_array_equal(dx, [[0.0, 0.0, 0.0, 2.0, 2.0]])  # 0 at exactly 0
    assert float(jax.grad(lambda x: layers.relu_forward(x)[0].sum())(jnp.float32(0.0))) == 0.0


def _bn_data(n=200, d=4, seed=0):
    rng = np.random.default_rng(seed)
    scale, shift = np.array([5.0, 0.1, 1.0, 30.0])[:d], np.array([3.0, -2.0, 0.0, 100.0])[:d]
    x = rng.standard_normal((n, d)) * scale + shift
    gamma, beta = np.array([1.0, 2.0, 0.5, 3.0])[:d], np.array([0.0, -1.0, 2.0, 4.0])[:d]
    return x, gamma, beta


def _bn_state_of(mean, var):
    return BatchNormState(jnp.asarray(mean), jnp.asarray(var))


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_batchnorm_training_output_has_mean_beta_and_std_gamma(x64, transform):
    x, gamma, beta = _bn_data()
    state = _bn_state_of(np.zeros(4), np.zeros(4))
    fwd = transform(functools.partial(layers.batchnorm_forward, train=True))
    out, _, _ = fwd(jnp.asarray(x), jnp.asarray(gamma), jnp.asarray(beta), state)
    out = np.asarray(out)
    np.testing.assert_allclose(out.mean(axis=0), beta, atol=1e-12)
    var = x.var(axis=0)
    np.testing.assert_allclose(out.std(axis=0), gamma * np.sqrt(var / (var + 1e-5)), rtol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), gamma, rtol=1e-3)  # eps matters for std 0.1


@pytest.mark.parametrize("momentum", [0.9, 0.5])
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_batchnorm_running_averages_over_steps(x64, transform, momentum):
    """``r = momentum * r + (1 - momentum) * batch`` with the biased variance, from zeros."""
    fwd = transform(functools.partial(layers.batchnorm_forward, train=True, momentum=momentum))
    rng = np.random.default_rng(1)
    gamma, beta = jnp.ones(3), jnp.zeros(3)
    state = BatchNormState.zeros(3, jnp.float64)
    mean, var = np.zeros(3), np.zeros(3)
    for step in range(5):
        x = rng.standard_normal((6, 3)) * (step + 1) + step
        _, state, _ = fwd(jnp.asarray(x), gamma, beta, state)
        mean = momentum * mean + (1 - momentum) * x.mean(axis=0)
        var = momentum * var + (1 - momentum) * x.var(axis=0, ddof=0)
        assert isinstance(state, BatchNormState)
        np.testing.assert_allclose(state.running_mean, mean, rtol=1e-12)
        np.testing.assert_allclose(state.running_var, var, rtol=1e-12)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_batchnorm_eval_uses_running_stats_and_keeps_state(x64, transform):
    x, gamma, beta = _bn_data(n=7)
    running_mean, running_var = np.array([1.0, -2.0, 0.5, 90.0]), np.array([4.0, 0.01, 2.0, 800.0])
    state = _bn_state_of(running_mean, running_var)
    fwd = transform(functools.partial(layers.batchnorm_forward, train=False))
    args = (jnp.asarray(gamma), jnp.asarray(beta), state)
    out, new_state, _ = fwd(jnp.asarray(x), *args)
    expected = gamma * (x - running_mean) / np.sqrt(running_var + 1e-5) + beta
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    for new, old in zip(new_state, state, strict=True):
        np.testing.assert_array_equal(new, old)
    # Each row only sees the running statistics, not the rest of the batch.
    out_row, _, _ = fwd(jnp.asarray(x[2:3]), *args)
    np.testing.assert_allclose(out_row, out[2:3], rtol=1e-12)
    # Training mode normalizes with the batch statistics instead.
    out_train, _, _ = layers.batchnorm_forward(jnp.asarray(x), *args, train=True)
    assert not np.allclose(out_train, out)


def test_batchnorm_training_ignores_running_stats(x64):
    x, gamma, beta = (jnp.asarray(a) for a in _bn_data(n=5))
    a, state_a, _ = layers.batchnorm_forward(
        x, gamma, beta, _bn_state_of(np.zeros(4), np.zeros(4)), train=True)
    b, state_b, _ = layers.batchnorm_forward(
        x, gamma, beta, _bn_state_of(np.full(4, 7.0), np.full(4, 3.0)), train=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.asarray(state_b.running_mean) - state_a.running_mean, 0.9 * 7.0)


@x64_settings
@given(nd=st.sampled_from([(2, 5), (4, 6), (3, 1)]), row=st.integers(0, 3), seed=SEEDS)
def test_layernorm_rows_are_independent(x64, nd, row, seed):
    n, d = nd
    row = row % n
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * 3 + 1
    gamma, beta = jnp.asarray(rng.standard_normal(d)), jnp.asarray(rng.standard_normal(d))
    out, _ = layers.layernorm_forward(jnp.asarray(x), gamma, beta)
    other = rng.standard_normal((n, d)) * 10 - 4
    other[row] = x[row]
    out_other, _ = layers.layernorm_forward(jnp.asarray(other), gamma, beta)
    np.testing.assert_allclose(out_other[row], out[row], rtol=1e-13, atol=1e-13)
    out_alone, _ = layers.layernorm_forward(jnp.asarray(x[row : row + 1]), gamma, beta)
    np.testing.assert_allclose(out_alone[0], out[row], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_layernorm_matches_numpy(x64, transform):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 6)) * np.array([[1.0], [10.0], [0.1]]) + 5.0
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    args = (jnp.asarray(a) for a in (x, gamma, beta))
    out, _ = transform(layers.layernorm_forward)(*args)
    mean, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    np.testing.assert_allclose(out, gamma * (x - mean) / np.sqrt(var + 1e-5) + beta, rtol=1e-12)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_layernorm_block_same_in_training_and_evaluation(x64, transform):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    args = tuple(jnp.asarray(a) for a in (x, w, b, gamma, beta))
    outs = []
    for train in (True, False):
        fwd = transform(functools.partial(
            layers.affine_norm_relu_dropout_forward, normalization="layernorm", train=train))
        out, state, cache = fwd(*args)
        assert state is None and isinstance(cache.norm, layers.LayerNormCache)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])


# ----------------------------------------------------------------------------- sandwiches


@pytest.mark.parametrize("normalization", layers.NORMALIZATIONS)
@pytest.mark.parametrize("train", [True, False])
def test_block_equals_composition_of_layers(x64, normalization, train):
    rng = np.random.default_rng(4)
    x, w, b = (jnp.asarray(rng.standard_normal(s)) for s in ((4, 2, 3), (6, 5), (5,)))
    gamma, beta = jnp.asarray(rng.uniform(0.5, 2, 5)), jnp.asarray(rng.standard_normal(5))
    state = _bn_state_of(rng.standard_normal(5), rng.uniform(0.5, 2, 5))
    key = jax.random.key(7)
    out, new_state, _ = layers.affine_norm_relu_dropout_forward(
        x, w, b, gamma, beta, state, normalization=normalization, train=train, dropout=0.3,
        key=key)
    a, _ = layers.affine_forward(x, w, b)
    expected_state = None
    if normalization == "batchnorm":
        a, expected_state, _ = layers.batchnorm_forward(a, gamma, beta, state, train=train)
    elif normalization == "layernorm":
        a, _ = layers.layernorm_forward(a, gamma, beta)
    a, _ = layers.relu_forward(a)
    expected, _ = layers.dropout_forward(a, p=0.3, train=train, key=key)
    np.testing.assert_array_equal(out, expected)
    chex.assert_trees_all_equal(new_state, expected_state)
    if normalization is None and not train:
        np.testing.assert_array_equal(out, layers.affine_relu_forward(x, w, b)[0])


# ----------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_dropout_statistics(transform, p):
    n = 200_000
    x = jnp.ones((n // 100, 100))
    out, mask = transform(functools.partial(layers.dropout_forward, train=True))(
        x, p=p, key=jax.random.key(0))
    out = np.asarray(out)
    zeroed = float(np.mean(out == 0))
    assert abs(zeroed - p) <= 5 * math.sqrt(p * (1 - p) / n), zeroed
    # Kept entries are scaled by 1 / (1 - p): the mean stays x's, within 5 sigma.
    np.testing.assert_allclose(out[out != 0], 1 / (1 - p), rtol=1e-6)
    assert abs(out.mean() - 1.0) <= 5 * math.sqrt(p / (1 - p) / n)
    np.testing.assert_array_equal(out, np.asarray(mask))


def test_dropout_masks_follow_the_key():
    x = jnp.ones((50, 40))

    def fwd(key):
        return np.asarray(layers.dropout_forward(x, p=0.5, train=True, key=key)[0])

    np.testing.assert_array_equal(fwd(jax.random.key(1)), fwd(jax.random.key(1)))
    np.testing.assert_array_equal(fwd(jax.random.PRNGKey(1)), fwd(jax.random.PRNGKey(1)))
    assert not np.array_equal(fwd(jax.random.key(1)), fwd(jax.random.key(2)))
    # Eager and jitted draw the same mask from the same key, with p traced under jit.
    jitted = jax.jit(lambda x, p, key: layers.dropout_forward(x, p=p, train=True, key=key)[0])
    np.testing.assert_array_equal(jitted(x, 0.5, jax.random.key(1)), fwd(jax.random.key(1)))


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_dropout_identity_in_eval_and_for_p_zero(transform):
    x = jax.random.normal(jax.random.key(0), (8, 5))
    for kwargs in ({"p": 0.5, "train": False}, {"p": 0.5, "train": False, "key": None},
                   {"p": 0.0, "train": True}):
        out, cache = transform(functools.partial(layers.dropout_forward, **kwargs))(x)
        np.testing.assert_array_equal(out, x)
        assert cache is None
        np.testing.assert_array_equal(layers.dropout_backward(x, cache), x)


def test_dropout_backward_multiplies_by_the_mask():
    x = jax.random.normal(jax.random.key(0), (6, 4))
    out, mask = layers.dropout_forward(x, p=0.25, train=True, key=jax.random.key(3))
    dout = jax.random.normal(jax.random.key(1), (6, 4))
    np.testing.assert_allclose(layers.dropout_backward(dout, mask), dout * mask, rtol=1e-6)
    np.testing.assert_allclose(out, x * mask, rtol=1e-6)


def test_dropout_training_without_key_raises():
    with pytest.raises(ValueError, match="key"):
        layers.dropout_forward(jnp.ones((2, 3)), p=0.5, train=True)
    with pytest.raises(ValueError, match="key"):
        layers.affine_norm_relu_dropout_forward(
            jnp.ones((2, 3)), jnp.ones((3, 2)), jnp.ones(2), train=True, dropout=0.5)


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, float("nan")])
def test_dropout_probability_out_of_range_raises(p):
    for train in (True, False):
        with pytest.raises(ValueError, match=r"p \(dropout\).*\[0, 1\).*got"):
            layers.dropout_forward(jnp.ones((2, 3)), p=p, train=train, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"got " + re.escape(str(float(p)))):
        layers.dropout_forward(jnp.ones((2, 3)), p=jnp.asarray(p), train=True,
                               key=jax.random.key(0))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_affine_shape_errors_name_the_shapes(transform):
    fwd = transform(layers.affine_forward)
    x, w, b = jnp.ones((2, 3, 4)), jnp.ones((12, 5)), jnp.ones(5)
    with pytest.raises(ValueError, match=r"x of shape \(2, 3, 4\) flattens to \(N, 12\), but "
                                         r"w has shape \(11, 5\).*\(12, M\)"):
        fwd(x, jnp.ones((11, 5)), b)
    with pytest.raises(ValueError, match=r"b has shape \(4,\) but w has shape \(12, 5\).*"
                                         r"expected b of shape \(5,\)"):
        fwd(x, w, jnp.ones(4))
    with pytest.raises(ValueError, match=r"w must be 2-dimensional, got shape \(12,\)"):
        fwd(x, jnp.ones(12), b)
    with pytest.raises(ValueError, match=r"b must be 1-dimensional, got shape \(1, 5\)"):
        fwd(x, w, jnp.ones((1, 5)))
    with pytest.raises(TypeError, match="x must be a floating-point array, got dtype int"):
        fwd(jnp.ones((2, 3, 4), jnp.int32), w, b)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_norm_shape_errors_name_the_shapes(transform):
    x, ok = jnp.ones((4, 5)), jnp.ones(5)
    state = BatchNormState.zeros(5)
    bn = transform(functools.partial(layers.batchnorm_forward, train=True))
    ln = transform(layers.layernorm_forward)
    for name, args in (("gamma", (jnp.ones(3), ok)), ("beta", (ok, jnp.ones((5, 1))))):
        shape = re.escape(str(tuple(args[0 if name == "gamma" else 1].shape)))
        pattern = rf"{name} must have shape \(5,\) to match x of shape \(4, 5\), got shape {shape}"
        with pytest.raises(ValueError, match=pattern):
            bn(x, *args, state)
        with pytest.raises(ValueError, match=pattern):
            ln(x, *args)
    for field in BatchNormState._fields:
        bad = state._replace(**{field: jnp.zeros(4)})
        with pytest.raises(ValueError, match=rf"state.{field} must have shape \(5,\) to match x "
                                             r"of shape \(4, 5\), got shape \(4,\)"):
            bn(x, ok, ok, bad)
    with pytest.raises(ValueError, match=r"x must be 2-dimensional, got shape \(4, 5, 1\)"):
        bn(jnp.ones((4, 5, 1)), ok, ok, state)
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        ln(jnp.ones((4, 5), jnp.int32), ok, ok)


def test_block_argument_errors():
    x, w, b = jnp.ones((2, 3)), jnp.ones((3, 4)), jnp.ones(4)
    with pytest.raises(ValueError, match=r"normalization must be one of .*got 'groupnorm'"):
        layers.affine_norm_relu_dropout_forward(x, w, b, normalization="groupnorm")
    with pytest.raises(ValueError, match="bn_state"):
        layers.affine_norm_relu_dropout_forward(
            x, w, b, jnp.ones(4), jnp.ones(4), normalization="batchnorm")
    with pytest.raises(ValueError, match=r"gamma must have shape \(4,\)"):
        layers.affine_norm_relu_dropout_forward(
            x, w, b, jnp.ones(3), jnp.ones(4), normalization="layernorm")
