"""Many models in one compiled program: hyperparameter and seed sweeps.

:func:`sweep` trains K models of one architecture at once. Each model has its own seed and
numeric hyperparameters (``learning_rate``, ``reg``, ``weight_scale``, ``dropout``,
``lr_decay`` and the optimizer's other hyperparameters such as ``momentum`` or ``beta1``).
An epoch of all of them is ONE compiled program: the Solver's own pure epoch
(:func:`jaxfc.training.make_epoch_on_batches`) over the stacked train states, with the data
shared (X and y are not copied K times); their accuracies are another. As in the Solver,
the random draws (minibatches, dropout keys, accuracy subsamples) are made on the host
(:mod:`jaxfc.host_random`) while the device trains. Changing the values
never recompiles; models that do not fit in memory together run in equal chunks, the last
one padded, so every chunk reuses the same programs.

``batching`` says how one program runs K models: ``'vmap'`` batches them (``jax.vmap``:
K-wide matrix products, what a GPU needs to be busy), ``'map'`` runs them one after another
inside the program (``jax.lax.map``: each model gets the Solver's single-model program).
On a 2-core CPU 16 TwoLayerNets train ~40% slower batched than mapped, unless they share
their minibatches (``shared_batches=True``), when both ways match one Solver after another
(``bench/bench_sweep.py``). The default ``'auto'`` maps on the CPU and batches elsewhere.

Model ``k`` is exactly what :class:`jaxfc.solver.Solver` would train with the same settings,
to float tolerance: batched matrix products may round differently (and Adam turns that
rounding into full-size steps for a bias in front of batch norm, whose gradient is zero up
to rounding; such a bias has no effect on the outputs)::

    result = sweep(model, data, grid(learning_rate=[1e-3, 1e-2], reg=[0.0, 1e-3]),
                   seeds=[0, 1], update_rule="adam", num_epochs=10, batch_size=100)
    # model k == Solver(result.model_for(k), data, **result.solver_kwargs(k)).train()
    result.best_setting, result.best_val_acc.max()
    result.to_csv("results.csv"); result.plot("sweep.png")
    result.save_best_checkpoint("best.npz")

Keys are derived as in the Solver: ``init_key, key = split(key(seed))``; the parameters come
from ``model.init(init_key)``; epoch ``e`` (0-based) trains with ``fold_in(key, 2*e)``; the
accuracies after ``e`` epochs subsample with ``split(fold_in(key, 2*e + 1))``. The learning
rate of epoch ``e`` is ``learning_rate * lr_decay**e`` (in float64, then float32). A swept
``weight_scale`` scales the weights that ``model.init`` draws at unit scale, which gives the
same numbers as initializing at that scale. A model whose loss becomes NaN or infinite keeps
its last good state and stops (the Solver raises instead); ``diverged_epoch`` records where.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import numbers
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxfc import host_random
from jaxfc.optim import clip_by_global_norm, get_optimizer, set_hyperparams
from jaxfc.training import (
    TrainState,
    accuracy_draws,
    compiled_init,
    epoch_draws,
    make_accuracy,
    make_epoch_on_batches,
    transpose_weights,
)

__all__ = [
    "Distribution",
    "SweepResult",
    "choice",
    "estimate_bytes_per_model",
    "grid",
    "loguniform",
    "random_search",
    "sweep",
    "sweepable_names",
    "uniform",
]

MODEL_HPARAMS = ("reg", "dropout", "weight_scale")
SCHEDULE_HPARAMS = ("lr_decay",)
# Model fields that change the compiled program: one sweep per value.
STATIC_MODEL_FIELDS = (
    "hidden_dims", "hidden_dim", "input_dim", "num_classes", "normalization", "use_batchnorm",
    "dtype", "loss_type", "bn_momentum", "eps",
)
# sweep() arguments shared by all models of a sweep.
SWEEP_ARGUMENTS = (
    "batch_size", "num_epochs", "update_rule", "optimizer", "gradients", "max_grad_norm",
    "num_train_samples", "num_val_samples", "optim_config",
)
LOG_SCALE = ("learning_rate", "reg", "weight_scale", "weight_decay", "epsilon", "max_norm")


# ----------------------------------------------------------------------------- search spaces


def grid(**axes) -> list[dict]:
    """Every combination of the given values (cartesian product, the first axis slowest).

    ``grid(learning_rate=[1e-3, 1e-2], reg=[0, 1e-3])`` gives 4 settings. A single value
    (not a list) is an axis of one. ``seed`` may be an axis too.
    """
    names, values = [], []
    for name, axis in axes.items():
        axis = [axis] if isinstance(axis, str) or not isinstance(axis, Sequence) else list(axis)
        if not axis:
            raise ValueError(f"grid axis {name!r} is empty; give it at least one value")
        names.append(name)
        values.append(axis)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


class Distribution(NamedTuple):
    """A range to draw from in :func:`random_search`: made by :func:`uniform`,
    :func:`loguniform` or :func:`choice`."""

    kind: str
    args: tuple

    def sample(self, rng: np.random.Generator, num: int) -> list:
        if self.kind == "choice":
            (values,) = self.args
            return [values[i] for i in rng.integers(0, len(values), num)]
        low, high = self.args
        if self.kind == "uniform":
            draws = rng.uniform(low, high, num)
        else:
            draws = np.exp(rng.uniform(math.log(low), math.log(high), num))
        return [float(v) for v in np.clip(draws, low, high)]


def _check_range(name: str, low, high) -> tuple[float, float]:
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{name} needs finite real bounds, got ({low!r}, {high!r})")
    if not low <= high:
        raise ValueError(f"{name} needs low <= high, got ({low}, {high})")
    return float(low), float(high)


def uniform(low: float, high: float) -> Distribution:
    """Uniform on ``[low, high]`` (e.g. a dropout probability)."""
    return Distribution("uniform", _check_range("uniform", low, high))


def loguniform(low: float, high: float) -> Distribution:
    """Log-uniform on ``[low, high]``, ``0 < low``: ``exp(U(log low, log high))`` (each decade
    equally likely; the usual choice for learning rates and regularization strengths)."""
    low, high = _check_range("loguniform", low, high)
    if low <= 0:
        raise ValueError(
            f"loguniform needs 0 < low, got low={low}; use uniform() for ranges that include 0"
        )
    return Distribution("loguniform", (low, high))


def choice(values: Sequence) -> Distribution:
    """One of ``values``, each equally likely."""
    values = list(values)
    if not values:
        raise ValueError("choice needs at least one value")
    return Distribution("choice", (values,))


def _rng(key_or_seed) -> np.random.Generator:
    if isinstance(key_or_seed, np.random.Generator):
        return key_or_seed
    if isinstance(key_or_seed, int | np.integer) and not isinstance(key_or_seed, bool):
        return np.random.default_rng(int(key_or_seed))
    try:
        data = jax.random.key_data(key_or_seed)
    except Exception:  # noqa: BLE001
        data = key_or_seed
    data = np.asarray(data)
    if data.dtype != np.uint32:
        raise TypeError(
            f"key_or_seed must be an int, a jax.random key or a numpy Generator, got "
            f"{type(key_or_seed).__name__}"
        )
    return np.random.default_rng(data.ravel().tolist())


def random_search(key_or_seed, num: int, **ranges) -> list[dict]:
    """``num`` settings drawn independently from ``ranges``.

    Each range is a :func:`loguniform`, :func:`uniform` or :func:`choice`, a list (a
    choice) or a single value (fixed). E.g.
    ``random_search(0, 20, learning_rate=loguniform(1e-4, 1e-1), dropout=uniform(0, 0.5))``.
    The draws depend only on ``key_or_seed`` (an int, a ``jax.random`` key or a NumPy
    ``Generator``), ``num`` and the names: each name draws in sorted-name order from one
    NumPy generator, in float64.
    """
    if isinstance(num, bool) or not isinstance(num, int | np.integer) or num <= 0:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    rng = _rng(key_or_seed)
    columns = {}
    for name in sorted(ranges):
        spec = ranges[name]
        if isinstance(spec, Distribution):
            columns[name] = spec.sample(rng, int(num))
        elif isinstance(spec, list | tuple):
            columns[name] = choice(spec).sample(rng, int(num))
        else:
            columns[name] = [spec] * int(num)
    return [{name: columns[name][i] for name in ranges} for i in range(int(num))]


# ----------------------------------------------------------------------------- validation


def _build_optimizer(update_rule: str, optim_config: Mapping, max_grad_norm=None):
    optimizer = get_optimizer(update_rule, **optim_config)
    if max_grad_norm is not None:
        optimizer = clip_by_global_norm(optimizer, float(max_grad_norm))
    return optimizer


def _optimizer_hparams(update_rule: str, optim_config: Mapping,
                       max_grad_norm=None) -> dict[str, float]:
    optimizer = _build_optimizer(update_rule, optim_config, max_grad_norm)
    return {k: float(v) for k, v in optimizer.init({"W": jnp.zeros(1)}).hyperparams.items()}


def sweepable_names(update_rule: str = "adam", optim_config: Mapping | None = None,
                    max_grad_norm: float | None = None) -> list[str]:
    """The hyperparameters a sweep with this optimizer can vary (besides ``seed``);
    ``max_norm`` with gradient clipping (``max_grad_norm``)."""
    opt = _optimizer_hparams(update_rule, dict(optim_config or {}), max_grad_norm)
    return [*opt, *SCHEDULE_HPARAMS, *MODEL_HPARAMS]


def _owners(name: str) -> list[str]:
    from jaxfc.optim import OPTIMIZERS

    return [rule for rule in OPTIMIZERS if name in _optimizer_hparams(rule, {})]


def _check_names(names, known: list[str], update_rule: str) -> None:
    for name in names:
        if name == "seed" or name in known:
            continue
        if name in STATIC_MODEL_FIELDS:
            raise ValueError(
                f"{name!r} changes the model's architecture or static configuration, which all "
                "models of a sweep share (they run as one compiled program); build one model "
                f"per value and run one sweep each, e.g. `for h in [(100,), (200, 100)]: "
                f"sweep(FullyConnectedNet(hidden_dims=h, ...), data, ...)`"
            )
        if name in SWEEP_ARGUMENTS:
            raise ValueError(
                f"{name!r} is shared by all models of a sweep: pass it as sweep({name}=...) "
                "and run one sweep per value"
            )
        hint = ""
        owners = _owners(name)
        if name == "max_norm":
            hint = " (pass max_grad_norm=... to clip gradients; then max_norm can vary)"
        elif owners:
            hint = f" ({name!r} belongs to update_rule {owners}; pass update_rule=...)"
        raise ValueError(
            f"unknown hyperparameter {name!r} for a sweep with update_rule={update_rule!r}"
            f"{hint}; the ones a sweep can vary are {['seed', *known]}"
        )


def _check_value(where: str, name: str, value) -> Any:
    if name == "seed":
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{where}: seed must be an integer, got {value!r}")
        return int(value)
    if name == "weight_scale" and value in ("he", "xavier"):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kinds = "a positive number or 'he' / 'xavier'" if name == "weight_scale" else "a number"
        raise ValueError(f"{where}: {name} must be {kinds}, got {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    if name == "reg":
        bad |= value < 0
        want = "finite and >= 0"
    elif name == "dropout":
        bad |= not 0 <= value < 1
        want = "the drop probability in [0, 1)"
    elif name in ("weight_scale", "lr_decay", "max_norm"):
        bad |= value <= 0
        want = "finite and > 0"
    else:
        want = "finite"
    if bad:
        raise ValueError(f"{where}: {name} must be {want}, got {value!r}")
    return value


def _normalize_settings(settings, seeds) -> list[dict]:
    """A list of per-model dicts, each with 'seed'."""
    if settings is None:
        settings = [{}]
    elif isinstance(settings, Mapping):
        columns = {}
        for name, values in settings.items():
            if isinstance(values, str) or not isinstance(values, Sequence | np.ndarray):
                raise ValueError(
                    f"settings[{name!r}] must be a list of values (one per model), got "
                    f"{values!r}; use grid(...) for every combination"
                )
            columns[name] = list(values)
        lengths = {name: len(v) for name, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                f"settings have mismatched lengths {lengths}: a dict of lists gives one model "
                "per position, so every list needs the same length; use grid(...) for every "
                "combination or random_search(...)"
            )
        settings = [dict(zip(columns, vals, strict=True)) for vals in
                    zip(*columns.values(), strict=True)]
    elif isinstance(settings, Sequence):
        settings = list(settings)
        for i, s in enumerate(settings):
            if not isinstance(s, Mapping):
                raise ValueError(f"settings[{i}] must be a dict of hyperparameters, got {s!r}")
            if set(s) != set(settings[0]):
                raise ValueError(
                    f"settings[{i}] names {sorted(s)} but settings[0] names "
                    f"{sorted(settings[0])}: every setting must name the same hyperparameters"
                )
        settings = [dict(s) for s in settings]
    else:
        raise ValueError(
            f"settings must be a dict of lists, a list of dicts or None, got "
            f"{type(settings).__name__}"
        )
    if not settings:
        raise ValueError("settings hold no models; give at least one setting")
    has_seed = "seed" in settings[0]
    if has_seed and seeds is not None:
        raise ValueError("settings name 'seed' and seeds= is given too; use one of them")
    if not has_seed:
        seeds = [0] if seeds is None else seeds
        if isinstance(seeds, int | np.integer):
            seeds = [seeds]
        seeds = list(seeds)
        if not seeds:
            raise ValueError("seeds is empty; give at least one seed")
        settings = [{**s, "seed": seed} for s in settings for seed in seeds]
    return settings


# ----------------------------------------------------------------------------- memory


def _tree_bytes(tree) -> int:
    return sum(x.size * np.dtype(x.dtype).itemsize for x in jax.tree_util.tree_leaves(tree))


def estimate_bytes_per_model(
    model,
    optimizer,
    *,
    batch_size: int,
    num_train: int,
    num_val: int,
    num_train_samples: int | None = 1000,
    num_val_samples: int | None = None,
    eval_batch: int = 1000,
) -> int:
    """A generous estimate of the device memory one more model in a sweep needs: its train
    state twice (in and out of the epoch), best params, gradients and update temporaries,
    training activations ``~4 * batch * sum(layer dims)`` and the accuracy subsamples."""
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    opt_state = jax.eval_shape(optimizer.init, params)
    p, s, o = _tree_bytes(params), _tree_bytes(state), _tree_bytes(opt_state)
    itemsize = np.dtype(model.dtype).itemsize
    dims = getattr(model, "layer_dims", None) or (model.input_dim, model.num_classes)
    width, d = sum(dims), dims[0]
    persistent = 2 * (p + s + o) + (p + s) + 2 * p
    train = 4 * batch_size * width * itemsize
    gathered = 0
    for m, n in ((num_train_samples, num_train), (num_val_samples, num_val)):
        if m is not None and m < n:
            gathered += m * (d * itemsize + 4)
    evaluation = gathered + min(eval_batch, max(num_train, num_val)) * width * itemsize
    return int(persistent + train + evaluation)


def _available_bytes() -> int:
    device = jax.devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001
        stats = {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _chunk_size(num_models: int, max_models: int | None, per_model: int, data_bytes: int):
    if max_models is None:
        budget = 0.5 * _available_bytes() - data_bytes
        max_models = max(1, int(budget // max(per_model, 1)))
    elif isinstance(max_models, bool) or not isinstance(max_models, int) or max_models <= 0:
        raise ValueError(f"max_models_in_memory must be a positive integer, got {max_models!r}")
    num_chunks = -(-num_models // max_models)
    return -(-num_models // num_chunks), num_chunks


# ----------------------------------------------------------------------------- the programs


class _Carry(NamedTuple):
    """Everything about one model that changes during a sweep. When the models are mapped
    (``batching='map'``), its train state and best parameters stay in the kernel layout
    (:func:`jaxfc.training.transpose_weights`) until they leave the device; batched
    (``'vmap'``) they stay in the model's layout."""

    train_state: TrainState
    key: jax.Array
    best_params: Any
    best_model_state: Any
    best_val_acc: jax.Array
    best_epoch: jax.Array
    alive: jax.Array


