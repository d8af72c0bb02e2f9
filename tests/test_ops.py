"""Tests for jaxfc.ops: custom_vjp ops whose backward is the hand-written one. ``jax.grad``
through a network of ops equals plain-jnp autodiff of the same network; the hand-written
backward is what runs; jit and vmap compose; errors come through."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfc import layers, losses, ops
from jaxfc.layers import BatchNormState

TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]
EPS = 1e-5
N, D1, D2, H, C = 6, 2, 3, 5, 4
P_DROP = 0.3


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    d = D1 * D2
    params = {
        "W1": rng.standard_normal((d, H)), "b1": rng.standard_normal(H),
        "gamma1": rng.uniform(0.5, 2.0, H), "beta1": rng.standard_normal(H),
        "W2": rng.standard_normal((H, H)), "b2": rng.standard_normal(H),
        "gamma2": rng.uniform(0.5, 2.0, H), "beta2": rng.standard_normal(H),
        "W3": rng.standard_normal((H, C)), "b3": rng.standard_normal(C),
    }
    params = {k: jnp.asarray(v) for k, v in params.items()}
    state = BatchNormState(jnp.asarray(rng.standard_normal(H)), jnp.asarray(rng.uniform(0.5, 2, H)))
    x = jnp.asarray(rng.standard_normal((N, D1, D2)))  # k-dimensional inputs
    y = jnp.asarray(rng.integers(0, C, N), jnp.int32)
    return params, state, x, y


# ----------------------------------------------------------------------------- networks


def ops_net(params, state, x, y, *, train, key, head="softmax"):
    """affine -> batchnorm -> relu -> dropout -> affine -> layernorm -> relu -> affine -> loss."""
    h = ops.affine(x, params["W1"], params["b1"])
    h, new_state = ops.batchnorm(h, params["gamma1"], params["beta1"], state, train=train)
    h = ops.dropout(ops.relu(h), p=P_DROP, train=train, key=key)
    h = ops.relu(ops.layernorm(ops.affine(h, params["W2"], params["b2"]),
                               params["gamma2"], params["beta2"]))
    scores = ops.affine(h, params["W3"], params["b3"])
    loss_op = ops.softmax_cross_entropy if head == "softmax" else ops.multiclass_hinge
    return loss_op(scores, y), new_state


def plain_net(params, state, x, y, *, train, key, head="softmax", momentum=0.9):
    """The same network in plain jnp, differentiated by JAX's own autodiff."""
    def affine(h, w, b):
        return h.reshape(h.shape[0], -1) @ w + b[None, :]

    def normalize(h, mean, var, gamma, beta):
        return gamma[None, :] * (h - mean) / jnp.sqrt(var + EPS) + beta[None, :]

    h = affine(x, params["W1"], params["b1"])
    if train:
        mean, var = jnp.mean(h, axis=0), jnp.var(h, axis=0)
        new_state = BatchNormState(momentum * state.running_mean + (1 - momentum) * mean,
                                   momentum * state.running_var + (1 - momentum) * var)
        h = normalize(h, mean[None, :], var[None, :], params["gamma1"], params["beta1"])
    else:
        new_state = state
        h = normalize(h, state.running_mean[None, :], state.running_var[None, :],
                      params["gamma1"], params["beta1"])
    h = jnp.maximum(h, 0)
    if train:  # the documented inverted-dropout mask: keep where uniform >= p
        keep = jax.random.uniform(key, h.shape) >= P_DROP
        h = h * keep / (1 - P_DROP)
    h = affine(h, params["W2"], params["b2"])
    mean, var = jnp.mean(h, axis=1, keepdims=True), jnp.var(h, axis=1, keepdims=True)
    h = jnp.maximum(normalize(h, mean, var, params["gamma2"], params["beta2"]), 0)
    scores = affine(h, params["W3"], params["b3"])
    n = scores.shape[0]
    if head == "softmax":
        loss = -jnp.mean(jax.nn.log_softmax(scores)[jnp.arange(n), y])
    else:
        correct = scores[jnp.arange(n), y][:, None]
        margins = jnp.maximum(0, scores - correct + 1)
        loss = (jnp.sum(margins) - n) / n  # the label's own margin is exactly 1
    return loss, new_state


def value_and_grad(net, **kwargs):
    return jax.value_and_grad(lambda p, s, x, y: net(p, s, x, y, **kwargs), has_aux=True)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("head", ["softmax", "svm"])
