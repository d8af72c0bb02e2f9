"""Data-parallel training on JAX's own sharding machinery.

The minibatch is split over the ``'data'`` axis of a device mesh; parameters, model state and
optimizer state are replicated. XLA's SPMD partitioner turns the per-example work into
per-device work and inserts the all-reduces: gradients are summed over the global batch, and
batch-norm statistics are computed over the global batch, so sharded training computes the
same numbers as single-device training. The same code runs on one CPU, several GPUs or a TPU
slice.

Multi-host: call ``jax.distributed.initialize()`` on every host before anything else; then
``data_mesh()`` spans the devices of all hosts (see the README).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | int | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all of them; an int takes the first n)."""
    if devices is None:
        devices = jax.devices()
    elif isinstance(devices, int):
        available = jax.devices()
        if not 0 < devices <= len(available):
            raise ValueError(
                f"asked for {devices} devices, but JAX sees {len(available)}: "
                f"{[str(d) for d in available]}"
            )
        devices = available[:devices]
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the mesh's data axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_divisible(batch_size: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if batch_size % n:
        lower, upper = (batch_size // n) * n, (batch_size // n + 1) * n
        suggestion = f"{lower} or {upper}" if lower else f"{upper}"
        raise ValueError(
            f"batch_size={batch_size} does not split evenly over {n} devices; use a multiple "
            f"of {n} such as {suggestion}"
        )


def replicate(tree, mesh: Mesh):
    """Put every leaf of ``tree`` on all devices of ``mesh``."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(x, mesh: Mesh):
    """Split ``x`` along its leading axis over the mesh (outside ``jit``)."""
    check_batch_divisible(x.shape[0], mesh)
    return jax.device_put(x, batch_sharded(mesh))


def constrain_batch(x, mesh: Mesh | None):
    """Inside ``jit``: ask XLA to split ``x``'s leading axis over the mesh."""
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, batch_sharded(mesh))
