"""Tests for jaxfc.cs231n, the assignment's NumPy API on top of the core.

Expected values come from independent NumPy code written here (the assignment's formulas) or
from numeric gradients; nothing is copied from reference outputs. No test turns on 64-bit mode:
the compatibility layer must do that itself for float64 inputs.
"""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfc import models
from jaxfc.cs231n import data_utils, layer_utils, optim
from jaxfc.cs231n.classifiers import fc_net
from jaxfc.cs231n.classifiers.fc_net import FullyConnectedNet, TwoLayerNet
from jaxfc.cs231n.gradient_check import (
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    grad_check_sparse,
)
from jaxfc.cs231n.layers import (
    affine_backward,
    affine_forward,
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    dropout_backward,
    dropout_forward,
    layernorm_backward,
    layernorm_forward,
    relu_backward,
    relu_forward,
    softmax_loss,
    svm_loss,
)
from jaxfc.cs231n.solver import Solver

# ----------------------------------------------------------------------------- helpers


def rel_error(x, y) -> float:
    """cs231n: ``max |x - y| / max(1e-8, |x| + |y|)`` elementwise."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    assert x.shape == y.shape, (x.shape, y.shape)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def grad_error(numeric, analytic) -> float:
    """Largest difference relative to the gradient's scale. The elementwise cs231n error
    divides finite-difference noise (~1e-11 at h=1e-5) by entries that may be ~1e-7, so for
    whole models we measure the error against the largest entry instead."""
    numeric, analytic = np.asarray(numeric), np.asarray(analytic)
    assert numeric.shape == analytic.shape
    scale = max(1e-8, float(np.max(np.abs(numeric) + np.abs(analytic))))
    return float(np.max(np.abs(numeric - analytic))) / scale


def np_softmax_loss(scores, y):
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = scores.shape[0]
    dscores = np.exp(log_probs)
    dscores[np.arange(n), y] -= 1
    return -log_probs[np.arange(n), y].mean(), dscores / n


def np_svm_loss(scores, y):
    n = scores.shape[0]
    correct = scores[np.arange(n), y][:, None]
    margins = np.maximum(0, scores - correct + 1)
    margins[np.arange(n), y] = 0
    positive = (margins > 0).astype(scores.dtype)
    positive[np.arange(n), y] = -positive.sum(axis=1)
    return margins.sum() / n, positive / n


def np_normalize(a, axis, eps=1e-5):
    mean, var = a.mean(axis=axis, keepdims=True), a.var(axis=axis, keepdims=True)
    return (a - mean) / np.sqrt(var + eps), mean, var


def np_fc_net(params, X, num_layers, norm=None, train=True, running=None, masks=None):
    """Forward pass of the assignment's FullyConnectedNet in NumPy: scores and the batch
    statistics of each batch-norm layer."""
    h = X.reshape(X.shape[0], -1)
    stats = []
    for i in range(1, num_layers):
        a = h @ params[f"W{i}"] + params[f"b{i}"]
        if norm == "batchnorm":
            if train:
                a_hat, mean, var = np_normalize(a, 0)
                stats.append((mean[0], var[0]))
            else:
                mean, var = running[i - 1]
                a_hat = (a - mean) / np.sqrt(var + 1e-5)
            a = params[f"gamma{i}"] * a_hat + params[f"beta{i}"]
        elif norm == "layernorm":
            a = params[f"gamma{i}"] * np_normalize(a, 1)[0] + params[f"beta{i}"]
        h = np.maximum(a, 0)
        if masks is not None:
            h = h * masks[i - 1]
    return h @ params[f"W{num_layers}"] + params[f"b{num_layers}"], stats


def l2(params, reg):
    return 0.5 * reg * sum(np.sum(v**2) for k, v in params.items() if k.startswith("W"))


def model_grad_errors(model, X, y):
    """Numeric-vs-analytic error of each parameter of a compat model (params perturbed in
    place, as in the assignment's notebooks). Hidden biases followed by batch norm have a zero
    gradient: for them, the largest absolute value of either gradient."""
    _, grads = model.loss(X, y)
    errors = {}
    bn = getattr(model, "use_batchnorm", False)
    for name in sorted(grads):
        f = lambda _: model.loss(X, y)[0]
        numeric = eval_numerical_gradient(f, model.params[name], verbose=False, h=1e-5)
        if bn and name[0] == "b" and name[1:].isdigit() and int(name[1:]) < model.num_layers:
            errors[name] = max(np.max(np.abs(numeric)), np.max(np.abs(grads[name])))
        else:
            errors[name] = grad_error(numeric, grads[name])
    return errors


@pytest.fixture
def rng():
    np.random.seed(231)
    return np.random


# ----------------------------------------------------------------------------- star imports

LAYER_NAMES = {
    "affine_forward", "affine_backward", "relu_forward", "relu_backward", "batchnorm_forward",
    "batchnorm_backward", "batchnorm_backward_alt", "layernorm_forward", "layernorm_backward",
    "dropout_forward", "dropout_backward", "svm_loss", "softmax_loss",
}  # fmt: skip


def star_import(module):
    namespace = {}
    exec(f"from {module} import *", namespace)
    return set(namespace) - {"__builtins__"}


def test_star_imports_export_the_assignments_names():
    """The assignment's notebooks use the layers after ``from cs231n.classifiers.fc_net import
    *`` alone, because its fc_net star-imports layers and layer_utils."""
    assert star_import("jaxfc.cs231n.layers") == LAYER_NAMES
    utils = star_import("jaxfc.cs231n.layer_utils")
    assert utils >= LAYER_NAMES | {"affine_relu_forward", "affine_bn_relu_backward"}
    assert star_import("jaxfc.cs231n.classifiers.fc_net") == utils | {
        "FullyConnectedNet", "TwoLayerNet"
    }  # fmt: skip
    assert star_import("jaxfc.cs231n.optim") == {"sgd", "sgd_momentum", "rmsprop", "adam"}
    assert star_import("jaxfc.cs231n.solver") == {"Solver"}
    assert star_import("jaxfc.cs231n.gradient_check") == {
        "eval_numerical_gradient", "eval_numerical_gradient_array", "grad_check_sparse"
    }  # fmt: skip
    assert {"get_CIFAR10_data", "load_CIFAR10"} <= star_import("jaxfc.cs231n.data_utils")


# ----------------------------------------------------------------------------- layers


def test_affine_forward_matches_numpy():
    num_inputs, input_shape, output_dim = 2, (4, 5, 6), 3
    input_size = num_inputs * np.prod(input_shape)
    weight_size = output_dim * np.prod(input_shape)
    x = np.linspace(-0.1, 0.5, num=input_size).reshape(num_inputs, *input_shape)
    w = np.linspace(-0.2, 0.3, num=weight_size).reshape(np.prod(input_shape), output_dim)
    b = np.linspace(-0.3, 0.1, num=output_dim)
    out, cache = affine_forward(x, w, b)
    assert out.dtype == np.float64 and isinstance(out, np.ndarray)
    assert rel_error(out, x.reshape(num_inputs, -1) @ w + b) < 1e-12
    assert cache[0] is x or np.array_equal(cache[0], x)


def test_affine_backward_numeric(rng):
    x, w, b = rng.randn(10, 2, 3), rng.randn(6, 5), rng.randn(5)
    dout = rng.randn(10, 5)
    dx_num = eval_numerical_gradient_array(lambda x: affine_forward(x, w, b)[0], x, dout)
    dw_num = eval_numerical_gradient_array(lambda w: affine_forward(x, w, b)[0], w, dout)
    db_num = eval_numerical_gradient_array(lambda b: affine_forward(x, w, b)[0], b, dout)
    _, cache = affine_forward(x, w, b)
    dx, dw, db = affine_backward(dout, cache)
    assert dx.shape == x.shape
    assert rel_error(dx_num, dx) < 1e-9
    assert rel_error(dw_num, dw) < 1e-9
    assert rel_error(db_num, db) < 1e-9


def test_relu_forward_and_backward(rng):
    x = np.linspace(-0.5, 0.5, num=12).reshape(3, 4)
    out, _ = relu_forward(x)
    assert rel_error(out, np.maximum(x, 0)) < 1e-12
    x = rng.randn(10, 10)
    dout = rng.randn(*x.shape)
    dx_num = eval_numerical_gradient_array(lambda x: relu_forward(x)[0], x, dout)
    dx = relu_backward(dout, relu_forward(x)[1])
    assert rel_error(dx_num, dx) < 1e-9


def test_affine_relu_sandwich(rng):
    x, w, b = rng.randn(2, 3, 4), rng.randn(12, 10), rng.randn(10)
    dout = rng.randn(2, 10)
    out, cache = layer_utils.affine_relu_forward(x, w, b)
    assert rel_error(out, np.maximum(x.reshape(2, -1) @ w + b, 0)) < 1e-12
    dx, dw, db = layer_utils.affine_relu_backward(dout, cache)
    f = lambda _: layer_utils.affine_relu_forward(x, w, b)[0]
    assert rel_error(eval_numerical_gradient_array(f, x, dout), dx) < 1e-8
    assert rel_error(eval_numerical_gradient_array(f, w, dout), dw) < 1e-8
    assert rel_error(eval_numerical_gradient_array(f, b, dout), db) < 1e-8


@pytest.mark.parametrize(
    "loss_fn, np_loss, expected",
    [(svm_loss, np_svm_loss, 9.0), (softmax_loss, np_softmax_loss, np.log(10))],
    ids=["svm", "softmax"],
)
def test_losses(rng, loss_fn, np_loss, expected):
    num_classes, num_inputs = 10, 50
    x = 0.001 * rng.randn(num_inputs, num_classes)
    y = rng.randint(num_classes, size=num_inputs)
    loss, dx = loss_fn(x, y)
    # Tiny scores: every margin is ~1 (svm: C - 1), every probability ~1/C (softmax: ln C).
    assert abs(loss - expected) < 0.02
    ref_loss, ref_dx = np_loss(x, y)
    assert abs(loss - ref_loss) < 1e-12 and rel_error(dx, ref_dx) < 1e-12
    dx_num = eval_numerical_gradient(lambda x: loss_fn(x, y)[0], x, verbose=False)
    assert rel_error(dx_num, dx) < 1e-7
    with pytest.raises(ValueError, match="labels"):
        loss_fn(x, np.full(num_inputs, num_classes))


def test_float32_inputs_stay_float32_and_x64_stays_off(rng):
    x = rng.randn(4, 5).astype(np.float32)
    w, b = rng.randn(5, 3).astype(np.float32), np.zeros(3, np.float32)
    assert affine_forward(x, w, b)[0].dtype == np.float32
    assert softmax_loss(x, np.arange(4))[1].dtype == np.float32
    affine_forward(x.astype(np.float64), w, b)  # float64 runs in a 64-bit scope only
    assert jnp.zeros(1).dtype == jnp.float32


# ----------------------------------------------------------------------------- batch norm


def bn_batch(rng, n=200):
    """The assignment's setup: features of a random two-layer relu net."""
    D1, D2, D3 = 50, 60, 3
    W1, W2 = rng.randn(D1, D2), rng.randn(D2, D3)
    return lambda: np.maximum(rng.randn(n, D1) @ W1, 0) @ W2


def test_batchnorm_train_normalizes(rng):
    a = bn_batch(rng)()
    D = a.shape[1]
    bn_param = {"mode": "train"}
    out, _ = batchnorm_forward(a, np.ones(D), np.zeros(D), bn_param)
    assert np.allclose(out.mean(axis=0), 0, atol=1e-10)
    assert np.allclose(out.std(axis=0), 1, atol=1e-6)
    gamma, beta = np.asarray([1.0, 2.0, 3.0]), np.asarray([11.0, 12.0, 13.0])
    out, _ = batchnorm_forward(a, gamma, beta, {"mode": "train"})
    assert np.allclose(out.mean(axis=0), beta, atol=1e-10)
    assert np.allclose(out.std(axis=0), gamma, rtol=1e-6)
    # Running statistics start at zero: one step stores 0.1 * (batch mean, biased variance).
    assert isinstance(bn_param["running_mean"], np.ndarray)
    assert rel_error(bn_param["running_mean"], 0.1 * a.mean(axis=0)) < 1e-12
    assert rel_error(bn_param["running_var"], 0.1 * a.var(axis=0)) < 1e-12


def test_batchnorm_running_averages_then_test_mode(rng):
    draw = bn_batch(rng)
    D = 3
    gamma, beta = np.ones(D), np.zeros(D)
    bn_param = {"mode": "train", "momentum": 0.8}
    mean, var = np.zeros(D), np.zeros(D)
    for _ in range(50):
        a = draw()
        batchnorm_forward(a, gamma, beta, bn_param)
        mean = 0.8 * mean + 0.2 * a.mean(axis=0)
        var = 0.8 * var + 0.2 * a.var(axis=0)
    assert rel_error(bn_param["running_mean"], mean) < 1e-10
    assert rel_error(bn_param["running_var"], var) < 1e-10
    bn_param["mode"] = "test"
    a = draw()
    out, _ = batchnorm_forward(a, gamma, beta, bn_param)
    assert rel_error(out, (a - mean) / np.sqrt(var + 1e-5)) < 1e-10
    # Normalized by population estimates: near, not exactly, zero mean and unit std.
    assert np.all(np.abs(out.mean(axis=0)) < 0.3)
    assert np.all(np.abs(out.std(axis=0) - 1) < 0.3)
    assert rel_error(bn_param["running_mean"], mean) < 1e-12  # unchanged in test mode
    with pytest.raises(ValueError, match="batchnorm mode"):
        batchnorm_forward(a, gamma, beta, {"mode": "eval"})


@pytest.mark.parametrize("backward", [batchnorm_backward, batchnorm_backward_alt])
def test_batchnorm_backward_numeric(rng, backward):
    N, D = 4, 5
    x = 5 * rng.randn(N, D) + 12
    gamma, beta, dout = rng.randn(D), rng.randn(D), rng.randn(N, D)
    f = lambda _: batchnorm_forward(x, gamma, beta, {"mode": "train"})[0]
    _, cache = batchnorm_forward(x, gamma, beta, {"mode": "train"})
    dx, dgamma, dbeta = backward(dout, cache)
    assert grad_error(eval_numerical_gradient_array(f, x, dout), dx) < 1e-8
    assert grad_error(eval_numerical_gradient_array(f, gamma, dout), dgamma) < 1e-8
    assert grad_error(eval_numerical_gradient_array(f, beta, dout), dbeta) < 1e-8


def test_layernorm_forward_and_backward(rng):
    N, D = 4, 5
    x = 5 * rng.randn(N, D) + 12
    gamma, beta, dout = rng.randn(D), rng.randn(D), rng.randn(N, D)
    out, _ = layernorm_forward(x, np.ones(D), np.zeros(D), {})
    assert np.allclose(out.mean(axis=1), 0, atol=1e-10)
    assert np.allclose(out.std(axis=1), 1, atol=1e-5)
    ln_param = {"eps": 1e-3}
    out, cache = layernorm_forward(x, gamma, beta, ln_param)
    assert rel_error(out, gamma * np_normalize(x, 1, eps=1e-3)[0] + beta) < 1e-12
    f = lambda _: layernorm_forward(x, gamma, beta, ln_param)[0]
    dx, dgamma, dbeta = layernorm_backward(dout, cache)
    assert grad_error(eval_numerical_gradient_array(f, x, dout), dx) < 1e-8
    assert grad_error(eval_numerical_gradient_array(f, gamma, dout), dgamma) < 1e-8
    assert grad_error(eval_numerical_gradient_array(f, beta, dout), dbeta) < 1e-8


@pytest.mark.parametrize("norm", ["bn", "ln"])
def test_affine_norm_relu_sandwich(rng, norm):
    x, w, b = rng.randn(4, 3, 2), rng.randn(6, 5), rng.randn(5)
    gamma, beta, dout = rng.randn(5), rng.randn(5), rng.randn(4, 5)
    fwd = getattr(layer_utils, f"affine_{norm}_relu_forward")
    bwd = getattr(layer_utils, f"affine_{norm}_relu_backward")
    param = {"mode": "train"} if norm == "bn" else {}
    out, cache = fwd(x, w, b, gamma, beta, param)
    axis = 0 if norm == "bn" else 1
    a = x.reshape(4, -1) @ w + b
    assert rel_error(out, np.maximum(gamma * np_normalize(a, axis)[0] + beta, 0)) < 1e-10
    if norm == "bn":
        assert rel_error(param["running_mean"], 0.1 * a.mean(axis=0)) < 1e-12
    grads = bwd(dout, cache)
    f = lambda _: fwd(x, w, b, gamma, beta, dict(param))[0]
    for name, value, grad in zip("x w b gamma beta".split(), (x, w, b, gamma, beta), grads,
                                 strict=True):  # fmt: skip
        numeric = eval_numerical_gradient_array(f, value, dout)
        if norm == "bn" and name == "b":  # batch norm removes a bias: zero gradient
            assert np.max(np.abs(numeric)) < 1e-9 and np.max(np.abs(grad)) < 1e-12
        else:
            assert grad_error(numeric, grad) < 1e-7, name


# ----------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("p", [0.25, 0.4, 0.7])
def test_dropout_statistics(rng, p):
    x = rng.randn(500, 500) + 10
    out, (_, mask) = dropout_forward(x, {"mode": "train", "p": p})
    # p is the DROP probability; kept entries are scaled by 1 / (1 - p).
    assert abs(np.mean(out == 0) - p) < 0.01
    assert abs(out.mean() - x.mean()) < 0.05 * x.mean()
    kept = out != 0
    assert rel_error(out[kept], x[kept] / (1 - p)) < 1e-12
    out_test, _ = dropout_forward(x, {"mode": "test", "p": p})
    assert np.array_equal(out_test, x)


def test_dropout_mask_is_numpys_and_seeded():
    x = np.random.randn(6, 7)
    p = 0.3
    out, (_, mask) = dropout_forward(x, {"mode": "train", "p": p, "seed": 5})
    np.random.seed(5)
    expected = (np.random.rand(6, 7) >= p) / (1 - p)
    assert np.array_equal(mask, expected) and rel_error(out, x * expected) < 1e-15
    again, _ = dropout_forward(x, {"mode": "train", "p": p, "seed": 5})
    assert np.array_equal(out, again)
    other, _ = dropout_forward(x, {"mode": "train", "p": p, "seed": 6})
    assert not np.array_equal(out, other)
    with pytest.raises(ValueError, match="drop probability"):
        dropout_forward(x, {"mode": "train", "p": 1.0})


def test_dropout_backward(rng):
    x, dout = rng.randn(10, 10) + 10, rng.randn(10, 10)
    param = {"mode": "train", "p": 0.2, "seed": 123}
    _, cache = dropout_forward(x, param)
    dx = dropout_backward(dout, cache)
    dx_num = eval_numerical_gradient_array(lambda x: dropout_forward(x, param)[0], x, dout)
    assert rel_error(dx, dx_num) < 1e-10
    _, cache = dropout_forward(x, {"mode": "test", "p": 0.2})
    assert np.array_equal(dropout_backward(dout, cache), dout)


# ----------------------------------------------------------------------------- TwoLayerNet


def two_layer_fixed(N=3, D=5, H=50, C=7):
    """The assignment's fixed weights and inputs."""
    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=1e-3)
    model.params["W1"] = np.linspace(-0.7, 0.3, num=D * H).reshape(D, H)
    model.params["b1"] = np.linspace(-0.1, 0.9, num=H)
    model.params["W2"] = np.linspace(-0.3, 0.4, num=H * C).reshape(H, C)
    model.params["b2"] = np.linspace(-0.9, 0.1, num=C)
    X = np.linspace(-5.5, 4.5, num=N * D).reshape(D, N).T
    return model, X


