# %% [markdown]
# # Hand-written vs automatic gradients
#
# Every jaxfc layer has a hand-written backward pass, and every model computes its gradients
# either with them (`gradients='manual'`) or with `jax.grad` of the forward loss
# (`gradients='autodiff'`). This notebook compares the two, layer by layer and model by
# model, and times a jitted training step in both modes.
#
# Runs on the bundled digits (set `JAXFC_CIFAR_DIR` for CIFAR-10).

# %%
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxfc import (
    BatchNormState,
    FullyConnectedNet,
    Solver,
    TwoLayerNet,
    layers,
    load_cifar10,
    load_digits,
    losses,
    ops,
)
from jaxfc.gradcheck import compare_trees, rel_error
from jaxfc.optim import sgd
from jaxfc.training import TrainState, make_train_step

plt.rcParams["figure.figsize"] = (10.0, 4.0)

CIFAR_DIR = os.environ.get("JAXFC_CIFAR_DIR")
DATASET = "cifar10" if CIFAR_DIR else "digits"
data = load_cifar10(CIFAR_DIR) if CIFAR_DIR else load_digits()
INPUT_DIM = int(np.prod(data["X_train"].shape[1:]))
for name in ("X_train", "y_train", "X_val", "y_val"):
    print(f"{name}: {data[name].shape} {data[name].dtype}")

# %% [markdown]
# ## Layer by layer
#
# For each layer pair, `manual = backward(dout, cache)` is compared with
# `jax.vjp(lambda *inputs: forward(*inputs)[0], *inputs)` applied to the same `dout`, in
# float64 and in float32, with two measures of the difference:
#
# * `rel`: cs231n's relative error `max |m - a| / max(1e-8, |m| + |a|)`, entry by entry;
# * `scaled`: `max |m - a| / max |a|`, the maxima taken over all the layer's input gradients
#   together: the error relative to the size of the gradient.
#
# They differ where a gradient is exactly zero. In the affine-batchnorm-relu-dropout block the
# bias `b` feeds the batch norm, whose mean subtraction cancels it: its true gradient is 0,
# `jax.vjp` gets exactly 0, the closed-form backward gets rounding noise, and the 1e-8 floor of
# `rel` turns noise of 1e-15 (float64) or 1e-9 (float32) into a large relative error.
# Elsewhere, in float64 the two agree to about 1e-15 (two orderings of the same arithmetic);
# in float32 the same correct code disagrees by about 1e-7 to 1e-6, which is why gradient
# checks run in float64.

# %%
def bn_train(x, gamma, beta):
    out, _, cache = layers.batchnorm_forward(x, gamma, beta, bn_state(x), train=True)
    return out, cache


def bn_eval(x, gamma, beta):
    out, _, cache = layers.batchnorm_forward(x, gamma, beta, bn_state(x), train=False)
    return out, cache


def bn_state(x):
    # Running statistics for evaluation mode: means 0, 0.1, ...; variances 1, 1.1, ...
    ramp = 0.1 * jnp.arange(x.shape[1], dtype=x.dtype)
    return BatchNormState(ramp, 1 + ramp)


def block(x, w, b, gamma, beta):
    out, _, cache = layers.affine_norm_relu_dropout_forward(
        x, w, b, gamma, beta, bn_state(x @ w), normalization="batchnorm", train=True,
        dropout=0.3, key=jax.random.key(0))
    return out, cache


def block_backward(dout, cache):
    return layers.affine_norm_relu_dropout_backward(dout, cache)


def dropout_train(x):
    return layers.dropout_forward(x, p=0.3, train=True, key=jax.random.key(0))


def loss_layer(loss_fn):
    y = jnp.array([0, 1, 2, 3, 4, 5, 6, 7])
    return (lambda scores: loss_fn(scores, y)), (lambda dout, dscores: dout * dscores)


