"""jaxfc: the program :class:`jaxfc.Solver` trains with, its compiled epoch
(``jaxfc.training.make_epoch_on_batches`` with ``jaxfc.optim.adam``), started exactly as
``Solver._train_one_epoch`` starts it (``Solver._dispatch_epoch``: the minibatch draws on the
host, the next epoch's drawn while the device trains), without the per-epoch accuracy checks
and logging.

The Solver is built for real (it owns data placement, the train state and the jitted
epoch), so whatever the Solver does to its program the benchmark measures too. bfloat16 runs
use the model's mixed precision (``compute_dtype='bfloat16'``, float32 parameters).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxfc import Solver, enable_compilation_cache

from . import RunConfig, Trainer


def _solver(model, params, X, y, batch_size, config: RunConfig, gradients):
    dtype = model.dtype
    return Solver(
        model,
        {"X_train": X, "y_train": y, "X_val": X[:batch_size], "y_val": y[:batch_size]},
        update_rule="adam",
        optim_config={"learning_rate": config.learning_rate},
        batch_size=batch_size,
        num_epochs=1,
        verbose=False,
        gradients=gradients,
        seed=config.seed + 1,
        params={k: np.asarray(v, dtype) for k, v in params.items()},
    )


class JaxfcTrainer(Trainer):
    def __init__(self, workload, params, X, y, config: RunConfig, gradients: str):
        if os.environ.get("JAXFC_BENCH_CACHE_DIR"):  # suite.measure_cached_first_step
            enable_compilation_cache(os.environ["JAXFC_BENCH_CACHE_DIR"])
        self.model = workload.jaxfc_model("bfloat16" if config.dtype == "bfloat16" else None)
        self.solver = _solver(self.model, params, X, y, workload.batch_size, config, gradients)
        self.steps_per_call = self.solver.steps_per_epoch
        self.train_state = self.solver._state  # the kernel layout the epoch runs on
        self.epoch = 0
        self.params, self.config, self.gradients = params, config, gradients
        self.X, self.y, self.batch_size = X, y, workload.batch_size

    def run_steps(self, n):
        s = self.solver
        for _ in range(self._check_steps(n)):
            self.train_state, _ = s._dispatch_epoch(self.train_state, self.epoch,
                                                    s.learning_rate_at(0))
            self.epoch += 1
        jax.block_until_ready(self.train_state)

    def train_on(self, indices):
        """One step per row: the Solver's compiled epoch run on one minibatch at a time
        (the rows in order)."""
        B = self.batch_size
        solver = _solver(self.model, self.params, self.X[:B], self.y[:B], B, self.config,
                         self.gradients)
        assert solver.steps_per_epoch == 1
        ts, losses = solver._state, []
        in_order = np.arange(B, dtype=np.int32).reshape(1, B)
        for step, idx in enumerate(indices):
            Xb = jnp.asarray(self.X[idx], self.model.dtype)
            yb = jnp.asarray(self.y[idx], jnp.int32)
            _, step_key_data = solver._epoch_inputs(step)
            ts, loss = solver._epoch_fn(ts, Xb, yb, in_order, step_key_data,
                                        solver.learning_rate_at(0))
            losses.append(loss[0])
        return np.asarray(jnp.stack(losses), np.float64)


def unsupported(config: RunConfig):
    if config.dtype == "bfloat16":
        from jaxfc.models import TwoLayerNet

        try:
            TwoLayerNet(compute_dtype="bfloat16")
        except (TypeError, ValueError) as e:
            return f"jaxfc models reject compute_dtype='bfloat16' ({e})"
    return None


def make(workload, params, X, y, *, config: RunConfig, gradients: str) -> JaxfcTrainer:
    return JaxfcTrainer(workload, params, X, y, config, gradients)