@pytest.mark.parametrize("train", [True, False])
def test_grad_through_ops_equals_plain_autodiff(x64, transform, head, train):
    params, state, x, y = make_params()
    kwargs = {"train": train, "key": jax.random.key(42), "head": head}
    (loss, new_state), grads = transform(value_and_grad(ops_net, **kwargs))(params, state, x, y)
    (ref_loss, ref_state), ref_grads = value_and_grad(plain_net, **kwargs)(params, state, x, y)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    assert isinstance(new_state, BatchNormState)
    for a, b in zip(new_state, ref_state, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert set(grads) == set(params)
    for name in params:
        assert grads[name].shape == params[name].shape
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-9, atol=1e-12,
                                   err_msg=name)
    if train:  # batch norm normalizes a shift of its input away
        np.testing.assert_allclose(grads["b1"], 0.0, atol=1e-12)


@pytest.mark.parametrize("alt", [True, False])
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_op_grads_and_state_cotangent(x64, alt, train):
    params, state, x, _ = make_params(1)
    h = x.reshape(N, -1)[:, :H] * 3 + 1

    def f(h, gamma, beta, state):
        out, _ = ops.batchnorm(h, gamma, beta, state, train=train, alt=alt)
        return jnp.sum(jnp.sin(out))

    def plain(h, gamma, beta, state):
        if train:
            mean, var = jnp.mean(h, axis=0), jnp.var(h, axis=0)
        else:
            mean, var = state
        out = gamma[None, :] * (h - mean[None, :]) / jnp.sqrt(var[None, :] + EPS) + beta[None, :]
        return jnp.sum(jnp.sin(out))

    args = (h, params["gamma1"], params["beta1"], state)
    grads = jax.grad(f, argnums=(0, 1, 2, 3))(*args)
    ref = jax.grad(plain, argnums=(0, 1, 2))(*args)
    for g, r in zip(grads[:3], ref, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-13)
    # The running statistics are not trainable: zero cotangent, even in evaluation where they
    # enter the output.
    for g in grads[3]:
        np.testing.assert_array_equal(g, 0.0)


def test_dropout_op_gradient_is_the_mask():
    x = jax.random.normal(jax.random.key(0), (20, 30))
    key = jax.random.key(5)
    mask = layers.dropout_forward(x, p=0.4, train=True, key=key)[1]
    grad = jax.grad(lambda x: jnp.sum(ops.dropout(x, p=0.4, train=True, key=key)))(x)
    np.testing.assert_array_equal(grad, mask)
    assert 0 < float(jnp.mean(grad == 0)) < 1
    for kwargs in ({"p": 0.4, "train": False}, {"p": 0.0, "train": True}):
        np.testing.assert_array_equal(ops.dropout(x, **kwargs), x)
        np.testing.assert_array_equal(
            jax.grad(lambda x: jnp.sum(ops.dropout(x, **kwargs)))(x), 1.0)  # noqa: B023


@pytest.mark.parametrize(
    "op, pair", [(ops.softmax_cross_entropy, losses.softmax_loss),
                 (ops.multiclass_hinge, losses.svm_loss)], ids=["softmax", "svm"])
def test_loss_ops_return_the_loss_and_its_dscores(op, pair):
    scores = jax.random.normal(jax.random.key(0), (7, 5))
    y = jnp.array([0, 1, 2, 3, 4, 0, 1])
    loss, dscores = pair(scores, y)
    value, grad = jax.value_and_grad(op)(scores, y)
    assert float(value) == float(loss)
    np.testing.assert_array_equal(grad, dscores)
    np.testing.assert_array_equal(jax.grad(lambda s: 3.0 * op(s, y))(scores), 3.0 * dscores)


# ----------------------------------------------------------------------------- custom backward


def test_jaxpr_has_a_custom_vjp_call_per_op(x64):
    params, state, x, y = make_params()
    jaxpr = jax.make_jaxpr(
        lambda p: ops_net(p, state, x, y, train=True, key=jax.random.key(0))[0])(params)
    text = str(jaxpr)
    # 3 affine, batchnorm, 2 relu, dropout's mask, layernorm, the loss.
    assert text.count("custom_vjp_call") == 9, text


def _double(fn):
    def doubled(*args, **kwargs):
        return jax.tree.map(lambda g: 2 * g, fn(*args, **kwargs))

    return doubled


def _sum_sin(out):
    return jnp.sum(jnp.sin(out))


def grad_affine(x, w, b):
    return jax.grad(lambda *a: _sum_sin(ops.affine(*a)), argnums=(0, 1, 2))(x, w, b)


def grad_relu(x, w, b):
    return jax.grad(lambda x: _sum_sin(ops.relu(x)))(x)


def grad_layernorm(x, w, b):
    return jax.grad(lambda *a: _sum_sin(ops.layernorm(*a)), argnums=(0, 1, 2))(x, w[0], b)


def grad_batchnorm(alt):
    def grad(x, w, b):
        def f(x, gamma, beta):
            out, _ = ops.batchnorm(x, gamma, beta, BatchNormState.zeros(3), train=True, alt=alt)
            return _sum_sin(out)

        return jax.grad(f, argnums=(0, 1, 2))(x, w[0], b)

    return grad


