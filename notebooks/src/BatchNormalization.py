# %% [markdown]
# # Batch normalization and layer normalization
#
# cs231n's batch-normalization notebook with jaxfc's functional layers. Batch norm keeps
# running statistics; in jaxfc they are explicit state: `batchnorm_forward(x, gamma, beta,
# state, train=...)` returns `(out, new_state, cache)` and mutates nothing.
#
# Runs on the bundled digits (set `JAXFC_CIFAR_DIR` for CIFAR-10; the training `assert`s are
# only made on the digits, for which the hyperparameters were chosen).

# %%
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxfc import BatchNormState, FullyConnectedNet, Solver, layers, load_cifar10, load_digits
from jaxfc.gradcheck import check_backward, rel_error
from jaxfc.models import compare_gradients
from jaxfc.optim import adam
from jaxfc.training import TrainState, make_accuracy, make_train_epoch

plt.rcParams["figure.figsize"] = (10.0, 4.0)

CIFAR_DIR = os.environ.get("JAXFC_CIFAR_DIR")
DATASET = "cifar10" if CIFAR_DIR else "digits"
data = load_cifar10(CIFAR_DIR) if CIFAR_DIR else load_digits()
INPUT_DIM = int(np.prod(data["X_train"].shape[1:]))
ON_DIGITS = DATASET == "digits"
for name in ("X_train", "y_train", "X_val", "y_val"):
    print(f"{name}: {data[name].shape} {data[name].dtype}")

# %% [markdown]
# ## Forward pass in training mode
#
# Activations of a random two-layer net, before and after batch norm: with `gamma = 1` and
# `beta = 0` every feature has mean 0 and standard deviation 1 over the batch; otherwise mean
# `beta` and standard deviation `gamma`.

# %%
N, D1, D2, D3 = 200, 50, 60, 3
k1, k2, k3 = jax.random.split(jax.random.key(231), 3)
X = jax.random.normal(k1, (N, D1))
W1 = jax.random.normal(k2, (D1, D2))
W2 = jax.random.normal(k3, (D2, D3))
a = jnp.maximum(X @ W1, 0) @ W2


def describe(name, values):
    print(f"{name:<28} means {np.round(np.asarray(values.mean(0)), 4)}   "
          f"stds {np.round(np.asarray(values.std(0)), 4)}")


describe("before batch norm:", a)
state = BatchNormState.zeros(D3)
for gamma, beta in [(jnp.ones(D3), jnp.zeros(D3)),
                    (jnp.array([1.0, 2.0, 3.0]), jnp.array([11.0, 12.0, 13.0]))]:
    out, _, _ = layers.batchnorm_forward(a, gamma, beta, state, train=True)
    describe(f"after (gamma={np.asarray(gamma)}):", out)
    assert np.allclose(out.mean(0), beta, atol=1e-4) and np.allclose(out.std(0), gamma, atol=1e-3)

# %% [markdown]
# ## Test mode uses the running averages
#
# Each training-mode call returns the running statistics updated as
# `0.9 * running + 0.1 * batch` (cs231n's momentum convention). After 50 training batches the
# test-mode output of fresh data from the same distribution is again close to mean 0 and
# standard deviation 1. The loop is a `lax.scan`: the state is just a carried pytree.

# %%
gamma, beta = jnp.ones(D3), jnp.zeros(D3)


def train_batch(state, key):
    x = jax.random.normal(key, (N, D1))
    a = jnp.maximum(x @ W1, 0) @ W2
    _, state, _ = layers.batchnorm_forward(a, gamma, beta, state, train=True)
    return state, None


state, _ = jax.lax.scan(train_batch, BatchNormState.zeros(D3),
                        jax.random.split(jax.random.key(0), 50))
X_test = jax.random.normal(jax.random.key(1), (N, D1))
a_test = jnp.maximum(X_test @ W1, 0) @ W2
out, state_after, _ = layers.batchnorm_forward(a_test, gamma, beta, state, train=False)
describe("after batch norm (test):", out)
assert state_after is state  # evaluation leaves the statistics alone
assert np.all(np.abs(out.mean(0)) < 0.15) and np.all(np.abs(out.std(0) - 1) < 0.15)

# %% [markdown]
# ## Backward pass
#
# `batchnorm_backward` walks the computational graph node by node; `batchnorm_backward_alt`
# is the closed form `dx = gamma / (N * std) * (N * dout - sum(dout) - x_hat * sum(dout *
# x_hat))`. Both are checked against `jax.vjp` and numeric differences in float64. The
# gradient check differentiates `out`, so we drop the state from the forward's results.

# %%
def bn_train_forward(x, gamma, beta):
    out, _, cache = layers.batchnorm_forward(
        x, gamma, beta, BatchNormState.zeros(x.shape[1], x.dtype), train=True)
    return out, cache