BATCHING_MODES = ("auto", "vmap", "map")


def _over_models(fn, in_axes, sequential: bool):
    """``jax.vmap(fn, in_axes)``, or with ``sequential`` the same function computed by
    ``jax.lax.map`` over the leading (model) axis of the arguments whose axis is 0."""
    if not sequential:
        return jax.vmap(fn, in_axes=in_axes)

    def mapped(*args):
        per_model = tuple(a for a, axis in zip(args, in_axes, strict=True) if axis == 0)

        def one(model_args):
            it = iter(model_args)
            return fn(*(next(it) if axis == 0 else a
                        for a, axis in zip(args, in_axes, strict=True)))

        return jax.lax.map(one, per_model)

    return mapped


class _Programs:
    """The compiled programs of a sweep, each over all the models: ``init`` (params and
    optimizer states), ``train`` (one epoch: the Solver's epoch, with a model whose loss
    turns non-finite frozen at its last good state) and ``record`` (training/validation
    accuracy and the best-so-far update). ``traces`` counts how often each was traced."""

    def __init__(self, model, optimizer, *, batch_size, steps_per_epoch, gradients,
                 num_train_samples, num_val_samples, scale_weights, donate, sequential,
                 shared_batches):
        self.traces = {"init": 0, "train": 0, "record": 0}
        # Mapped, each model runs the Solver's own program (kernel layout); batched, the
        # weights stay in the model layout (XLA:CPU copies transposed batched weights).
        # ``init`` returns the model layout; ``to_layout`` and ``best`` convert on the host
        # (a transposing program takes ~30 ms per weight to compile).
        layout = "kernel" if sequential else "model"
        self.sequential = sequential
        run = make_epoch_on_batches(model, optimizer, gradients=gradients,
                                    state_layout=layout, kernel_steps=sequential)
        accuracy = make_accuracy(model, state_layout=layout)
        init_model = dataclasses.replace(model, weight_scale=1.0) if scale_weights else model
        key_impl = str(jax.random.key_impl(jax.random.key(0)))
        self.init_model, self.optimizer, self.scale_weights = init_model, optimizer, scale_weights

        def init(root_key, opt_hparams, scales):
            self.traces["init"] += 1
            init_key, key = jax.random.split(root_key)
            params, state = init_model.init(init_key)
            if scale_weights:
                params = {name: value * scales[int(name[1:]) - 1] if name.startswith("W")
                          else value for name, value in params.items()}
            opt_state = optimizer.init(params)
            if opt_hparams:
                opt_state = set_hyperparams(opt_state, **opt_hparams)
            # best_val_acc -1: the first record always becomes the best, as in the Solver.
            return _Carry(TrainState(params, state, opt_state), key, params, state,
                          jnp.float32(-1.0), jnp.int32(0), jnp.bool_(True))

        def train(carry, model_hparams, lr, indices, step_key_data, X, y):
            self.traces["train"] += 1
            ts = carry.train_state
            ts = ts._replace(opt_state=set_hyperparams(ts.opt_state, learning_rate=lr))
            step_keys = jax.random.wrap_key_data(step_key_data, impl=key_impl)
            new, losses = run(ts, X, y, indices, step_keys, model_hparams)
            ok = carry.alive & jnp.all(jnp.isfinite(losses))
            keep = lambda a, b: jnp.where(ok, a, b)
            new = jax.tree_util.tree_map(keep, new, carry.train_state)
            return carry._replace(train_state=new, alive=ok), losses

        def record(carry, e, data, train_idx, val_idx):
            self.traces["record"] += 1
            params, state = carry.train_state.params, carry.train_state.model_state

            def on(X, y, idx):
                if idx is not None:
                    X, y = jnp.take(X, idx, axis=0), jnp.take(y, idx, axis=0)
                return accuracy(params, state, X, y)

            X, y, Xv, yv = data
            train_acc, val_acc = on(X, y, train_idx), on(Xv, yv, val_idx)
            better = carry.alive & (val_acc >= carry.best_val_acc)
            pick = lambda a, b: jnp.where(better, a, b)
            carry = carry._replace(
                best_params=jax.tree_util.tree_map(pick, params, carry.best_params),
                best_model_state=jax.tree_util.tree_map(pick, state, carry.best_model_state),
                best_val_acc=pick(val_acc, carry.best_val_acc),
                best_epoch=pick(e, carry.best_epoch),
            )
            return carry, train_acc, val_acc

        # The draws on the device, for keys the host cannot hash (what _Draws makes on the
        # host), with the Solver's key schedule.
        def device_batches(key, e, data_key, num_train):
            return epoch_draws(key, e, num_train, batch_size, steps_per_epoch, data_key)

        def device_subsamples(key, e, num_train, num_val):
            return accuracy_draws(key, e, num_train, num_val, num_train_samples,
                                  num_val_samples)

        donated = (0,) if donate else ()
        self.init = jax.jit(jax.vmap(init))
        # Shared minibatches come in once, not once per model.
        train_axes = (0, 0, 0, None if shared_batches else 0, 0, None, None)
        self.train = jax.jit(_over_models(train, train_axes, sequential), donate_argnums=donated)
        self.record = jax.jit(_over_models(record, (0, None, None, 0, 0), sequential),
                              donate_argnums=donated)
        self.device_batches = jax.jit(jax.vmap(device_batches, in_axes=(0, None, None, None)),
                                      static_argnums=3)
        self.device_subsamples = jax.jit(
            jax.vmap(device_subsamples, in_axes=(0, None, None, None)), static_argnums=(2, 3))


    def init_on_host(self, seeds, opt_hparams: dict, scales: np.ndarray) -> _Carry:
        """What ``init`` computes (model layout), model by model with the Solver's compiled
        ``model.init`` (:func:`jaxfc.training.compiled_init`, one program per model class
        and shape) and the rest on the host: the vmapped ``init`` program takes ~0.4 s to
        compile. For seeds in ``[0, 2**32)`` with Threefry keys (see :class:`_Draws`)."""
        init_params = compiled_init(self.init_model, "params")
        init_state = compiled_init(self.init_model, "model_state")
        run_keys, params, states, opt_states = [], [], [], []
        for k, seed in enumerate(seeds):
            init_words, run_words = host_random.split(host_random.seed_words(seed))
            init_key = jax.random.wrap_key_data(init_words)
            p = jax.device_get(init_params(init_key))
            if self.scale_weights:
                p = {name: value * scales[k, int(name[1:]) - 1] if name.startswith("W")
                     else value for name, value in p.items()}
            opt_state = self.optimizer.init(p)
            if opt_hparams:
                opt_state = set_hyperparams(opt_state, **{n: v[k] for n, v in
                                                          opt_hparams.items()})
            run_keys.append(run_words)
            params.append(p)
            states.append(jax.device_get(init_state(init_key)))
            opt_states.append(jax.device_get(opt_state))
        # Separate buffers for the state and the best-so-far copies (a program that donates
        # the carry must not get one buffer twice).
        stack = lambda trees: jax.tree_util.tree_map(
            lambda *leaves: jax.device_put(np.stack(leaves)), *trees)
        K = len(seeds)
        return _Carry(TrainState(stack(params), stack(states), stack(opt_states)),
                      jax.random.wrap_key_data(np.stack(run_keys)), stack(params), stack(states),
                      jax.device_put(np.full(K, -1.0, np.float32)),
                      jax.device_put(np.zeros(K, np.int32)), jax.device_put(np.ones(K, bool)))

    def to_layout(self, carry: _Carry) -> _Carry:
        """A carry fresh from ``init`` (model layout) in the train program's layout."""
        if not self.sequential:
            return carry
        convert = lambda tree: jax.device_put(
            transpose_weights(jax.device_get(tree), stacked=True))
        ts = carry.train_state
        return carry._replace(
            train_state=ts._replace(params=convert(ts.params), opt_state=convert(ts.opt_state)),
            best_params=convert(carry.best_params))

    def best(self, carry: _Carry):
        """The best parameters (model layout) and model states, as host arrays."""
        params, state = jax.device_get((carry.best_params, carry.best_model_state))
        return (transpose_weights(params, stacked=True) if self.sequential else params), state


