"""Training steps per second with hand-written (``manual``) vs ``jax.grad`` (``autodiff``)
gradients. Prints a markdown table; not a test.

Each step is ``model.loss`` + a plain SGD update, jitted, on synthetic CIFAR-shaped float32
data (fixed seed). Two ways to run the steps:

* ``scan``: ``--scan-steps`` steps per call inside ``lax.scan`` (no Python between steps);
* ``dispatch``: one jitted call per step from a Python loop (what a naive loop pays).

After a warm-up, each repetition times ``--steps`` steps of every (model, gradients, variant)
in turn (interleaved, so drifts in machine load hit all alike) with ``block_until_ready``;
the table gives the median over ``--reps`` repetitions, and the process's CPU time per step
(steadier than wall time when other programs share the machine).

    python bench/bench_gradients.py [--reps 7] [--steps 200] [--scan-steps 50] [--hlo]
"""

from __future__ import annotations

import argparse
import collections
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxfc.models import FullyConnectedNet, TwoLayerNet

MODES = ("manual", "autodiff")
NUM_SAMPLES = 1000
LR = 1e-3


def configs():
    return {
        "TwoLayerNet 3072-100-10, batch 100": (TwoLayerNet(3 * 32 * 32, 100, 10), 100),
        "FC [100]*4 + batchnorm + dropout 0.5, batch 200": (
            FullyConnectedNet(
                hidden_dims=(100, 100, 100, 100), normalization="batchnorm", dropout=0.5
            ),
            200,
        ),
    }


def make_step(model, batch_size, gradients):
    """``(params, state, i, X, y, key) -> (params, state, loss)``: one SGD step on batch i."""

    def step(params, state, i, X, y, key):
        start = (i * batch_size) % X.shape[0]
        xb = jax.lax.dynamic_slice_in_dim(X, start, batch_size)
        yb = jax.lax.dynamic_slice_in_dim(y, start, batch_size)
        loss, grads, state = model.loss(
            params, state, xb, yb, key=jax.random.fold_in(key, i), gradients=gradients
        )
        params = jax.tree.map(lambda p, g: p - LR * g, params, grads)
        return params, state, loss

    return step


def make_runners(model, batch_size, gradients, scan_steps):
    step = make_step(model, batch_size, gradients)

    @jax.jit
    def scanned(params, state, i0, X, y, key):
        def body(carry, i):
            params, state = carry
            params, state, loss = step(params, state, i, X, y, key)
            return (params, state), loss

        (params, state), losses = jax.lax.scan(
            body, (params, state), i0 + jnp.arange(scan_steps)
        )
        return params, state, losses[-1]

    return {"scan": (scanned, scan_steps), "dispatch": (jax.jit(step), 1)}


def run(fn, per_call, carry, data, steps):
    params, state = carry
    i = 0
    for _ in range(steps // per_call):
        params, state, loss = fn(params, state, jnp.asarray(i, jnp.int32), *data)
        i += per_call
    jax.block_until_ready((params, state, loss))
    return params, state


def hlo_op_counts(fn, *args) -> collections.Counter:
    """Op names in the optimized HLO of ``fn(*args)`` (fusions counted as one op each)."""
    text = fn.lower(*args).compile().as_text()
    ops = re.findall(r"^\s*(?:ROOT )?\S+ = \S+ (\w[\w-]*)\(", text, flags=re.M)
    return collections.Counter(ops)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--scan-steps", type=int, default=50)
    parser.add_argument("--hlo", action="store_true", help="print HLO op counts per step")
    args = parser.parse_args()
    if args.steps % args.scan_steps:
        parser.error("--steps must be a multiple of --scan-steps")

    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.standard_normal((NUM_SAMPLES, 3, 32, 32), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, 10, NUM_SAMPLES), jnp.int32)
    key = jax.random.key(1)

    cases = {}
    for name, (model, batch) in configs().items():
        params, state = model.init(jax.random.key(0))
        for mode in MODES:
            for variant, (fn, per_call) in make_runners(
                model, batch, mode, args.scan_steps
            ).items():
                cases[name, mode, variant] = (fn, per_call, (params, state))
            if args.hlo:
                step = jax.jit(make_step(model, batch, mode))
                counts = hlo_op_counts(step, params, state, jnp.int32(0), X, y, key)
                print(f"{name} / {mode}: {sum(counts.values())} HLO ops {dict(counts)}")

    for fn, per_call, carry in cases.values():  # warm-up: compile and run once
        run(fn, per_call, carry, (X, y, key), args.steps)

    times, cpu_times = collections.defaultdict(list), collections.defaultdict(list)
    for _ in range(args.reps):
        for case, (fn, per_call, carry) in cases.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            run(fn, per_call, carry, (X, y, key), args.steps)
            times[case].append(time.perf_counter() - start)
            cpu_times[case].append(time.process_time() - cpu_start)
    rate = {case: args.steps / statistics.median(t) for case, t in times.items()}
    # CPU time of this process per step (all threads): steadier than wall time on a shared
    # machine; on a GPU it is mostly the host's dispatch and waiting.
    cpu_ms = {case: 1e3 * statistics.median(t) / args.steps for case, t in cpu_times.items()}

    device = jax.devices()[0]
    print(
        f"\njax {jax.__version__}, {device.platform} ({device.device_kind}), float32; "
        f"median of {args.reps} interleaved repetitions of {args.steps} steps; "
        f"scan = {args.scan_steps} steps per jitted call\n"
    )
    print(
        "| model | gradients | steps/s (scan) | steps/s (dispatch per step) "
        "| process CPU ms/step (scan) |"
    )
    print("|---|---|---:|---:|---:|")
    for name in configs():
        for mode in MODES:
            print(
                f"| {name} | {mode} | {rate[name, mode, 'scan']:,.0f} "
                f"| {rate[name, mode, 'dispatch']:,.0f} | {cpu_ms[name, mode, 'scan']:.2f} |"
            )
    print("\nmanual / autodiff speed ratio (> 1: manual faster)\n")
    print("| model | scan | dispatch |")
    print("|---|---:|---:|")
    for name in configs():
        r = [rate[name, "manual", v] / rate[name, "autodiff", v] for v in ("scan", "dispatch")]
        print(f"| {name} | {r[0]:.2f} | {r[1]:.2f} |")


if __name__ == "__main__":
    main()
