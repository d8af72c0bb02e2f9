"""Gradient checking: numeric gradients, relative errors and manual-vs-reference reports.

The checks follow cs231n:

* relative error ``max_i |x_i - y_i| / max(1e-8, |x_i| + |y_i|)`` (:func:`rel_error`);
* centered differences ``(f(x + h e_i) - f(x - h e_i)) / (2h)`` with an absolute step ``h``
  (:func:`numerical_gradient`, ``eval_numerical_gradient`` in cs231n);
* numeric vector-Jacobian products
  ``sum((f(x + h e_i) - f(x - h e_i)) * dout) / (2h)`` (:func:`numerical_vjp`,
  ``eval_numerical_gradient_array`` in cs231n).

Anything that needs float64 calls :func:`require_x64` first: a float32 check cannot tell a
correct gradient (errors around 1e-7 in float64) from a slightly wrong one. Turn 64-bit mode
on for a block with ``with jax.enable_x64(True):`` or for a process with ``JAX_ENABLE_X64=1``.

Numeric gradients evaluate ``f`` at all perturbed points with ``jax.vmap`` (compiled once with
``jax.jit``, in chunks of a fixed size), so ``f`` must be a JAX function: traceable, without
NumPy calls on its argument or Python control flow on its values.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "GradCheckReport",
    "GradCheckRow",
    "check_backward",
    "compare_trees",
    "numerical_gradient",
    "numerical_gradient_tree",
    "numerical_vjp",
    "rel_error",
    "require_x64",
]

# Auto chunk size: at most this many input elements per batch of perturbed points.
_CHUNK_ELEMENTS = 1 << 22
_MAX_CHUNK = 1024
_ROOT_NAME = "<root>"


# ----------------------------------------------------------------------------- errors


def _leaf_rel_error(x: Any, y: Any) -> np.ndarray:
    """Elementwise ``|x - y| / max(1e-8, |x| + |y|)`` in NumPy float64."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"rel_error: shapes differ: {x.shape} vs {y.shape}")
    return np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))


def _max(values: Sequence[float]) -> float:
    """Max that propagates NaN; 0.0 when empty."""
    values = list(values)
    if any(math.isnan(v) for v in values):
        return math.nan
    return max(values, default=0.0)


def _worse(a: float, b: float) -> bool:
    """Whether error ``a`` is worse than ``b`` (NaN is worst)."""
    return (math.isnan(a) and not math.isnan(b)) or a > b


def _same_structure(x: Any, y: Any, what: str) -> tuple[list, list, Any]:
    x_leaves, x_def = jax.tree_util.tree_flatten(x)
    y_leaves, y_def = jax.tree_util.tree_flatten(y)
    if x_def != y_def:
        raise ValueError(f"{what}: tree structures differ: {x_def} vs {y_def}")
    return x_leaves, y_leaves, x_def


def rel_error(x: Any, y: Any) -> float:
    """cs231n relative error: ``max |x - y| / max(1e-8, |x| + |y|)`` over all elements.

    ``x`` and ``y`` are arrays, scalars or pytrees of the same structure and leaf shapes (no
    broadcasting); for pytrees the result is the max over leaves. Computed in NumPy float64, so
    it works whether or not JAX 64-bit mode is on. NaN anywhere gives NaN; empty inputs give
    0.0. Symmetric in ``x`` and ``y``; zero exactly when they are equal.
    """
    x_leaves, y_leaves, _ = _same_structure(x, y, "rel_error")
    errs = []
    for a, b in zip(x_leaves, y_leaves, strict=True):
        r = _leaf_rel_error(a, b)
        errs.append(float(np.max(r)) if r.size else 0.0)
    return _max(errs)


# ----------------------------------------------------------------------------- x64


def _x64_enabled() -> bool:
    return jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.float64


def require_x64(what: str = "gradient checking") -> None:
    """Raise ``RuntimeError`` unless JAX 64-bit mode is on.

    Float32 has about 7 significant digits, the same order as the errors a gradient check must
    resolve, so checking in float32 would silently pass wrong gradients or fail right ones.
    """
    if not _x64_enabled():
        raise RuntimeError(
            f"{what} needs float64, but JAX 64-bit mode is off. Run it inside "
            "`with jax.enable_x64(True):` (tests: the `x64` fixture), or set the environment "
            "variable JAX_ENABLE_X64=1 before importing jax."
        )