def test_two_layer_net_init(rng):
    std = 1e-3
    model = TwoLayerNet(input_dim=40, hidden_dim=50, num_classes=7, weight_scale=std)
    assert set(model.params) == {"W1", "b1", "W2", "b2"}
    assert all(v.dtype == np.float64 for v in model.params.values())
    assert abs(model.params["W1"].std() - std) < std / 10
    assert abs(model.params["W2"].std() - std) < std / 10
    assert np.all(model.params["b1"] == 0) and np.all(model.params["b2"] == 0)


def test_two_layer_net_fixed_weights():
    model, X = two_layer_fixed()
    p = model.params
    ref_scores = np.maximum(X @ p["W1"] + p["b1"], 0) @ p["W2"] + p["b2"]
    scores = model.loss(X)
    assert scores.shape == (3, 7) and np.abs(scores - ref_scores).sum() < 1e-10
    y = np.asarray([0, 5, 1])
    loss, grads = model.loss(X, y)
    assert abs(loss - np_softmax_loss(ref_scores, y)[0]) < 1e-12
    assert set(grads) == set(p) and all(isinstance(g, np.ndarray) for g in grads.values())
    model.reg = 1.0  # changed after construction: re-read at each call
    loss_reg, _ = model.loss(X, y)
    assert abs(loss_reg - (np_softmax_loss(ref_scores, y)[0] + l2(p, 1.0))) < 1e-10