def grad_dropout(x, w, b):
    return jax.grad(lambda x: _sum_sin(ops.dropout(x, p=0.5, train=True, key=jax.random.key(0))))(x)


@pytest.mark.parametrize(
    "backward, op_grad",
    [
        ("affine_backward", grad_affine),
        ("relu_backward", grad_relu),
        ("layernorm_backward", grad_layernorm),
        ("batchnorm_backward_alt", grad_batchnorm(alt=True)),
        ("batchnorm_backward", grad_batchnorm(alt=False)),
        ("dropout_backward", grad_dropout),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_grad_runs_the_hand_written_backward(monkeypatch, backward, op_grad):
    """Patch the layer's backward to double its result: jax.grad of the op doubles."""
    rng = np.random.default_rng(0)
    x, w, b = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((4, 3), (3, 3), (3,)))
    before = op_grad(x, w, b)
    monkeypatch.setattr(layers, backward, _double(getattr(layers, backward)))
    after = op_grad(x, w, b)
    assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(before))
    chex.assert_trees_all_close(after, jax.tree.map(lambda g: 2 * g, before), rtol=1e-6)


# ----------------------------------------------------------------------------- jit and vmap


def test_jit_and_vmap_compose(x64):
    params, state, x, y = make_params()
    key = jax.random.key(3)
    step = jax.jit(value_and_grad(ops_net, train=True, key=key))
    stacked = jax.tree.map(lambda *p: jnp.stack(p), *(make_params(s)[0] for s in range(3)))
    (losses_, states), grads = jax.vmap(step, in_axes=(0, None, None, None))(
        stacked, state, x, y)
    for i in range(3):
        p_i = jax.tree.map(lambda p: p[i], stacked)  # noqa: B023
        (loss_i, state_i), grads_i = value_and_grad(ops_net, train=True, key=key)(p_i, state, x, y)
        np.testing.assert_allclose(losses_[i], loss_i, rtol=1e-12)
        for a, b in zip(jax.tree.leaves((states, grads)), jax.tree.leaves((state_i, grads_i)),
                        strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-10, atol=1e-13)
    # vmap over independent batches: each one normalized with its own statistics.
    xs = jnp.stack([x, 2 * x + 1])
    ys = jnp.stack([y, y[::-1]])
    batched = jax.jit(jax.vmap(
        lambda x, y: jax.grad(lambda p: ops_net(p, state, x, y, train=False, key=None)[0])(params)
    ))(xs, ys)
    for i in range(2):
        one = jax.grad(lambda p: ops_net(p, state, xs[i], ys[i], train=False, key=None)[0])(params)  # noqa: B023
        for name in params:
            np.testing.assert_allclose(batched[name][i], one[name], rtol=1e-10, atol=1e-13)


def test_jitted_step_does_not_recompile(x64):
    params, state, x, y = make_params()
    step = jax.jit(value_and_grad(ops_net, train=True, key=jax.random.key(0)))
    step(params, state, x, y)
    traces = step._cache_size()
    step(jax.tree.map(lambda p: p + 1, params), state, x, y)
    assert step._cache_size() == traces


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_errors_come_through_the_ops(transform):
    x = jnp.ones((2, 3, 4))
    with pytest.raises(ValueError, match=r"x of shape \(2, 3, 4\) flattens to \(N, 12\), but w "
                                         r"has shape \(10, 5\)"):
        transform(ops.affine)(x, jnp.ones((10, 5)), jnp.ones(5))
    with pytest.raises(ValueError, match=r"b has shape \(4,\) but w has shape \(12, 5\)"):
        transform(ops.affine)(x, jnp.ones((12, 5)), jnp.ones(4))
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\) to match x of shape "
                                         r"\(2, 3\), got shape \(4,\)"):
        transform(lambda h: ops.layernorm(h, jnp.ones(4), jnp.ones(3)))(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"state.running_var must have shape \(3,\)"):
        transform(lambda h: ops.batchnorm(
            h, jnp.ones(3), jnp.ones(3), BatchNormState(jnp.zeros(3), jnp.zeros(2)),
            train=True))(jnp.ones((2, 3)))
    with pytest.raises(TypeError, match="y must hold integer class labels, got dtype float32"):
        transform(ops.softmax_cross_entropy)(jnp.ones((2, 3)), jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"y must have shape \(2,\) to match 2 samples"):
        transform(ops.multiclass_hinge)(jnp.ones((2, 3)), jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match="key"):
        transform(lambda h: ops.dropout(h, p=0.5, train=True))(jnp.ones((2, 3)))


def test_labels_out_of_range_raise_through_grad():
    scores = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=r"y holds labels in \[0, 3\], outside the 3 classes"):
        jax.grad(ops.softmax_cross_entropy)(scores, jnp.array([0, 3]))
