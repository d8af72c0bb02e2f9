"""K models at once (the sweep's vmapped epoch) vs the same K models one after another
(each a Solver-style compiled epoch). Prints model-samples/s for both and the ratio; not a
test.

K TwoLayerNets (3072-100-10, batch 100, plain SGD) with different seeds and learning rates
train on synthetic CIFAR-shaped float32 data (fixed seed). After a warm-up (compilation),
each repetition times one epoch of all K models both ways, interleaved, with
``block_until_ready``; the table gives the median over ``--reps``. ``--end-to-end`` also
times ``sweep()`` against K ``Solver(...).train()`` runs, compilation and accuracy checks
included.

    python bench/bench_sweep.py [--models 16] [--train 5000] [--reps 5] [--end-to-end]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxfc.models import TwoLayerNet
from jaxfc.optim import get_optimizer, set_hyperparams
from jaxfc.solver import Solver
from jaxfc.sweep import _Programs, sweep
from jaxfc.training import TrainState, make_train_epoch

BATCH = 100


def synthetic_cifar(num_train: int, num_val: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (num_train + num_val, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, num_train + num_val).astype(np.int32)
    return {"X_train": X[:num_train], "y_train": y[:num_train],
            "X_val": X[num_train:], "y_val": y[num_train:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--train", type=int, default=5000, help="training samples")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--end-to-end", action="store_true")
    args = parser.parse_args()

    K = args.models
    data = synthetic_cifar(args.train, 500)
    model = TwoLayerNet()  # 3072-100-10, weight_scale 1e-3
    optimizer = get_optimizer("sgd", learning_rate=1e-3)
    steps = args.train // BATCH
    lrs = np.logspace(-4, -2, K).astype(np.float32)
    X, y = jnp.asarray(data["X_train"]), jnp.asarray(data["y_train"])
    root_keys = jax.random.split(jax.random.key(0), K)

    # Together: the sweep's own train program (vmap of the Solver's epoch, X and y shared).
    programs = _Programs(model, optimizer, batch_size=BATCH, steps_per_epoch=steps,
                         gradients="manual", num_train_samples=None, num_val_samples=None,
                         scale_weights=False, donate=jax.default_backend() != "cpu")
    carry = programs.init(root_keys, {}, jnp.ones((K, 1)))
    lr_together = jnp.asarray(lrs)

    def together(carry):
        carry, losses = programs.train(carry, {}, lr_together, jnp.int32(0), X, y, None)
        return jax.block_until_ready(carry), losses

    # Together, sharing each minibatch (sweep(..., shared_batches=True)): the K first layers
    # become one (batch, 3072) x (3072, K*100) matrix product.
    shared_key = jax.random.key(1)
    carry_shared = programs.init(root_keys, {}, jnp.ones((K, 1)))

    def together_shared(carry):
        carry, losses = programs.train(carry, {}, lr_together, jnp.int32(0), X, y, shared_key)
        return jax.block_until_ready(carry), losses

    # One after another: one jitted epoch (compiled once; the learning rate is an array).
    epoch = jax.jit(make_train_epoch(model, optimizer, batch_size=BATCH, steps_per_epoch=steps))
    states = []
    for k in range(K):
        params, state = model.init(jax.random.split(root_keys[k])[0])
        opt_state = set_hyperparams(optimizer.init(params), learning_rate=lrs[k])
        states.append(TrainState(params, state, opt_state))
    epoch_keys = [jax.random.fold_in(k, 0) for k in root_keys]

    def one_by_one(states):
        out = [epoch(ts, X, y, key, {})[0] for ts, key in zip(states, epoch_keys, strict=True)]
        return jax.block_until_ready(out)

    carry, _ = together(carry)  # warm-up: compile
    carry_shared, _ = together_shared(carry_shared)
    states = one_by_one(states)
    times = {"together (vmap)": [], "together, shared batches": [], "one after another": []}
    for _ in range(args.reps):
        t = time.perf_counter()
        carry, _ = together(carry)
        times["together (vmap)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        carry_shared, _ = together_shared(carry_shared)
        times["together, shared batches"].append(time.perf_counter() - t)
        t = time.perf_counter()
        states = one_by_one(states)
        times["one after another"].append(time.perf_counter() - t)

    samples = K * steps * BATCH
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); {K} TwoLayerNets "
          f"3072-100-10, batch {BATCH}, {steps} steps per epoch, median of {args.reps}")
    print("| way | s per epoch of all models | model-samples/s |")
    print("|---|---|---|")
    rates = {}
    for way, ts in times.items():
        median = statistics.median(ts)
        rates[way] = samples / median
        print(f"| {way} | {median:.3f} | {rates[way]:,.0f} |")
    for way in ("together (vmap)", "together, shared batches"):
        print(f"speed-up of {way} over one after another: "
              f"{rates[way] / rates['one after another']:.2f}x")

    if args.end_to_end:
        epochs = 3
        common = dict(update_rule="sgd", num_epochs=epochs, batch_size=BATCH)
        t = time.perf_counter()
        result = sweep(model, data, {"learning_rate": [float(v) for v in lrs]},
                       seeds=None, verbose=False, **common)
        swept = time.perf_counter() - t
        t = time.perf_counter()
        for k in range(K):
            Solver(model, data, verbose=False, optim_config={"learning_rate": float(lrs[k])},
                   seed=0, **common).train()
        solo = time.perf_counter() - t
        print(f"end to end, {epochs} epochs incl. compilation and accuracy: sweep() "
              f"{swept:.1f}s ({result.compilations}), {K} Solver runs {solo:.1f}s: "
              f"{solo / swept:.2f}x")


if __name__ == "__main__":
    main()