@pytest.mark.parametrize("reg", [0.0, 0.7])
def test_two_layer_net_gradients(rng, reg):
    N, D, H, C = 3, 5, 10, 7
    X, y = rng.randn(N, D), rng.randint(C, size=N)
    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=1e-1, reg=reg)
    errors = model_grad_errors(model, X, y)
    assert max(errors.values()) < 1e-7, errors


# ----------------------------------------------------------------------------- FullyConnectedNet


def test_fc_net_init_reproduces_numpy_draws():
    dims = [12, 7, 5, 3]
    np.random.seed(3)
    model = FullyConnectedNet(dims[1:-1], input_dim=12, num_classes=3, weight_scale=0.1,
                              normalization="batchnorm")  # fmt: skip
    np.random.seed(3)
    for i in range(3):
        expected = (0.1 * np.random.randn(dims[i], dims[i + 1])).astype(np.float32)
        assert np.array_equal(model.params[f"W{i + 1}"], expected)
        assert np.array_equal(model.params[f"b{i + 1}"], np.zeros(dims[i + 1], np.float32))
    assert set(model.params) == {f"{k}{i}" for k in ("W", "b") for i in (1, 2, 3)} | {
        f"{k}{i}" for k in ("gamma", "beta") for i in (1, 2)
    }
    assert all(v.dtype == np.float32 for v in model.params.values())
    assert model.bn_params == [{"mode": "train"}, {"mode": "train"}]
    assert model.dropout_param == {}
    np.random.seed(3)
    two = TwoLayerNet(input_dim=4, hidden_dim=6, num_classes=2, weight_scale=0.5)
    np.random.seed(3)
    assert np.array_equal(two.params["W1"], 0.5 * np.random.randn(4, 6))
    assert np.array_equal(two.params["W2"], 0.5 * np.random.randn(6, 2))