N, D, M = 8, 12, 10
LAYERS = {
    # name: (forward, backward, input shapes)
    "affine": (layers.affine_forward, layers.affine_backward, [(N, 3, 4), (D, M), (M,)]),
    "relu": (layers.relu_forward, layers.relu_backward, [(N, M)]),
    "affine_relu": (layers.affine_relu_forward, layers.affine_relu_backward,
                    [(N, 3, 4), (D, M), (M,)]),
    "batchnorm (train)": (bn_train, layers.batchnorm_backward, [(N, M), (M,), (M,)]),
    "batchnorm_alt (train)": (bn_train, layers.batchnorm_backward_alt, [(N, M), (M,), (M,)]),
    "batchnorm (eval)": (bn_eval, layers.batchnorm_backward, [(N, M), (M,), (M,)]),
    "layernorm": (layers.layernorm_forward, layers.layernorm_backward, [(N, M), (M,), (M,)]),
    "dropout (train)": (dropout_train, layers.dropout_backward, [(N, M)]),
    "affine-bn-relu-dropout": (block, block_backward, [(N, D), (D, M), (M,), (M,), (M,)]),
    "softmax_loss": (*loss_layer(losses.softmax_loss), [(N, M)]),
    "svm_loss": (*loss_layer(losses.svm_loss), [(N, M)]),
}


def manual_and_autodiff(forward, backward, inputs, dout):
    """Both gradients of `sum(forward(*inputs)[0] * dout)` w.r.t. every input, one program."""
    _, cache = forward(*inputs)
    manual = backward(dout, cache)
    manual = list(manual) if isinstance(manual, (tuple, list)) else [manual]
    _, vjp = jax.vjp(lambda *xs: forward(*xs)[0], *inputs)
    return manual, list(vjp(dout))


def scaled_error(manual, autodiff):
    """max |m - a| / max |a|, both maxima over all the gradients (pytrees) together."""
    manual = [np.asarray(m, np.float64) for m in jax.tree.leaves(manual)]
    autodiff = [np.asarray(a, np.float64) for a in jax.tree.leaves(autodiff)]
    diff = max(np.max(np.abs(m - a)) for m, a in zip(manual, autodiff, strict=True))
    scale = max(np.max(np.abs(a)) for a in autodiff)
    return diff / scale if scale > 0 else diff


def layer_errors(dtype):
    """{layer: (rel, scaled)} for random inputs and dout of the given dtype; all the layers'
    gradients are computed by one jitted program."""
    rng = np.random.default_rng(0)
    inputs, douts = {}, {}
    for name, (forward, _, shapes) in LAYERS.items():
        inputs[name] = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
        out = jax.eval_shape(lambda *xs, f=forward: f(*xs)[0], *inputs[name])
        douts[name] = rng.standard_normal(out.shape).astype(dtype)

    @jax.jit
    def all_gradients(inputs, douts):
        return {name: manual_and_autodiff(forward, backward, inputs[name], douts[name])
                for name, (forward, backward, _) in LAYERS.items()}

    return {name: (rel_error(manual, autodiff), scaled_error(manual, autodiff))
            for name, (manual, autodiff) in all_gradients(inputs, douts).items()}


with jax.enable_x64(True), jax.default_matmul_precision("highest"):
    errors64 = layer_errors(np.float64)
errors32 = layer_errors(np.float32)
print(f"{'layer':<24} {'float64 rel':>12} {'scaled':>9} {'float32 rel':>12} {'scaled':>9}")
for name in LAYERS:
    (rel64, scaled64), (rel32, scaled32) = errors64[name], errors32[name]
    print(f"{name:<24} {rel64:>12.2e} {scaled64:>9.2e} {rel32:>12.2e} {scaled32:>9.2e}")
max_scaled64 = max(scaled for _, scaled in errors64.values())
print(f"float64, manual vs autodiff: largest scaled error {max_scaled64:.2e}")
assert max_scaled64 < 1e-12
assert max(rel for _, rel in errors64.values()) < 1e-6
assert max(scaled for _, scaled in errors32.values()) < 1e-4

