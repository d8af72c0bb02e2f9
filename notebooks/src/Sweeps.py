# %% [markdown]
# # Many models at once: hyperparameter sweeps
#
# cs231n tunes hyperparameters with a Python loop of Solvers, one model after another.
# Because every piece of jaxfc is a pure function of pytrees, `jaxfc.sweep.sweep` instead
# stacks the parameters and optimizer states of K models and runs the Solver's own compiled
# epoch over them: one XLA program trains all K models, with the training data shared. On a
# GPU the models are batched with `jax.vmap` (K-wide matrix products keep it busy); on a CPU
# the program runs them one after another (`lax.map`), which XLA:CPU executes faster
# (`batching=` chooses). Learning rates, regularization strengths, weight scales, dropout and
# seeds are arrays, so changing them never recompiles.
#
# Runs on the bundled digits (set `JAXFC_CIFAR_DIR` for CIFAR-10; the `assert`s on the
# results are only made on the digits).

# %%
import os

import jax
import matplotlib.pyplot as plt
import numpy as np

from jaxfc import FullyConnectedNet, Solver, load_cifar10, load_digits
from jaxfc.sweep import grid, loguniform, random_search, sweep

plt.rcParams["figure.figsize"] = (10.0, 4.0)

CIFAR_DIR = os.environ.get("JAXFC_CIFAR_DIR")
DATASET = "cifar10" if CIFAR_DIR else "digits"
data = load_cifar10(CIFAR_DIR) if CIFAR_DIR else load_digits()
INPUT_DIM = int(np.prod(data["X_train"].shape[1:]))
ON_DIGITS = DATASET == "digits"
for name in ("X_train", "y_train", "X_val", "y_val"):
    print(f"{name}: {data[name].shape} {data[name].dtype}")
print(f"JAX devices: {jax.devices()}")

# %% [markdown]
# ## A grid: learning rate x regularization
#
# `grid(...)` lists every combination; `sweep(model, data, settings, ...)` trains one model per
# setting with the Solver's options (update rule, epochs, batch size) and returns their
# histories. 24 three-layer networks, trained together.

# %%
model = FullyConnectedNet([100, 100], input_dim=INPUT_DIM, num_classes=10,
                          weight_scale=0.1 if ON_DIGITS else 1e-2)
learning_rates = np.logspace(-4, -1, 6)
regs = [0.0, 1e-3, 1e-2, 1e-1]
settings = grid(learning_rate=list(learning_rates), reg=regs)
result = sweep(model, data, settings, update_rule="adam", num_epochs=8, batch_size=100,
               verbose=False)
print(f"{result.num_models} models in {result.seconds:.1f}s; compiled programs: "
      f"{result.compilations}")
print(f"best: {result.best_setting}, validation accuracy {result.best_val_acc.max():.3f}")
assert result.compilations["train"] == 1  # one program trained all the models
if ON_DIGITS:
    assert result.best_val_acc.max() > 0.95

# %%
acc = result.best_val_acc.reshape(len(learning_rates), len(regs))  # grid order: lr slowest
fig, (ax_grid, ax_curves) = plt.subplots(1, 2, figsize=(13, 4.5))
image = ax_grid.imshow(acc.T, origin="lower", cmap="viridis", aspect="auto")
ax_grid.set_xticks(range(len(learning_rates)), [f"{lr:.0e}" for lr in learning_rates])
ax_grid.set_yticks(range(len(regs)), [str(r) for r in regs])
ax_grid.set(xlabel="learning rate", ylabel="reg", title="Best validation accuracy")
for i in range(len(learning_rates)):
    for j in range(len(regs)):
        ax_grid.text(i, j, f"{acc[i, j]:.2f}", ha="center", va="center",
                     color="white" if acc[i, j] < acc.max() - 0.3 else "black")
fig.colorbar(image, ax=ax_grid)
best = result.best_index
for k in range(result.num_models):
    style = dict(color="red", linewidth=2, zorder=3) if k == best else dict(alpha=0.3)
    ax_curves.plot(result.val_acc_history[k], **style)
ax_curves.set(title="Validation accuracy of every model (best in red)", xlabel="epoch")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Each model is a Solver run
#
# Model `k` of the sweep is what `Solver` trains with the same settings and seed:
# `result.model_for(k)` and `result.solver_kwargs(k)` rebuild that run. The only difference is
# rounding (batched matrix products may sum in another order), so the loss curves agree to
# float32 precision.

# %%
k = result.best_index
solver = Solver(result.model_for(k), data, **result.solver_kwargs(k), verbose=False)
solver.train()
gap = np.max(np.abs(np.array(solver.loss_history) - result.loss_history[k]))
print(f"model {k} ({result.settings[k]}): largest loss difference from the Solver {gap:.1e}; "
      f"best val acc {result.best_val_acc[k]:.3f} (sweep) vs {solver.best_val_acc:.3f} (Solver)")
assert gap < 1e-3

# %% [markdown]
# ## A random search over learning rate and weight scale, three seeds each
#
# `random_search(seed, num, name=loguniform(low, high), ...)` draws settings; `seeds=[...]`
# repeats each with several initializations, which shows how much of a difference between
# two settings is noise.

# %%
settings = random_search(0, 8, learning_rate=loguniform(1e-4, 1e-1),
                         weight_scale=loguniform(1e-3, 1.0))
result = sweep(model, data, settings, seeds=[0, 1, 2], update_rule="adam", num_epochs=8,
               batch_size=100, verbose=False)
print(f"{result.num_models} models in {result.seconds:.1f}s; best: {result.best_setting}, "
      f"validation accuracy {result.best_val_acc.max():.3f}")

rows = result.rows()
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
for ax, name in zip(axes, ("learning_rate", "weight_scale"), strict=True):
    for seed, marker in zip((0, 1, 2), "o^s", strict=True):
        ax.scatter([r[name] for r in rows if r["seed"] == seed],
                   [r["best_val_acc"] for r in rows if r["seed"] == seed],
                   marker=marker, alpha=0.7, label=f"seed {seed}")
    ax.set(xscale="log", xlabel=name, ylabel="best validation accuracy")
    ax.legend()
plt.tight_layout()
plt.show()

per_setting = result.best_val_acc.reshape(len(settings), 3)  # each setting runs per seed
print(f"best val acc, mean over the seeds: {np.round(per_setting.mean(1), 3)}\n"
      f"spread (max - min) over the seeds:  {np.round(np.ptp(per_setting, axis=1), 3)}")
if ON_DIGITS:
    assert result.best_val_acc.max() > 0.9