def test_fc_net_configuration_attributes():
    m = FullyConnectedNet([4], input_dim=3, num_classes=2, dropout=0.3, seed=7,
                          normalization="layernorm")  # fmt: skip
    assert m.dropout_param == {"mode": "train", "p": 0.3, "seed": 7}
    assert m.bn_params == [{}] and m.use_dropout and not m.use_batchnorm
    assert m.num_layers == 2
    with pytest.raises(ValueError, match="drop probability"):
        FullyConnectedNet([4], input_dim=3, num_classes=2, dropout=1)
    with pytest.raises(ValueError, match="normalization"):
        FullyConnectedNet([4], input_dim=3, num_classes=2, normalization="groupnorm")


CONFIGS = [
    pytest.param(None, 0.0, id="plain"),
    pytest.param("batchnorm", 0.0, id="batchnorm"),
    pytest.param("layernorm", 0.0, id="layernorm"),
    pytest.param(None, 0.3, id="dropout"),
    pytest.param("batchnorm", 0.3, id="batchnorm-dropout"),
]


@pytest.mark.parametrize(
    "norm, p, dtype",
    [pytest.param(*c.values, np.float64, id=f"{c.id}-f64") for c in CONFIGS]
    + [pytest.param(*c.values, np.float32, id=f"{c.id}-f32") for c in CONFIGS[3:]],
)
def test_fc_net_matches_numpy_reference(rng, norm, p, dtype):
    N, D, H1, H2, C = 6, 8, 9, 7, 4
    reg, seed = 0.37, 17
    model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, dropout=p, reg=reg,
                              weight_scale=0.3, dtype=dtype, seed=seed,
                              normalization=norm)  # fmt: skip
    for name in model.params:  # non-trivial gamma and beta
        if name.startswith(("gamma", "beta", "b")):
            model.params[name] = (1 + rng.rand(*model.params[name].shape)).astype(dtype)
    X, y = rng.randn(N, 2, 4), rng.randint(C, size=N)
    params = {k: v.astype(np.float64) for k, v in model.params.items()}

    masks = None
    if p:  # the seeded masks, reseeded at each hidden layer as the assignment's dropout does
        masks = []
        for H in (H1, H2):
            np.random.seed(seed)
            masks.append((np.random.rand(N, H) >= p) / (1 - p))
    ref_scores, stats = np_fc_net(params, X, 3, norm, masks=masks)
    ref_loss = np_softmax_loss(ref_scores, y)[0] + l2(params, reg)
    loss, grads = model.loss(X, y)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    assert abs(loss - ref_loss) < tol * abs(ref_loss)
    assert np.asarray(loss).dtype == dtype
    assert set(grads) == set(model.params)
    assert all(g.dtype == dtype and g.shape == model.params[k].shape for k, g in grads.items())
    if norm == "batchnorm":  # running statistics written back in place
        for bn_param, (mean, var) in zip(model.bn_params, stats, strict=True):
            assert bn_param["mode"] == "train"
            assert rel_error(bn_param["running_mean"], 0.1 * mean) < tol
            assert rel_error(bn_param["running_var"], 0.1 * var) < tol
    # Test mode: no dropout, batch norm with the running statistics.
    running = [(b["running_mean"], b["running_var"]) for b in model.bn_params if b]
    ref_test, _ = np_fc_net(params, X, 3, norm, train=False, running=running)
    scores = model.loss(X)
    assert scores.dtype == dtype and rel_error(scores, ref_test) < tol
    if p:
        assert model.dropout_param["mode"] == "test"
    if norm == "batchnorm":
        assert all(b["mode"] == "test" for b in model.bn_params)