class _Draws:
    """The random draws of the models of a sweep: on the host (:mod:`jaxfc.host_random`)
    when every key allows it, else with the programs' compiled ``device_batches`` and
    ``device_subsamples``; the same arrays either way, and the Solver's."""

    def __init__(self, programs, seeds, data_seed, *, num_train, num_val, batch_size, steps,
                 num_train_samples, num_val_samples, shared_batches):
        self.programs, self.shared = programs, shared_batches
        self.num_train, self.num_val = num_train, num_val
        self.batch_size, self.steps = batch_size, steps
        self.num_train_samples, self.num_val_samples = num_train_samples, num_val_samples
        in_range = lambda seed: seed is None or 0 <= seed < 2**32
        self.on_host = (host_random.supports_default_keys()
                        and all(in_range(s) for s in [*seeds, data_seed])
                        and steps * batch_size <= num_train)
        self.data_key = jax.random.key(data_seed) if shared_batches else None
        if self.on_host:
            # split(key(seed)) = (init_key, key), as the init program derives them.
            self.run_words = {seed: host_random.split(host_random.seed_words(seed))[1]
                              for seed in set(seeds)}
            self.data_words = host_random.seed_words(data_seed) if shared_batches else None

    def epoch(self, seeds, carry_keys, e):
        """``(indices, step_key_data)`` of epoch ``e`` for the models with these seeds:
        indices (K, steps, batch) or, shared, (steps, batch); key data (K, steps, 2)."""
        if not self.on_host:
            indices, step_keys = self.programs.device_batches(carry_keys, jnp.int32(e),
                                                              self.data_key, self.num_train)
            return (indices[0] if self.shared else indices), step_keys
        # Shared minibatches: one permutation, drawn with the first model's.
        drawn = [host_random.epoch_draws(self.run_words[seed], e, self.num_train,
                                         self.batch_size, self.steps, self.data_words,
                                         indices=k == 0 or not self.shared)
                 for k, seed in enumerate(seeds)]
        step_keys = np.stack([d[1] for d in drawn])
        if self.shared:
            return drawn[0][0], step_keys
        return np.stack([d[0] for d in drawn]), step_keys

    def record(self, seeds, carry_keys, e):
        """The accuracy subsamples after ``e`` epochs: (train, val), each (K, samples) or
        None for the whole set."""
        if not self.on_host:
            return self.programs.device_subsamples(carry_keys, jnp.int32(e), self.num_train,
                                                   self.num_val)
        drawn = [host_random.accuracy_draws(self.run_words[seed], e, self.num_train,
                                            self.num_val, self.num_train_samples,
                                            self.num_val_samples) for seed in seeds]
        stack = lambda picks: None if picks[0] is None else np.stack(picks)
        return stack([d[0] for d in drawn]), stack([d[1] for d in drawn])


