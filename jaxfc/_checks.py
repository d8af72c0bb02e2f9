"""Argument checks shared by the public entry points.

Shapes and dtypes are static under ``jit``, so these checks cost nothing at run time. Values
(labels out of range, say) can only be checked on concrete arrays: ``is_concrete`` tells.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True when ``x`` holds a value now (not a tracer inside ``jit``/``grad``/``vmap``)."""
    return not isinstance(x, jax.core.Tracer)


def check_ndim(name: str, x, ndim: int | tuple[int, ...]) -> None:
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if np.ndim(x) not in allowed:
        want = " or ".join(str(n) for n in allowed)
        raise ValueError(f"{name} must be {want}-dimensional, got shape {tuple(np.shape(x))}")


def check_floating(name: str, x) -> None:
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {jnp.result_type(x)}")


def check_labels(y, num_samples: int, num_classes: int | None = None, name: str = "y") -> None:
    """Labels are integers of shape (N,); when concrete, each lies in [0, num_classes)."""
    dtype = jnp.result_type(y)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {dtype}")
    if tuple(np.shape(y)) != (num_samples,):
        raise ValueError(
            f"{name} must have shape ({num_samples},) to match {num_samples} samples, "
            f"got shape {tuple(np.shape(y))}"
        )
    if num_classes is not None and is_concrete(y) and num_samples > 0:
        y_np = np.asarray(y)
        lo, hi = int(y_np.min()), int(y_np.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{name} holds labels in [{lo}, {hi}], outside the {num_classes} classes "
                f"[0, {num_classes - 1}]"
            )


def check_probability(name: str, p) -> None:
    """A drop probability in [0, 1), checked when concrete."""
    if is_concrete(p):
        value = float(np.asarray(p))
        if not 0.0 <= value < 1.0:
            raise ValueError(
                f"{name} is the drop probability and must lie in [0, 1), got {value}"
            )
