# %% [markdown]
# # Fully-connected networks with jaxfc
#
# The cs231n assignment-2 walk-through, with jaxfc's functional API: every layer is a pair of
# pure functions `*_forward(...) -> (out, cache)` and `*_backward(dout, cache) -> grads`, a
# model is an immutable configuration whose `init(key)` makes the parameters, and training is
# a compiled program.
#
# The notebook runs on scikit-learn's bundled handwritten digits (8x8 images, no download).
# Set the environment variable `JAXFC_CIFAR_DIR` to a `cifar-10-batches-py` folder to run it on
# CIFAR-10; the hyperparameters below were tuned for the digits, and the `assert`s that state
# a training result are only made there.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxfc import FullyConnectedNet, Solver, TwoLayerNet, layers, load_cifar10, load_digits, losses
from jaxfc.gradcheck import check_backward, rel_error
from jaxfc.models import compare_gradients

plt.rcParams["figure.figsize"] = (10.0, 4.0)

CIFAR_DIR = os.environ.get("JAXFC_CIFAR_DIR")
DATASET = "cifar10" if CIFAR_DIR else "digits"
data = load_cifar10(CIFAR_DIR) if CIFAR_DIR else load_digits()
INPUT_DIM = int(np.prod(data["X_train"].shape[1:]))
ON_DIGITS = DATASET == "digits"
for name in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
    print(f"{name}: {data[name].shape} {data[name].dtype}")

# Hyperparameters per dataset (the cifar10 ones follow the assignment's suggestions).
HP = {
    "digits": dict(two_layer_ws=0.1, two_layer_lr=0.5, overfit3=(0.2, 0.2), overfit5=(0.2, 0.05),
                   rules_ws=0.1, sgd_lr=5e-2, rmsprop_lr=1e-3, adam_lr=1e-3, rules_train=None),
    "cifar10": dict(two_layer_ws=1e-3, two_layer_lr=1e-3, overfit3=(1e-2, 1e-2),
                    overfit5=(1e-1, 2e-3), rules_ws=5e-2, sgd_lr=1e-2, rmsprop_lr=1e-4,
                    adam_lr=1e-3, rules_train=4000),
}[DATASET]

# %% [markdown]
# ## Gradient checks run in float64
#
# A float32 number carries about 7 significant digits, the same order as the errors a gradient
# check must resolve. Every check below therefore runs inside `with jax.enable_x64(True):`
# (64-bit mode for that block only). `check_backward(forward, backward, inputs)` compares the
# hand-written backward pass with `jax.vjp` of the forward ("autodiff") and with centered
# differences ("numeric"), and prints one row per input: cs231n's relative error
# `max |a - b| / max(1e-8, |a| + |b|)`, the worst index and the values there.

# %% [markdown]
# ## Affine layer
#
# First the forward pass on the assignment's fixed inputs, compared with the assignment's
# reference output (given to 8 decimals, so the difference is about 1e-9).

# %%
with jax.enable_x64(True):
    x = jnp.linspace(-0.1, 0.5, 2 * 120).reshape(2, 4, 5, 6)
    w = jnp.linspace(-0.2, 0.3, 120 * 3).reshape(120, 3)
    b = jnp.linspace(-0.3, 0.1, 3)
    out, _ = layers.affine_forward(x, w, b)
correct_out = np.array([[1.49834967, 1.70660132, 1.91485297],
                        [3.25553199, 3.51413270, 3.77273342]])
err = rel_error(out, correct_out)
print(f"affine_forward: difference from the reference {err:.2e}")
assert err < 1e-8

# %%
with jax.enable_x64(True):
    k1, k2, k3 = jax.random.split(jax.random.key(231), 3)
    x = jax.random.normal(k1, (10, 2, 3), jnp.float64)
    w = jax.random.normal(k2, (6, 5), jnp.float64)
    b = jax.random.normal(k3, (5,), jnp.float64)
    report = check_backward(layers.affine_forward, layers.affine_backward, (x, w, b))
print(report)
report.assert_close(1e-7)

# %% [markdown]
# ## ReLU
#
# `relu_forward` is `where(x > 0, x, 0)`: its gradient at exactly 0 is 0, in the hand-written
# backward pass and under `jax.grad` alike.

# %%
with jax.enable_x64(True):
    x = jnp.linspace(-0.5, 0.5, 12).reshape(3, 4)
    out, _ = layers.relu_forward(x)
