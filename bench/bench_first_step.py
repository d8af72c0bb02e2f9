"""Where jaxfc's time to the first step goes, in fresh processes.

    python bench/bench_first_step.py [--runs 5] [--workload W1] [--samples 10000]

Each run starts a new Python process (cold in-memory caches, no persistent compilation
cache) that builds the benchmark's Solver from given parameters, as ``bench/suite.py``'s
jaxfc peer does, then times the phases of its first epoch separately: building the Solver,
drawing the epoch's minibatches on the host, tracing, lowering and compiling the epoch
program, its first run and a second run. **first step** = build + draws + trace + lower +
compile + first run - (steps - 1) / steps * second run, as in the suite. Prints the median
of each phase over the runs, with min-max.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import numpy as np
import peers
import jax
from jaxfc import Solver
workload = peers.WORKLOADS[sys.argv[3]]
X, y = peers.make_data(int(sys.argv[4]), 0)
params = peers.init_params(workload, 0)
model = workload.jaxfc_model(None)
t = {}
t0 = time.perf_counter()
solver = Solver(model, {"X_train": X, "y_train": y, "X_val": X[:100], "y_val": y[:100]},
                update_rule="adam", optim_config={"learning_rate": 1e-3},
                batch_size=workload.batch_size, num_epochs=1, verbose=False, seed=1,
                params=params)
t["build"] = time.perf_counter() - t0
t0 = time.perf_counter()
inputs = solver._epoch_inputs(0)
t["draws"] = time.perf_counter() - t0
args = (solver._state, solver.X_train, solver.y_train, *inputs, solver.learning_rate_at(0))
t0 = time.perf_counter()
traced = solver._epoch_fn.trace(*args)
t["trace"] = time.perf_counter() - t0
t0 = time.perf_counter()
lowered = traced.lower()
t["lower"] = time.perf_counter() - t0
t0 = time.perf_counter()
compiled = lowered.compile()
t["compile"] = time.perf_counter() - t0
for run in ("first_run", "second_run"):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    t[run] = time.perf_counter() - t0
steps = solver.steps_per_epoch
t["first_step"] = (sum(t[k] for k in ("build", "draws", "trace", "lower", "compile",
                                      "first_run")) - (steps - 1) / steps * t["second_run"])
print(json.dumps(t))
"""

PHASES = ("build", "draws", "trace", "lower", "compile", "first_run", "second_run",
          "first_step")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--workload", default="W1")
    p.add_argument("--samples", type=int, default=10000)
    args = p.parse_args()
    repo = os.path.dirname(HERE)
    env = {k: v for k, v in os.environ.items() if k != "JAXFC_BENCH_CACHE_DIR"}
    runs = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", CHILD, HERE, repo, args.workload,
                              str(args.samples)], capture_output=True, text=True, env=env,
                             check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        time.sleep(0.5)
    print(f"jaxfc time to the first step, {args.workload}, N = {args.samples}, "
          f"{args.runs} fresh processes (seconds: median, min-max)")
    print("| phase | median | min-max |")
    print("|---|---:|---:|")
    for phase in PHASES:
        values = [r[phase] for r in runs]
        print(f"| {phase} | {statistics.median(values):.3f} | "
              f"{min(values):.3f}-{max(values):.3f} |")


if __name__ == "__main__":
    main()