@pytest.mark.parametrize("norm", [None, "batchnorm", "layernorm"])
def test_fc_net_train_loss_equals_core_model(rng, norm):
    """The compatibility loss runs the core's layer blocks; it must equal the core model's
    manual-gradient loss exactly (no dropout, where both are deterministic)."""
    model = FullyConnectedNet([6, 5], input_dim=4, num_classes=3, reg=0.2, weight_scale=0.5,
                              dtype=np.float64, normalization=norm)  # fmt: skip
    X, y = rng.randn(7, 4), rng.randint(3, size=7)
    loss, grads = model.loss(X, y)
    net = models.FullyConnectedNet((6, 5), input_dim=4, num_classes=3, reg=0.2,
                                   dtype=np.float64, normalization=norm)  # fmt: skip
    with jax.enable_x64(True):
        state = {k: models.layers.BatchNormState(np.zeros(s[0]), np.zeros(s[0]))
                 for k, s in (("bn1", (6,)), ("bn2", (5,))) if norm == "batchnorm"}  # fmt: skip
        core_loss = jax.jit(lambda *args: net.loss(*args))  # one compilation, not op by op
        ref_loss, ref_grads, ref_state = core_loss(model.params, state, X, y)
    assert rel_error(loss, ref_loss) < 1e-14
    for k in grads:  # biases before batch norm have gradients ~1e-17: compare absolutely too
        np.testing.assert_allclose(grads[k], ref_grads[k], rtol=1e-12, atol=1e-15, err_msg=k)
    for i, bn_param in enumerate(model.bn_params if norm == "batchnorm" else [], start=1):
        assert rel_error(bn_param["running_mean"], ref_state[f"bn{i}"].running_mean) < 1e-12