with jax.enable_x64(True):
    k1, k2, k3 = jax.random.split(jax.random.key(2), 3)
    x = 5 * jax.random.normal(k1, (4, 5), jnp.float64) + 12
    gamma = jax.random.normal(k2, (5,), jnp.float64)
    beta = jax.random.normal(k3, (5,), jnp.float64)
    for backward in (layers.batchnorm_backward, layers.batchnorm_backward_alt):
        report = check_backward(bn_train_forward, backward, (x, gamma, beta))
        print(f"{backward.__name__}:\n{report}\n")
        report.assert_close(1e-7)
    dout = jax.random.normal(jax.random.key(3), x.shape, jnp.float64)
    _, cache = bn_train_forward(x, gamma, beta)
    difference = rel_error(layers.batchnorm_backward(dout, cache),
                           layers.batchnorm_backward_alt(dout, cache))
print(f"batchnorm_backward vs batchnorm_backward_alt: max relative difference {difference:.2e}")
assert difference < 1e-10

# %% [markdown]
# Which one is faster? In NumPy the closed form is several times faster. Under `jax.jit`,
# XLA fuses the node-by-node graph too, so the gap mostly closes. (A rough timing on whatever
# machine runs this notebook; `bench/` holds the careful benchmarks.)

# %%
x = jax.random.normal(jax.random.key(4), (512, 1024))
dout = jax.random.normal(jax.random.key(5), x.shape)
gamma, beta = jnp.ones(1024), jnp.zeros(1024)
_, _, cache = layers.batchnorm_forward(x, gamma, beta, BatchNormState.zeros(1024), train=True)


def best_time(fn, *args, repeats=20):
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


t_graph = best_time(jax.jit(layers.batchnorm_backward), dout, cache)
t_alt = best_time(jax.jit(layers.batchnorm_backward_alt), dout, cache)
print(f"jitted batchnorm_backward {1e3 * t_graph:.3f} ms, batchnorm_backward_alt "
      f"{1e3 * t_alt:.3f} ms, speedup {t_graph / t_alt:.2f}x")

# %% [markdown]
# ## Layer normalization
#
# Layer norm normalizes each *row* over its features, so it behaves the same in training and
# testing and does not depend on the other examples of the batch.

# %%
out, _ = layers.layernorm_forward(a, jnp.ones(D3), jnp.zeros(D3))
print(f"layer norm: per-row means within {float(jnp.abs(out.mean(1)).max()):.1e} of 0, "
      f"per-row stds within {float(jnp.abs(out.std(1) - 1).max()):.1e} of 1")
assert np.allclose(out.mean(1), 0, atol=1e-4) and np.allclose(out.std(1), 1, atol=1e-2)

with jax.enable_x64(True):
    k1, k2, k3 = jax.random.split(jax.random.key(6), 3)
    x = 5 * jax.random.normal(k1, (4, 5), jnp.float64) + 12
    gamma = jax.random.normal(k2, (5,), jnp.float64)
    beta = jax.random.normal(k3, (5,), jnp.float64)
    report = check_backward(layers.layernorm_forward, layers.layernorm_backward, (x, gamma, beta))
print(report)
report.assert_close(1e-7)

# %% [markdown]
# ## Networks with normalization: gradient check
#
# `FullyConnectedNet(..., normalization='batchnorm' | 'layernorm')` puts the normalization
# between each hidden affine layer and its ReLU, with parameters `gamma1, beta1, ...`. Here
# the batch-norm network (`ManualVsAutodiff.ipynb` compares the layer-norm one as well).
#
# Two things to read in the table. The biases `b1, b2` feeding a batch norm have a
# gradient of exactly zero (the mean subtraction cancels them): `jax.grad` gets 0, the
# closed-form backward gets rounding noise around 1e-14, and cs231n's relative error, whose
# denominator is floored at 1e-8, reports that as about 1e-6. And normalizing a batch of 4
# small activations is a strongly curved function, so the centered differences themselves
# are off by about 1e-6 on the first layer's weights.

# %%
N, D, H1, H2, C = 4, 15, 20, 30, 10
with jax.enable_x64(True):
    k1, k2, k3 = jax.random.split(jax.random.key(7), 3)
    X = jax.random.normal(k1, (N, D), jnp.float64)
    y = jax.random.randint(k2, (N,), 0, C)
    model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, weight_scale=5e-2,
                              normalization="batchnorm", dtype=np.float64)
    params, state = model.init(k3)
    report = compare_gradients(model, params, state, X, y, numeric=True)
print(report)
# b1 and b2 feed batch norm: their exact gradient is 0, so against the numeric gradient
# (noise ~1e-11) cs231n's relative error measures only noise. Hold every other parameter to
# 1e-5 against the numeric gradient, and all of them to 1e-7 against autodiff.
zero_gradient = {"b1", "b2"}
assert all(row.errors["numeric"] < 1e-5 for row in report.rows if row.name not in zero_gradient)
assert all(row.errors["autodiff"] < 1e-7 for row in report.rows)

