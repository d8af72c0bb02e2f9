"""The benchmark's workloads, data, initial parameters and the interface every peer implements.

A peer module defines ``make(workload, params, X, y, *, config) -> Trainer`` (plus, if it
has variants, keyword options named in :data:`PEERS`) and may define
``unsupported(config) -> str | None`` giving the reason it cannot run a configuration.
A :class:`Trainer` owns its copy of the parameters, optimizer state and data:

* ``run_steps(n)`` trains ``n`` steps (a multiple of ``steps_per_call``) on minibatches it
  draws itself (a fresh permutation of the data per epoch) and returns when they are done;
* ``train_on(indices)`` trains one step per row of ``indices`` (an (S, B) int array into its
  X) and returns the S losses, for the correctness gate.

This module imports only numpy (jaxfc lazily), so a worker process loads just its own peer.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import math
import os

import numpy as np

LEARNING_RATE = 1e-3
INPUT_SHAPE = (3, 32, 32)
NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Workload:
    """A fully-connected network ``{affine - [batchnorm] - relu - [dropout]} x H - affine``."""

    name: str
    hidden_dims: tuple[int, ...]
    batch_size: int
    batchnorm: bool = False
    dropout: float = 0.0
    two_layer: bool = False  # built as jaxfc's TwoLayerNet (weight_scale 1e-3)
    weight_scale: float | str = "he"
    description: str = ""

    @property
    def input_dim(self) -> int:
        return math.prod(INPUT_SHAPE)

    @property
    def layer_dims(self) -> tuple[int, ...]:
        return (self.input_dim, *self.hidden_dims, NUM_CLASSES)

    @property
    def num_layers(self) -> int:
        return len(self.hidden_dims) + 1

    def flops_per_sample(self) -> int:
        """Matmul FLOPs of one training step per sample: the forward products, the backward
        dW products and the backward dX products of every layer but the first (whose input
        gradient nobody needs)."""
        dims = self.layer_dims
        products = [2 * dims[i] * dims[i + 1] for i in range(self.num_layers)]
        return 2 * sum(products) + sum(products[1:])

    def without_dropout(self) -> Workload:
        return dataclasses.replace(self, dropout=0.0)

    def jaxfc_model(self, compute_dtype=None):
        """The jaxfc model (float32 parameters; ``compute_dtype`` 'bfloat16' for mixed
        precision)."""
        from jaxfc.models import FullyConnectedNet, TwoLayerNet

        extra = {} if compute_dtype is None else {"compute_dtype": compute_dtype}
        if self.two_layer:
            return TwoLayerNet(self.input_dim, self.hidden_dims[0], NUM_CLASSES, **extra)
        return FullyConnectedNet(
            hidden_dims=self.hidden_dims,
            input_dim=self.input_dim,
            num_classes=NUM_CLASSES,
            dropout=self.dropout,
            normalization="batchnorm" if self.batchnorm else None,
            weight_scale=self.weight_scale,
            **extra,
        )


WORKLOADS = {
    "W1": Workload("W1", (100,), 100, two_layer=True,
                   description="TwoLayerNet 3072-100-10, batch 100"),
    "W2": Workload("W2", (100, 100, 100, 100), 200, batchnorm=True, dropout=0.5,
                   description="FC [100]*4 + batchnorm + dropout 0.5, batch 200"),
    "W3": Workload("W3", (1024, 1024), 512, description="FC [1024, 1024], batch 512"),
}


def num_cores() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count`` ignores it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class RunConfig:
    device: str = "cpu"  # 'cpu' or 'gpu'
    dtype: str = "float32"  # compute dtype: 'float32' or 'bfloat16' (JAX peers only)
    learning_rate: float = LEARNING_RATE
    seed: int = 0
    torch_threads: int = 0  # 0: num_cores()


@dataclasses.dataclass(frozen=True)
class PeerSpec:
    name: str
    module: str
    options: dict
    requires: tuple[str, ...]
    description: str


PEERS = {
    spec.name: spec
    for spec in (
        PeerSpec("numpy", "numpy_peer", {}, (),
                 "numpy, cs231n-style layer functions and Adam"),
        PeerSpec("jax-loop", "jax_optax_peer", {"variant": "loop"}, ("jax", "optax"),
                 "JAX value_and_grad + optax.adam, jitted step in a Python loop"),
        PeerSpec("jax-scan", "jax_optax_peer", {"variant": "scan"}, ("jax", "optax"),
                 "JAX value_and_grad + optax.adam, one epoch in lax.scan"),
        PeerSpec("torch", "torch_peer", {}, ("torch",),
                 "PyTorch eager, nn.Sequential + Adam(fused=True)"),
        PeerSpec("jaxfc-manual", "jaxfc_peer", {"gradients": "manual"}, ("jax",),
                 "jaxfc Solver's compiled epoch, hand-written gradients"),
        PeerSpec("jaxfc-autodiff", "jaxfc_peer", {"gradients": "autodiff"}, ("jax",),
                 "jaxfc Solver's compiled epoch, jax.grad gradients"),
    )
}


class Trainer(abc.ABC):
    """One peer training one workload; see the module docstring."""

    steps_per_call: int = 1

    @abc.abstractmethod
    def run_steps(self, n: int) -> None: ...

    @abc.abstractmethod
    def train_on(self, indices: np.ndarray) -> np.ndarray: ...

    def _check_steps(self, n: int) -> int:
        if n <= 0 or n % self.steps_per_call:
            raise ValueError(f"n must be a positive multiple of {self.steps_per_call}, got {n}")
        return n // self.steps_per_call


def missing_requirement(spec: PeerSpec) -> str | None:
    """The first optional package the peer needs that is not installed, else None."""
    for package in spec.requires:
        if importlib.util.find_spec(package) is None:
            return package
    return None


def load_peer(spec: PeerSpec):
    return importlib.import_module(f"{__name__}.{spec.module}")


def make_trainer(spec: PeerSpec, workload, params, X, y, config: RunConfig) -> Trainer:
    return load_peer(spec).make(workload, params, X, y, config=config, **spec.options)


def unsupported(spec: PeerSpec, config: RunConfig) -> str | None:
    """Why the peer cannot run ``config`` (a missing package, a device, a dtype), or None."""
    package = missing_requirement(spec)
    if package:
        return f"{package} is not installed (pip install '.[bench]' / torch==2.13.0)"
    check = getattr(load_peer(spec), "unsupported", None)
    return check(config) if check else None


# -------------------------------------------------------------------------------------------
# Data and parameters, identical for every peer


def make_data(num_samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10-shaped float32 X of shape (N, 3, 32, 32), standard normal, and int32 labels
    ``argmax(x @ T)`` of a fixed random linear teacher T: learnable, so the loss on unseen
    minibatches falls steadily (what the correctness gate compares)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((num_samples, *INPUT_SHAPE), dtype=np.float32)
    teacher = np.random.default_rng(12345).standard_normal(
        (math.prod(INPUT_SHAPE), NUM_CLASSES), dtype=np.float32)
    y = np.argmax(X.reshape(num_samples, -1) @ teacher, axis=1).astype(np.int32)
    return X, y


def init_params(workload: Workload, seed: int = 0) -> dict[str, np.ndarray]:
    """jaxfc's ``model.init(jax.random.key(seed))`` as a dict of float32 numpy arrays
    (``W1, b1[, gamma1, beta1], ...``; W of shape (fan_in, fan_out))."""
    import jax

    params, _ = workload.jaxfc_model().init(jax.random.key(seed))
    return {k: np.asarray(v, np.float32) for k, v in params.items()}


def epoch_permutations(rng: np.random.Generator, num_samples: int, batch_size: int):
    """Endless minibatch indices: each epoch a fresh permutation, cut into full batches."""
    steps = max(num_samples // batch_size, 1)
    while True:
        if steps * batch_size <= num_samples:
            perm = rng.permutation(num_samples)[: steps * batch_size]
        else:
            perm = rng.integers(0, num_samples, steps * batch_size)
        yield from perm.reshape(steps, batch_size).astype(np.int32)
