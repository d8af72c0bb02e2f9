"""K models at once (the sweep's epoch program, batched with vmap or mapped with lax.map)
vs the same K models one after another (each the Solver's compiled epoch). Prints
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
from jaxfc.optim import get_optimizer, set_hyperparams
from jaxfc.solver import Solver
from jaxfc.sweep import _Programs, sweep
from jaxfc.training import TrainState, make_train_epoch, transpose_weights

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

    lr_together = jnp.asarray(lrs)
    shared_key = jax.random.key(1)

    # Together: the sweep's own train program (the Solver's epoch over the models, X and y
    # shared), batched (vmap) or mapped (lax.map), each with its own or shared minibatches
    # (sweep(..., shared_batches=True): under vmap the K first layers are one product).
    def together_way(batching, batch_key):
        programs = _Programs(model, optimizer, batch_size=BATCH, steps_per_epoch=steps,
                             gradients="manual", num_train_samples=None, num_val_samples=None,
                             scale_weights=False, donate=jax.default_backend() != "cpu",
                             sequential=batching == "map")
        carry = programs.init(root_keys, {}, jnp.ones((K, 1)))

        def run(carry):
            carry, _ = programs.train(carry, {}, lr_together, jnp.int32(0), X, y, batch_key)
            return jax.block_until_ready(carry)

        return run, carry

    # One after another: the Solver's jitted epoch (compiled once; the learning rate is an
    # array), its state in the kernel layout as the Solver keeps it.
    epoch = jax.jit(make_train_epoch(model, optimizer, batch_size=BATCH, steps_per_epoch=steps,
                                     state_layout="kernel"))
    states = []
    for k in range(K):
        params, state = model.init(jax.random.split(root_keys[k])[0])
        opt_state = set_hyperparams(optimizer.init(params), learning_rate=lrs[k])
        states.append(transpose_weights(TrainState(params, state, opt_state)))
    epoch_keys = [jax.random.fold_in(k, 0) for k in root_keys]

    def one_by_one(states):
        out = [epoch(ts, X, y, key, {})[0] for ts, key in zip(states, epoch_keys, strict=True)]
        return jax.block_until_ready(out)

    ways = {"together (vmap)": together_way("vmap", None),
            "together (vmap), shared batches": together_way("vmap", shared_key),
            "together (map)": together_way("map", None),
            "together (map), shared batches": together_way("map", shared_key),
            "one after another": (one_by_one, states)}
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
