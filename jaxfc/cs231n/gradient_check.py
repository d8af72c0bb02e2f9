"""cs231n ``gradient_check.py``: centered-difference gradients of arbitrary Python functions.

These take any callable (a ``model.loss`` that re-reads ``model.params``, a lambda around a
layer), perturb ``x`` IN PLACE one entry at a time and restore it, exactly as the assignment
does. :mod:`jaxfc.gradcheck` is the vectorized version for JAX functions; it cannot be used
here because these functions are opaque NumPy code with side effects. Check in float64.
"""

from __future__ import annotations

from random import randrange

import numpy as np

__all__ = [
    "eval_numerical_gradient",
    "eval_numerical_gradient_array",
    "grad_check_sparse",
]


def _at_both_sides(f, x, ix, h):
    """``(f(x + h e_ix), f(x - h e_ix))``, perturbing ``x`` in place and restoring it."""
    oldval = x[ix]
    x[ix] = oldval + h
    plus = np.array(f(x), copy=True)
    x[ix] = oldval - h
    minus = np.array(f(x), copy=True)
    x[ix] = oldval
    return plus, minus


def eval_numerical_gradient(f, x, verbose=True, h=0.00001):
    """Numeric gradient of a scalar function ``f`` at ``x``:
    ``grad[i] = (f(x + h e_i) - f(x - h e_i)) / (2h)``. Prints each entry when verbose."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        fxph, fxmh = _at_both_sides(f, x, ix, h)
        grad[ix] = (fxph - fxmh) / (2 * h)
        if verbose:
            print(ix, grad[ix])
        it.iternext()
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Numeric vector-Jacobian product of an array function ``f`` at ``x`` with upstream
    gradient ``df``: ``grad[i] = sum((f(x + h e_i) - f(x - h e_i)) * df) / (2h)``."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        pos, neg = _at_both_sides(f, x, it.multi_index, h)
        grad[it.multi_index] = np.sum((pos - neg) * df) / (2 * h)
        it.iternext()
    return grad


def grad_check_sparse(f, x, analytic_grad, num_checks=10, h=1e-5):
    """Compare ``analytic_grad`` with the numeric gradient of ``f`` at ``num_checks`` random
    entries (drawn with Python's ``random.randrange``), printing each comparison."""
    for _ in range(num_checks):
        ix = tuple(randrange(m) for m in x.shape)
        fxph, fxmh = _at_both_sides(f, x, ix, h)
        grad_numerical = (fxph - fxmh) / (2 * h)
        grad_analytic = analytic_grad[ix]
        rel_err = abs(grad_numerical - grad_analytic) / (abs(grad_numerical) + abs(grad_analytic))
        print(
            f"numerical: {grad_numerical:f} analytic: {grad_analytic:f}, "
            f"relative error: {rel_err:e}"
        )