correct_out = np.array([[0.0, 0.0, 0.0, 0.0],
                        [0.0, 0.0, 0.04545455, 0.13636364],
                        [0.22727273, 0.31818182, 0.40909091, 0.5]])
err = rel_error(out, correct_out)
print(f"relu_forward: difference from the reference {err:.2e}")
assert err < 1e-7

with jax.enable_x64(True):
    x = jax.random.normal(jax.random.key(0), (10, 10), jnp.float64)
    report = check_backward(layers.relu_forward, layers.relu_backward, x)
print(report)
report.assert_close(1e-7)

# %% [markdown]
# ## Sandwich layer: affine -> relu
#
# `affine_relu_forward` composes the two pairs; its backward is the two backward passes in
# reverse order.

# %%
with jax.enable_x64(True):
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(k1, (2, 3, 4), jnp.float64)
    w = jax.random.normal(k2, (12, 10), jnp.float64)
    b = jax.random.normal(k3, (10,), jnp.float64)
    report = check_backward(layers.affine_relu_forward, layers.affine_relu_backward, (x, w, b))
print(report)
report.assert_close(1e-7)

# %% [markdown]
# ## Loss layers: softmax and SVM
#
# Both return `(loss, dscores)`. With scores near zero and 10 classes the softmax loss is about
# `log(10) = 2.3` and the SVM loss about `9` (nine margins of 1). The gradient check treats
# `dscores` as the cache: the backward pass is `dout * dscores`.

# %%
num_classes, num_inputs = 10, 50
with jax.enable_x64(True):
    k1, k2 = jax.random.split(jax.random.key(2))
    scores = 0.001 * jax.random.normal(k1, (num_inputs, num_classes), jnp.float64)
    y = jax.random.randint(k2, (num_inputs,), 0, num_classes)
    svm_value, _ = losses.svm_loss(scores, y)
    softmax_value, _ = losses.softmax_loss(scores, y)
    reports = {
        name: check_backward(loss_fn, lambda dout, dscores: dout * dscores, (scores, y))
        for name, loss_fn in [("svm_loss", losses.svm_loss), ("softmax_loss", losses.softmax_loss)]
    }
print(f"svm_loss: {float(svm_value):.4f} (expected about 9)")
print(f"softmax_loss: {float(softmax_value):.4f} (expected about log(10) = {np.log(10):.4f})")
for name, report in reports.items():
    print(f"\n{name}:\n{report}")
    report.assert_close(1e-7)
assert abs(float(svm_value) - 9) < 0.1 and abs(float(softmax_value) - np.log(10)) < 0.01

# %% [markdown]
# ## Two-layer network
#
# `TwoLayerNet(input_dim, hidden_dim, num_classes)` is `affine - relu - affine - softmax`.
# A model holds no arrays: the parameters are a dict we build or get from `init`, and
# `apply(params, state, X)` gives the scores (`state` is the batch-norm statistics, empty
# here). With the assignment's fixed weights the scores and losses must match its reference.

# %%
N, D, H, C = 3, 5, 50, 7
with jax.enable_x64(True):
    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, dtype=np.float64)
    params = {
        "W1": jnp.linspace(-0.7, 0.3, D * H).reshape(D, H),
        "b1": jnp.linspace(-0.1, 0.9, H),
        "W2": jnp.linspace(-0.3, 0.4, H * C).reshape(H, C),
        "b2": jnp.linspace(-0.9, 0.1, C),
    }
    X = jnp.linspace(-5.5, 4.5, N * D).reshape(D, N).T
    y = jnp.array([0, 5, 1])
    scores, _ = model.apply(params, {}, X)
    loss, _ = model.loss_value(params, {}, X, y)
    loss_reg, _ = model.loss_value(params, {}, X, y, reg=1.0)
correct_scores = np.array([
    [11.53165108, 12.2917344, 13.05181771, 13.81190102, 14.57198434, 15.33206765, 16.09215096],
    [12.05769098, 12.74614105, 13.43459113, 14.1230412, 14.81149128, 15.49994135, 16.18839143],
    [12.58373087, 13.20054771, 13.81736455, 14.43418138, 15.05099822, 15.66781506, 16.2846319],
])
print(f"TwoLayerNet scores: difference from the reference {rel_error(scores, correct_scores):.2e}")
print(f"loss {float(loss):.10f} (reference 3.4702243556), "
      f"with reg=1.0 {float(loss_reg):.10f} (reference 26.5948426952)")
