"""Conversions between the assignment's NumPy world and the JAX core."""

from __future__ import annotations

import contextlib

import jax
import numpy as np


def needs_x64(*arrays) -> bool:
    """True when any argument is a float64 array (or dtype)."""
    for a in arrays:
        if a is None:
            continue
        dtype = a if isinstance(a, np.dtype) else np.asarray(a).dtype
        if dtype == np.float64:
            return True
    return False


@contextlib.contextmanager
def compute(*arrays):
    """Run core code in 64-bit mode when any argument is float64, at full matmul precision."""
    with contextlib.ExitStack() as stack:
        if needs_x64(*arrays):
            stack.enter_context(jax.enable_x64(True))
        stack.enter_context(jax.default_matmul_precision("highest"))
        yield


def to_numpy(x) -> np.ndarray:
    """A writable NumPy copy (users and gradient checks modify arrays in place)."""
    return np.array(x)


def tree_to_numpy(tree):
    """Every array leaf of a pytree (a layer cache) as NumPy; None leaves stay None."""
    return jax.tree_util.tree_map(np.asarray, tree)


def labels(y) -> np.ndarray:
    """Integer labels as int32 (JAX's default integer width without 64-bit mode)."""
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int32)
    return y  # the core raises a TypeError naming y