# %% [markdown]
# ## Batch norm makes deep networks train faster
#
# Three 5-layer networks with the same small initial weights (`weight_scale = 2e-2`), trained
# with Adam on 1000 examples: no normalization, batch norm, layer norm.

# %%
train_data = {**data, "X_train": data["X_train"][:1000], "y_train": data["y_train"][:1000]}
runs = {}
for normalization in (None, "batchnorm", "layernorm"):
    model = FullyConnectedNet([100] * 4, input_dim=INPUT_DIM, num_classes=10, weight_scale=2e-2,
                              normalization=normalization)
    runs[normalization or "baseline"] = solver = Solver(
        model, train_data, update_rule="adam", optim_config={"learning_rate": 1e-3},
        num_epochs=10, batch_size=50, verbose=False)
    solver.train()
    print(f"{normalization or 'baseline':>10}: train accuracy by epoch "
          f"{np.round(solver.train_acc_history, 2)}")

fig, axes = plt.subplots(1, 3, figsize=(14, 4))
for name, s in runs.items():
    axes[0].plot(s.loss_history, "o", markersize=2, label=name)
    axes[1].plot(s.train_acc_history, "-o", label=name)
    axes[2].plot(s.val_acc_history, "-o", label=name)
axes[0].set(title="Training loss", xlabel="iteration")
axes[1].set(title="Training accuracy", xlabel="epoch")
axes[2].set(title="Validation accuracy", xlabel="epoch")
for ax in axes:
    ax.legend()
plt.tight_layout()
plt.show()

if ON_DIGITS:  # after two epochs the normalized nets are far ahead
    for name in ("batchnorm", "layernorm"):
        assert runs[name].train_acc_history[2] > runs["baseline"].train_acc_history[2] + 0.3

# %% [markdown]
# ## Sensitivity to the weight scale
#
# 8-layer networks trained from initial weight scales spanning four orders of magnitude,
# with and without batch norm. Instead of building a Solver per run, we compile one epoch
# (`make_train_epoch`: the Solver's epoch, with its minibatches drawn in the program) per
# architecture and reuse it for every weight scale: the scale only changes the initial
# parameters, not the program.

# %%
weight_scales = np.logspace(-4, 0, 9)
X_train, y_train = jnp.asarray(train_data["X_train"]), jnp.asarray(train_data["y_train"])
X_val, y_val = jnp.asarray(data["X_val"]), jnp.asarray(data["y_val"])
optimizer = adam(1e-3)
sweep = {}
for normalization in (None, "batchnorm"):
    config = dict(hidden_dims=[50] * 7, input_dim=INPUT_DIM, num_classes=10,
                  normalization=normalization)
    model = FullyConnectedNet(**config)
    epoch = jax.jit(make_train_epoch(model, optimizer, batch_size=50,
                                     steps_per_epoch=X_train.shape[0] // 50))
    accuracy = jax.jit(make_accuracy(model))
    results = {"best_val_acc": [], "train_acc": [], "final_loss": []}
    for scale in weight_scales:
        params, state = FullyConnectedNet(**config, weight_scale=float(scale)).init(
            jax.random.key(0))
        ts = TrainState(params, state, optimizer.init(params))
        best_val = 0.0
        for e in range(10):
            ts, losses = epoch(ts, X_train, y_train, jax.random.key(e), {})
            best_val = max(best_val, float(accuracy(ts.params, ts.model_state, X_val, y_val)))
        results["best_val_acc"].append(best_val)
        results["train_acc"].append(float(accuracy(ts.params, ts.model_state, X_train, y_train)))
        results["final_loss"].append(float(jnp.mean(losses)))
    sweep[normalization or "baseline"] = results
    print(f"{normalization or 'baseline':>10}: best val acc per scale "
          f"{np.round(results['best_val_acc'], 2)}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
for name, results in sweep.items():
    for ax, key in zip(axes, ("best_val_acc", "train_acc", "final_loss"), strict=True):
        ax.semilogx(weight_scales, results[key], "-o", label=name)
axes[0].set(title="Best validation accuracy", xlabel="weight scale")
axes[1].set(title="Final training accuracy", xlabel="weight scale")
axes[2].set(title="Final training loss", xlabel="weight scale", yscale="log")
for ax in axes:
    ax.legend()
plt.tight_layout()
plt.show()

good = {name: int(np.sum(np.array(r["best_val_acc"]) > 0.8)) for name, r in sweep.items()}
print(f"weight scales (of {len(weight_scales)}) reaching 80% validation accuracy: {good}")
if ON_DIGITS:
    assert good["batchnorm"] >= good["baseline"] + 3
