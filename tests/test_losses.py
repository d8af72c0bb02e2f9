"""Tests for jaxfc.losses: dscores against jax.vjp and numeric gradients (float64), eager and
jitted; known values from plain NumPy; numerical stability; argument errors."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from jaxfc import losses
from jaxfc.gradcheck import rel_error

TOL = 1e-7
# Hypothesis examples share the function-scoped x64 context: that is intended.
x64_settings = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]
LOSSES = [pytest.param(losses.softmax_loss, id="softmax"), pytest.param(losses.svm_loss, id="svm")]
# (N, C): one sample, one class, a few of each; few shapes so that compilations are reused.
SHAPES = [(1, 4), (3, 1), (5, 7)]


def hinge_margins(scores, y):
    """``s_ij - s_iy_i + 1`` for j != y_i, and 1 at the label (the hinge's kinks are at 0)."""
    onehot = jax.nn.one_hot(y, scores.shape[1], dtype=scores.dtype)
    correct = jnp.sum(scores * onehot, axis=1, keepdims=True)
    return jnp.where(onehot > 0, 1.0, scores - correct + 1)


@functools.cache
def batched_loss(loss_fn):
    """``points (P, N, C), y -> (loss at each point, hinge margins at each point)``."""

    def one(scores, y):
        return loss_fn(scores, y)[0], hinge_margins(scores, y)

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def numerical_gradient(loss_fn, scores, y, h: float = 1e-3):
    """Numeric d loss / d scores by centered differences at steps h and h/2 combined by one
    Richardson step (error O(h^4)); all points in one vmapped call. Returns ``(grad, crossed)``,
    crossed True when a step changed the sign of a hinge margin (no derivative there).
    Differences within a few ulps of the loss are dropped: a batched reduction may round
    identical rows differently at different batch positions."""
    x = np.asarray(scores, np.float64)
    n = x.size
    basis = np.eye(n).reshape((n, *x.shape))
    steps = np.array([h, -h, h / 2, -h / 2]).reshape(4, 1, 1, 1)
    points = (x[None, None] + steps * basis[None]).reshape((4 * n, *x.shape))
    values, margins = batched_loss(loss_fn)(jnp.asarray(points), y)
    values = np.asarray(values, np.float64).reshape(4, n)
    signs = np.sign(np.asarray(margins)).reshape(4 * n, -1)
    crossed = bool(np.any(signs != signs[:1]) or np.any(signs == 0))

    def difference(plus, minus):
        diff = plus - minus
        ulps = 8 * np.finfo(np.float64).eps * np.maximum(np.abs(plus), np.abs(minus))
        return np.where(np.abs(diff) <= ulps, 0.0, diff)

    d_h = difference(values[0], values[1]) / (2 * h)
    d_h2 = difference(values[2], values[3]) / h
    return ((4 * d_h2 - d_h) / 3).reshape(x.shape), crossed


def draw(seed, n, c, scale=1.0):
    rng = np.random.default_rng(seed)
    scores = jnp.asarray(scale * rng.standard_normal((n, c)))  # float64 under x64
    y = jnp.asarray(rng.integers(0, c, n), jnp.int32)
    return scores, y


@functools.cache
def loss_value(loss_fn):
    return jax.jit(lambda scores, y: loss_fn(scores, y)[0])


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("loss_fn", LOSSES)
@x64_settings
@given(shape=st.sampled_from(SHAPES), scale=st.sampled_from([0.1, 1.0, 3.0]),
       seed=st.integers(0, 2**32 - 1))
def test_dscores_match_vjp_and_numeric(x64, loss_fn, transform, shape, scale, seed):
    scores, y = draw(seed, *shape, scale=scale)
    loss, dscores = transform(loss_fn)(scores, y)
    assert loss.shape == () and loss.dtype == jnp.float64
    assert dscores.shape == scores.shape and dscores.dtype == jnp.float64
    value, vjp = jax.vjp(lambda s: loss_value(loss_fn)(s, y), scores)
    np.testing.assert_allclose(loss, value, rtol=1e-14)
    (ref,) = vjp(jnp.ones((), jnp.float64))
    err_vjp = rel_error(dscores, ref)
    assert err_vjp <= TOL, err_vjp
    if scale > 1.0:
        # Probabilities of exp(-15) give dscores entries below what a finite difference of
        # an O(1) loss resolves (rounding eps * loss / h); compared with jax.vjp only.
        return
    num, crossed = numerical_gradient(loss_fn, scores, y)
    assume(not (crossed and loss_fn is losses.svm_loss))  # a step straddled a hinge kink
    err_num = rel_error(dscores, num)
    assert err_num <= TOL, err_num


def test_gradient_error_table(x64, capsys):
    """Max relative errors of dscores over fixed seeds; printed (run with -s) and bounded."""
    rows = []
    for loss_fn in (losses.softmax_loss, losses.svm_loss):
        worst_vjp = worst_num = 0.0
        for seed in range(4):
            for shape in SHAPES:
                scores, y = draw(seed, *shape)
                _, dscores = loss_fn(scores, y)
                ref = jax.grad(lambda s: loss_value(loss_fn)(s, y))(scores)  # noqa: B023
                num, crossed = numerical_gradient(loss_fn, scores, y)
                assert not (crossed and loss_fn is losses.svm_loss)
                worst_vjp = max(worst_vjp, rel_error(dscores, ref))
                worst_num = max(worst_num, rel_error(dscores, num))
        rows.append((loss_fn.__name__, worst_vjp, worst_num))
    with capsys.disabled():
        print("\nmax relative error of dscores (float64)")
        for name, e_vjp, e_num in rows:
            print(f"{name:14s} vs jax.vjp {e_vjp:9.2e}   vs numeric {e_num:9.2e}")
    for name, e_vjp, e_num in rows:
        assert e_vjp <= TOL and e_num <= TOL, (name, e_vjp, e_num)


# ----------------------------------------------------------------------------- known values


def numpy_softmax_loss(scores, y):
    """Straight from the definition, without the max shift (fine for moderate scores)."""
    exp = np.exp(scores)
    probs = exp / exp.sum(axis=1, keepdims=True)
    n = scores.shape[0]
    loss = -np.mean(np.log(probs[np.arange(n), y]))
    dscores = probs.copy()
    dscores[np.arange(n), y] -= 1
    return loss, dscores / n


def numpy_svm_loss(scores, y):
    """cs231n's naive double loop."""
    n, c = scores.shape
    loss, dscores = 0.0, np.zeros_like(scores)
    for i in range(n):
        for j in range(c):
            if j == y[i]:
                continue
            margin = scores[i, j] - scores[i, y[i]] + 1
            if margin > 0:
                loss += margin
                dscores[i, j] += 1
                dscores[i, y[i]] -= 1
    return loss / n, dscores / n


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize(
    "loss_fn, reference",
    [(losses.softmax_loss, numpy_softmax_loss), (losses.svm_loss, numpy_svm_loss)],
    ids=["softmax", "svm"],
)
@pytest.mark.parametrize("shape", SHAPES)
def test_known_values_from_numpy(x64, transform, loss_fn, reference, shape):
    for seed in range(3):
        scores, y = draw(seed, *shape, scale=2.0)
        loss, dscores = transform(loss_fn)(scores, y)
        expected_loss, expected_dscores = reference(np.asarray(scores), np.asarray(y))
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(dscores, expected_dscores, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("c", [1, 2, 10, 100])
def test_tiny_scores_give_log_c_and_c_minus_one(transform, c):
    """With scores near 0, softmax is uniform (loss ln C) and every margin is 1 (loss C - 1)."""
    scores, y = draw(0, 50, c, scale=1e-4)
    scores = scores.astype(jnp.float32)
    softmax, dsoftmax = transform(losses.softmax_loss)(scores, y)
    svm, _ = transform(losses.svm_loss)(scores, y)
    np.testing.assert_allclose(softmax, math.log(c), atol=1e-3)
    np.testing.assert_allclose(svm, c - 1, atol=1e-3 * c)
    onehot = np.eye(c)[np.asarray(y)]
    np.testing.assert_allclose(dsoftmax, (1 / c - onehot) / 50, atol=1e-5)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_softmax_is_finite_and_right_for_scores_in_the_thousands(transform, dtype):
    scores = jnp.array([[1000.0, 0.0, -1000.0], [-3000.0, -1000.0, 2000.0],
                        [5000.0, 5000.0, -5000.0]], dtype)
    y = jnp.array([0, 1, 1])
    loss, dscores = transform(losses.softmax_loss)(scores, y)
    assert np.isfinite(np.asarray(loss, np.float64)) and np.all(np.isfinite(dscores))
    # Row losses: 0 (exp(-1000) vanishes), 2000 + 1000, and ln 2 + 0 (two equal top scores).
    np.testing.assert_allclose(float(loss), (0.0 + 3000.0 + math.log(2)) / 3, rtol=1e-2)
    expected = np.array([[1.0, 0, 0], [0, 0, 1], [0.5, 0.5, 0]]) - np.eye(3)[[0, 1, 1]]
    np.testing.assert_allclose(np.asarray(dscores, np.float64), expected / 3, atol=1e-3)


def test_softmax_large_random_scores_match_a_stable_reference(x64):
    scores, y = draw(5, 6, 8, scale=3000.0)
    loss, dscores = losses.softmax_loss(scores, y)
    s = np.asarray(scores)
    shifted = s - s.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(loss, -log_probs[np.arange(6), np.asarray(y)].mean(), rtol=1e-12)
    expected = np.exp(log_probs) - np.eye(8)[np.asarray(y)]
    np.testing.assert_allclose(dscores, expected / 6, atol=1e-15)


def test_svm_margin_exactly_zero_has_no_gradient(x64):
    """A margin of exactly 0 adds nothing to the loss and nothing to dscores (cs231n)."""
    scores = jnp.array([[2.0, 1.0, 0.5]])  # margin of class 1 is 1 - 2 + 1 = 0
    loss, dscores = losses.svm_loss(scores, jnp.array([0]))
    assert float(loss) == 0.0
    np.testing.assert_array_equal(dscores, 0.0)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_minus_inf_score_of_another_class(transform):
    """A class scored -inf (a masked logit) has probability 0 and no margin: the losses stay
    finite. Row [-inf, 0, 1] with label 1: softmax loss ln(1 + e) (the -inf class adds
    exp(-inf) = 0 to the sum); hinge margins 0 (class 0) and 1 - 0 + 1 = 2 (class 2)."""
    scores = jnp.array([[-jnp.inf, 0.0, 1.0]])
    y = jnp.array([1])
    softmax, dsoftmax = transform(losses.softmax_loss)(scores, y)
    np.testing.assert_allclose(softmax, math.log(1 + math.e), rtol=1e-6)
    p = 1 / (1 + math.e)
    np.testing.assert_allclose(dsoftmax, [[0.0, p - 1, 1 - p]], rtol=1e-6)
    svm, dsvm = transform(losses.svm_loss)(scores, y)
    np.testing.assert_allclose(svm, 2.0, rtol=1e-6)
    np.testing.assert_array_equal(dsvm, [[0.0, -1.0, 1.0]])


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("loss_fn", LOSSES)
def test_label_type_and_shape_errors(transform, loss_fn):
    fn = transform(loss_fn)
    scores = jnp.zeros((3, 5))
    with pytest.raises(TypeError, match="y must hold integer class labels, got dtype float32"):
        fn(scores, jnp.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="y must hold integer class labels, got dtype bool"):
        fn(scores, jnp.array([True, False, True]))
    with pytest.raises(ValueError, match=r"y must have shape \(3,\) to match 3 samples, "
                                         r"got shape \(4,\)"):
        fn(scores, jnp.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"y must have shape \(3,\).*got shape \(3, 1\)"):
        fn(scores, jnp.array([[0], [1], [2]]))
    with pytest.raises(ValueError, match=r"scores must be 2-dimensional, got shape \(5,\)"):
        fn(jnp.zeros(5), jnp.array([0]))
    with pytest.raises(TypeError, match="scores must be a floating-point array, got dtype int"):
        fn(jnp.zeros((3, 5), jnp.int32), jnp.array([0, 1, 2]))


@pytest.mark.parametrize("loss_fn", LOSSES)
@pytest.mark.parametrize(
    "labels, seen", [([0, 5, 1], r"\[0, 5\]"), ([-1, 2, 4], r"\[-1, 4\]"), ([9, 9, 9], r"\[9, 9\]")]
)
def test_labels_out_of_range_raise_on_concrete_input(loss_fn, labels, seen):
    with pytest.raises(ValueError, match=rf"y holds labels in {seen}, outside the 5 classes "
                                         r"\[0, 4\]"):
        loss_fn(jnp.zeros((3, 5)), jnp.array(labels))
    with pytest.raises(ValueError, match="outside the 5 classes"):
        loss_fn(np.zeros((3, 5), np.float32), np.array(labels))


def test_get_loss():
    assert losses.get_loss("softmax") is losses.softmax_loss
    assert losses.get_loss("svm") is losses.svm_loss
    for name in ("hinge", "Softmax", ""):
        with pytest.raises(ValueError, match=rf"loss must be one of \('softmax', 'svm'\), "
                                             rf"got '{name}'"):
            losses.get_loss(name)