# ----------------------------------------------------------------------------- numeric


def _as_float64(x: Any, name: str) -> jax.Array:
    arr = jnp.asarray(x)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    return arr.astype(jnp.float64)


def _check_step(h: float, chunk_size: int | None) -> None:
    if not (isinstance(h, (int, float)) and math.isfinite(h) and h > 0):
        raise ValueError(f"h must be a positive finite step, got {h!r}")
    if chunk_size is not None and (
        not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def _centered_differences(
    f: Callable[[jax.Array], jax.Array],
    combine: Callable[[jax.Array, Any], jax.Array],
    x: jax.Array,
    aux: Any,
    h: float,
    chunk_size: int | None,
) -> jax.Array:
    """``g[i] = combine(f(x + h e_i) - f(x - h e_i), aux) / (2h)`` for every flat index ``i``.

    Indices go through one jitted ``vmap`` in chunks of a fixed size (the last chunk is padded),
    so there is a single compilation per call.
    """
    n = x.size
    if n == 0:
        return jnp.zeros(x.shape, jnp.float64)
    if chunk_size is None:
        chunk_size = max(1, min(_MAX_CHUNK, _CHUNK_ELEMENTS // n))
    chunk_size = min(chunk_size, n)
    shape = x.shape

    def shifted(flat, i, step):
        return f(flat.at[i].add(step).reshape(shape))

    # One program evaluates both points (the step is an argument), so f(x + h) and f(x - h)
    # round alike and a zero gradient comes out exactly zero.
    batched = jax.jit(jax.vmap(shifted, in_axes=(None, 0, None)))
    difference = jax.jit(lambda plus, minus, aux: combine(plus - minus, aux) / (2 * h))
    flat = x.reshape(-1)
    parts = []
    for start in range(0, n, chunk_size):
        idx = jnp.minimum(jnp.arange(start, start + chunk_size), n - 1)
        plus = batched(flat, idx, jnp.asarray(h, flat.dtype))
        minus = batched(flat, idx, jnp.asarray(-h, flat.dtype))
        parts.append(np.asarray(jax.vmap(difference, in_axes=(0, 0, None))(plus, minus, aux))
                     [: n - start])
    return jnp.asarray(np.concatenate(parts).reshape(shape))


def numerical_gradient(
    f: Callable[[jax.Array], jax.Array],
    x: Any,
    h: float = 1e-5,
    *,
    chunk_size: int | None = None,
) -> jax.Array:
    """Numeric gradient of a scalar JAX function by centered differences (float64).

    ``grad[i] = (f(x + h e_i) - f(x - h e_i)) / (2h)`` for every element ``i`` of ``x``
    (cs231n ``eval_numerical_gradient``; truncation error O(h^2), rounding error
    O(eps |f| / h)). ``x`` is cast to float64; the result has its shape.

    Args:
      f: JAX function of one array returning a 0-d array. Evaluated with ``jax.vmap``.
      x: floating-point array (any rank, 0-d included).
      h: absolute step.
      chunk_size: perturbed points evaluated per ``vmap`` batch; default: up to 1024, fewer for
        large ``x`` (about 4M input elements per batch). Lower it if ``f`` is memory-hungry.
    """
    require_x64("numerical_gradient")
    _check_step(h, chunk_size)
    x = _as_float64(x, "x")
    with jax.default_matmul_precision("highest"):
        out = jax.eval_shape(f, x)
        if out.shape != ():
            raise ValueError(f"f must return a scalar (shape ()), got shape {out.shape}")
        return _centered_differences(f, lambda d, _: d, x, None, h, chunk_size)


def numerical_vjp(
    f: Callable[[jax.Array], jax.Array],
    x: Any,
    dout: Any,
    h: float = 1e-5,
    *,
    chunk_size: int | None = None,
) -> jax.Array:
    """Numeric vector-Jacobian product ``dout^T df/dx`` by centered differences (float64).

    ``grad[i] = sum((f(x + h e_i) - f(x - h e_i)) * dout) / (2h)`` (cs231n
    ``eval_numerical_gradient_array``): the numeric counterpart of ``jax.vjp(f, x)[1](dout)``.

    Args:
      f: JAX function of one array returning an array of ``dout``'s shape.
      x: floating-point array; cast to float64.
      dout: upstream gradient, same shape as ``f(x)``; cast to float64.
      h, chunk_size: as in :func:`numerical_gradient`.
    """
    require_x64("numerical_vjp")
    _check_step(h, chunk_size)
    x = _as_float64(x, "x")
    dout = _as_float64(dout, "dout")
    with jax.default_matmul_precision("highest"):
        out = jax.eval_shape(f, x)
        if out.shape != dout.shape:
            raise ValueError(
                f"dout shape {dout.shape} does not match f(x) shape {out.shape} (x shape {x.shape})"
            )
        return _centered_differences(f, lambda d, g: jnp.sum(d * g), x, dout, h, chunk_size)


def numerical_gradient_tree(
    f: Callable[[Any], jax.Array],
    params: Any,
    h: float = 1e-5,
    *,
    chunk_size: int | None = None,
) -> Any:
    """Numeric gradient of a scalar JAX function of a pytree, leaf by leaf (float64).

    For each leaf ``p`` of ``params``: ``grad_p[i] = (f(params with p + h e_i) -
    f(params with p - h e_i)) / (2h)``, the other leaves held fixed. All leaves are cast to
    float64 (they must be floating point); the result has ``params``' structure.
    """
    require_x64("numerical_gradient_tree")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    leaves = [_as_float64(leaf, f"params leaf {i}") for i, leaf in enumerate(leaves)]
    grads = []
    for i, leaf in enumerate(leaves):

        def f_leaf(p, i=i):
            return f(jax.tree_util.tree_unflatten(treedef, [*leaves[:i], p, *leaves[i + 1 :]]))

        grads.append(numerical_gradient(f_leaf, leaf, h, chunk_size=chunk_size))
    return jax.tree_util.tree_unflatten(treedef, grads)


# ----------------------------------------------------------------------------- reports


class GradCheckRow(NamedTuple):
    """One compared leaf.

    ``errors`` maps each reference name to the max relative error against it. The worst entry
    is taken against the reference with the largest error (``worst_reference``); its index and
    the manual / reference values there are recorded (``None`` for empty leaves).
    """

    name: str
    shape: tuple[int, ...]
    errors: Mapping[str, float]
    worst_reference: str
    worst_index: tuple[int, ...] | None
    manual_value: float | None
    reference_value: float | None

    @property
    def max_error(self) -> float:
        """Largest error over references (NaN if any is NaN)."""
        return _max(self.errors.values())

    @property
    def err_vs_autodiff(self) -> float | None:
        return self.errors.get("autodiff")

    @property
    def err_vs_numeric(self) -> float | None:
        return self.errors.get("numeric")

    def describe(self) -> str:
        """One line: the worst error, where it is, and the values there."""
        ref = self.worst_reference
        text = f"{self.name} (shape {self.shape}): max relative error {self.max_error:.3e} vs {ref}"
        if self.worst_index is not None:
            text += (
                f" at index {self.worst_index}: manual={self.manual_value!r}, "
                f"{ref}={self.reference_value!r}"
            )
        return text


@dataclasses.dataclass(frozen=True)
class GradCheckReport:
    """Per-leaf relative errors of a manual gradient against one or more references.

    ``str(report)`` is an aligned table; :meth:`assert_close` raises on the rows above a
    tolerance; :meth:`to_rows` gives plain dicts (for logging or a DataFrame).
    """

    rows: tuple[GradCheckRow, ...]
    references: tuple[str, ...]

    @property
    def max_error(self) -> float:
        """Largest error over all rows and references (NaN if any is NaN, 0.0 if no rows)."""
        return _max(row.max_error for row in self.rows)

    def __getitem__(self, name: str) -> GradCheckRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no row named {name!r}; rows: {[r.name for r in self.rows]}")

    def failures(self, tol: float = 1e-7) -> tuple[GradCheckRow, ...]:
        """Rows whose max error is above ``tol`` or NaN."""
        return tuple(row for row in self.rows if not row.max_error <= tol)

    def assert_close(self, tol: float = 1e-7) -> GradCheckReport:
        """Raise ``AssertionError`` naming every row with error above ``tol`` (or NaN).

        The message gives the row's name, error, worst index and the values there, followed by
        the full table. Returns the report when all rows pass. cs231n's rule of thumb: errors
        below 1e-7 are good for most layers; around 1e-2 or above the gradient is wrong.
        """
        failed = self.failures(tol)
        if failed:
            lines = [f"gradient check failed (tol={tol:g}):"]
            lines += [f"  {row.describe()}" for row in failed]
            raise AssertionError("\n".join(lines) + "\n\n" + str(self))
        return self

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per row: name, shape, ``err_vs_<reference>`` per reference, worst entry."""
        out = []
        for row in self.rows:
            d: dict[str, Any] = {"name": row.name, "shape": row.shape}
            d.update({f"err_vs_{ref}": row.errors[ref] for ref in self.references})
            d.update(
                max_error=row.max_error,
                worst_reference=row.worst_reference,
                worst_index=row.worst_index,
                manual_value=row.manual_value,
                reference_value=row.reference_value,
            )
            out.append(d)
        return out

    def __str__(self) -> str:
        def fmt(v: float | None) -> str:
            return "-" if v is None else f"{v:.10g}"

        header = ["name", "shape", *(f"vs {ref}" for ref in self.references)]
        header += ["worst index", "manual", "reference"]
        body = []
        for row in self.rows:
            cells = [row.name, str(row.shape)]
            cells += [f"{row.errors[ref]:.2e}" for ref in self.references]
            cells += [
                "-" if row.worst_index is None else str(row.worst_index),
                fmt(row.manual_value),
                "-"
                if row.reference_value is None
                else f"{fmt(row.reference_value)} ({row.worst_reference})",
            ]
            body.append(cells)
        widths = [max(len(r[c]) for r in [header, *body]) for c in range(len(header))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *body]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        title = f"relative errors, max over entries (max {self.max_error:.2e})"
        return "\n".join([title, *lines])


def _leaf_names(tree: Any) -> list[str]:
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    return [jax.tree_util.keystr(p, simple=True, separator="/") or _ROOT_NAME for p in paths]


def compare_trees(
    manual: Any,
    reference: Any,
    names: Sequence[str] | None = None,
    *,
    reference_name: str | Sequence[str] = "reference",
) -> GradCheckReport:
    """Compare two pytrees leaf by leaf with cs231n's relative error.

    Each row holds a leaf's ``max |m - r| / max(1e-8, |m| + |r|)``, its worst index and the
    values there. Works in any precision mode (compares in NumPy float64).

    Args:
      manual: pytree of arrays (e.g. hand-written gradients).
      reference: pytree with ``manual``'s structure and leaf shapes; or, when
        ``reference_name`` is a sequence of names, a tuple/list of such pytrees, one per name
        (e.g. ``(autodiff, numeric)`` with ``reference_name=("autodiff", "numeric")``).
      names: row names, one per leaf; default: the leaves' key paths (``"W1"``,
        ``"layers/0/w"``; ``"<root>"`` for a single array).
      reference_name: the column name(s) of the reference(s).
    """
    if isinstance(reference_name, str):
        ref_names = (reference_name,)
        refs = (reference,)
    else:
        ref_names = tuple(reference_name)
        if not isinstance(reference, (tuple, list)) or len(reference) != len(ref_names):
            raise ValueError(
                f"reference must be a tuple of {len(ref_names)} pytrees, one per name in "
                f"reference_name={ref_names!r}"
            )
        refs = tuple(reference)
    if len(set(ref_names)) != len(ref_names) or not ref_names:
        raise ValueError(f"reference_name must be distinct, non-empty names, got {ref_names!r}")

    m_leaves = jax.tree_util.tree_leaves(manual)
    ref_leaves = [
        _same_structure(manual, ref, f"compare_trees (manual vs {rn})")[1]
        for ref, rn in zip(refs, ref_names, strict=True)
    ]
    if names is None:
        names = _leaf_names(manual)
    else:
        names = [str(n) for n in names]
        if len(names) != len(m_leaves):
            raise ValueError(f"got {len(names)} names for {len(m_leaves)} leaves: {names}")

    rows = []
    for k, (name, m) in enumerate(zip(names, m_leaves, strict=True)):
        m = np.asarray(m, dtype=np.float64)
        errors, worst = {}, None
        for rn, leaves in zip(ref_names, ref_leaves, strict=True):
            r = np.asarray(leaves[k], dtype=np.float64)
            if r.shape != m.shape:
                raise ValueError(f"{name}: manual shape {m.shape} != {rn} shape {r.shape}")
            err = _leaf_rel_error(m, r)
            flat_idx = int(np.argmax(err)) if err.size else None  # argmax finds the first NaN
            errors[rn] = float(err.reshape(-1)[flat_idx]) if err.size else 0.0
            if worst is None or _worse(errors[rn], errors[worst[0]]):
                worst = (rn, r, flat_idx)
        rn, r, flat_idx = worst
        if flat_idx is None:
            index, mv, rv = None, None, None
        else:
            index = tuple(int(i) for i in np.unravel_index(flat_idx, m.shape))
            mv, rv = float(m.reshape(-1)[flat_idx]), float(r.reshape(-1)[flat_idx])
        rows.append(GradCheckRow(name, tuple(m.shape), errors, rn, index, mv, rv))
    return GradCheckReport(tuple(rows), ref_names)


# ----------------------------------------------------------------------------- layers


def _is_float_array(x: Any) -> bool:
    return hasattr(x, "dtype") and hasattr(x, "shape") and jnp.issubdtype(x.dtype, jnp.floating)


def _input_names(forward: Callable, n: int) -> list[str]:
    names = [f"arg{i}" for i in range(n)]
    try:
        params = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        return names
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    for i, p in enumerate(params[:n]):
        if p.kind not in positional:
            break
        names[i] = p.name
    return names


def check_backward(
    forward: Callable[..., tuple[Any, Any]],
    backward: Callable[[Any, Any], Any],
    inputs: Sequence[Any] | Any,
    *,
    dout: Any = None,
    wrt: Sequence[int] | None = None,
    argnames: Sequence[str] | None = None,
    h: float = 1e-5,
    key: jax.Array | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
) -> GradCheckReport:
    """Check a hand-written backward against ``jax.vjp`` and numeric differences (float64).

    With ``out, cache = forward(*inputs, **forward_kwargs)`` and ``manual = backward(dout,
    cache)``, for each checked input ``x_k`` the report compares ``manual_k`` with

    * ``autodiff``: ``jax.vjp(lambda *xs: forward(*xs)[0], ...)`` applied to ``dout``;
    * ``numeric``: ``sum((out(x_k + h e_i) - out(x_k - h e_i)) * dout) / (2h)``
      (:func:`numerical_vjp`),

    everything in float64 at ``jax.default_matmul_precision("highest")``. Floating-point inputs
    are cast to float64 first. Call ``.assert_close(tol)`` on the result to fail loudly.

    Args:
      forward: JAX function ``(*inputs, **forward_kwargs) -> (out, cache)``; ``out`` one
        floating array. It must be deterministic (pass any random key in ``forward_kwargs``).
      backward: ``(dout, cache) -> grads``: a tuple/list of gradients, or one array.
        Alignment: with the checked inputs (``wrt``) when the lengths match; else with all
        ``inputs``; else with the floating-array inputs (so a subset of a ``(dx, dw, db)``
        backward can be checked with ``wrt``).
      inputs: positional inputs (a single array is taken as ``(array,)``).
      dout: upstream gradient of ``out``'s shape; default standard normal from ``key``.
      wrt: indices of the inputs to check; default: every floating-point array input (ints,
        ``None``, Python scalars and dicts are passed through unchecked).
      argnames: names of all inputs (or of the checked ones); default: ``forward``'s parameter
        names, else ``arg0, arg1, ...``.
      h: numeric step; key: PRNG key for ``dout`` (default ``jax.random.key(0)``).
      forward_kwargs: keyword arguments for ``forward`` (not differentiated).
      chunk_size: see :func:`numerical_gradient`.

    Raises:
      RuntimeError: 64-bit mode is off (see :func:`require_x64`).
      ValueError / TypeError: bad ``wrt``, ``argnames``, ``dout``, or gradients of the wrong
        number or shape, naming what was seen.
    """
    require_x64("check_backward")
    _check_step(h, chunk_size)
    fk = dict(forward_kwargs or {})
    if not isinstance(inputs, (tuple, list)):
        inputs = (inputs,)
    inputs = [jnp.asarray(x, jnp.float64) if _is_float_array(x) else x for x in inputs]
    n = len(inputs)
    floats = [i for i, x in enumerate(inputs) if _is_float_array(x)]

    if wrt is None:
        wrt = floats
    else:
        wrt = [wrt] if isinstance(wrt, int) else list(wrt)
        for i in wrt:
            if not isinstance(i, int) or not -n <= i < n:
                raise ValueError(f"wrt index {i!r} out of range for {n} inputs")
        wrt = sorted({i % n for i in wrt})
        for i in wrt:
            if not _is_float_array(inputs[i]) and not isinstance(inputs[i], float):
                raise TypeError(
                    f"wrt includes input {i} of type {type(inputs[i]).__name__}; only "
                    "floating-point arrays can be checked"
                )
            inputs[i] = jnp.asarray(inputs[i], jnp.float64)
    if not wrt:
        raise ValueError("no floating-point array inputs to check; pass wrt=")

    if argnames is None:
        all_names = _input_names(forward, n)
    else:
        argnames = [str(a) for a in argnames]
        if len(argnames) == n:
            all_names = argnames
        elif len(argnames) == len(wrt):
            all_names = [f"arg{i}" for i in range(n)]
            for i, a in zip(wrt, argnames, strict=True):
                all_names[i] = a
        else:
            raise ValueError(
                f"argnames has {len(argnames)} names; expected {n} (all inputs) or "
                f"{len(wrt)} (checked inputs)"
            )
    names = [all_names[i] for i in wrt]

    def out_of(*xs):
        full = list(inputs)
        for i, x in zip(wrt, xs, strict=True):
            full[i] = x
        return forward(*full, **fk)[0]

    with jax.default_matmul_precision("highest"):
        out, cache = forward(*inputs, **fk)
        if not _is_float_array(out):
            raise TypeError(
                f"forward must return (out, cache) with out a floating array, got "
                f"{type(out).__name__}"
            )
        if out.dtype != jnp.float64:
            raise TypeError(
                f"forward returned out of dtype {out.dtype} for float64 inputs; the check "
                "would be limited to that precision"
            )
        if dout is None:
            dout = jax.random.normal(
                jax.random.key(0) if key is None else key, out.shape, jnp.float64
            )
        else:
            dout = _as_float64(dout, "dout")
            if dout.shape != out.shape:
                raise ValueError(f"dout shape {dout.shape} != out shape {out.shape}")

        grads = backward(dout, cache)
        grads = list(grads) if isinstance(grads, (tuple, list)) else [grads]
        if len(grads) == len(wrt):
            manual = grads
        elif len(grads) == n:
            manual = [grads[i] for i in wrt]
        elif len(grads) == len(floats) and set(wrt) <= set(floats):
            manual = [grads[floats.index(i)] for i in wrt]
        else:
            raise ValueError(
                f"backward returned {len(grads)} gradient(s); expected one per checked input "
                f"({len(wrt)}: {names}), per input ({n}) or per floating input "
                f"({len(floats)}); pass wrt= to choose the inputs"
            )
        for name, i, g in zip(names, wrt, manual, strict=True):
            if g is None or np.shape(g) != inputs[i].shape:
                raise ValueError(
                    f"backward's gradient for {name!r} has shape "
                    f"{None if g is None else np.shape(g)}, input shape {inputs[i].shape}"
                )

        autodiff = list(
            jax.jit(lambda xs, d: jax.vjp(out_of, *xs)[1](d))([inputs[i] for i in wrt], dout)
        )

        numeric = []
        for k, i in enumerate(wrt):

            def f_k(x, k=k):
                xs = [inputs[j] for j in wrt]
                xs[k] = x
                return out_of(*xs)

            numeric.append(numerical_vjp(f_k, inputs[i], dout, h, chunk_size=chunk_size))

    return compare_trees(manual, (autodiff, numeric), names, reference_name=("autodiff", "numeric"))
