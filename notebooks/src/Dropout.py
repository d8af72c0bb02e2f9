# %% [markdown]
# # Dropout
#
# cs231n's dropout notebook with jaxfc. Two conventions to keep in mind:
#
# * `p` is the **drop** probability (as in PyTorch and in the seed's
#   `FullyConnectedNet(dropout=...)`), not the keep probability of cs231n's 2018+ assignment.
# * Dropout is *inverted*: kept units are scaled by `1 / (1 - p)` during training, so the
#   expected activation is unchanged and test time is the identity.
#
# Randomness is an explicit `jax.random` key: the same key gives the same mask, which is what
# makes gradient checks of a dropout network possible.
#
# Runs on the bundled digits (set `JAXFC_CIFAR_DIR` for CIFAR-10; the training `assert`s are
# only made on the digits, for which the hyperparameters were chosen).

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxfc import FullyConnectedNet, layers, load_cifar10, load_digits
from jaxfc.gradcheck import check_backward
from jaxfc.models import compare_gradients
from jaxfc.optim import adam
from jaxfc.training import TrainState, make_train_epoch

plt.rcParams["figure.figsize"] = (10.0, 4.0)

CIFAR_DIR = os.environ.get("JAXFC_CIFAR_DIR")
DATASET = "cifar10" if CIFAR_DIR else "digits"
data = load_cifar10(CIFAR_DIR) if CIFAR_DIR else load_digits()
INPUT_DIM = int(np.prod(data["X_train"].shape[1:]))
ON_DIGITS = DATASET == "digits"
for name in ("X_train", "y_train", "X_val", "y_val"):
    print(f"{name}: {data[name].shape} {data[name].dtype}")

# %% [markdown]
# ## Forward pass
#
# In training mode a fraction `p` of the outputs is zeroed and the mean stays that of the
# input; in test mode the output is the input.

# %%
x = jax.random.normal(jax.random.key(231), (500, 500)) + 10
print(f"{'p':>5} {'mean in':>8} {'mean train':>11} {'mean test':>10} {'zeroed (train)':>15} "
      f"{'zeroed (test)':>14}")
for p in (0.25, 0.4, 0.7):
    out_train, _ = layers.dropout_forward(x, p=p, train=True, key=jax.random.key(0))
    out_test, _ = layers.dropout_forward(x, p=p, train=False)
    zeroed_train = float(jnp.mean(out_train == 0))
    zeroed_test = float(jnp.mean(out_test == 0))
    print(f"{p:>5} {float(x.mean()):>8.4f} {float(out_train.mean()):>11.4f} "
          f"{float(out_test.mean()):>10.4f} {zeroed_train:>15.4f} {zeroed_test:>14.4f}")
    assert abs(zeroed_train - p) < 0.01 and zeroed_test == 0
    assert abs(float(out_train.mean()) / float(x.mean()) - 1) < 0.01
    assert bool(jnp.all(out_test == x))

# %% [markdown]
# ## Backward pass
#
# The cache is the scaled mask, so `dx = dout * mask`. The forward gets the key through
# `forward_kwargs`, so every evaluation of the check uses the same mask.

# %%
with jax.enable_x64(True):
    x = jax.random.normal(jax.random.key(1), (10, 10), jnp.float64) + 10
    report = check_backward(layers.dropout_forward, layers.dropout_backward, x,
                            forward_kwargs=dict(p=0.2, train=True, key=jax.random.key(123)))
print(report)
report.assert_close(1e-7)

# %% [markdown]
# ## Fully-connected nets with dropout
#
# `FullyConnectedNet(..., dropout=p)` applies dropout after every hidden ReLU. Its gradients
# need the key too: with the same key the hand-written backward pass, `jax.grad` and the
# numeric differences all see the same masks.

# %%
N, D, H1, H2, C = 2, 15, 20, 30, 10
with jax.enable_x64(True):
    k1, k2, k3 = jax.random.split(jax.random.key(2), 3)
    X = jax.random.normal(k1, (N, D), jnp.float64)
    y = jax.random.randint(k2, (N,), 0, C)
    for p in (0.25, 0.5):
        model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, dropout=p,
                                  weight_scale=5e-2, dtype=np.float64)
        params, state = model.init(k3)
        loss, _ = model.loss_value(params, state, X, y, key=jax.random.key(3))
        report = compare_gradients(model, params, state, X, y, key=jax.random.key(3),
                                   numeric=(p == 0.25))
        print(f"dropout p = {p}: initial loss {float(loss):.4f}\n{report}\n")
        assert max(row.errors["autodiff"] for row in report.rows) < 1e-10
        report.assert_close(1e-3)

