"""Compiled training programs: one epoch as one ``lax.scan``, and chunked accuracy.

These are the pure pieces the :class:`jaxfc.solver.Solver` drives, exposed so other drivers
(sweeps over many models with ``vmap``, data-parallel training) reuse exactly the same step.

Weight layout. Models take each weight matrix as ``(in, out)`` (cs231n's ``W1`` of shape
(D, H)); the compiled epoch stores it transposed, ``(out, in)`` as ``torch.nn.Linear`` does
(:func:`transpose_weights`). The forward product reads either layout at the same speed, but
the weight gradient is then produced as ``dout.T @ x`` with a row-major ``(out, in)`` result,
which XLA:CPU computes about twice as fast as ``x.T @ dout`` at the first layer's shapes
(3072 inputs, a batch of 100): the whole TwoLayerNet step gets ~1.5x faster
(``bench/RESULTS.md``). Optimizers see the transposed arrays, so they must treat a weight's
entries independently of their position (every :mod:`jaxfc.optim` rule does: elementwise
updates and global norms).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxfc.optim import Optimizer
from jaxfc.parallel import constrain_batch

Array = jax.Array


class TrainState(NamedTuple):
    """Everything that changes during training, as one pytree."""

    params: Any
    model_state: Any
    opt_state: Any


STATE_LAYOUTS = ("model", "kernel")
_WEIGHT_NAME = re.compile(r"W\d+")


def transpose_weights(tree, *, stacked: bool = False):
    """``tree`` with every weight matrix transposed: each 2-D leaf whose dict key is
    ``W<number>`` (in parameters, gradients and optimizer states alike). It is its own
    inverse: it maps the model layout ``(in, out)`` to the kernel layout ``(out, in)`` and
    back. Under ``jit`` the transposes fold into the matrix products. ``stacked``: the
    leaves have a leading model axis (a sweep's), weights are 3-D. Works on NumPy arrays
    too (the Solver and sweeps convert on the host, where no program must be compiled)."""
    ndim = 3 if stacked else 2

    def transpose(path, leaf):
        key = getattr(path[-1], "key", None) if path else None
        is_weight = isinstance(key, str) and _WEIGHT_NAME.fullmatch(key)
        return leaf.swapaxes(-1, -2) if is_weight and getattr(leaf, "ndim", 0) == ndim else leaf

    return jax.tree_util.tree_map_with_path(transpose, tree)


def _check_layout(state_layout: str) -> None:
    if state_layout not in STATE_LAYOUTS:
        raise ValueError(f"state_layout must be one of {STATE_LAYOUTS}, got {state_layout!r}")


def _init_fn(model, part: str):
    index = {"params": 0, "model_state": 1}[part]
    return jax.jit(lambda key: model.init(key)[index])


_cached_init_fn = functools.lru_cache(maxsize=16)(_init_fn)


def compiled_init(model, part: str) -> Callable:
    """``key -> part`` of ``model.init(key)``, ``'params'`` or ``'model_state'``, jitted once
    per model (XLA drops the other part's work); the Solver and sweeps share it."""
    try:
        return _cached_init_fn(model, part)
    except TypeError:  # an unhashable model
        return _init_fn(model, part)


def random_permutation(key: Array, n: int) -> Array:
    """A uniformly random permutation of ``arange(n)`` (int32): the indices sorted by 64
    random bits each (two 32-bit sort keys, so ties have probability ~n**2 / 2**65). One
    sort, where ``jax.random.permutation`` does two rounds of 32-bit keys: half the time to
    run (2.4 vs 4.1 ms for n = 10000 on a 2-core CPU) and ~0.1 s less to compile."""
    bits = jax.random.bits(key, (2, n), jnp.uint32)
    return jax.lax.sort((bits[0], bits[1], jnp.arange(n, dtype=jnp.int32)), num_keys=2)[2]


def minibatch_indices(key: Array, num_train: int, batch_size: int, steps: int) -> Array:
    """Indices of shape (steps, batch_size) for one epoch: a fresh permutation of the
    training set (sampling without replacement) when it holds enough samples, else draws
    with replacement (cs231n's ``np.random.choice``)."""
    if steps * batch_size <= num_train:
        perm = random_permutation(key, num_train)
        return perm[: steps * batch_size].reshape(steps, batch_size)
    return jax.random.randint(key, (steps, batch_size), 0, num_train)


def make_train_step(model, optimizer: Optimizer, *, gradients: str = "manual",
                    state_layout: str = "model") -> Callable:
    """``step(train_state, X_batch, y_batch, key, model_hparams) -> (train_state, loss)``.

    ``model_hparams`` is a dict of numeric model overrides (``reg``, ``dropout``) passed to
    ``model.loss``; they may be traced arrays (sweeps vmap over them). With
    ``state_layout='kernel'`` the train state's weights are in the kernel layout
    (:func:`transpose_weights`); the model still sees its own layout.
    """
    _check_layout(state_layout)
    kernel = state_layout == "kernel"

    def step(ts: TrainState, X, y, key, model_hparams):
        params = transpose_weights(ts.params) if kernel else ts.params
        loss, grads, model_state = model.loss(
            params, ts.model_state, X, y, train=True, key=key, gradients=gradients,
            **model_hparams,
        )
        grads = transpose_weights(grads) if kernel else grads
        params, opt_state = optimizer.update(ts.params, grads, ts.opt_state)
        return TrainState(params, model_state, opt_state), loss

    return step


def epoch_batches(key: Array, num_train: int, batch_size: int, steps: int,
                  batch_key: Array | None = None) -> tuple[Array, Array]:
    """One epoch's random draws from ``key``: ``(indices, step_keys)``, the minibatch
    indices of shape (steps, batch_size) (see :func:`minibatch_indices`) and one dropout
    key per step. ``key`` is split into a batch key and a dropout key; ``batch_key``, if
    given, draws the minibatches instead (models that share it see the same batches).
    :func:`jaxfc.host_random.epoch_batches` computes the same arrays on the host."""
    own_batch_key, dropout_key = jax.random.split(key)
    batch_key = own_batch_key if batch_key is None else batch_key
    indices = minibatch_indices(batch_key, num_train, batch_size, steps)
    return indices, jax.random.split(dropout_key, steps)


def epoch_draws(key: Array, epoch, num_train: int, batch_size: int, steps: int,
                data_key: Array | None = None) -> tuple[Array, Array]:
    """The random draws of epoch ``epoch`` (0-based) of a run keyed by ``key``, as the Solver
    and sweeps make them: :func:`epoch_batches` of ``fold_in(key, 2 * epoch)``, the
    minibatches from ``fold_in(data_key, epoch)`` when ``data_key`` is given. Returns the
    indices and the dropout keys' data (uint32, (steps, 2) for Threefry keys);
    :func:`jaxfc.host_random.epoch_draws` is the same on the host."""
    batch_key = None if data_key is None else jax.random.fold_in(data_key, epoch)
    indices, step_keys = epoch_batches(jax.random.fold_in(key, 2 * epoch), num_train,
                                       batch_size, steps, batch_key)
    return indices, jax.random.key_data(step_keys)


def accuracy_draws(key: Array, epoch, num_train: int, num_val: int,
                   num_train_samples: int | None, num_val_samples: int | None):
    """The subsamples of the accuracy checks after ``epoch`` epochs of a run keyed by
    ``key``: :func:`subsample_indices` of ``split(fold_in(key, 2 * epoch + 1))``, training
    then validation (None: the whole set); :func:`jaxfc.host_random.accuracy_draws` is the
    same on the host."""
    k_train, k_val = jax.random.split(jax.random.fold_in(key, 2 * epoch + 1))
    return (subsample_indices(k_train, num_train, num_train_samples),
            subsample_indices(k_val, num_val, num_val_samples))


def make_epoch_on_batches(
    model,
    optimizer: Optimizer,
    *,
    gradients: str = "manual",
    mesh=None,
    state_layout: str = "model",
    kernel_steps: bool = True,
) -> Callable:
    """``run(train_state, X, y, indices, step_keys, model_hparams) -> (train_state,
    losses)``: the steps of one epoch inside one ``lax.scan``, step ``i`` training on the
    rows ``indices[i]`` of the device-resident X and y with dropout key ``step_keys[i]``.
    The arguments are those of :func:`make_train_epoch`, which draws ``indices`` and
    ``step_keys`` with :func:`epoch_batches` and then calls this."""
    _check_layout(state_layout)
    if not kernel_steps and state_layout != "model":
        raise ValueError("kernel_steps=False needs state_layout='model'")
    step = make_train_step(model, optimizer, gradients=gradients,
                           state_layout="kernel" if kernel_steps else "model")

    def run(ts: TrainState, X, y, indices, step_keys, model_hparams):
        if state_layout == "model" and kernel_steps:
            ts, losses = kernel_run(transpose_weights(ts), X, y, indices, step_keys,
                                    model_hparams)
            return transpose_weights(ts), losses
        return kernel_run(ts, X, y, indices, step_keys, model_hparams)

    def kernel_run(ts: TrainState, X, y, indices, step_keys, model_hparams):
        def body(ts, inputs):
            idx, k = inputs
            Xb = constrain_batch(jnp.take(X, idx, axis=0), mesh)
            yb = constrain_batch(jnp.take(y, idx, axis=0), mesh)
            return step(ts, Xb, yb, k, model_hparams)

        return jax.lax.scan(body, ts, (indices, step_keys))

    return run


def make_train_epoch(
    model,
    optimizer: Optimizer,
    *,
    batch_size: int,
    steps_per_epoch: int,
    gradients: str = "manual",
    mesh=None,
    state_layout: str = "model",
    kernel_steps: bool = True,
) -> Callable:
    """``epoch(train_state, X, y, key, model_hparams) -> (train_state, losses)``, a pure
    function whose steps run inside one ``lax.scan`` (no host work between steps). Each
    step gathers its minibatch from the device-resident X and y; ``key`` draws the
    minibatches and one dropout key per step, unless ``batch_key`` is given to draw the
    minibatches (models in a sweep that share it see the same batches); see
    :func:`epoch_batches`. With a ``mesh`` (see :mod:`jaxfc.parallel`) each minibatch is
    split over the mesh's devices.

    The steps run in the kernel layout (see the module docstring). With
    ``state_layout='model'`` the epoch takes and returns the train state in the model's
    layout, transposing the weights (and their optimizer moments) once at each end; with
    ``'kernel'`` the state stays in the kernel layout, as the Solver keeps it between
    epochs. ``kernel_steps=False`` runs the steps in the model's layout instead, with no
    transposes at all (only with ``state_layout='model'``): sweeps batched with ``vmap`` use
    it, because XLA:CPU turns the transposes of batched weights into copies."""
    run = make_epoch_on_batches(model, optimizer, gradients=gradients, mesh=mesh,
                                state_layout=state_layout, kernel_steps=kernel_steps)

    def epoch(ts: TrainState, X, y, key, model_hparams, batch_key=None):
        indices, step_keys = epoch_batches(key, X.shape[0], batch_size, steps_per_epoch,
                                           batch_key)
        return run(ts, X, y, indices, step_keys, model_hparams)

    return epoch


def make_accuracy(model, *, batch_size: int = 1000, state_layout: str = "model") -> Callable:
    """``accuracy(params, model_state, X, y) -> fraction correct`` in evaluation mode,
    computed in chunks of ``batch_size`` with ``lax.map`` (the tail padded and masked), so
    memory stays bounded and the program compiles once per data shape. With
    ``state_layout='kernel'`` it takes parameters in the kernel layout."""
    _check_layout(state_layout)

    def accuracy(params, model_state, X, y):
        if state_layout == "kernel":
            params = transpose_weights(params)
        n = X.shape[0]
        chunk = min(batch_size, n)
        num_chunks = -(-n // chunk)
        pad = num_chunks * chunk - n
        Xp = jnp.concatenate([X, jnp.zeros((pad, *X.shape[1:]), X.dtype)]) if pad else X
        yp = jnp.concatenate([y, jnp.full((pad,), -1, y.dtype)]) if pad else y
        Xc = Xp.reshape(num_chunks, chunk, *X.shape[1:])
        yc = yp.reshape(num_chunks, chunk)

        def correct(batch):
            xb, yb = batch
            scores, _ = model.apply(params, model_state, xb, train=False)
            return jnp.sum(jnp.argmax(scores, axis=1) == yb)

        return jnp.sum(jax.lax.map(correct, (Xc, yc))) / n

    return accuracy


def subsample_indices(key: Array, n: int, num_samples: int | None) -> Array | None:
    """``num_samples`` of ``range(n)`` drawn without replacement with ``key`` (the first
    entries of :func:`random_permutation`), or None (all rows) when ``num_samples`` is None
    or not smaller than ``n``. :func:`jaxfc.host_random.subsample` is the same on the host."""
    if num_samples is None or num_samples >= n:
        return None
    return random_permutation(key, n)[:num_samples]


def make_subsampled_accuracy(model, num_samples: int | None, *, batch_size: int = 1000,
                             state_layout: str = "model") -> Callable:
    """``accuracy(params, model_state, X, y, key)``: :func:`make_accuracy` on
    ``num_samples`` rows of X, y drawn without replacement with ``key`` (all rows when
    ``num_samples`` is None or not smaller than N), the draw inside the same program."""
    accuracy = make_accuracy(model, batch_size=batch_size, state_layout=state_layout)

    def subsampled(params, model_state, X, y, key):
        idx = subsample_indices(key, X.shape[0], num_samples)
        if idx is not None:
            X, y = jnp.take(X, idx, axis=0), jnp.take(y, idx, axis=0)
        return accuracy(params, model_state, X, y)

    return subsampled
