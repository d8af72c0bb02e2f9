"""Idiomatic JAX: a forward function, ``jax.value_and_grad`` and ``optax.adam``.

Two drivers of the same step:

* ``loop``: one jitted step per minibatch from a Python loop (parameters and optimizer state
  donated), X and y on the device, minibatch indices drawn on the host and gathered inside
  the step;
* ``scan``: a whole epoch as one jitted ``lax.scan``, indices drawn on the device.

With ``dtype='bfloat16'`` the matmuls take bfloat16 inputs (float32 accumulation); the
parameters, Adam state, batch norm and the loss stay float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import RunConfig, Trainer, epoch_permutations

BN_MOMENTUM, BN_EPS = 0.9, 1e-5


def make_loss_fn(workload, compute_dtype, dropout: float):
    L = workload.num_layers
    cd = jnp.dtype(compute_dtype)

    def dense(h, w, b):
        if cd == jnp.float32:
            return h @ w + b
        return jnp.dot(h.astype(cd), w.astype(cd), preferred_element_type=jnp.float32) + b

    def loss_fn(params, bn_state, X, y, key):
        h = X.reshape(X.shape[0], -1)
        new_bn = {}
        for i in range(1, L):
            h = dense(h, params[f"W{i}"], params[f"b{i}"])
            if workload.batchnorm:
                mean, var = h.mean(axis=0), h.var(axis=0)
                h = (h - mean) * jax.lax.rsqrt(var + BN_EPS)
                h = h * params[f"gamma{i}"] + params[f"beta{i}"]
                rm, rv = bn_state[f"bn{i}"]
                new_bn[f"bn{i}"] = (BN_MOMENTUM * rm + (1 - BN_MOMENTUM) * mean,
                                    BN_MOMENTUM * rv + (1 - BN_MOMENTUM) * var)
            h = jax.nn.relu(h)
            if dropout > 0:
                keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1 - dropout, h.shape)
                h = jnp.where(keep, h / (1 - dropout), 0)
        scores = dense(h, params[f"W{L}"], params[f"b{L}"])
        loss = optax.softmax_cross_entropy_with_integer_labels(scores, y).mean()
        return loss, new_bn

    return loss_fn


def make_step(workload, tx, compute_dtype, dropout):
    grad_fn = jax.value_and_grad(make_loss_fn(workload, compute_dtype, dropout), has_aux=True)

    def step(state, X, y, idx, key):
        params, bn_state, opt_state = state
        (loss, bn_state), grads = grad_fn(params, bn_state, X[idx], y[idx], key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), bn_state, opt_state), loss

    return step


class JaxOptaxTrainer(Trainer):
    def __init__(self, workload, params, X, y, config: RunConfig, variant: str):
        if variant not in ("loop", "scan"):
            raise ValueError(f"variant must be 'loop' or 'scan', got {variant!r}")
        self.variant = variant
        self.batch_size = B = workload.batch_size
        n = X.shape[0]
        self.steps_per_epoch = spe = max(n // B, 1)
        self.steps_per_call = spe if variant == "scan" else 1
        compute_dtype = jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32
        tx = optax.adam(config.learning_rate)
        step = make_step(workload, tx, compute_dtype, workload.dropout)

        params = {k: jnp.asarray(v) for k, v in params.items()}
        bn_state = {f"bn{i}": (jnp.zeros(d), jnp.zeros(d))
                    for i, d in enumerate(workload.hidden_dims, 1) if workload.batchnorm}
        self.state = (params, bn_state, tx.init(params))
        self.X, self.y = jnp.asarray(X), jnp.asarray(y)
        self.key = jax.random.key(config.seed + 1)
        self.count = 0

        def scan_steps(state, X, y, indices, keys):
            return jax.lax.scan(lambda s, ik: step(s, X, y, *ik), state, (indices, keys))

        def epoch(state, X, y, key):
            k_perm, k_drop = jax.random.split(key)
            if spe * B <= X.shape[0]:
                idx = jax.random.permutation(k_perm, X.shape[0])[: spe * B].reshape(spe, B)
            else:
                idx = jax.random.randint(k_perm, (spe, B), 0, X.shape[0])
            return scan_steps(state, X, y, idx, jax.random.split(k_drop, spe))

        donate = functools.partial(jax.jit, donate_argnums=0)
        self._step = donate(lambda s, X, y, idx, key, i: step(s, X, y, idx,
                                                               jax.random.fold_in(key, i)))
        self._epoch = donate(epoch)
        self._scan_steps = donate(scan_steps)
        self._batches = epoch_permutations(np.random.default_rng(config.seed + 1), n, B)

    def run_steps(self, n):
        calls = self._check_steps(n)
        if self.variant == "loop":
            for _ in range(calls):
                self.state, _ = self._step(self.state, self.X, self.y, next(self._batches),
                                           self.key, self.count)
                self.count += 1
        else:
            for _ in range(calls):
                self.state, _ = self._epoch(self.state, self.X, self.y,
                                            jax.random.fold_in(self.key, self.count))
                self.count += 1
        jax.block_until_ready(self.state)

    def train_on(self, indices):
        indices = jnp.asarray(indices, jnp.int32)
        if self.variant == "loop":
            losses = []
            for idx in indices:
                self.state, loss = self._step(self.state, self.X, self.y, idx, self.key,
                                              self.count)
                self.count += 1
                losses.append(loss)
        else:
            keys = jax.random.split(self.key, indices.shape[0])
            self.state, losses = self._scan_steps(self.state, self.X, self.y, indices, keys)
        return np.asarray(jnp.stack(losses) if isinstance(losses, list) else losses, np.float64)


def make(workload, params, X, y, *, config: RunConfig, variant: str) -> JaxOptaxTrainer:
    return JaxOptaxTrainer(workload, params, X, y, config, variant)