# ----------------------------------------------------------------------------- results


def _json_field(value):
    """A model configuration field as JSON (tuples as lists, dtypes by name)."""
    if isinstance(value, tuple | list):
        return [_json_field(v) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    try:
        return str(np.dtype(value))
    except TypeError:
        return str(value)


def _format_value(value) -> str:
    return value if isinstance(value, str) else f"{value:.4g}"


def describe(setting: Mapping) -> str:
    """``'learning_rate=0.001, reg=0, seed=1'``."""
    return ", ".join(f"{k}={_format_value(v)}" for k, v in setting.items())


@dataclasses.dataclass
class SweepResult:
    """What :func:`sweep` returns. Model ``k`` has ``settings[k]`` (always with ``seed``);
    per-model arrays have the model on their first axis:

    ``loss_history`` (K, num_epochs * steps_per_epoch), ``train_acc_history`` and
    ``val_acc_history`` (K, num_epochs + 1, the first entry before training), ``lr_history``
    (K, num_epochs), ``best_val_acc``, ``best_epoch`` and ``diverged_epoch`` (K,; -1 when the
    model never diverged; its later entries are NaN). ``params`` and ``model_state`` stack the
    best parameters of every model (NumPy, leading axis K) unless ``keep_params=False``.
    """

    model: Any
    settings: list[dict]
    names: list[str]
    loss_history: np.ndarray
    train_acc_history: np.ndarray
    val_acc_history: np.ndarray
    lr_history: np.ndarray
    best_val_acc: np.ndarray
    best_epoch: np.ndarray
    diverged_epoch: np.ndarray
    params: Any
    model_state: Any
    config: dict
    steps_per_epoch: int
    chunk_size: int
    num_chunks: int
    compilations: dict
    seconds: float
    _best: tuple = dataclasses.field(default=(), repr=False)

    @property
    def num_models(self) -> int:
        return len(self.settings)

    @property
    def best_index(self) -> int:
        """The model with the highest best validation accuracy (the first on ties)."""
        return int(np.argmax(self.best_val_acc))

    @property
    def best_setting(self) -> dict:
        return dict(self.settings[self.best_index])

    def best_params(self) -> tuple[Any, Any]:
        """``(params, model_state)`` of the best model at its best epoch."""
        params, state = self._best
        return jax.tree_util.tree_map(jnp.asarray, (params, state))

    def params_of(self, k: int) -> tuple[Any, Any]:
        """``(params, model_state)`` of model ``k`` at its best epoch (needs keep_params)."""
        if self.params is None:
            raise ValueError("the sweep ran with keep_params=False; only best_params() is kept")
        take = lambda x: jnp.asarray(x[k])
        return (jax.tree_util.tree_map(take, self.params),
                jax.tree_util.tree_map(take, self.model_state))

    def model_for(self, k: int):
        """Model ``k``'s configuration as a model: the sweep's model with ``reg``,
        ``dropout`` and ``weight_scale`` of ``settings[k]`` (a TwoLayerNet becomes its
        equivalent FullyConnectedNet when dropout is swept)."""
        model = self.model
        changes = {n: self.settings[k][n] for n in MODEL_HPARAMS if n in self.settings[k]}
        fields = {f.name for f in dataclasses.fields(model)}
        if "dropout" in changes and "dropout" not in fields:
            model = model.network  # TwoLayerNet: the equivalent FullyConnectedNet
        return dataclasses.replace(model, **changes) if changes else model

    def solver_kwargs(self, k: int) -> dict:
        """Keyword arguments of the :class:`jaxfc.solver.Solver` that trains model ``k``
        exactly as the sweep did: ``Solver(result.model_for(k), data, **kwargs)``."""
        c = self.config
        setting = self.settings[k]
        optim_config = {**c["optim_config"], **{n: v for n, v in setting.items()
                                                if n in c["optimizer_hparams"] and n != "max_norm"}}
        return dict(update_rule=c["update_rule"], optim_config=optim_config,
                    lr_decay=setting.get("lr_decay", c["lr_decay"]),
                    batch_size=c["batch_size"], num_epochs=c["num_epochs"],
                    num_train_samples=c["num_train_samples"],
                    num_val_samples=c["num_val_samples"], gradients=c["gradients"],
                    max_grad_norm=setting.get("max_norm", c["max_grad_norm"]),
                    seed=setting["seed"], data_seed=c.get("data_seed"))

    def rows(self) -> list[dict]:
        """One dict per model: its setting and results (what :meth:`to_csv` writes)."""
        rows = []
        steps = self.steps_per_epoch
        for k, setting in enumerate(self.settings):
            last = self.loss_history[k, -steps:] if self.loss_history.shape[1] else []
            rows.append({
                "model": k,
                **{n: setting[n] for n in ["seed", *self.names]},
                "best_val_acc": float(self.best_val_acc[k]),
                "best_epoch": int(self.best_epoch[k]),
                "final_train_acc": float(self.train_acc_history[k, -1]),
                "final_val_acc": float(self.val_acc_history[k, -1]),
                "final_loss": float(np.mean(last)) if len(last) else float("nan"),
                "diverged_epoch": int(self.diverged_epoch[k]),
            })
        return rows

    def to_csv(self, path: str | os.PathLike) -> None:
        """One row per model: model, seed, the swept hyperparameters, best_val_acc,
        best_epoch, final_train_acc, final_val_acc, final_loss (mean over the last epoch),
        diverged_epoch (-1: never)."""
        rows = self.rows()
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    def summary(self) -> dict:
        """JSON-able summary: best model, its setting and scores, and how the sweep ran."""
        k = self.best_index
        return {
            "num_models": self.num_models,
            "swept": self.names,
            "best_model": k,
            "best_setting": self.best_setting,
            "best_val_acc": float(self.best_val_acc[k]),
            "best_epoch": int(self.best_epoch[k]),
            "num_diverged": int(np.sum(self.diverged_epoch >= 0)),
            "chunk_size": self.chunk_size,
            "num_chunks": self.num_chunks,
            "compilations": self.compilations,
            "seconds": self.seconds,
            "config": self.config,
        }

    def plot(self, path: str | os.PathLike) -> None:
        """PNG: best validation accuracy against each swept hyperparameter (log x for
        learning rates, reg, weight scales; symlog when a value is 0), and every model's
        validation accuracy per epoch (the best one highlighted)."""
        # A bare Figure (no pyplot): leaves the caller's matplotlib backend alone.
        from matplotlib.figure import Figure

        names = self.names or ["seed"]
        fig = Figure(figsize=(4.2 * (len(names) + 1), 3.8))
        axes = fig.subplots(1, len(names) + 1, squeeze=False)
        acc = self.best_val_acc
        best = self.best_index
        for ax, name in zip(axes[0], names, strict=False):
            values = [s[name] for s in self.settings]
            if all(isinstance(v, numbers.Real) for v in values):
                x = np.asarray(values, float)
                if name in LOG_SCALE and np.all(x > 0):
                    ax.set_xscale("log")
                elif name in LOG_SCALE and np.any(x > 0):
                    ax.set_xscale("symlog", linthresh=float(np.min(x[x > 0])))
            else:  # categorical ('he', 0.01, ...)
                labels = sorted({str(v) for v in values})
                x = np.asarray([labels.index(str(v)) for v in values], float)
                ax.set_xticks(range(len(labels)), labels)
            ax.scatter(x, acc, alpha=0.7)
            ax.scatter(x[best], acc[best], color="red", marker="*", s=150, label="best")
            ax.set(xlabel=name, ylabel="best validation accuracy")
            ax.legend(loc="lower right")
        ax = axes[0][-1]
        for k in range(self.num_models):
            style = dict(color="red", linewidth=2, zorder=3) if k == best else dict(alpha=0.3)
            ax.plot(self.val_acc_history[k], **style)
        ax.set(xlabel="epoch", ylabel="validation accuracy",
               title=f"{self.num_models} models; best: {describe(self.best_setting)}")
        ax.title.set_fontsize(8)
        fig.tight_layout()
        fig.savefig(path, dpi=100)

    def save_best_checkpoint(self, path: str | os.PathLike, metadata: dict | None = None):
        """Write the best model's params and state with :mod:`jaxfc.checkpoint` in the
        layout of a Solver checkpoint's best model (``best_params``, ``best_model_state``),
        so :func:`jaxfc.solver.load_best_model` reads it. The metadata holds the setting,
        its history and, for dataclass models, the model configuration (``'model'``)."""
        from jaxfc import checkpoint as ckpt

        k = self.best_index
        params, state = self._best
        meta = {
            "sweep": {"model": k, "setting": self.settings[k],
                      "best_val_acc": float(self.best_val_acc[k]),
                      "best_epoch": int(self.best_epoch[k]),
                      "val_acc_history": [float(v) for v in self.val_acc_history[k]],
                      "train_acc_history": [float(v) for v in self.train_acc_history[k]],
                      "config": self.config},
        }
        model = self.model_for(k)
        model = getattr(model, "network", model)
        if dataclasses.is_dataclass(model):
            meta["model"] = {f.name: _json_field(getattr(model, f.name))
                             for f in dataclasses.fields(model)}
        meta.update(metadata or {})
        ckpt.save_checkpoint(path, {"best_params": params, "best_model_state": state},
                             metadata=meta)


# ----------------------------------------------------------------------------- sweep


def sweep(
    model,
    data: dict,
    settings=None,
    *,
    seeds=None,
    update_rule: str = "adam",
    optim_config: dict | None = None,
    lr_decay: float = 1.0,
    num_epochs: int = 10,
    batch_size: int = 100,
    num_train_samples: int | None = 1000,
    num_val_samples: int | None = None,
    gradients: str = "manual",
    max_grad_norm: float | None = None,
    max_models_in_memory: int | None = None,
    keep_params: bool = True,
    shared_batches: bool = False,
    data_seed: int = 0,
    mesh=None,
    batching: str = "auto",
    verbose: bool = True,
) -> SweepResult:
    """Train one model per setting (times each seed) at once; see the module docstring.

    Args:
      model: a FullyConnectedNet or TwoLayerNet; its configuration is shared (architecture)
        and gives the defaults of ``reg``, ``dropout`` and ``weight_scale``.
      data: ``{X_train, y_train, X_val, y_val, ...}`` as for the Solver; shared by all models.
      settings: a list of dicts (from :func:`grid` or :func:`random_search`), a dict of
        equally long lists (one model per position) or None. Names: ``seed``, the optimizer's
        hyperparameters (``learning_rate``, ``momentum``, ``beta1``, ...), ``lr_decay``,
        ``reg``, ``dropout``, ``weight_scale`` (a number, ``'he'`` or ``'xavier'``). A swept
        ``dropout`` is applied even where the model's own dropout is 0.
      seeds: each setting runs once per seed (default ``[0]``); not with a ``seed`` setting.
      update_rule, optim_config, lr_decay, num_epochs, batch_size, num_train_samples,
        num_val_samples, gradients, max_grad_norm: as for the Solver (``optim_config``,
        ``lr_decay`` and ``max_grad_norm`` are the defaults of unswept hyperparameters;
        with ``max_grad_norm`` the clipping threshold ``max_norm`` can vary too).
      max_models_in_memory: models per compiled batch; by default as many as half the free
        device memory holds (:func:`estimate_bytes_per_model`). More models run in equal
        chunks, the last padded, all with the same compiled program.
      keep_params: keep every model's best parameters (``result.params``); with False only
        the overall best model's.
      shared_batches: every model sees the same minibatches (drawn from ``data_seed``);
        the seeds still set the initialization and dropout. With ``batching='vmap'`` the
        models then share each minibatch, so the first layer of all K models is one large
        matrix product. Model k equals ``Solver(..., seed=seed_k, data_seed=data_seed)``.
      mesh: a device mesh (:func:`jaxfc.parallel.data_mesh`): the models are spread over
        its devices (each device trains chunk / num_devices of them), the data replicated.
        Chunks are rounded up to a multiple of the device count.
      batching: 'vmap', 'map' or 'auto' (see the module docstring): 'auto' is 'map' on the
        CPU without a mesh, else 'vmap'.
      verbose: print one line per epoch (per chunk) with the best validation accuracy so far.
    """
    from jaxfc.models import GRADIENT_MODES
    from jaxfc.solver import check_data

    t0 = time.perf_counter()
    optim_config = dict(optim_config or {})
    if gradients not in GRADIENT_MODES:
        raise ValueError(f"gradients must be one of {GRADIENT_MODES}, got {gradients!r}")
    for name, value in (("num_epochs", num_epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if batch_size == 0:
        raise ValueError("batch_size must be positive, got 0")
    if max_grad_norm is not None:
        max_grad_norm = _check_value("max_grad_norm", "max_norm", max_grad_norm)
    base_opt = _optimizer_hparams(update_rule, optim_config, max_grad_norm)
    known = [*base_opt, *SCHEDULE_HPARAMS, *MODEL_HPARAMS]
    settings = _normalize_settings(settings, seeds)
    _check_names(settings[0], known, update_rule)
    names = [n for n in settings[0] if n != "seed"]
    for i, s in enumerate(settings):
        for n in s:
            s[n] = _check_value(f"settings[{i}]", n, s[n])
        opt_values = {n: s[n] for n in base_opt if n in s and n != "max_norm"}
        if opt_values:
            try:
                get_optimizer(update_rule, **{**optim_config, **opt_values})
            except ValueError as error:
                raise ValueError(f"settings[{i}] ({describe(s)}): {error}") from None
    lr_decay = _check_value("lr_decay", "lr_decay", lr_decay)
    if batching not in BATCHING_MODES:
        raise ValueError(f"batching must be one of {BATCHING_MODES}, got {batching!r}")
    if batching == "auto":
        batching = "map" if mesh is None and jax.default_backend() == "cpu" else "vmap"

    check_data(data, getattr(model, "input_dim", None), getattr(model, "num_classes", None))
    dtype = model.dtype
    X = jnp.asarray(data["X_train"], dtype)
    y = jnp.asarray(data["y_train"], jnp.int32)
    Xv = jnp.asarray(data["X_val"], dtype)
    yv = jnp.asarray(data["y_val"], jnp.int32)
    shared = (X, y, Xv, yv)
    steps = max(X.shape[0] // batch_size, 1)

    optimizer = _build_optimizer(update_rule, optim_config, max_grad_norm)
    opt_names = [n for n in names if n in base_opt]
    model_names = [n for n in names if n in ("reg", "dropout")]
    scale_weights = "weight_scale" in names
    K = len(settings)
    per_model = estimate_bytes_per_model(
        model, optimizer, batch_size=batch_size, num_train=X.shape[0], num_val=Xv.shape[0],
        num_train_samples=num_train_samples, num_val_samples=num_val_samples)
    chunk, num_chunks = _chunk_size(K, max_models_in_memory, per_model, _tree_bytes(shared))
    spread = lambda tree: tree
    if mesh is not None:
        from jaxfc.parallel import batch_sharded, replicate

        devices = mesh.devices.size
        chunk = -(-chunk // devices) * devices
        num_chunks = -(-K // chunk)
        X, y, Xv, yv = shared = replicate(shared, mesh)
        spread = lambda tree: jax.device_put(tree, batch_sharded(mesh))
    programs = _Programs(model, optimizer, batch_size=batch_size, steps_per_epoch=steps,
                         gradients=gradients, num_train_samples=num_train_samples,
                         num_val_samples=num_val_samples, scale_weights=scale_weights,
                         donate=jax.default_backend() != "cpu", sequential=batching == "map",
                         shared_batches=shared_batches)
    draws = _Draws(programs, [s["seed"] for s in settings], data_seed, num_train=X.shape[0],
                   num_val=Xv.shape[0], batch_size=batch_size, steps=steps,
                   num_train_samples=num_train_samples, num_val_samples=num_val_samples,
                   shared_batches=shared_batches)

    # Per-model host values (Python floats, as the Solver computes them).
    default_lr = float(optim_config.get("learning_rate", base_opt["learning_rate"]))
    base_lr = [float(s.get("learning_rate", default_lr)) for s in settings]
    decay = [s.get("lr_decay", lr_decay) for s in settings]
    lrs = np.asarray([[b * d**e for e in range(num_epochs)] for b, d in zip(base_lr, decay,
                                                                            strict=True)],
                     np.float32).reshape(K, num_epochs)
    scales = np.ones((K, 1), np.float32)
    if scale_weights:
        fan_ins = [shape[0] for n, shape in model.param_shapes().items() if n.startswith("W")]
        scales = np.asarray(
            [[dataclasses.replace(model, weight_scale=s["weight_scale"])._weight_std(f)
              for f in fan_ins] for s in settings], np.float32)

    key_data = {seed: np.asarray(jax.random.key_data(jax.random.key(seed)))
                for seed in {s["seed"] for s in settings}}
    E = num_epochs
    loss_h = np.full((K, E * steps), np.nan, np.float32)
    train_h = np.full((K, E + 1), np.nan, np.float32)
    val_h = np.full((K, E + 1), np.nan, np.float32)
    best_val = np.zeros(K, np.float32)
    best_epoch = np.zeros(K, np.int64)
    diverged = np.full(K, -1, np.int64)
    kept_params, kept_state = [], []
    overall = (-np.inf, None)

    def log(message):
        if verbose:
            print(message, flush=True)

    log(f"sweep: {K} models (varying {', '.join(['seed', *names])}), {chunk} at a time in "
        f"{num_chunks} chunk(s), {E} epochs of {steps} steps")
    for c in range(num_chunks):
        members = list(range(c * chunk, min((c + 1) * chunk, K)))
        padded = members + [members[0]] * (chunk - len(members))
        n_real = len(members)
        idx = np.asarray(padded)
        root_keys = jax.random.wrap_key_data(np.stack([key_data[settings[k]["seed"]]
                                                       for k in padded]))
        opt_hp = {n: np.asarray([settings[k][n] for k in padded], np.float32)
                  for n in opt_names}
        model_hp = {n: jnp.asarray([settings[k][n] for k in padded], dtype) for n in model_names}
        prefix = f"[chunk {c + 1}/{num_chunks}] " if num_chunks > 1 else ""
        t_chunk = time.perf_counter()
        seeds = [settings[k]["seed"] for k in padded]
        if draws.on_host:
            carry = programs.init_on_host(seeds, opt_hp, scales[idx])
        else:
            carry = programs.init(root_keys, opt_hp, jnp.asarray(scales[idx]))
        carry = spread(programs.to_layout(carry))
        model_hp = spread(model_hp)
        carry, tr, va = programs.record(carry, jnp.int32(0), shared,
                                        *spread(draws.record(seeds, carry.key, 0)))
        tr, va = np.asarray(tr), np.asarray(va)
        train_h[members, 0], val_h[members, 0] = tr[:n_real], va[:n_real]
        alive = np.ones(chunk, bool)
        # Per-model draws are placed like the models (shared minibatches are not per model).
        place = lambda b: (b[0] if shared_batches else spread(b[0]), spread(b[1]))
        batches = place(draws.epoch(seeds, carry.key, 0))
        for e in range(E):
            t_epoch = time.perf_counter()
            carry, losses = programs.train(carry, model_hp, spread(jnp.asarray(lrs[idx, e])),
                                           *batches, X, y)
            # The host draws while the device trains.
            subsamples = spread(draws.record(seeds, carry.key, e + 1))
            carry, tr, va = programs.record(carry, jnp.int32(e + 1), shared, *subsamples)
            if e + 1 < E:
                batches = place(draws.epoch(seeds, carry.key, e + 1))
            losses, tr, va, now_alive = jax.device_get((losses, tr, va, carry.alive))
            for j, k in enumerate(members):
                if alive[j]:
                    loss_h[k, e * steps:(e + 1) * steps] = losses[j]
                if now_alive[j]:
                    train_h[k, e + 1], val_h[k, e + 1] = tr[j], va[j]
                elif alive[j]:
                    diverged[k] = e + 1
                    log(f"{prefix}model {k} ({describe(settings[k])}): non-finite loss in "
                        f"epoch {e + 1}; it keeps its state after epoch {e} and stops")
            alive = now_alive
            if verbose:
                done = list(range(c * chunk + n_real))
                so_far = np.max(np.nan_to_num(val_h[done], nan=0.0), axis=1)
                b = done[int(np.argmax(so_far))]
                now = val_h[members, e + 1]
                now = np.max(now[~np.isnan(now)]) if np.any(~np.isnan(now)) else float("nan")
                log(f"{prefix}(Epoch {e + 1} / {E}) val acc: best this epoch {now:.4f}, "
                    f"best so far {so_far.max():.4f} ({describe(settings[b])}); "
                    f"{int(np.sum(diverged[members] >= 0))} diverged; "
                    f"{time.perf_counter() - t_epoch:.2f}s")
        best_val[members] = np.asarray(carry.best_val_acc)[:n_real]
        best_epoch[members] = np.asarray(carry.best_epoch)[:n_real]
        bp, bs = programs.best(carry)
        j = int(np.argmax(best_val[members]))
        if best_val[members[j]] > overall[0]:
            pick = lambda x, j=j: np.asarray(x[j])
            overall = (best_val[members[j]], jax.tree_util.tree_map(pick, (bp, bs)))
        if keep_params:
            head = lambda x, n=n_real: np.asarray(x[:n])
            kept_params.append(jax.tree_util.tree_map(head, bp))
            kept_state.append(jax.tree_util.tree_map(head, bs))
        del carry
        if num_chunks > 1:
            log(f"{prefix}done in {time.perf_counter() - t_chunk:.2f}s")

    cat = lambda *xs: np.concatenate(xs)
    params = jax.tree_util.tree_map(cat, *kept_params) if keep_params else None
    state = jax.tree_util.tree_map(cat, *kept_state) if keep_params else None
    config = {
        "update_rule": update_rule, "optim_config": optim_config, "lr_decay": lr_decay,
        "num_epochs": num_epochs, "batch_size": batch_size,
        "num_train_samples": num_train_samples, "num_val_samples": num_val_samples,
        "gradients": gradients, "max_grad_norm": max_grad_norm,
        "data_seed": data_seed if shared_batches else None,
        "optimizer_hparams": list(base_opt),
    }
    result = SweepResult(
        model=model, settings=settings, names=names, loss_history=loss_h,
        train_acc_history=train_h, val_acc_history=val_h, lr_history=lrs,
        best_val_acc=best_val, best_epoch=best_epoch, diverged_epoch=diverged,
        params=params, model_state=state, config=config, steps_per_epoch=steps,
        chunk_size=chunk, num_chunks=num_chunks, compilations=dict(programs.traces),
        seconds=time.perf_counter() - t0, _best=overall[1],
    )
    k = result.best_index
    log(f"sweep: best val acc {best_val[k]:.4f} at epoch {best_epoch[k]} "
        f"({describe(settings[k])}); {time.perf_counter() - t0:.1f}s")
    return result


# ----------------------------------------------------------------------------- command line

_LIST_OPTIONS = {  # CLI option -> hyperparameter name
    "lr": "learning_rate", "reg": "reg", "weight_scale": "weight_scale",
    "dropout": "dropout", "lr_decay": "lr_decay",
}
_RANGE_OPTIONS = {  # CLI option -> (hyperparameter name, log-uniform?)
    "lr_range": ("learning_rate", True), "reg_range": ("reg", True),
    "weight_scale_range": ("weight_scale", True), "dropout_range": ("dropout", False),
    "lr_decay_range": ("lr_decay", False),
}


def _list_of(kind, option):
    """argparse type: comma-separated values of ``kind`` (and he / xavier for weight scales)."""

    def parse(text: str) -> list:
        import argparse

        try:
            values = [part if option == "--weight-scale" and part in ("he", "xavier")
                      else kind(part) for part in (p.strip() for p in text.split(",")) if part]
            if values:
                return values
        except ValueError:
            pass
        what = "integers" if kind is int else "numbers"
        what += " or he / xavier" if option == "--weight-scale" else ""
        example = "0,1,2" if kind is int else "1e-3,1e-2"
        raise argparse.ArgumentTypeError(
            f"{option} takes comma-separated {what} like {example}; got {text!r}")

    return parse


def _range(option):
    def parse(text: str) -> tuple[float, float]:
        import argparse

        try:
            low, high = (float(p) for p in text.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option} takes LOW:HIGH like 1e-4:1e-1; got {text!r}") from None
        return low, high
    return parse


def _assignment(text: str) -> tuple[str, list]:
    import argparse

    name, sep, values = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(
            f"--set takes NAME=V1,V2,... like beta1=0.8,0.9; got {text!r}")
    return name.strip(), _list_of(float, "--set")(values)


def add_sweep_parser(subparsers) -> None:
    """Register ``jaxfc sweep`` on an argparse ``subparsers`` object."""
    import argparse

    from jaxfc.cli import DEFAULTS, _hidden_dims, _normalization
    from jaxfc.data import DATASETS
    from jaxfc.optim import OPTIMIZERS

    p = subparsers.add_parser(
        "sweep", help="train many FullyConnectedNets at once (grid or random search)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Grid search over the comma-separated lists (--lr 1e-4,1e-3 --reg 0,1e-3 "
                    "gives 4 settings), or --random N settings drawn from the --*-range "
                    "options (log-uniform for lr, reg, weight scale; uniform for dropout and "
                    "lr decay) and the lists (a random choice). Every setting runs once per "
                    "seed; all models train at once in one compiled program. Writes "
                    "results.csv, sweep.png, best_checkpoint.npz (readable by `jaxfc "
                    "evaluate`) and summary.json into --out.")
    p.add_argument("--dataset", choices=DATASETS, default=DEFAULTS["dataset"])
    p.add_argument("--data-dir", help="folder with CIFAR-10 batches or MNIST IDX files")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the digits split")
    p.add_argument("--hidden-dims", type=_hidden_dims, default=DEFAULTS["hidden_dims"],
                   help="comma-separated hidden layer sizes (shared by all models)")
    p.add_argument("--normalization", type=_normalization,
                   choices=[None, "batchnorm", "layernorm"],
                   default=DEFAULTS["normalization"], help="batchnorm, layernorm or none")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=DEFAULTS["optimizer"])
    p.add_argument("--gradients", choices=("manual", "autodiff"), default=DEFAULTS["gradients"])
    p.add_argument("--lr", type=_list_of(float, "--lr"), default=[DEFAULTS["lr"]],
                   help="learning rates, comma-separated")
    p.add_argument("--reg", type=_list_of(float, "--reg"), default=[DEFAULTS["reg"]],
                   help="L2 strengths")
    p.add_argument("--weight-scale", type=_list_of(float, "--weight-scale"),
                   default=[DEFAULTS["weight_scale"]], help="weight scales (or he / xavier)")
    p.add_argument("--dropout", type=_list_of(float, "--dropout"),
                   default=[DEFAULTS["dropout"]], help="drop probabilities")
    p.add_argument("--lr-decay", type=_list_of(float, "--lr-decay"),
                   default=[DEFAULTS["lr_decay"]], help="learning-rate factors per epoch")
    p.add_argument("--set", dest="extra", type=_assignment, action="append", default=[],
                   metavar="NAME=V1,V2", help="other optimizer hyperparameters, e.g. "
                                              "beta1=0.8,0.9 (repeatable)")
    p.add_argument("--seeds", type=_list_of(int, "--seeds"), default=[0],
                   help="model seeds; every setting runs once per seed")
    p.add_argument("--batching", choices=BATCHING_MODES, default="auto",
                   help="how one program runs the models: batched (vmap, for GPUs) or one "
                        "after another (map, fastest on CPUs); auto picks by device")
    p.add_argument("--shared-batches", action="store_true",
                   help="all models see the same minibatches (with --batching vmap, one "
                        "large first-layer product for all of them)")
    p.add_argument("--random", type=int, metavar="N",
                   help="draw N random settings instead of the grid")
    p.add_argument("--search-seed", type=int, default=0, help="seed of the --random draws")
    for option, (name, log) in _RANGE_OPTIONS.items():
        flag = "--" + option.replace("_", "-")
        p.add_argument(flag, type=_range(flag), metavar="LOW:HIGH",
                       help=f"{'log-uniform' if log else 'uniform'} range of {name} "
                            "(with --random)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--num-train-samples", type=int, default=1000,
                   help="training samples used to measure training accuracy")
    p.add_argument("--max-models", type=int, help="models per compiled batch (default: as "
                                                  "many as fit in half the free memory)")
    p.add_argument("--out", type=Path, help="output folder (default: runs/sweep-<timestamp>)")
    p.add_argument("--no-plot", action="store_true", help="skip sweep.png")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")


def _cli_space(args) -> tuple[dict, dict]:
    """(fixed values, varying values): the grid axes or random ranges from the options."""
    fixed, varying = {}, {}
    lists = {_LIST_OPTIONS[o]: getattr(args, o) for o in _LIST_OPTIONS}
    for name, values in args.extra:
        if name in lists:
            raise ValueError(f"--set {name}=... repeats an option; use its own flag")
        lists[name] = values
    ranges = {name: (getattr(args, o), log) for o, (name, log) in _RANGE_OPTIONS.items()
              if getattr(args, o) is not None}
    if ranges and args.random is None:
        flags = ", ".join(f"--{o.replace('_', '-')}" for o, (n, _) in _RANGE_OPTIONS.items()
                          if n in ranges)
        raise ValueError(f"{flags} draw random values: add --random N (the number of settings)")
    for name, values in lists.items():
        if name in ranges:
            if len(values) > 1:
                raise ValueError(f"{name} has both a list and a range; give one of them")
            continue
        if len(values) == 1:
            fixed[name] = values[0]
        else:
            varying[name] = values
    for name, ((low, high), log) in ranges.items():
        varying[name] = loguniform(low, high) if log else uniform(low, high)
    return fixed, varying


def sweep_command(args) -> int:
    """``jaxfc sweep``: run the sweep and write its files into ``--out``."""
    from jaxfc.cli import _load_data, new_run_dir
    from jaxfc.models import FullyConnectedNet
    from jaxfc.solver import Solver

    start = time.perf_counter()
    if args.random is not None and args.random <= 0:
        raise ValueError(f"--random takes a positive number of settings, got {args.random}")
    fixed, varying = _cli_space(args)
    if args.random is not None:
        if not varying:
            raise ValueError("--random N needs something to vary: a --*-range option or a "
                             "comma list")
        settings = random_search(args.search_seed, args.random, **varying)
    else:
        settings = grid(**varying) if varying else None
    out = args.out if args.out is not None else new_run_dir("sweep-")
    if (out / "summary.json").exists():
        raise ValueError(f"{out} already holds a sweep (summary.json); choose another --out")

    data = _load_data(args.dataset, args.data_dir, args.data_seed)
    input_dim = math.prod(data["X_train"].shape[1:])
    num_classes = int(max(data["y_train"].max(), data["y_val"].max())) + 1
    if data.get("class_names"):
        num_classes = len(data["class_names"])
    model_fixed = {n: fixed[n] for n in MODEL_HPARAMS if n in fixed}
    model = FullyConnectedNet(hidden_dims=tuple(args.hidden_dims), input_dim=input_dim,
                              num_classes=num_classes, normalization=args.normalization,
                              **model_fixed)
    optim_config = {n: v for n, v in fixed.items() if n not in (*MODEL_HPARAMS, "lr_decay")}
    result = sweep(
        model, data, settings, seeds=args.seeds, update_rule=args.optimizer,
        optim_config=optim_config, lr_decay=fixed.get("lr_decay", 1.0),
        num_epochs=args.epochs, batch_size=args.batch_size,
        num_train_samples=args.num_train_samples, gradients=args.gradients,
        max_models_in_memory=args.max_models, keep_params=False, verbose=not args.quiet,
        shared_batches=args.shared_batches,
        batching=args.batching,
    )
    k = result.best_index
    best_setting = result.best_setting
    cli_settings = {
        "dataset": args.dataset, "data_dir": args.data_dir, "seed": args.data_seed,
        "hidden_dims": list(args.hidden_dims), "normalization": args.normalization,
        "optimizer": args.optimizer, "batch_size": args.batch_size, "epochs": args.epochs,
        "gradients": args.gradients, "model_seed": best_setting["seed"],
        "setting": best_setting,
    }
    out.mkdir(parents=True, exist_ok=True)
    result.to_csv(out / "results.csv")
    if not args.no_plot:
        result.plot(out / "sweep.png")
    result.save_best_checkpoint(out / "best_checkpoint.npz", metadata={"cli": cli_settings})
    params, state = result.best_params()
    best_model = result.model_for(k)
    summary = result.summary()
    summary["test_acc"] = (Solver.evaluate(best_model, params, state, data["X_test"],
                                           data["y_test"]) if "X_test" in data else None)
    summary["dataset"] = args.dataset
    summary["wall_time_s"] = time.perf_counter() - start
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    test = f"{summary['test_acc']:.4f}" if summary["test_acc"] is not None else "n/a"
    print(f"done: {result.num_models} models; best val acc {result.best_val_acc[k]:.4f} "
          f"({describe(best_setting)}), its test acc {test}; {summary['wall_time_s']:.1f}s; "
          f"wrote {out}/", file=sys.stdout)
    return 0
