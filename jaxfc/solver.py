"""The Solver: cs231n's training loop on compiled pure steps.

Each epoch is one compiled program (:func:`jaxfc.training.make_epoch_on_batches`): the data
lives on the device, each step gathers its minibatch there, and there is no host work
between steps. The epoch's random draws (minibatch indices, dropout keys) come in as arrays
drawn on the host (:mod:`jaxfc.host_random`, exactly what
:func:`jaxfc.training.make_train_epoch` would draw from the same key), the next epoch's while
the device trains. The host wakes once per epoch to record the losses, check accuracy (also
compiled), keep the best parameters, write a checkpoint and print progress. The state is
kept in the epoch's kernel weight layout and converted when read; building a Solver
compiles nothing but ``model.init`` (once per model), and Solvers that differ only in
hyperparameter values share their compiled programs.

Example::

    model = FullyConnectedNet([100, 100], input_dim=64, num_classes=10)
    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                    num_epochs=20, batch_size=100)
    solver.train()
    solver.best_val_acc, solver.params  # params are the best ones after training
"""

from __future__ import annotations

import collections
import functools
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxfc import checkpoint as ckpt
from jaxfc import host_random
from jaxfc.models import GRADIENT_MODES
from jaxfc.optim import clip_by_global_norm, get_optimizer, set_hyperparams
from jaxfc.parallel import check_batch_divisible, replicate
from jaxfc.training import (
    TrainState,
    accuracy_draws,
    compiled_init,
    epoch_draws,
    make_accuracy,
    make_epoch_on_batches,
    make_subsampled_accuracy,
    transpose_weights,
)

DATA_KEYS = ("X_train", "y_train", "X_val", "y_val")

# Model layout <-> kernel layout (its own inverse); see jaxfc.training.
_swap_layout = jax.jit(transpose_weights)


def _device_array(x, dtype):
    """``x`` as a device array of ``dtype``; host arrays are converted by NumPy and copied
    (``jnp.asarray`` compiles a small program per new shape)."""
    if isinstance(x, jax.Array):
        return x if x.dtype == dtype else x.astype(dtype)
    return jax.device_put(np.asarray(x, dtype))


def _to_kernel(params):
    """Parameters in the kernel layout, transposed on the host (a transposing program
    would take ~30 ms per weight to compile); numpy dtypes are canonicalized as
    ``jnp.asarray`` would."""
    return jax.device_put(transpose_weights(jax.tree_util.tree_map(np.asarray, params)))

# The compiled epoch and accuracy programs of recent configurations. The programs read every
# numeric hyperparameter from the optimizer state, so Solvers that differ only in learning
# rate, momentum, seed, ... (a cs231n tuning loop) share them and compile once.
_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
_MAX_PROGRAMS = 16


def clear_program_cache() -> None:
    """Forget the compiled programs shared between Solvers (the next Solver compiles)."""
    _PROGRAMS.clear()


def _program_key(model, update_rule, optim_config, hyperparam_names, *rest):
    """A hashable key for the programs, or None when a setting cannot be hashed."""
    static = tuple(sorted((k, v) for k, v in optim_config.items() if k not in hyperparam_names))
    key = (model, update_rule, static, *rest)
    try:
        hash(key)
    except TypeError:
        return None
    return key


@functools.lru_cache(maxsize=32)
def _cached_accuracy_program(model, num_samples, batch_size, layout):
    return jax.jit(make_subsampled_accuracy(model, num_samples, batch_size=batch_size,
                                            state_layout=layout))


def _accuracy_program(model, num_samples, batch_size, layout):
    """The jitted accuracy program of these settings, compiled once per model and shape
    (a fresh one for a model that cannot be hashed)."""
    try:
        return _cached_accuracy_program(model, num_samples, batch_size, layout)
    except TypeError:
        return jax.jit(make_subsampled_accuracy(model, num_samples, batch_size=batch_size,
                                                state_layout=layout))


