"""K models at once (the sweep's epoch program, batched with vmap or mapped with lax.map)
vs the same K models one after another (K Solvers' epochs). Prints
model-samples/s for each way and the ratios; not a test.

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
from jaxfc.optim import get_optimizer
from jaxfc.solver import Solver
from jaxfc.sweep import _Draws, _Programs, sweep

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
    X, y = jax.device_put(data["X_train"]), jax.device_put(data["y_train"])

    lr_together = jnp.asarray(lrs)
    seeds = list(range(K))

    # Together: the sweep's own train program (the Solver's epoch over the models, X and y
    # shared), batched (vmap) or mapped (lax.map), each with its own or shared minibatches
    # (sweep(..., shared_batches=True): under vmap the K first layers are one product),
    # drawn on the host as the sweep draws them.
    def together_way(batching, shared):
        programs = _Programs(model, optimizer, batch_size=BATCH, steps_per_epoch=steps,
                             gradients="manual", num_train_samples=None, num_val_samples=None,
                             scale_weights=False, donate=jax.default_backend() != "cpu",
                             sequential=batching == "map", shared_batches=shared)
        draws = _Draws(programs, seeds, 1, num_train=args.train, num_val=500,
                       batch_size=BATCH, steps=steps, num_train_samples=None,
                       num_val_samples=None, shared_batches=shared)
        root_keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
        carry = programs.to_layout(programs.init(root_keys, {}, jnp.ones((K, 1))))
        epoch = [0]

        def run(carry):
            batches = draws.epoch(seeds, carry.key, epoch[0])
            carry, _ = programs.train(carry, {}, lr_together, *batches, X, y)
            epoch[0] += 1
            return jax.block_until_ready(carry)

        return run, carry

    # One after another: K Solvers (sharing their compiled programs), each epoch started as
    # Solver.train starts it (host draws, the next epoch's drawn while the device trains).
    solvers = [Solver(model, data, update_rule="sgd", optim_config={"learning_rate": float(lr)},
                      batch_size=BATCH, seed=k, verbose=False) for k, lr in enumerate(lrs)]
    epoch_of = [0]

    def one_by_one(states):
        e = epoch_of[0]
        out = [s._dispatch_epoch(ts, e, float(lr))[0]
               for s, ts, lr in zip(solvers, states, lrs, strict=True)]
        epoch_of[0] += 1
        return jax.block_until_ready(out)

    ways = {"together (vmap)": together_way("vmap", False),
            "together (vmap), shared batches": together_way("vmap", True),
            "together (map)": together_way("map", False),
            "together (map), shared batches": together_way("map", True),
            "one after another": (one_by_one, [s._state for s in solvers])}
    state_of = {way: run(state) for way, (run, state) in ways.items()}  # warm-up: compile
    times = {way: [] for way in ways}
    for _ in range(args.reps):
        for way, (run, _) in ways.items():
            t = time.perf_counter()
            state_of[way] = run(state_of[way])
            times[way].append(time.perf_counter() - t)

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
    for way in list(ways)[:-1]:
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