assert rel_error(scores, correct_scores) < 1e-6
assert abs(float(loss) - 3.4702243556) < 1e-8 and abs(float(loss_reg) - 26.5948426952) < 1e-8

# %% [markdown]
# `compare_gradients(model, params, state, X, y, numeric=True)` checks the whole model: the
# hand-written gradients (`model.loss(..., gradients='manual')`) against `jax.grad`
# (`gradients='autodiff'`) and against centered differences of the loss. Manual and autodiff
# compute the same expression in a different order, so they agree to about 1e-14. The numeric
# column is limited by the centered differences themselves: their rounding noise is about
# `1e-16 * |loss| / h`, roughly 1e-11 in absolute terms, which is a large *relative* error
# on gradient entries that are tiny or exactly zero (hidden units that are dead for every
# input). cs231n's rule of thumb for whole networks: below 1e-4 is fine for most entries.

# %%
with jax.enable_x64(True):
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    X = jax.random.normal(k1, (N, D), jnp.float64)
    y = jax.random.randint(k2, (N,), 0, C)
    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, dtype=np.float64,
                        weight_scale=1e-1)
    params, state = model.init(k3)
    report = compare_gradients(model, params, state, X, y, reg=0.7, numeric=True)
print(f"reg = 0.7\n{report}")
assert max(row.errors["autodiff"] for row in report.rows) < 1e-10
report.assert_close(1e-3)

# %% [markdown]
# ### Training the two-layer net with the Solver
#
# `Solver(model, data, update_rule=..., optim_config=...)` takes the assignment's options.
# Each epoch runs as one compiled program (`lax.scan` over minibatches gathered on the
# device; their order is drawn on the host while the previous epoch runs), so the Python
# loop only wakes up once per epoch. After `train()` the solver holds the best
# parameters (by validation accuracy).

# %%
model = TwoLayerNet(input_dim=INPUT_DIM, hidden_dim=100, num_classes=10,
                    weight_scale=HP["two_layer_ws"])
solver = Solver(model, data, update_rule="sgd",
                optim_config={"learning_rate": HP["two_layer_lr"]}, lr_decay=0.95,
                num_epochs=10, batch_size=100, print_every=0)
solver.train()
print(f"TwoLayerNet best validation accuracy: {solver.best_val_acc:.3f}")
if ON_DIGITS:
    assert solver.best_val_acc > 0.9

# %%
fig, (ax_loss, ax_acc) = plt.subplots(1, 2)
ax_loss.plot(solver.loss_history, ".", markersize=3)
ax_loss.set(title="Training loss", xlabel="iteration", ylabel="loss")
ax_acc.plot(solver.train_acc_history, "-o", label="train")
ax_acc.plot(solver.val_acc_history, "-o", label="val")
ax_acc.set(title="Classification accuracy", xlabel="epoch", ylabel="accuracy")
ax_acc.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Each column of the first-layer weights `W1` is a template in input space, shown as an
# image. After ten short epochs from random weights they are still mostly initialization
# noise; longer training (and CIFAR-10's larger images) brings out strokes and colors.

# %%
W1 = np.asarray(solver.params["W1"]).T.reshape(-1, *data["X_train"].shape[1:])
fig, axes = plt.subplots(4, 10, figsize=(10, 4.2))
for ax, w in zip(axes.flat, W1, strict=False):
    img = np.moveaxis(w, 0, -1)
    img = (img - img.min()) / (img.max() - img.min())
    ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray")
    ax.axis("off")
plt.suptitle("first-layer weights")
plt.show()

# %% [markdown]
# ## Multilayer network
#
# `FullyConnectedNet(hidden_dims, ...)` has `len(hidden_dims) + 1` layers. With small weights
# the initial loss is about `log(10)`; then the gradient check with `reg = 0` and `reg = 3.14`.

# %%
N, D, H1, H2, C = 2, 15, 20, 30, 10
with jax.enable_x64(True):
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    X = jax.random.normal(k1, (N, D), jnp.float64)
    y = jax.random.randint(k2, (N,), 0, C)
    for reg in (0.0, 3.14):
        model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, reg=reg,
                                  weight_scale=5e-2, dtype=np.float64)
        params, state = model.init(k3)
        loss, _ = model.loss_value(params, state, X, y)
        report = compare_gradients(model, params, state, X, y, numeric=True)
        print(f"reg = {reg}: initial loss {float(loss):.4f}\n{report}\n")
        assert max(row.errors["autodiff"] for row in report.rows) < 1e-10
        report.assert_close(1e-3)
        if reg == 0.0:
            assert abs(float(loss) - np.log(C)) < 0.05