def _make_programs(model, optimizer, *, batch_size, steps_per_epoch, gradients, mesh,
                   num_train_samples, num_val_samples, key_impl):
    """``(run_epoch, device_batches, record, device_subsamples)``, all jitted, over the
    kernel-layout state.

    The random draws come in as arrays: the epoch's minibatch indices and dropout keys, the
    accuracy subsamples. The Solver draws them on the host (:mod:`jaxfc.host_random`), or
    with ``device_batches`` and ``device_subsamples`` for keys the host cannot hash; both
    give what :func:`jaxfc.training.make_train_epoch` and ``make_subsampled_accuracy``
    draw."""
    run = make_epoch_on_batches(model, optimizer, gradients=gradients, mesh=mesh,
                                state_layout="kernel")

    # The learning rate is set inside the program: an eager call compiles a program of its
    # own the first time.
    def run_epoch(state, X, y, indices, step_key_data, learning_rate):
        opt_state = set_hyperparams(state.opt_state, learning_rate=learning_rate)
        step_keys = jax.random.wrap_key_data(step_key_data, impl=key_impl)
        return run(state._replace(opt_state=opt_state), X, y, indices, step_keys, {})

    def device_batches(key, data_key, epoch, num_train):
        return epoch_draws(key, epoch, num_train, batch_size, steps_per_epoch, data_key)

    accuracy = make_accuracy(model, state_layout="kernel")

    # The accuracies are measured on subsamples (training.accuracy_draws) drawn on the host
    # like the minibatches, or by ``device_subsamples``; None means the whole set.
    def record(params, model_state, X, y, X_val, y_val, train_idx, val_idx):
        def on(X, y, idx):
            if idx is not None:
                X, y = jnp.take(X, idx, axis=0), jnp.take(y, idx, axis=0)
            return accuracy(params, model_state, X, y)

        return on(X, y, train_idx), on(X_val, y_val, val_idx)

    def device_subsamples(key, epoch, num_train, num_val):
        return accuracy_draws(key, epoch, num_train, num_val, num_train_samples,
                              num_val_samples)

    return (jax.jit(run_epoch), jax.jit(device_batches, static_argnums=3), jax.jit(record),
            jax.jit(device_subsamples, static_argnums=(2, 3)))


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the solver keeps its last good state."""


def check_data(data: dict, input_dim: int | None = None, num_classes: int | None = None):
    """Validate a data dict; returns it. Errors name the key and what was wrong."""
    missing = [k for k in DATA_KEYS if k not in data]
    if missing:
        raise ValueError(f"data is missing {missing}; a data dict needs {list(DATA_KEYS)}")
    for split in ("train", "val", "test"):
        xk, yk = f"X_{split}", f"y_{split}"
        if (xk in data) != (yk in data):
            present, absent = (xk, yk) if xk in data else (yk, xk)
            raise ValueError(f"data has {present!r} but not {absent!r}; give both or neither")
        if xk not in data:
            continue
        X, y = np.asarray(data[xk]), np.asarray(data[yk])
        if X.ndim < 2 or X.shape[0] == 0:
            raise ValueError(f"data[{xk!r}] must have shape (N, ...) with N > 0, got {X.shape}")
        if y.shape != (X.shape[0],):
            raise ValueError(
                f"data[{yk!r}] must have shape ({X.shape[0]},) to match data[{xk!r}] of shape "
                f"{X.shape}, got {y.shape}"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise TypeError(f"data[{yk!r}] must hold integer labels, got dtype {y.dtype}")
        if input_dim is not None and math.prod(X.shape[1:]) != input_dim:
            raise ValueError(
                f"data[{xk!r}] has {math.prod(X.shape[1:])} features per sample "
                f"(shape {X.shape}), but the model expects input_dim={input_dim}"
            )
        if num_classes is not None and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(
                f"data[{yk!r}] holds labels in [{y.min()}, {y.max()}], outside the model's "
                f"{num_classes} classes"
            )
    return data


class Solver:
    """Trains a jaxfc model on ``data = {X_train, y_train, X_val, y_val[, X_test, y_test]}``.

    Options (cs231n's names and defaults):
      update_rule: an optimizer name from :mod:`jaxfc.optim` ('sgd', 'sgd_momentum',
        'nesterov_momentum', 'rmsprop', 'adagrad', 'adam', 'adamw').
      optim_config: its hyperparameters, e.g. ``{'learning_rate': 1e-3}``.
      lr_decay: the learning rate is multiplied by this after every epoch.
      batch_size, num_epochs: minibatch size; epochs of ``max(N // batch_size, 1)`` steps.
      num_train_samples: training samples used to measure training accuracy (None: all).
      num_val_samples: validation samples used to measure validation accuracy (None: all).
      print_every: with verbose, print every ``print_every``-th iteration's loss (0: none).
      verbose: print progress (one line per epoch).
      checkpoint_name: if set, write ``{checkpoint_name}_epoch_{e}.npz`` after every epoch.
    jaxfc's own:
      seed or key: the PRNG key for initialization, minibatches and dropout (``key`` wins).
      data_seed: if given, the minibatch order comes from this seed alone (epoch ``e`` uses
        ``fold_in(key(data_seed), e)``), so runs with different seeds see the same batches,
        as the models of a ``sweep(..., shared_batches=True)`` do.
      gradients: 'manual' (hand-written backward passes) or 'autodiff' (``jax.grad``).
      lr_schedule: a callable ``epoch -> learning rate`` replacing lr_decay.
      max_grad_norm: clip gradients by this global norm.
      checkpoint_path: one file rewritten (atomically) after every epoch.
      checkpoint_metadata: extra JSON-able metadata stored in every checkpoint.
      params, model_state: start from these instead of ``model.init``.
      mesh: a device mesh (:func:`jaxfc.parallel.data_mesh`) for data-parallel training:
        each minibatch is split over its devices, everything else is replicated.

    After ``train()``: ``loss_history`` (one entry per iteration), ``train_acc_history`` and
    ``val_acc_history`` (one per epoch, plus the start), ``best_val_acc``, ``best_params``
    (a tie goes to the later epoch, which has trained longer; cs231n keeps the earlier);
    ``params`` and ``model_state`` hold the best ones.
    """

    def __init__(self, model, data: dict, **kwargs):
        self.model = model
        self.update_rule = kwargs.pop("update_rule", "sgd")
        self.optim_config = dict(kwargs.pop("optim_config", {}) or {})
        self.lr_decay = float(kwargs.pop("lr_decay", 1.0))
        self.batch_size = int(kwargs.pop("batch_size", 100))
        self.num_epochs = int(kwargs.pop("num_epochs", 10))
        self.num_train_samples = kwargs.pop("num_train_samples", 1000)
        self.num_val_samples = kwargs.pop("num_val_samples", None)
        self.print_every = int(kwargs.pop("print_every", 10))
        self.verbose = bool(kwargs.pop("verbose", True))
        self.checkpoint_name = kwargs.pop("checkpoint_name", None)
        self.checkpoint_path = kwargs.pop("checkpoint_path", None)
        self.checkpoint_metadata = dict(kwargs.pop("checkpoint_metadata", {}) or {})
        self.gradients = kwargs.pop("gradients", "manual")
        self.lr_schedule = kwargs.pop("lr_schedule", None)
        self.max_grad_norm = kwargs.pop("max_grad_norm", None)
        seed = kwargs.pop("seed", 0)
        data_seed = kwargs.pop("data_seed", None)
        key = kwargs.pop("key", None)
        params = kwargs.pop("params", None)
        model_state = kwargs.pop("model_state", None)
        self.mesh = kwargs.pop("mesh", None)
        if kwargs:
            raise ValueError(f"unrecognized Solver arguments: {sorted(kwargs)}")
        if self.gradients not in GRADIENT_MODES:
            raise ValueError(f"gradients must be one of {GRADIENT_MODES}, got {self.gradients!r}")
        if self.batch_size <= 0 or self.num_epochs < 0:
            raise ValueError(
                f"batch_size must be positive and num_epochs non-negative, got "
                f"batch_size={self.batch_size}, num_epochs={self.num_epochs}"
            )

        check_data(data, getattr(model, "input_dim", None), getattr(model, "num_classes", None))
        if self.mesh is not None:
            check_batch_divisible(self.batch_size, self.mesh)
        dtype = model.dtype
        self.X_train = _device_array(data["X_train"], dtype)
        self.y_train = _device_array(data["y_train"], jnp.int32)
        self.X_val = _device_array(data["X_val"], dtype)
        self.y_val = _device_array(data["y_val"], jnp.int32)

        self.optimizer = get_optimizer(self.update_rule, **self.optim_config)
        if self.max_grad_norm is not None:
            self.optimizer = clip_by_global_norm(self.optimizer, float(self.max_grad_norm))
        self.data_seed = data_seed
        self.data_key = None if data_seed is None else jax.random.key(data_seed)
        self.key, self._state = self._initial_state(seed, key, params, model_state)
        self.base_learning_rate = float(self.optim_config.get(
            "learning_rate", self._state.opt_state.hyperparams["learning_rate"]))
        if self.mesh is not None:
            self._state = replicate(self._state, self.mesh)
            self.X_train, self.y_train, self.X_val, self.y_val = replicate(
                (self.X_train, self.y_train, self.X_val, self.y_val), self.mesh
            )

        num_train = self.X_train.shape[0]
        self.steps_per_epoch = max(num_train // self.batch_size, 1)
        settings = dict(batch_size=self.batch_size, steps_per_epoch=self.steps_per_epoch,
                        gradients=self.gradients, mesh=self.mesh,
                        num_train_samples=self.num_train_samples,
                        num_val_samples=self.num_val_samples,
                        key_impl=str(jax.random.key_impl(self.key)))
        key = _program_key(model, self.update_rule, self.optim_config,
                           set(self._state.opt_state.hyperparams),
                           self.max_grad_norm is not None, *sorted(settings.items()))
        programs = _PROGRAMS.get(key) if key is not None else None
        if programs is None:
            programs = _make_programs(model, self.optimizer, **settings)
            if key is not None:
                _PROGRAMS[key] = programs
                while len(_PROGRAMS) > _MAX_PROGRAMS:
                    _PROGRAMS.popitem(last=False)
        else:
            _PROGRAMS.move_to_end(key)
        (self._epoch_fn, self._device_batches, self._record_fn,
         self._device_subsamples) = programs
        self._reset()

    def _initial_state(self, seed, key, params, model_state):
        """``(run_key, train_state)``: ``split(root)`` gives the init and run keys, the
        state is in the kernel layout. Everything that can is done on the host: each eager
        JAX operation would compile a program of its own the first time."""
        if (key is None and isinstance(seed, (int, np.integer)) and 0 <= seed < 2**32
                and host_random.supports_default_keys()):
            init_words, run_words = host_random.split(host_random.seed_words(int(seed)))
            init_key, run_key = (jax.random.wrap_key_data(w) for w in (init_words, run_words))
        else:
            root = key if key is not None else jax.random.key(seed)
            init_key, run_key = jax.jit(jax.random.split)(root)
        if params is None:
            params = compiled_init(self.model, "params")(init_key)
        params = _to_kernel(params)
        if model_state is None:
            model_state = compiled_init(self.model, "model_state")(init_key)
        # The optimizer starts from the kernel-layout parameters, so its state is in that
        # layout too (every jaxfc optimizer treats entries independently of position).
        # jaxfc's optimizers build their state on the host: no program to compile.
        opt_state = self.optimizer.init(params)
        return run_key, TrainState(params, model_state, opt_state)

    def _host_draw_tag(self, kind: str, epoch: int):
        """A key for host draws of ``kind`` at ``epoch`` under the current keys, or None
        when the keys need the device."""
        keys = (self.key, self.data_key)
        if not all(k is None or host_random.supports(k) for k in keys):
            return None
        return (kind, epoch) + tuple(None if k is None else tuple(host_random.key_words(k))
                                     for k in keys)

    def _epoch_inputs(self, epoch: int):
        """The minibatch indices and dropout key data of ``epoch``: on the host when the
        keys allow it, else with the compiled ``device_batches``; the same arrays either
        way."""
        tag = self._host_draw_tag("epoch", epoch)
        if tag in self._prefetched:
            return self._prefetched.pop(tag)
        num_train = self.X_train.shape[0]
        if tag is not None:
            data_words = (None if self.data_key is None
                          else host_random.key_words(self.data_key))
            drawn = host_random.epoch_draws(host_random.key_words(self.key), epoch, num_train,
                                            self.batch_size, self.steps_per_epoch, data_words)
            if drawn is not None:
                return drawn
        return self._device_batches(self.key, self.data_key, epoch, num_train)

    def _record_inputs(self, epoch: int):
        """The accuracy subsamples after ``epoch`` epochs (None: the whole set), drawn on
        the host when the key allows it, else with the compiled ``device_subsamples``."""
        tag = self._host_draw_tag("record", epoch)
        if tag in self._prefetched:
            return self._prefetched.pop(tag)
        num_train, num_val = self.X_train.shape[0], self.X_val.shape[0]
        if tag is None:
            return self._device_subsamples(self.key, epoch, num_train, num_val)
        return host_random.accuracy_draws(host_random.key_words(self.key), epoch, num_train,
                                          num_val, self.num_train_samples,
                                          self.num_val_samples)

    def _dispatch_epoch(self, state: TrainState, epoch: int, learning_rate: float):
        """Start ``epoch`` on the device and return its ``(state, losses)`` without waiting;
        meanwhile the host draws what the accuracy check after it and the next epoch
        need (on a 2-core CPU, ~1.5 ms per 10,000 samples that the device hides)."""
        indices, step_key_data = self._epoch_inputs(epoch)
        out = self._epoch_fn(state, self.X_train, self.y_train, indices, step_key_data,
                             learning_rate)
        self._prefetched = {}
        for kind, draw in (("record", self._record_inputs), ("epoch", self._epoch_inputs)):
            tag = self._host_draw_tag(kind, epoch + 1)
            if tag is not None:
                self._prefetched[tag] = draw(epoch + 1)
        return out

    # ------------------------------------------------------------------ bookkeeping

    def _reset(self):
        self._prefetched: dict = {}
        self._trained = False
        self.epoch = 0
        self.best_val_acc = 0.0
        self.best_epoch = 0
        self._best_params = self._state.params
        self.best_model_state = self._state.model_state
        self.loss_history: list[float] = []
        self.train_acc_history: list[float] = []
        self.val_acc_history: list[float] = []
        self.lr_history: list[float] = []
        self.epoch_time_history: list[float] = []

    @property
    def train_state(self) -> TrainState:
        """The last epoch's params, model state and optimizer state, in the model's layout
        (a fresh conversion of the kernel-layout state the Solver trains on)."""
        return _swap_layout(self._state)

    @train_state.setter
    def train_state(self, train_state: TrainState) -> None:
        self._state = _swap_layout(TrainState(*train_state))

    @property
    def best_params(self):
        """The parameters of the epoch with the best validation accuracy so far."""
        return _swap_layout(self._best_params)

    @best_params.setter
    def best_params(self, params) -> None:
        self._best_params = _swap_layout(params)

    @property
    def params(self):
        """The best parameters once ``train()`` has returned (cs231n's convention), the
        current ones while training. ``train_state`` always holds the last epoch's."""
        return _swap_layout(self._best_params if self._trained else self._state.params)

    @property
    def model_state(self):
        return self.best_model_state if self._trained else self._state.model_state

    @property
    def opt_state(self):
        return self.train_state.opt_state

    def learning_rate_at(self, epoch: int) -> float:
        if self.lr_schedule is not None:
            return float(self.lr_schedule(epoch))
        return self.base_learning_rate * self.lr_decay**epoch

    # ------------------------------------------------------------------ accuracy

    def check_accuracy(self, X, y, num_samples=None, batch_size=1000, *, key=None,
                       params=None, model_state=None) -> float:
        """Accuracy in evaluation mode on (a random subsample of ``num_samples`` of) X, y;
        the subsample is drawn with ``key`` (default ``key(0)``). ``params`` and
        ``model_state`` default to :attr:`params` and :attr:`model_state`."""
        layout = "kernel" if params is None else "model"
        if params is None:
            params = self._best_params if self._trained else self._state.params
        model_state = self.model_state if model_state is None else model_state
        X = jnp.asarray(X, self.model.dtype)
        y = jnp.asarray(y, jnp.int32)
        if num_samples is not None and num_samples >= X.shape[0]:
            num_samples = None
        program = _accuracy_program(self.model, num_samples, batch_size, layout)
        key = jax.random.key(0) if key is None else key
        return float(program(params, model_state, X, y, key))

    @staticmethod
    def evaluate(model, params, model_state, X, y, batch_size: int = 1000) -> float:
        """Accuracy of ``model`` with the given parameters on X, y (evaluation mode)."""
        X = jnp.asarray(X, model.dtype)
        y = jnp.asarray(y, jnp.int32)
        program = _accuracy_program(model, None, batch_size, "model")
        return float(program(params, model_state, X, y, jax.random.key(0)))

    def _record_accuracy(self, epoch: int) -> tuple[float, float]:
        accuracies = self._record_fn(self._state.params, self._state.model_state, self.X_train,
                                     self.y_train, self.X_val, self.y_val,
                                     *self._record_inputs(epoch))
        train_acc, val_acc = (float(a) for a in accuracies)
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        if val_acc >= self.best_val_acc or not self.val_acc_history[:-1]:
            self.best_val_acc = val_acc
            self.best_epoch = epoch
            self._best_params = self._state.params
            self.best_model_state = self.model_state
        return train_acc, val_acc

    # ------------------------------------------------------------------ training

    def train(self, num_epochs: int | None = None) -> Solver:
        """Train until ``num_epochs`` (default: the configured number) epochs are done.

        Calling again after loading a checkpoint resumes where it stopped. Raises
        :class:`NonFiniteLossError` naming the epoch and step when a loss is NaN or
        infinite; the solver then keeps the parameters, histories and checkpoint of the last
        complete epoch.
        """
        num_epochs = self.num_epochs if num_epochs is None else num_epochs
        self._trained = False
        if self.epoch == 0 and not self.val_acc_history:
            train_acc, val_acc = self._record_accuracy(0)
            self._log(f"(Epoch 0 / {num_epochs}) train acc: {train_acc:.4f}; "
                      f"val_acc: {val_acc:.4f}")
        while self.epoch < num_epochs:
            self._train_one_epoch(num_epochs)
        # Expose the best parameters, as cs231n's Solver does; train_state stays the last
        # epoch's so that checkpoints and further training continue from it.
        self._trained = True
        return self

    def _train_one_epoch(self, num_epochs: int) -> None:
        epoch = self.epoch
        start = time.perf_counter()
        lr = self.learning_rate_at(epoch)
        new_ts, losses = self._dispatch_epoch(self._state, epoch, lr)
        losses = np.asarray(losses)
        if not np.all(np.isfinite(losses)):
            step = int(np.argmin(np.isfinite(losses)))
            raise NonFiniteLossError(
                f"loss became {losses[step]} at epoch {epoch + 1}, step {step + 1} of "
                f"{self.steps_per_epoch} (iteration {epoch * self.steps_per_epoch + step + 1}); "
                f"the solver keeps the state after epoch {epoch}. Try a smaller learning rate "
                f"(now {lr:g}) or weight scale."
            )
        self._state = new_ts
        self.epoch = epoch + 1
        first_iteration = len(self.loss_history)
        self.loss_history.extend(float(v) for v in losses)
        self.lr_history.append(lr)
        train_acc, val_acc = self._record_accuracy(self.epoch)
        self.epoch_time_history.append(time.perf_counter() - start)
        if self.verbose and self.print_every > 0:
            total = num_epochs * self.steps_per_epoch
            for i, loss in enumerate(losses, start=first_iteration):
                if i % self.print_every == 0:
                    print(f"(Iteration {i + 1} / {total}) loss: {loss:f}")
        self._log(
            f"(Epoch {self.epoch} / {num_epochs}) train acc: {train_acc:.4f}; "
            f"val_acc: {val_acc:.4f}; loss {float(np.mean(losses)):.4f}; lr {lr:.3g}; "
            f"{self.epoch_time_history[-1]:.2f}s"
        )
        if self.checkpoint_name:
            self.save_checkpoint(f"{self.checkpoint_name}_epoch_{self.epoch}.npz")
        if self.checkpoint_path:
            self.save_checkpoint(self.checkpoint_path)

    def _log(self, message: str) -> None:
        if self.verbose:
            print(message, flush=True)

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint_tree(self) -> dict:
        return {
            "train_state": self.train_state,
            "best_params": self.best_params,
            "best_model_state": self.best_model_state,
            "key": self.key,
        }

    def history(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "best_epoch": self.best_epoch,
            "best_val_acc": self.best_val_acc,
            "loss_history": self.loss_history,
            "train_acc_history": self.train_acc_history,
            "val_acc_history": self.val_acc_history,
            "lr_history": self.lr_history,
            "epoch_time_history": self.epoch_time_history,
        }

    def config(self) -> dict[str, Any]:
        return {
            "update_rule": self.update_rule,
            "optim_config": self.optim_config,
            "lr_decay": self.lr_decay,
            "batch_size": self.batch_size,
            "num_epochs": self.num_epochs,
            "gradients": self.gradients,
            "max_grad_norm": self.max_grad_norm,
            "data_seed": self.data_seed,
        }

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write params, model and optimizer state, best params, key and histories
        (atomically: a crash never leaves a half-written file)."""
        ckpt.save_checkpoint(
            path,
            self._checkpoint_tree(),
            metadata={**self.checkpoint_metadata, "history": self.history(),
                      "solver": self.config()},
        )

    def load_checkpoint(self, path: str | os.PathLike) -> Solver:
        """Restore a checkpoint written by :meth:`save_checkpoint` of a Solver with the same
        model and optimizer; ``train()`` then continues exactly where it stopped."""
        tree, metadata = ckpt.restore_checkpoint(path, self._checkpoint_tree())
        history = metadata.get("history", {})
        self.train_state = TrainState(*tree["train_state"])
        self.best_params = tree["best_params"]
        self.best_model_state = tree["best_model_state"]
        self.key = tree["key"]
        self.epoch = int(history.get("epoch", 0))
        self.best_epoch = int(history.get("best_epoch", 0))
        self.best_val_acc = float(history.get("best_val_acc", 0.0))
        for name in ("loss_history", "train_acc_history", "val_acc_history", "lr_history",
                     "epoch_time_history"):
            setattr(self, name, list(history.get(name, [])))
        return self


def load_best_model(path: str | os.PathLike, model) -> tuple[Any, Any]:
    """The best ``(params, model_state)`` stored in a Solver checkpoint, for ``model``,
    without needing the optimizer that wrote it."""
    flat, _ = ckpt.load_checkpoint(path)
    params, model_state = model.init(jax.random.key(0))
    template = {"best_params": params, "best_model_state": model_state}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    restored = []
    for key_path, leaf in leaves:
        name = jax.tree_util.keystr(key_path)
        if name not in flat:
            raise ckpt.CheckpointError(
                f"{path}: no entry {name!r}; it does not hold this model's parameters"
            )
        value = flat[name]
        if value.shape != leaf.shape:
            raise ckpt.CheckpointError(
                f"{path}: {name} has shape {value.shape}, the model expects {leaf.shape}"
            )
        restored.append(jnp.asarray(value, leaf.dtype))
    tree = jax.tree_util.tree_unflatten(treedef, restored)
    return tree["best_params"], tree["best_model_state"]
