"""Tests for jaxfc.models: FullyConnectedNet, TwoLayerNet and compare_gradients."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

from jaxfc import layers
from jaxfc.gradcheck import numerical_gradient_tree, rel_error
from jaxfc.models import FullyConnectedNet, TwoLayerNet, compare_gradients

NORMS = (None, "batchnorm", "layernorm")
GRAD_TOL = 1e-8  # manual vs autodiff, float64
NUMERIC_TOL = 1e-6  # manual vs centered differences, float64, h = 1e-5
# The tiny models below share these shapes, so eager ops compile once for the whole file.
D, H, C, N = 6, 5, 4, 7

# Hypothesis examples share the function-scoped x64 context; that is what we want here.
x64_settings = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def _rel_error(x, y, floor):
    """cs231n's relative error ``max |x - y| / max(floor, |x| + |y|)`` over a pytree.

    cs231n floors the denominator at 1e-8. Entries whose exact value is 0 (biases before batch
    norm, sums that cancel) come out as rounding noise of the size of the terms that cancel:
    about 1e-16 in the two float64 gradients, about eps * loss / h ~ 1e-11 in numeric ones.
    Against a 1e-8 floor that noise reads as errors of 1e-8 and 1e-3, so these tests floor at
    1e-6 (gradient vs gradient) and 1e-4 (vs numeric): every entry above the floor is still
    compared relatively, the ones below it absolutely to within ``tol * floor``.
    """
    diffs = jax.tree.leaves(jax.tree.map(
        lambda a, b: np.max(np.abs(np.asarray(a) - np.asarray(b))
                            / np.maximum(floor, np.abs(np.asarray(a)) + np.abs(np.asarray(b))),
                            initial=0.0),
        x, y))
    return max(diffs, default=0.0)


def _net(depth=1, **kwargs):
    kwargs.setdefault("input_dim", D)
    kwargs.setdefault("num_classes", C)
    return FullyConnectedNet(hidden_dims=(H,) * depth, **kwargs)


def _problem(model, n=N, seed=0, dtype=None):
    """Random inputs (n, input_dim) and labels in [0, num_classes)."""
    kx, ky = jax.random.split(jax.random.key(seed))
    X = jax.random.normal(kx, (n, model.input_dim), dtype or model.dtype)
    y = jax.random.randint(ky, (n,), 0, model.num_classes)
    return X, y


def _randomized(model, seed=0, scale=0.5):
    """Params with every entry random (biases, gammas and betas too, so that no pre-activation
    is exactly 0 at a relu kink and a bug hidden by gamma=1 or beta=0 shows), and the state."""
    params, state = model.init(jax.random.key(seed))
    keys = jax.random.split(jax.random.key(seed + 1), len(params))
    params = {
        name: (1.0 if name.startswith("gamma") else 0.0)
        + scale * jax.random.normal(k, p.shape, p.dtype)
        for k, (name, p) in zip(keys, params.items(), strict=True)
    }
    return params, state


def _both(model, params, state, X, y, **kwargs):
    manual = model.loss(params, state, X, y, gradients="manual", **kwargs)
    auto = model.loss(params, state, X, y, gradients="autodiff", **kwargs)
    return manual, auto


def _true_zero_grads(model, train=True):
    """Biases right before a training-mode batch norm: their exact gradient is 0 (the
    normalization removes any shift), computed as rounding noise."""
    if model.normalization != "batchnorm" or not train:
        return set()
    return {f"b{i}" for i in range(1, model.num_layers)}


def _assert_manual_matches_autodiff(model, params, state, X, y, **kwargs):
    (loss_m, grads_m, state_m), (loss_a, grads_a, state_a) = _both(
        model, params, state, X, y, **kwargs
    )
    assert rel_error(loss_m, loss_a) <= GRAD_TOL
    chex.assert_trees_all_equal_structs(grads_m, params)
    true_zeros = set(_true_zero_grads(model, kwargs.get("train", True)))
    errors = {name: _rel_error(grads_m[name], grads_a[name], 1e-6) for name in params
              if name not in true_zeros}
    assert max(errors.values()) <= GRAD_TOL, errors
    for name in true_zeros:
        # Exactly 0 in exact arithmetic; in float64 rounding noise of the size of the
        # cancelling terms, which grow with the activations (large weights, dropout 0.9).
        scale = max(1.0, *(float(np.max(np.abs(g))) for g in jax.tree.leaves(grads_a)))
        np.testing.assert_allclose(grads_m[name], 0, atol=1e-10 * scale, err_msg=name)
    chex.assert_trees_all_close(state_m, state_a, rtol=1e-12, atol=0)


# ----------------------------------------------------------------- manual vs autodiff, float64


@pytest.mark.parametrize("dropout, reg", [(0.0, 0.0), (0.3, 0.1)])
@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("depth", range(1, 7))
def test_manual_matches_autodiff_float64(x64, depth, normalization, dropout, reg):
    model = _net(depth, dropout=dropout, reg=reg, normalization=normalization, dtype=np.float64)
    params, state = _randomized(model, seed=depth)
    X, y = _problem(model, seed=depth)
    _assert_manual_matches_autodiff(model, params, state, X, y, key=jax.random.key(3))


@pytest.mark.parametrize("normalization", NORMS)
def test_manual_matches_autodiff_in_evaluation_and_jitted(x64, normalization):
    model = _net(2, dropout=0.2, normalization=normalization, dtype=np.float64)
    params, state = _randomized(model, seed=4)
    X, y = _problem(model, seed=4)
    _, state = model.apply(params, state, X, train=True, key=jax.random.key(0))
    # Evaluation: batch norm uses the (now non-trivial) running statistics, dropout is off.
    _assert_manual_matches_autodiff(model, params, state, X, y, train=False)

    @jax.jit
    def grads(params, state, X, y, key):
        return _both(model, params, state, X, y, key=key)

    (_, g_m, _), (_, g_a, _) = grads(params, state, X, y, jax.random.key(1))
    assert _rel_error(g_m, g_a, 1e-6) <= GRAD_TOL


@settings(x64_settings, max_examples=10)
@given(
    depth=st.integers(1, 3),
    normalization=st.sampled_from(NORMS),
    loss_type=st.sampled_from(["softmax", "svm"]),
    dropout=st.sampled_from([0.0, 0.1, 0.5, 0.9]),
    reg=st.floats(0.0, 10.0),
    scale=st.floats(0.05, 3.0),
    seed=st.integers(0, 2**16),
)
def test_manual_matches_autodiff_random_configs(
    x64, depth, normalization, loss_type, dropout, reg, scale, seed
):
    model = _net(depth, dropout=dropout, reg=reg, normalization=normalization,
                 loss_type=loss_type, dtype=np.float64)
    params, state = _randomized(model, seed=seed, scale=scale)
    X, y = _problem(model, seed=seed)
    _assert_manual_matches_autodiff(model, params, state, X, y, key=jax.random.key(seed))


@pytest.mark.parametrize("normalization", NORMS)
def test_svm_loss_manual_matches_autodiff_and_numpy(x64, normalization):
    model = _net(2, loss_type="svm", reg=0.05, normalization=normalization, dtype=np.float64)
    params, state = _randomized(model, seed=5)
    X, y = _problem(model, seed=5)
    _assert_manual_matches_autodiff(model, params, state, X, y)

    scores = np.asarray(model.apply(params, state, X, train=True)[0])
    yn, rows = np.asarray(y), np.arange(N)
    margins = np.maximum(0, scores - scores[rows, yn][:, None] + 1)
    margins[rows, yn] = 0
    expected = margins.sum() / N + 0.5 * 0.05 * sum(
        np.sum(np.asarray(params[f"W{i}"]) ** 2) for i in (1, 2, 3)
    )
    loss, _, _ = model.loss(params, state, X, y)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-12)


# ----------------------------------------------------------------- numeric gradients


@pytest.mark.parametrize(
    "model",
    [
        TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, reg=0.3, dtype=np.float64),
        _net(2, dropout=0.3, reg=0.1, normalization="batchnorm", dtype=np.float64),
        _net(2, reg=0.1, normalization="layernorm", dtype=np.float64),
        _net(1, loss_type="svm", dtype=np.float64),
    ],
    ids=["two-layer", "batchnorm+dropout", "layernorm", "svm"],
)
def test_whole_model_matches_numerical_gradient(x64, model):
    params, state = _randomized(model, seed=6)
    X, y = _problem(model, seed=6)
    key = jax.random.key(2)
    # One flat vector: one compiled batch of perturbed losses rather than one per leaf.
    flat, unravel = ravel_pytree(params)
    numeric = unravel(numerical_gradient_tree(
        lambda v: model.loss_value(unravel(v), state, X, y, key=key)[0], flat
    ))
    _, grads, _ = model.loss(params, state, X, y, key=key)
    errors = {name: _rel_error(grads[name], numeric[name], 1e-4) for name in params}
    assert max(errors.values()) <= NUMERIC_TOL, errors


# ----------------------------------------------------------------- loss values


@pytest.mark.parametrize(
    "model",
    [
        TwoLayerNet(input_dim=300, hidden_dim=50, num_classes=10),
        FullyConnectedNet(hidden_dims=(50, 40), input_dim=300, num_classes=7, weight_scale=1e-3),
        FullyConnectedNet(hidden_dims=(50, 40), input_dim=300, num_classes=7, weight_scale=1e-3,
                          normalization="layernorm"),
    ],
    ids=["two-layer", "fc", "fc-layernorm"],
)
def test_initial_loss_is_log_num_classes(model):
    assert model.weight_scale == 1e-3 and model.reg == 0
    params, state = model.init(jax.random.key(0))
    X, y = _problem(model, 50)
    loss, _, _ = model.loss(params, state, X, y)
    assert abs(float(loss) - math.log(model.num_classes)) < 1e-3


@pytest.mark.parametrize("gradients", ["manual", "autodiff"])
@pytest.mark.parametrize("normalization", NORMS)
def test_l2_penalty_covers_all_weights_and_nothing_else(x64, normalization, gradients):
    reg = 0.7
    model = _net(2, reg=reg, normalization=normalization, dtype=np.float64)
    plain = _net(2, normalization=normalization, dtype=np.float64)
    params, state = _randomized(model, seed=8)
    X, y = _problem(model, seed=8)
    loss, grads, _ = model.loss(params, state, X, y, gradients=gradients)
    loss0, grads0, _ = plain.loss(params, state, X, y, gradients=gradients)

    weights = [np.asarray(params[f"W{i}"]) for i in (1, 2, 3)]
    penalty = 0.5 * reg * sum(float(np.sum(w * w)) for w in weights)
    np.testing.assert_allclose(float(loss), float(loss0) + penalty, rtol=1e-13)
    for name in params:  # reg * W on weights only: biases, gammas, betas unpenalized
        extra = reg * np.asarray(params[name]) if name.startswith("W") else 0.0
        np.testing.assert_allclose(grads[name], np.asarray(grads0[name]) + extra, rtol=1e-12,
                                   atol=1e-15, err_msg=name)
    # The reg= override (here a traced-able array) computes the same as the configured value.
    loss_o, grads_o, _ = plain.loss(params, state, X, y, gradients=gradients,
                                    reg=jnp.asarray(reg))
    np.testing.assert_allclose(float(loss_o), float(loss), rtol=1e-14)
    chex.assert_trees_all_close(grads_o, grads, rtol=1e-14)


def _cs231n_two_layer_problem():
    N, D, H, C = 3, 5, 50, 7
    W1 = np.linspace(-0.7, 0.3, num=D * H).reshape(D, H)
    b1 = np.linspace(-0.1, 0.9, num=H)
    W2 = np.linspace(-0.3, 0.4, num=H * C).reshape(H, C)
    b2 = np.linspace(-0.9, 0.1, num=C)
    X = np.linspace(-5.5, 4.5, num=N * D).reshape(D, N).T
    y = np.array([0, 5, 1])
    return (N, D, H, C), dict(W1=W1, b1=b1, W2=W2, b2=b2), X, y


def _numpy_two_layer(params, X, y, reg):
    scores = np.maximum(X @ params["W1"] + params["b1"], 0) @ params["W2"] + params["b2"]
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(y)), y].mean()
    loss += 0.5 * reg * (np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2))
    return scores, loss


@pytest.mark.parametrize("reg", [0.0, 1.0])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_layer_net_matches_numpy_forward(x64, dtype, reg):
    (n, d, h, c), params_np, X, y = _cs231n_two_layer_problem()
    model = TwoLayerNet(input_dim=d, hidden_dim=h, num_classes=c, weight_scale=1e-3,
                        reg=reg, dtype=dtype)
    params, state = model.init(jax.random.key(0))
    # Initialization as the assignment checks it: small weights, zero biases.
    assert abs(float(jnp.std(params["W1"])) - 1e-3) < 2.5e-4
    assert abs(float(jnp.std(params["W2"])) - 1e-3) < 2.5e-4
    assert not np.any(params["b1"]) and not np.any(params["b2"])

    params = {k: jnp.asarray(v, dtype) for k, v in params_np.items()}
    expected_scores, expected_loss = _numpy_two_layer(params_np, X, y, reg)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    scores, _ = model.apply(params, state, X)
    assert scores.dtype == dtype and scores.shape == (n, c)
    np.testing.assert_allclose(scores, expected_scores, rtol=rtol, atol=rtol)
    loss, _, _ = model.loss(params, state, X, y)
    np.testing.assert_allclose(float(loss), expected_loss, rtol=rtol)


# ----------------------------------------------------------------- training


def _sgd_epochs(model, params, state, X, y, *, lr, epochs, batch_size, key):
    """Plain SGD on shuffled minibatches, all epochs in one compiled program."""
    n = X.shape[0]
    steps = n // batch_size

    def epoch(carry, k):
        params, state = carry
        order = jax.random.permutation(k, n)

        def step(carry, idx):
            params, state = carry
            _, grads, state = model.loss(params, state, X[idx], y[idx])
            return (jax.tree.map(lambda p, g: p - lr * g, params, grads), state), None

        return jax.lax.scan(step, (params, state), order.reshape(steps, batch_size))[0], None

    run = jax.jit(lambda p, s: jax.lax.scan(epoch, (p, s), jax.random.split(key, epochs))[0])
    return run(params, state)


@pytest.mark.parametrize(
    "hidden_dims, weight_scale, lr",
    [((100, 100), 1e-2, 1e-2), ((100, 100, 100, 100), 1e-1, 1e-3)],
    ids=["3-layer", "5-layer"],
)
def test_overfits_50_examples(hidden_dims, weight_scale, lr):
    # cs231n's recipe on its scale of data: mean-subtracted pixels (std ~ 64), batch 25.
    model = FullyConnectedNet(hidden_dims=hidden_dims, input_dim=3 * 16 * 16,
                              weight_scale=weight_scale)
    rng = np.random.default_rng(0)
    X = jnp.asarray(64 * rng.standard_normal((50, 3, 16, 16)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 50), jnp.int32)
    params, state = model.init(jax.random.key(0))
    assert float(jnp.mean(model.predict(params, state, X) == y)) < 0.5
    params, state = _sgd_epochs(model, params, state, X, y, lr=lr, epochs=20, batch_size=25,
                                key=jax.random.key(1))
    assert float(jnp.mean(model.predict(params, state, X) == y)) == 1.0


# ----------------------------------------------------------------- state and modes


def test_batchnorm_running_stats_update_in_training_and_freeze_in_evaluation():
    model = _net(2, normalization="batchnorm", bn_momentum=0.9)
    params, state = _randomized(model)
    X, y = _problem(model)
    _, new_state = model.apply(params, state, X, train=True)
    for name in ("bn1", "bn2"):
        assert not np.allclose(new_state[name].running_mean, state[name].running_mean)
        assert not np.allclose(new_state[name].running_var, state[name].running_var)
    # Layer 1's statistics: 0.9 * 0 + 0.1 * batch statistics of its pre-activations.
    a = np.asarray(X) @ np.asarray(params["W1"]) + np.asarray(params["b1"])
    np.testing.assert_allclose(new_state["bn1"].running_mean, 0.1 * a.mean(0),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new_state["bn1"].running_var, 0.1 * a.var(0), rtol=1e-4)
    _, _, loss_state = model.loss(params, state, X, y)
    chex.assert_trees_all_close(loss_state, new_state)

    for frozen in (model.apply(params, new_state, X, train=False)[1],
                   model.loss(params, new_state, X, y, train=False)[2]):
        chex.assert_trees_all_equal(frozen, new_state)


@pytest.mark.parametrize("normalization", NORMS)
def test_evaluation_is_deterministic_and_dropout_inactive(normalization):
    model = _net(2, dropout=0.5, normalization=normalization)
    params, state = _randomized(model)
    X, _ = _problem(model)
    _, state = model.apply(params, state, X, train=True, key=jax.random.key(0))
    first = model.apply(params, state, X)[0]
    chex.assert_trees_all_equal(first, model.apply(params, state, X)[0])
    no_dropout = _net(2, normalization=normalization)
    chex.assert_trees_all_close(first, no_dropout.apply(params, state, X)[0])
    # ... while training with dropout depends on the key.
    train = [model.apply(params, state, X, train=True, key=jax.random.key(k))[0] for k in (1, 2)]
    assert not np.allclose(train[0], train[1])


def test_dropout_masks_differ_across_layers_and_keys(monkeypatch):
    """One key per step, a distinct mask per layer (fold_in), the same masks for the same key."""
    masks = []
    forward = layers.affine_norm_relu_dropout_forward

    def spy(*args, **kwargs):
        out = forward(*args, **kwargs)
        masks.append(np.asarray(out[2].dropout))
        return out

    monkeypatch.setattr(layers, "affine_norm_relu_dropout_forward", spy)
    model = _net(2, dropout=0.5)
    params, state = model.init(jax.random.key(0))
    X, _ = _problem(model)
    for k in (0, 0, 1):
        model.apply(params, state, X, train=True, key=jax.random.key(k))
    assert len(masks) == 6 and masks[0].shape == masks[1].shape == (N, H)
    assert not np.array_equal(masks[0], masks[1])  # layers 1 and 2
    np.testing.assert_array_equal(masks[0], masks[2])  # same key, same masks
    np.testing.assert_array_equal(masks[1], masks[3])
    assert not np.array_equal(masks[0], masks[4])  # another key


# ----------------------------------------------------------------- jit, pytrees, dtypes


@pytest.mark.parametrize("gradients", ["manual", "autodiff"])
@pytest.mark.parametrize(
    "make_model",
    [
        lambda: TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, reg=0.1),
        lambda: _net(2, dropout=0.2, normalization="batchnorm"),
    ],
    ids=["two-layer", "fc-batchnorm-dropout"],
)
def test_jitted_loss_compiles_once(make_model, gradients):
    traces = []

    def loss(model, params, state, X, y, key, reg):
        traces.append(1)
        return model.loss(params, state, X, y, key=key, gradients=gradients, reg=reg)

    jitted = jax.jit(loss, static_argnums=0)
    model = make_model()
    params, state = model.init(jax.random.key(0))
    X, y = _problem(model, seed=0)
    out = jitted(model, params, state, X, y, jax.random.key(0), jnp.float32(0.1))
    assert len(traces) == 1
    # New values of everything, an equal (not identical) model and another reg: no retrace.
    X2, y2 = _problem(model, seed=1)
    _, grads, new_state = jitted(make_model(), out[1], out[2], X2, y2, jax.random.key(1),
                                 jnp.float32(0.3))
    assert len(traces) == 1
    chex.assert_trees_all_equal_structs(grads, params)
    chex.assert_trees_all_equal_shapes_and_dtypes(grads, params)
    chex.assert_trees_all_equal_structs(new_state, state)
    chex.assert_tree_all_finite(grads)


@pytest.mark.parametrize(
    "model",
    [TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C), _net(1)],
    ids=["two-layer", "fc"],
)
def test_model_class_functions_jit_with_the_model_static(model):
    params, state = model.init(jax.random.key(0))
    X, y = _problem(model)
    loss_fn = jax.jit(type(model).loss, static_argnums=0, static_argnames="gradients")
    loss, grads, _ = loss_fn(model, params, state, X, y, gradients="manual")
    expected, expected_grads, _ = model.loss(params, state, X, y)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    chex.assert_trees_all_close(grads, expected_grads, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", [TwoLayerNet, FullyConnectedNet])
def test_float64_needs_x64_mode(cls):
    kwargs = dict(input_dim=D, num_classes=C, dtype=np.float64)
    model = cls(hidden_dims=(H,), **kwargs) if cls is FullyConnectedNet else cls(**kwargs)
    with pytest.raises(ValueError, match="enable_x64"):
        model.init(jax.random.key(0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_param_loss_and_grad_dtypes(x64, dtype):
    model = _net(1, dtype=dtype, normalization="batchnorm")
    params, state = model.init(jax.random.key(0))
    X, y = _problem(model, dtype=jnp.float64)  # inputs are cast to the model's dtype
    for gradients in ("manual", "autodiff"):
        loss, grads, new_state = model.loss(params, state, X, y, gradients=gradients)
        assert loss.dtype == dtype
        assert {g.dtype for g in jax.tree.leaves((params, grads, new_state))} == {np.dtype(dtype)}


def test_float32_is_the_default():
    for model in (TwoLayerNet(input_dim=D, hidden_dim=H), FullyConnectedNet((H,), input_dim=D)):
        params, _ = model.init(jax.random.key(0))
        assert {p.dtype for p in params.values()} == {np.dtype(np.float32)}


# ----------------------------------------------------------------- initialization


@pytest.mark.parametrize("scheme, gain", [("he", 2.0), ("xavier", 1.0)])
def test_weight_scale_schemes_give_documented_std(scheme, gain):
    model = FullyConnectedNet(hidden_dims=(400,), input_dim=800, num_classes=200,
                              weight_scale=scheme)
    params, _ = model.init(jax.random.key(0))
    for name, fan_in in (("W1", 800), ("W2", 400)):
        w = np.asarray(params[name])
        # 80k+ samples: the sample std is within ~0.3% of the true one (1/sqrt(2n)).
        np.testing.assert_allclose(w.std(), math.sqrt(gain / fan_in), rtol=0.02)
        assert abs(w.mean()) < 0.02 * math.sqrt(gain / fan_in)
    two_layer = TwoLayerNet(input_dim=800, hidden_dim=400, weight_scale=scheme)
    np.testing.assert_allclose(
        np.std(two_layer.init(jax.random.key(1))[0]["W1"]), math.sqrt(gain / 800), rtol=0.02
    )


@pytest.mark.parametrize("weight_scale", ["kaiming", "", 0.0, -1e-3])
def test_bad_weight_scale(weight_scale):
    with pytest.raises(ValueError, match="weight_scale"):
        FullyConnectedNet(hidden_dims=(3,), weight_scale=weight_scale)
    with pytest.raises(ValueError, match="weight_scale"):
        TwoLayerNet(weight_scale=weight_scale)


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hidden_dims=()), r"hidden_dims must be a non-empty .* got \(\)"),
        (dict(hidden_dims=[]), r"hidden_dims must be a non-empty"),
        (dict(hidden_dims=(5, 0)), r"positive integers, got \(5, 0\)"),
        (dict(hidden_dims=(5, -2)), r"positive integers, got \(5, -2\)"),
        (dict(hidden_dims=(5, 2.5)), r"positive integers"),
        (dict(hidden_dims=(5,), normalization="groupnorm"),
         r"normalization must be one of .* got 'groupnorm'"),
        (dict(hidden_dims=(5,), use_batchnorm=True, normalization="layernorm"),
         r"use_batchnorm=True contradicts normalization='layernorm'"),
        (dict(hidden_dims=(5,), dropout=1.0), r"dropout .* \[0, 1\), got 1.0"),
        (dict(hidden_dims=(5,), dropout=-0.1), r"dropout .* \[0, 1\), got -0.1"),
        (dict(hidden_dims=(5,), input_dim=0), r"input_dim must be a positive integer, got 0"),
        (dict(hidden_dims=(5,), num_classes=1), r"num_classes must be at least 2, got 1"),
        (dict(hidden_dims=(5,), reg=-1.0), r"reg must be non-negative, got -1.0"),
        (dict(hidden_dims=(5,), loss_type="hinge"), r"loss_type must be one of .* 'hinge'"),
        (dict(hidden_dims=(5,), dtype=np.int32), r"dtype must be a floating-point type"),
        (dict(hidden_dims=(5,), bn_momentum=1.5), r"bn_momentum must lie in \[0, 1\], got 1.5"),
        (dict(hidden_dims=(5,), eps=0.0), r"eps must be positive, got 0.0"),
    ],
)
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FullyConnectedNet(**kwargs)


@pytest.mark.parametrize("hidden_dim", [0, -3, 2.5])
def test_two_layer_net_bad_hidden_dim(hidden_dim):
    match = f"hidden_dim must be a positive integer, got {hidden_dim}"
    with pytest.raises(ValueError, match=match):
        TwoLayerNet(hidden_dim=hidden_dim)


def test_use_batchnorm_flag_is_batchnorm():
    model = FullyConnectedNet(hidden_dims=(5,), use_batchnorm=True)
    assert model.normalization == "batchnorm" and "gamma1" in model.param_shapes()


_BAD_CALLS = [
    # (what, how to change (X, y, kwargs), error type, message)
    ("X features", lambda X, y, kw: (X[:, :5], y, kw), ValueError,
     rf"X of shape \({N}, 5\) has 5 features per sample, but the model expects input_dim={D}"),
    ("y 2-d", lambda X, y, kw: (X, y[:, None], kw), ValueError,
     rf"y must be 1-dimensional, got shape \({N}, 1\)"),
    ("y too short", lambda X, y, kw: (X, y[:4], kw), ValueError,
     rf"y must have shape \({N},\) to match {N} samples, got shape \(4,\)"),
    ("y float", lambda X, y, kw: (X, y.astype(jnp.float32), kw), TypeError,
     r"y must hold integer class labels, got dtype float32"),
    ("y too large", lambda X, y, kw: (X, y.at[2].set(C), kw), ValueError,
     rf"labels in \[\d, {C}\], outside the {C} classes \[0, {C - 1}\]"),
    ("y negative", lambda X, y, kw: (X, y.at[0].set(-1), kw), ValueError,
     rf"labels in \[-1, \d\], outside the {C} classes"),
    ("no dropout key", lambda X, y, kw: (X, y, {**kw, "key": None}), ValueError,
     r"training with dropout needs a PRNG key"),
    ("dropout override", lambda X, y, kw: (X, y, {**kw, "dropout": 1.5}), ValueError,
     r"drop probability and must lie in \[0, 1\), got 1.5"),
    ("gradients", lambda X, y, kw: (X, y, {**kw, "gradients": "numeric"}), ValueError,
     r"gradients must be one of \('manual', 'autodiff'\), got 'numeric'"),
]


@pytest.mark.parametrize("gradients", ["manual", "autodiff"])
@pytest.mark.parametrize("what, change, error, match", _BAD_CALLS, ids=[c[0] for c in _BAD_CALLS])
def test_bad_loss_call(what, change, error, match, gradients):
    model = _net(1, dropout=0.5)
    params, state = model.init(jax.random.key(0))
    X, y = _problem(model)
    X, y, kwargs = change(X, y, {"key": jax.random.key(0), "gradients": gradients})
    with pytest.raises(error, match=match):
        model.loss(params, state, X, y, **kwargs)


def test_bad_shapes_are_caught_under_jit_too():
    model = _net(1)
    params, state = model.init(jax.random.key(0))
    X, y = _problem(model)
    with pytest.raises(ValueError, match=r"has 5 features per sample, but the model expects"):
        jax.jit(model.loss)(params, state, X[:, :5], y)
    with pytest.raises(ValueError, match=rf"params\['W1'\] has shape \({D}, 3\), "
                                         rf"expected \({D}, {H}\)"):
        jax.jit(model.apply)({**params, "W1": params["W1"][:, :3]}, state, X)
    with pytest.raises(ValueError, match=r"missing \['b1'\]"):
        model.apply({k: v for k, v in params.items() if k != "b1"}, state, X)


def test_explicit_zero_dropout_needs_no_key():
    model = _net(1, dropout=0.5)
    params, state = model.init(jax.random.key(0))
    X, _ = _problem(model)
    chex.assert_trees_all_close(model.apply(params, state, X, train=True, dropout=0.0)[0],
                                model.apply(params, state, X)[0])


# ----------------------------------------------------------------- compare_gradients


def test_compare_gradients_reports_every_param(x64):
    model = _net(2, normalization="batchnorm", dropout=0.2, reg=0.1, dtype=np.float64)
    params, state = _randomized(model, seed=9)
    X, y = _problem(model, seed=9)
    report = compare_gradients(model, params, state, X, y, key=jax.random.key(0))
    assert [r.name for r in report.rows] == list(model.param_shapes())
    assert report.references == ("autodiff",)
    # cs231n's floor of 1e-8 turns the rounding noise of the zero b1, b2 into errors ~1e-8.
    assert report.max_error <= 1e-6
    assert max(report[n].max_error for n in params if n not in ("b1", "b2")) <= GRAD_TOL
    text = str(report)
    assert "vs autodiff" in text and "worst index" in text
    for name in params:
        assert name in text

    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, reg=0.2, dtype=np.float64)
    params, state = _randomized(model, seed=9)
    report = compare_gradients(model, params, state, X, y, numeric=True)
    assert report.references == ("autodiff", "numeric")
    assert "vs numeric" in str(report)
    assert report.max_error <= NUMERIC_TOL, str(report)


@pytest.mark.parametrize("depth", [1, 3])
def test_compare_gradients_names_the_corrupted_parameters(x64, monkeypatch, depth):
    model = _net(depth, dtype=np.float64)
    params, state = _randomized(model, seed=10)
    X, y = _problem(model, seed=10)
    # A classic bug: forgetting the relu mask in the backward pass.
    monkeypatch.setattr(layers, "relu_backward", lambda dout, cache: dout)
    report = compare_gradients(model, params, state, X, y)
    failed = {row.name for row in report.failures(1e-6)}
    assert failed == {f"{p}{i}" for i in range(1, depth + 1) for p in "Wb"}
    assert report[f"W{depth + 1}"].err_vs_autodiff <= GRAD_TOL  # before any relu: fine
    with pytest.raises(AssertionError, match=rf"gradient check failed[\s\S]*W1 \(shape \({D}, "):
        report.assert_close(1e-6)


def test_compare_gradients_numeric_needs_float64(x64):
    model = _net(1)  # float32
    params, state = model.init(jax.random.key(0))
    X, y = _problem(model)
    with pytest.raises(ValueError, match=r"needs a float64 model, got dtype=float32"):
        compare_gradients(model, params, state, X, y, numeric=True)


def test_compare_gradients_numeric_needs_x64_mode():
    model = _net(1)
    params, state = model.init(jax.random.key(0))
    X, y = _problem(model)
    with pytest.raises(RuntimeError, match=r"64-bit mode is off"):
        compare_gradients(model, params, state, X, y, numeric=True)
    # Without numeric differences it runs in float32 (errors of float32 size).
    assert compare_gradients(model, params, state, X, y).max_error < 1e-3