# %% [markdown]
# ## Regularization experiment
#
# Two networks with two hidden layers of 1024 units, trained on only 50 examples (500 on
# CIFAR-10) so that they overfit, without dropout and with `p = 0.5`. We drive the compiled
# pieces the Solver is built from: `make_train_epoch` gives a pure
# `epoch(train_state, X, y, key, overrides)` function, and after each epoch one jitted
# function measures training and validation accuracy and the validation loss (in evaluation
# mode, without dropout).

# %%
num_train = 50 if ON_DIGITS else 500
batch_size, num_epochs, seeds = 25, 60, (0, 1, 2)
X_train = jnp.asarray(data["X_train"][:num_train])
y_train = jnp.asarray(data["y_train"][:num_train])
X_val, y_val = jnp.asarray(data["X_val"]), jnp.asarray(data["y_val"])
optimizer = adam(1e-3)
histories = {}  # histories[p][name]: array (seeds, epochs)
for p in (0.0, 0.5):
    model = FullyConnectedNet([1024, 1024], input_dim=INPUT_DIM, num_classes=10, dropout=p,
                              weight_scale=0.1 if ON_DIGITS else 1e-2)
    epoch = jax.jit(make_train_epoch(model, optimizer, batch_size=batch_size,
                                     steps_per_epoch=num_train // batch_size))

    @jax.jit
    def evaluate(params, state, model=model):
        def acc(X, y):
            return jnp.mean(model.predict(params, state, X) == y)

        val_loss, _ = model.loss_value(params, state, X_val, y_val, train=False)
        return {"train_acc": acc(X_train, y_train), "val_acc": acc(X_val, y_val),
                "val_loss": val_loss}

    runs = []
    for seed in seeds:  # the compiled epoch is reused: only the initial parameters change
        params, state = model.init(jax.random.key(seed))
        ts = TrainState(params, state, optimizer.init(params))
        run = []
        for e in range(num_epochs):
            ts, _ = epoch(ts, X_train, y_train, jax.random.fold_in(jax.random.key(seed), e), {})
            run.append(evaluate(ts.params, ts.model_state))
        runs.append(jax.device_get(run))  # one transfer per run, not three per epoch
    histories[p] = {name: np.array([[r[name] for r in run] for run in runs])
                    for name in runs[0][0]}
    h = histories[p]
    print(f"dropout {p}: final train acc {np.round(h['train_acc'][:, -1], 3)}, "
          f"val acc (mean of the last 10 epochs) {np.round(h['val_acc'][:, -10:].mean(1), 3)}, "
          f"final val loss {np.round(h['val_loss'][:, -1], 3)} (seeds {seeds})")

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
for (p, h), color in zip(histories.items(), ("C0", "C1"), strict=True):
    for ax, name in zip(axes, ("train_acc", "val_acc", "val_loss"), strict=True):
        ax.plot(h[name].T, "-", color=color, alpha=0.25)
        ax.plot(h[name].mean(0), "-", color=color, label=f"dropout {p} (mean of {len(seeds)})")
axes[0].set(title="Training accuracy", xlabel="epoch")
axes[1].set(title="Validation accuracy", xlabel="epoch")
axes[2].set(title="Validation loss", xlabel="epoch")
for ax in axes:
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# All the networks fit the 50 training examples; those trained with dropout generalize
# better on average over the initializations: higher validation accuracy and a clearly lower
# validation loss (without dropout the network becomes confidently wrong on the examples it
# misclassifies).

# %%
none, drop = histories[0.0], histories[0.5]
val_acc = {p: h["val_acc"][:, -10:].mean(1) for p, h in histories.items()}  # per seed
val_loss = {p: h["val_loss"][:, -1] for p, h in histories.items()}
print(f"mean over seeds: val acc {val_acc[0.0].mean():.3f} -> {val_acc[0.5].mean():.3f}, "
      f"val loss {val_loss[0.0].mean():.3f} -> {val_loss[0.5].mean():.3f} with dropout")
if ON_DIGITS:
    assert np.all(none["train_acc"][:, -1] == 1.0) and np.all(drop["train_acc"][:, -1] == 1.0)
    assert val_acc[0.5].mean() > val_acc[0.0].mean() + 0.01
    assert val_loss[0.5].mean() < val_loss[0.0].mean() - 0.1