@pytest.mark.parametrize("reg", [0.0, 3.14])
def test_fc_net_gradient_check(rng, reg):
    N, D, H1, H2, C = 2, 15, 20, 30, 10
    X, y = rng.randn(N, D), rng.randint(C, size=N)
    model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, reg=reg,
                              weight_scale=5e-2, dtype=np.float64)  # fmt: skip
    errors = model_grad_errors(model, X, y)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize(
    "norm, p", [("batchnorm", 0.0), ("layernorm", 0.0), (None, 0.25)], ids=["bn", "ln", "drop"]
)
def test_fc_net_gradient_check_norm_and_dropout(rng, norm, p):
    N, D, H1, H2, C = 10, 6, 8, 7, 5
    X, y = rng.randn(N, D), rng.randint(C, size=N)
    model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, reg=0.1, dropout=p, seed=123,
                              weight_scale=5e-2, dtype=np.float64,
                              normalization=norm)  # fmt: skip
    errors = model_grad_errors(model, X, y)
    assert max(errors.values()) < 1e-6, errors


def test_fc_net_rereads_params_and_reg(rng):
    model = FullyConnectedNet([5], input_dim=3, num_classes=4, dtype=np.float64, reg=0.0)
    X, y = rng.randn(6, 3), rng.randint(4, size=6)
    loss0, _ = model.loss(X, y)
    model.params["W1"][0, 0] += 1.0  # in place, as the gradient checks do
    loss1, _ = model.loss(X, y)
    assert loss1 != loss0
    model.params["W1"][0, 0] -= 1.0
    assert model.loss(X, y)[0] == loss0
    model.reg = 2.5
    assert abs(model.loss(X, y)[0] - (loss0 + l2(model.params, 2.5))) < 1e-12
    model.params["b2"] = model.params["b2"] + 1.0  # replaced: scores shift by one
    assert rel_error(model.loss(X), model.loss(X)) == 0
    with pytest.raises(ValueError, match="W2"):
        model.params["W2"] = np.zeros((4, 4))
        model.loss(X)


def test_fc_net_does_not_recompile_per_call(rng):
    model = FullyConnectedNet([5, 4], input_dim=3, num_classes=4, dtype=np.float64,
                              normalization="batchnorm")  # fmt: skip
    X, y = rng.randn(6, 3), rng.randint(4, size=6)
    model.loss(X, y)
    model.loss(X)
    sizes = fc_net._train_loss_jit._cache_size(), fc_net._scores_jit._cache_size()
    for reg in (0.1, 0.2, 0.3):
        model.reg = reg
        model.params["W1"] += 0.01
        model.loss(X, y)
        model.loss(X)
    assert (fc_net._train_loss_jit._cache_size(), fc_net._scores_jit._cache_size()) == sizes


# ----------------------------------------------------------------------------- optim


def fixed_arrays():
    N, D = 4, 5
    lin = lambda lo, hi: np.linspace(lo, hi, num=N * D).reshape(N, D)
    return lin(-0.4, 0.6), lin(-0.6, 0.4), lin(0.6, 0.9), lin(0.7, 0.5)


def test_sgd_momentum_fixed_arrays():
    w, dw, v, _ = fixed_arrays()
    config = {"learning_rate": 1e-3, "velocity": v.copy()}
    next_w, out_config = optim.sgd_momentum(w, dw, config=config)
    expected_v = 0.9 * v - 1e-3 * dw
    assert out_config is config and config["momentum"] == 0.9
    assert rel_error(next_w, w + expected_v) < 1e-15
    assert rel_error(config["velocity"], expected_v) < 1e-15