# %% [markdown]
# ### Overfitting 50 examples
#
# A sanity check of the whole pipeline: with 50 training examples a 3-layer and a 5-layer net
# should reach 100% training accuracy within 20 epochs. The deeper net is the more sensitive
# one to the weight scale and learning rate.

# %%
small_data = {
    "X_train": data["X_train"][:50], "y_train": data["y_train"][:50],
    "X_val": data["X_val"], "y_val": data["y_val"],
}
overfit = {}
for name, hidden, (weight_scale, lr) in [("3-layer", [100, 100], HP["overfit3"]),
                                          ("5-layer", [100] * 4, HP["overfit5"])]:
    model = FullyConnectedNet(hidden, input_dim=INPUT_DIM, num_classes=10,
                              weight_scale=weight_scale)
    overfit[name] = Solver(model, small_data, update_rule="sgd",
                           optim_config={"learning_rate": lr}, num_epochs=20, batch_size=25,
                           verbose=False)
    overfit[name].train()
    print(f"overfit {name}: train accuracy {overfit[name].train_acc_history[-1]:.3f}")
    if ON_DIGITS:
        assert overfit[name].train_acc_history[-1] == 1.0

fig, axes = plt.subplots(1, 2, sharey=True)
for ax, (name, s) in zip(axes, overfit.items(), strict=True):
    ax.plot(s.loss_history, "o-", markersize=3)
    ax.set(title=f"{name} net, 50 examples", xlabel="iteration", ylabel="training loss")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Update rules: SGD, momentum, RMSProp, Adam
#
# The optimizers are pure `(params, grads, state) -> (params, state)` functions written by
# hand after cs231n's `optim.py` (`jaxfc.optim`); the Solver picks one by name. A 6-layer net,
# 5 epochs each.

# %%
rules_data = dict(data)
if HP["rules_train"]:
    rules_data["X_train"] = data["X_train"][: HP["rules_train"]]
    rules_data["y_train"] = data["y_train"][: HP["rules_train"]]
learning_rates = {"sgd": HP["sgd_lr"], "sgd_momentum": HP["sgd_lr"],
                  "rmsprop": HP["rmsprop_lr"], "adam": HP["adam_lr"]}
solvers = {}
for rule, lr in learning_rates.items():
    model = FullyConnectedNet([100] * 5, input_dim=INPUT_DIM, num_classes=10,
                              weight_scale=HP["rules_ws"])
    solvers[rule] = Solver(model, rules_data, update_rule=rule,
                           optim_config={"learning_rate": lr}, num_epochs=5, batch_size=100,
                           verbose=False)
    solvers[rule].train()
    s = solvers[rule]
    print(f"{rule:>12}: last-epoch loss {np.mean(s.loss_history[-s.steps_per_epoch:]):.3f}, "
          f"train acc {s.train_acc_history[-1]:.3f}, val acc {s.val_acc_history[-1]:.3f}")

# %%
fig, axes = plt.subplots(3, 1, figsize=(10, 11))
for rule, s in solvers.items():
    axes[0].plot(s.loss_history, "o", markersize=3, label=rule)
    axes[1].plot(s.train_acc_history, "-o", label=rule)
    axes[2].plot(s.val_acc_history, "-o", label=rule)
axes[0].set(title="Training loss", xlabel="iteration")
axes[1].set(title="Training accuracy", xlabel="epoch")
axes[2].set(title="Validation accuracy", xlabel="epoch")
for ax in axes:
    ax.legend(loc="lower right" if ax is not axes[0] else "upper right", ncol=4)
plt.tight_layout()
plt.show()

# %% [markdown]
# Momentum, RMSProp and Adam all make much faster progress than plain SGD at the same budget.

# %%
last_loss = {rule: float(np.mean(s.loss_history[-s.steps_per_epoch:]))
             for rule, s in solvers.items()}
if ON_DIGITS:
    for rule in ("sgd_momentum", "rmsprop", "adam"):
        assert last_loss[rule] < 0.5 * last_loss["sgd"], (rule, last_loss)
best = max(solvers, key=lambda r: solvers[r].best_val_acc)
test_acc = solvers[best].check_accuracy(data["X_test"], data["y_test"])
print(f"best update rule: {best}, validation {solvers[best].best_val_acc:.3f}, "
      f"test accuracy {test_acc:.3f}")
if ON_DIGITS:
    assert test_acc > 0.85