# %% [markdown]
# ## `jaxfc.ops`: `jax.grad` through the hand-written backward passes
#
# `jaxfc.ops` wraps each pair as a `jax.custom_vjp`, so a network written with the ops is
# differentiated by `jax.grad` *using our backward passes*. Here a two-layer net written with
# the ops gives exactly the gradients of `TwoLayerNet.loss(..., gradients='manual')`.

# %%
def two_layer_loss(params, X, y):
    hidden = ops.relu(ops.affine(X, params["W1"], params["b1"]))
    scores = ops.affine(hidden, params["W2"], params["b2"])
    return ops.softmax_cross_entropy(scores, y)


model = TwoLayerNet(input_dim=INPUT_DIM, hidden_dim=50, num_classes=10, weight_scale=0.1)
params, state = model.init(jax.random.key(1))
X, y = jnp.asarray(data["X_train"][:64]), jnp.asarray(data["y_train"][:64])
grads_ops = jax.jit(jax.grad(two_layer_loss))(params, X, y)
_, grads_manual, _ = jax.jit(lambda p: model.loss(p, state, X, y, gradients="manual"))(params)
difference = rel_error(grads_ops, grads_manual)
print(f"jax.grad through jaxfc.ops vs the model's manual gradients: {difference:.2e}")
assert difference < 1e-5

# %% [markdown]
# ## Model by model
#
# For each model, `model.loss(..., gradients='manual')` and `gradients='autodiff'` (same key,
# hence the same dropout masks), in float64, with the same two measures (max over the
# parameters); with batch norm, the biases `b1, b2` are the exactly-zero gradients.
# `compare_gradients(model, params, state, X, y)` prints the full per-parameter
# table for one model (add `numeric=True` for centered differences as well).

# %%
def models(dtype):
    common = dict(input_dim=D, num_classes=M, weight_scale=0.3, dtype=dtype)
    return {
        "TwoLayerNet": TwoLayerNet(hidden_dim=20, **common),
        "FC 3 layers, svm, reg 3.14": FullyConnectedNet([20, 30], reg=3.14, loss_type="svm",
                                                        **common),
        "FC + batchnorm": FullyConnectedNet([20, 30], normalization="batchnorm", **common),
        "FC + layernorm": FullyConnectedNet([20, 30], normalization="layernorm", **common),
        "FC + dropout 0.3": FullyConnectedNet([20, 30], dropout=0.3, **common),
        "FC + batchnorm + dropout": FullyConnectedNet([20, 30], normalization="batchnorm",
                                                      dropout=0.3, **common),
    }


print(f"{'model':<26} {'rel error':>10} {'scaled':>10}  worst parameter")
with jax.enable_x64(True), jax.default_matmul_precision("highest"):
    k1, k2, k3 = jax.random.split(jax.random.key(2), 3)
    X = jax.random.normal(k1, (N, D), jnp.float64)
    y = jax.random.randint(k2, (N,), 0, M)
    model_errors = {}
    for name, model in models(np.float64).items():
        params, state = model.init(k3)
        manual, autodiff = (
            jax.jit(lambda p, s, g=g, model=model: model.loss(
                p, s, X, y, key=jax.random.key(3), gradients=g)[1])(params, state)
            for g in ("manual", "autodiff"))
        report = compare_trees(manual, autodiff, reference_name="autodiff")
        worst = max(report.rows, key=lambda row: row.max_error)
        model_errors[name] = (report.max_error, scaled_error(manual, autodiff))
        print(f"{name:<26} {model_errors[name][0]:>10.2e} {model_errors[name][1]:>10.2e}  "
              f"{worst.name}")
assert max(scaled for _, scaled in model_errors.values()) < 1e-12
assert max(rel for _, rel in model_errors.values()) < 1e-6

# %% [markdown]
# ## Training: same trajectory in both modes
#
# The same Solver run with `gradients='manual'` and `gradients='autodiff'` (same seed, so the
# same minibatches and dropout masks). In float32 the two differ only by rounding, so the
# loss curves lie on top of each other.