def test_rmsprop_fixed_arrays():
    w, dw, cache, _ = fixed_arrays()
    cache = np.linspace(0.7, 0.8, num=20).reshape(4, 5)
    config = {"learning_rate": 1e-2, "cache": cache}
    next_w, _ = optim.rmsprop(w, dw, config=config)
    expected_cache = 0.99 * cache + 0.01 * dw**2
    assert rel_error(next_w, w - 1e-2 * dw / (np.sqrt(expected_cache) + 1e-8)) < 1e-15
    assert rel_error(config["cache"], expected_cache) < 1e-15
    assert config["decay_rate"] == 0.99 and config["epsilon"] == 1e-8


def test_adam_fixed_arrays():
    w, dw, m, v = fixed_arrays()
    config = {"learning_rate": 1e-2, "m": m, "v": v, "t": 5}
    next_w, _ = optim.adam(w, dw, config=config)
    t = 6  # incremented before the bias correction
    m1 = 0.9 * m + 0.1 * dw
    v1 = 0.999 * v + 0.001 * dw**2
    expected = w - 1e-2 * (m1 / (1 - 0.9**t)) / (np.sqrt(v1 / (1 - 0.999**t)) + 1e-8)
    assert rel_error(next_w, expected) < 1e-14
    assert rel_error(config["m"], m1) < 1e-15 and rel_error(config["v"], v1) < 1e-15
    assert config["t"] == 6 and isinstance(config["t"], int)


def np_rule(name, w, dw, c):
    """Independent NumPy rules with the assignment's defaults; updates c in place."""
    if name == "sgd":
        return w - 1e-2 * dw
    if name == "sgd_momentum":
        c["velocity"] = 0.9 * c.get("velocity", 0) - 1e-2 * dw
        return w + c["velocity"]
    if name == "rmsprop":
        c["cache"] = 0.99 * c.get("cache", 0) + 0.01 * dw**2
        return w - 1e-2 * dw / (np.sqrt(c["cache"]) + 1e-8)
    c["t"] = c.get("t", 0) + 1
    c["m"] = 0.9 * c.get("m", 0) + 0.1 * dw
    c["v"] = 0.999 * c.get("v", 0) + 0.001 * dw**2
    mhat, vhat = c["m"] / (1 - 0.9 ** c["t"]), c["v"] / (1 - 0.999 ** c["t"])
    return w - 1e-3 * mhat / (np.sqrt(vhat) + 1e-8)


@pytest.mark.parametrize("name", optim.__all__)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rules_default_config_and_repeated_steps(rng, name, dtype):
    rule = getattr(optim, name)
    w, ref_w, ref_config = rng.randn(3, 4).astype(dtype), None, {}
    ref_w = w.astype(np.float64)
    next_w, config = rule(w, rng.randn(3, 4).astype(dtype))  # config=None: a new dict
    assert isinstance(config, dict) and "learning_rate" in config
    rng.seed(5)
    w, config = rng.randn(3, 4).astype(dtype), None
    ref_w = w.astype(np.float64)
    for _ in range(3):
        dw = rng.randn(3, 4).astype(dtype)
        w, config = rule(w, dw, config)
        ref_w = np_rule(name, ref_w, dw.astype(np.float64), ref_config)
    assert w.dtype == dtype and w.flags.writeable
    assert rel_error(w, ref_w) < (1e-13 if dtype == np.float64 else 1e-5)
    for key in set(ref_config) - {"t"}:
        assert config[key].dtype == dtype
        assert rel_error(config[key], ref_config[key]) < (1e-13 if dtype == np.float64 else 1e-5)
    assert config.get("t", 3) == 3


# ----------------------------------------------------------------------------- gradient_check


def test_gradient_check_functions(capsys):
    x = np.asarray([[1.0, -2.0], [0.5, 3.0]])
    f = lambda x: np.sum(x**3)  # gradient 3 x^2
    grad = eval_numerical_gradient(f, x, verbose=True)
    assert rel_error(grad, 3 * x**2) < 1e-9
    assert capsys.readouterr().out.count("\n") == 4
    df = np.asarray([[1.0, 2.0], [3.0, 4.0]])
    assert rel_error(eval_numerical_gradient_array(np.sin, x, df), np.cos(x) * df) < 1e-9
    assert np.array_equal(x, [[1.0, -2.0], [0.5, 3.0]])  # restored after perturbing
    grad_check_sparse(f, x, 3 * x**2, num_checks=3)
    assert capsys.readouterr().out.count("relative error") == 3


# ----------------------------------------------------------------------------- Solver


def blobs(rng, n, C=3, D=4):
    centers = 3 * rng.randn(C, D)
    y = rng.randint(C, size=n)
    return (centers[y] + rng.randn(n, D)).astype(np.float32), y


@pytest.fixture
def small_data(rng):
    X, y = blobs(rng, 90)
    return {"X_train": X[:60], "y_train": y[:60], "X_val": X[60:], "y_val": y[60:]}


def test_solver_rejects_unknown_arguments(small_data):
    model = TwoLayerNet(input_dim=4, hidden_dim=8, num_classes=3)
    with pytest.raises(ValueError, match="Unrecognized arguments"):
        Solver(model, small_data, learning_rate=1e-3)
    for rule in ("sgd_nesterov", "np"):
        with pytest.raises(ValueError, match="Invalid update_rule"):
            Solver(model, small_data, update_rule=rule)


def test_solver_training_bookkeeping(small_data, tmp_path, capsys):
    model = FullyConnectedNet([10], input_dim=4, num_classes=3, weight_scale=0.1)
    lr, decay, epochs = 1e-2, 0.9, 4
    solver = Solver(model, small_data, update_rule="adam", optim_config={"learning_rate": lr},
                    lr_decay=decay, batch_size=20, num_epochs=epochs, print_every=5,
                    checkpoint_name=str(tmp_path / "ck"))  # fmt: skip
    solver.train()
    iterations = epochs * (60 // 20)
    assert len(solver.loss_history) == iterations
    assert len(solver.train_acc_history) == len(solver.val_acc_history) == epochs + 1
    assert solver.epoch == epochs
    assert solver.best_val_acc == max(solver.val_acc_history) > 0.6  # separable blobs
    assert model.params is solver.best_params
    assert solver.check_accuracy(small_data["X_val"], small_data["y_val"]) == solver.best_val_acc
    for config in solver.optim_configs.values():
        assert abs(config["learning_rate"] - lr * decay**epochs) < 1e-15
        assert config["t"] == iterations
    assert solver.optim_config == {"learning_rate": lr}  # the template is not modified
    out = capsys.readouterr().out
    assert f"(Iteration 1 / {iterations}) loss:" in out and f"(Epoch {epochs} / {epochs})" in out
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"ck_epoch_{e}.pkl" for e in range(epochs + 1)]
    with open(tmp_path / f"ck_epoch_{epochs}.pkl", "rb") as f:
        checkpoint = pickle.load(f)
    assert checkpoint["epoch"] == epochs and len(checkpoint["loss_history"]) == iterations
    assert set(checkpoint["model"].params) == set(model.params)


def test_solver_is_reproducible_from_numpy_seed(small_data):
    histories = []
    for _ in range(2):
        np.random.seed(0)
        model = FullyConnectedNet([8], input_dim=4, num_classes=3, dropout=0.2,
                                  normalization="batchnorm")  # fmt: skip
        solver = Solver(model, small_data, update_rule="sgd_momentum", num_epochs=2,
                        batch_size=30, verbose=False)  # fmt: skip
        solver.train()
        histories.append((solver.loss_history, solver.val_acc_history))
    assert histories[0] == histories[1]


def test_solver_runs_each_rule(small_data):
    for rule in optim.__all__:
        model = TwoLayerNet(input_dim=4, hidden_dim=16, num_classes=3, weight_scale=0.1)
        lr = 1e-3 if rule in ("adam", "rmsprop") else 5e-2
        solver = Solver(model, small_data, update_rule=rule, optim_config={"learning_rate": lr},
                        num_epochs=2, batch_size=20, verbose=False)  # fmt: skip
        solver.train()
        first, last = np.mean(solver.loss_history[:2]), np.mean(solver.loss_history[-2:])
        assert last < first, rule


# ----------------------------------------------------------------------------- data_utils


def write_fake_cifar(folder, rows=4):
    """Five training batches and a test batch in the CIFAR-10 python format."""
    folder.mkdir()
    rng = np.random.RandomState(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.randint(0, 256, size=(rows, 3072)).astype(np.uint8)
        labels = rng.randint(10, size=rows).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f)
        batches[name] = (data, np.asarray(labels))
    return batches


def test_cifar10_loading(tmp_path, monkeypatch):
    batches = write_fake_cifar(tmp_path / "cifar-10-batches-py")
    train = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_y = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    images = train.reshape(-1, 3, 32, 32).astype(np.float64)

    monkeypatch.setattr(data_utils, "_TRAIN_ROWS", 20)  # the fake dataset's sizes
    monkeypatch.setattr(data_utils, "_TEST_ROWS", 4)
    Xtr, Ytr, Xte, Yte = data_utils.load_CIFAR10(str(tmp_path / "cifar-10-batches-py"))
    assert Xtr.shape == (20, 32, 32, 3) and Xtr.dtype == np.float64
    assert np.array_equal(Xtr, images.transpose(0, 2, 3, 1)) and np.array_equal(Ytr, train_y)
    assert Xte.shape == (4, 32, 32, 3) and np.array_equal(Yte, batches["test_batch"][1])

    monkeypatch.setenv(data_utils.CIFAR10_DIR_ENV, str(tmp_path / "cifar-10-batches-py"))
    data = data_utils.get_CIFAR10_data(num_training=15, num_validation=3, num_test=2)
    assert list(data) == ["X_train", "y_train", "X_val", "y_val", "X_test", "y_test"]
    mean = images[:15].mean(axis=0)
    assert np.allclose(data["X_train"], images[:15] - mean, atol=1e-3)
    assert np.allclose(data["X_val"], images[15:18] - mean, atol=1e-3)
    assert np.array_equal(data["y_val"], train_y[15:18])
    assert data["X_test"].shape == (2, 3, 32, 32)
    raw = data_utils.get_CIFAR10_data(10, 2, 1, subtract_mean=False, cifar_dir=str(tmp_path))
    assert np.array_equal(raw["X_train"], images[:10])
    monkeypatch.delenv(data_utils.CIFAR10_DIR_ENV)
    with pytest.raises(FileNotFoundError, match="cs231n/datasets/cifar-10-batches-py"):
        data_utils.get_CIFAR10_data()


def test_digits_data():
    data = data_utils.get_digits_data()
    assert list(data) == ["X_train", "y_train", "X_val", "y_val", "X_test", "y_test"]
    assert data["X_train"].shape[1:] == (1, 8, 8) and len(data["X_val"]) == 200