# %%
def train(gradients):
    model = FullyConnectedNet([100, 100], input_dim=INPUT_DIM, num_classes=10, weight_scale=0.1,
                              normalization="batchnorm", dropout=0.1)
    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                    num_epochs=3, batch_size=100, gradients=gradients, verbose=False)
    return solver.train()


trained = {gradients: train(gradients) for gradients in ("manual", "autodiff")}
loss_manual = np.array(trained["manual"].loss_history)
loss_autodiff = np.array(trained["autodiff"].loss_history)
gap = np.abs(loss_manual - loss_autodiff)
print(f"{len(gap)} iterations: largest loss difference {gap.max():.1e} "
      f"(loss from {loss_manual[0]:.3f} to {loss_manual[-1]:.3f})")
assert gap.max() < 1e-3

fig, (ax_loss, ax_gap) = plt.subplots(1, 2)
ax_loss.plot(loss_manual, label="manual")
ax_loss.plot(loss_autodiff, "--", label="autodiff")
ax_loss.set(title="Training loss", xlabel="iteration")
ax_loss.legend()
ax_gap.semilogy(np.maximum(gap, 1e-10))
ax_gap.set(title="|manual - autodiff|", xlabel="iteration")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Speed of a jitted training step
#
# One SGD step (`jaxfc.training.make_train_step`: loss, gradients, update), jitted, in both
# modes. Each timing runs 50 steps in a Python loop after a warm-up and takes the best of a
# few repetitions. This is a quick look on whatever machine runs the notebook (the two modes
# are usually within tens of percent: XLA optimizes both programs); `bench/bench_gradients.py`
# is the careful benchmark.

# %%
SPEED_MODELS = {
    "TwoLayerNet, batch 100": (TwoLayerNet(input_dim=INPUT_DIM, hidden_dim=100,
                                           num_classes=10, weight_scale=0.1), 100),
    "FC [100]*4 + BN + dropout, batch 200": (
        FullyConnectedNet([100] * 4, input_dim=INPUT_DIM, num_classes=10, weight_scale=0.1,
                          normalization="batchnorm", dropout=0.5), 200),
}


def time_steps(model, batch_size, gradients, steps=50, repeats=3):
    optimizer = sgd(1e-2)
    step = jax.jit(make_train_step(model, optimizer, gradients=gradients))
    params, state = model.init(jax.random.key(0))
    ts = TrainState(params, state, optimizer.init(params))
    X = jnp.asarray(data["X_train"][:batch_size])
    y = jnp.asarray(data["y_train"][:batch_size])
    key = jax.random.key(1)
    ts, loss = step(ts, X, y, key, {})  # compile
    jax.block_until_ready(ts)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            ts, loss = step(ts, X, y, key, {})
        jax.block_until_ready(ts)
        best = min(best, (time.perf_counter() - start) / steps)
    assert np.isfinite(float(loss))
    return best


speed = {name: {g: time_steps(model, batch, g) for g in ("manual", "autodiff")}
         for name, (model, batch) in SPEED_MODELS.items()}
print(f"{'model':<38} {'manual':>10} {'autodiff':>10} {'autodiff/manual':>16}")
for name, t in speed.items():
    print(f"{name:<38} {1e6 * t['manual']:>8.0f}us {1e6 * t['autodiff']:>8.0f}us "
          f"{t['autodiff'] / t['manual']:>16.2f}")

fig, ax = plt.subplots(figsize=(8, 3))
names = list(speed)
for i, gradients in enumerate(("manual", "autodiff")):
    ax.barh(np.arange(len(names)) + 0.4 * i, [1e6 * speed[n][gradients] for n in names],
            height=0.4, label=gradients)
ax.set_yticks(np.arange(len(names)) + 0.2, names)
ax.set(xlabel="microseconds per jitted step (lower is better)")
ax.legend()
plt.tight_layout()
plt.show()
