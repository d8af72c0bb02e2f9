"""Fully-connected classifiers: immutable, hashable configuration plus pure functions.

A model never holds arrays. ``init(key) -> (params, state)`` makes them; ``apply`` computes
class scores; ``loss`` returns ``(loss, grads, new_state)`` with the gradients computed either
by the hand-written backward passes (``gradients='manual'``) or by ``jax.grad`` of the forward
loss (``gradients='autodiff'``). Because the configuration is hashable, a model can be a
static argument of ``jax.jit``.

Parameters are named as in cs231n: ``W1, b1, ..., WL, bL`` and ``gamma1, beta1, ...`` for the
normalized hidden layers. The state maps ``'bn1', 'bn2', ...`` to :class:`BatchNormState`
(empty without batch norm).

:func:`compare_gradients` prints, per parameter, how far the hand-written gradients are from
``jax.grad`` and from numeric differences: the first thing to run when a backward pass is wrong.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxfc import layers
from jaxfc._checks import check_labels, check_ndim, is_concrete
from jaxfc.gradcheck import GradCheckReport, compare_trees, numerical_gradient, require_x64
from jaxfc.losses import LOSSES, get_loss

Array = jax.Array
Params = dict[str, Array]
State = dict[str, layers.BatchNormState]

GRADIENT_MODES = ("manual", "autodiff")
INIT_SCHEMES = ("he", "xavier")
COMPUTE_DTYPES = ("float64", "float32", "bfloat16", "float16")


def _canonical_dtype(dtype) -> np.dtype:
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a floating-point type, got {dtype}")
    return dtype


def _is_static_zero(value) -> bool:
    """A concrete zero (a traced value may be anything, so it is never 'zero')."""
    return value is not None and is_concrete(value) and np.ndim(value) == 0 and value == 0


def require_dtype_available(dtype) -> None:
    """float64 needs JAX's 64-bit mode; without it JAX would silently compute in float32."""
    if jax.dtypes.canonicalize_dtype(dtype) != np.dtype(dtype):
        raise ValueError(
            f"dtype={np.dtype(dtype).name} needs JAX's 64-bit mode, which is off: wrap the "
            "code in `with jax.enable_x64(True):` or set JAX_ENABLE_X64=1"
        )


@dataclasses.dataclass(frozen=True)
class FullyConnectedNet:
    """``{affine - [norm] - relu - [dropout]} x (L - 1) - affine - softmax``.

    Args:
      hidden_dims: sizes of the L - 1 hidden layers (positive integers, at least one).
      input_dim: number of input features D (inputs of shape (N, d1, ..., dk) flatten to D).
      num_classes: number of classes C.
      dropout: DROP probability in [0, 1) after each hidden relu; 0 disables dropout.
      use_batchnorm: cs231n's flag, the same as ``normalization='batchnorm'``.
      reg: L2 strength: the loss adds ``0.5 * reg * sum(W**2)`` over every weight matrix
        (the last one too), never biases, gammas or betas.
      weight_scale: standard deviation of the N(0, scale^2) weights, or an initialization
        scheme: ``'he'`` (std sqrt(2 / fan_in)) or ``'xavier'`` (std sqrt(1 / fan_in)).
      dtype: float32 by default; float64 needs JAX's 64-bit mode (a clear error otherwise).
      normalization: None, ``'batchnorm'`` or ``'layernorm'``.
      loss_type: ``'softmax'`` (cross-entropy) or ``'svm'`` (multiclass hinge).
      bn_momentum, eps: batch-norm running-average momentum and normalization epsilon.
      compute_dtype: mixed precision: ``'bfloat16'`` or ``'float16'`` runs the layers (and
        their backward passes) in that dtype while the parameters, their gradients, the
        batch-norm running statistics and the loss stay in ``dtype`` (float32 masters).
        None (default) computes in ``dtype``.
      loss_scale: the loss (and dscores) is multiplied by this before the backward pass and
        the gradients divided by it after, so small float16 gradients do not flush to zero.
        None means 2**10 for float16 and 1 otherwise.
    """

    hidden_dims: tuple[int, ...]
    input_dim: int = 3 * 32 * 32
    num_classes: int = 10
    dropout: float = 0.0
    use_batchnorm: bool = False
    reg: float = 0.0
    weight_scale: float | str = 1e-2
    dtype: Any = np.float32
    normalization: str | None = None
    loss_type: str = "softmax"
    bn_momentum: float = 0.9
    eps: float = 1e-5
    compute_dtype: Any = None
    loss_scale: float | None = None

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)
        hidden = self.hidden_dims
        if isinstance(hidden, int | np.integer):
            hidden = (hidden,)
        hidden = tuple(hidden)
        if not hidden or not all(
            isinstance(h, int | np.integer) and not isinstance(h, bool) and h > 0 for h in hidden
        ):
            raise ValueError(
                f"hidden_dims must be a non-empty sequence of positive integers, got "
                f"{self.hidden_dims!r}"
            )
        set_("hidden_dims", tuple(int(h) for h in hidden))
        for name in ("input_dim", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            set_(name, int(value))
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(
                f"dropout is the drop probability and must lie in [0, 1), got {self.dropout}"
            )
        set_("dropout", float(self.dropout))
        normalization = self.normalization
        if self.use_batchnorm:
            if normalization not in (None, "batchnorm"):
                raise ValueError(
                    f"use_batchnorm=True contradicts normalization={normalization!r}"
                )
            normalization = "batchnorm"
        if normalization not in layers.NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {layers.NORMALIZATIONS}, got {normalization!r}"
            )
        set_("normalization", normalization)
        set_("use_batchnorm", normalization == "batchnorm")
        if isinstance(self.weight_scale, str):
            if self.weight_scale not in INIT_SCHEMES:
                raise ValueError(
                    f"weight_scale must be a positive number or one of {INIT_SCHEMES}, "
                    f"got {self.weight_scale!r}"
                )
        elif not float(self.weight_scale) > 0:
            raise ValueError(f"weight_scale must be positive, got {self.weight_scale}")
        if float(self.reg) < 0:
            raise ValueError(f"reg must be non-negative, got {self.reg}")
        set_("reg", float(self.reg))
        if not 0.0 <= float(self.bn_momentum) <= 1.0:
            raise ValueError(f"bn_momentum must lie in [0, 1], got {self.bn_momentum}")
        set_("bn_momentum", float(self.bn_momentum))
        if not float(self.eps) > 0:
            raise ValueError(f"eps must be positive, got {self.eps}")
        set_("eps", float(self.eps))
        set_("dtype", _canonical_dtype(self.dtype))
        if self.compute_dtype is not None:
            compute = _canonical_dtype(self.compute_dtype)
            if compute.name not in COMPUTE_DTYPES:
                raise ValueError(
                    f"compute_dtype={compute.name} is not supported; use one of {COMPUTE_DTYPES}"
                )
            if compute.itemsize > self.dtype.itemsize:
                raise ValueError(
                    f"compute_dtype={compute.name} is wider than the parameters' dtype="
                    f"{self.dtype.name}; mixed precision computes in a narrower type"
                )
            set_("compute_dtype", compute)
        if self.loss_scale is not None:
            if not float(self.loss_scale) > 0:
                raise ValueError(f"loss_scale must be positive, got {self.loss_scale}")
            set_("loss_scale", float(self.loss_scale))
        if self.loss_type not in LOSSES:
            raise ValueError(f"loss_type must be one of {LOSSES}, got {self.loss_type!r}")

    # ------------------------------------------------------------------ structure

    @property
    def num_layers(self) -> int:
        return len(self.hidden_dims) + 1

    @property
    def layer_dims(self) -> tuple[int, ...]:
        return (self.input_dim, *self.hidden_dims, self.num_classes)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {}
        dims = self.layer_dims
        for i in range(1, self.num_layers + 1):
            shapes[f"W{i}"] = (dims[i - 1], dims[i])
            shapes[f"b{i}"] = (dims[i],)
            if self.normalization and i < self.num_layers:
                shapes[f"gamma{i}"] = (dims[i],)
                shapes[f"beta{i}"] = (dims[i],)
        return shapes

    def _weight_std(self, fan_in: int) -> float:
        if self.weight_scale == "he":
            return math.sqrt(2.0 / fan_in)
        if self.weight_scale == "xavier":
            return math.sqrt(1.0 / fan_in)
        return float(self.weight_scale)

    def init(self, key: Array) -> tuple[Params, State]:
        """Weights from N(0, std^2), biases 0, gamma 1, beta 0; running statistics 0.

        All weights come from one draw of ``sum(fan_in * fan_out)`` standard normals, cut
        layer by layer: one random-number program to compile instead of one per layer.
        """
        require_dtype_available(self.dtype)
        params: Params = {}
        shapes = self.param_shapes()
        weights = [(name, shape) for name, shape in shapes.items() if name.startswith("W")]
        normals = jax.random.normal(key, (sum(a * b for _, (a, b) in weights),), self.dtype)
        offset = 0
        for name, shape in shapes.items():
            if name.startswith("W"):
                size = shape[0] * shape[1]
                std = self._weight_std(shape[0])
                params[name] = std * normals[offset:offset + size].reshape(shape)
                offset += size
            elif name.startswith("gamma"):
                params[name] = jnp.ones(shape, self.dtype)
            else:
                params[name] = jnp.zeros(shape, self.dtype)
        state: State = {}
        if self.normalization == "batchnorm":
            for i, dim in enumerate(self.hidden_dims, start=1):
                state[f"bn{i}"] = layers.BatchNormState.zeros(dim, self.dtype)
        return params, state

    # ------------------------------------------------------------------ checks

    def _prepare_inputs(self, X, y=None):
        require_dtype_available(self.dtype)
        if jnp.ndim(X) < 1:
            raise ValueError(f"X must have a leading batch axis, got shape {jnp.shape(X)}")
        features = int(np.prod(jnp.shape(X)[1:], dtype=np.int64))
        if features != self.input_dim:
            raise ValueError(
                f"X of shape {tuple(jnp.shape(X))} has {features} features per sample, but "
                f"the model expects input_dim={self.input_dim}"
            )
        X = jnp.asarray(X, self.dtype)
        if y is not None:
            check_ndim("y", y, 1)
            check_labels(y, X.shape[0], self.num_classes)
        return X

    def _check_params(self, params: Params) -> None:
        expected = self.param_shapes()
        if set(params) != set(expected):
            missing = sorted(set(expected) - set(params))
            extra = sorted(set(params) - set(expected))
            raise ValueError(
                f"params do not match the model: missing {missing}, unexpected {extra}"
            )
        for name, shape in expected.items():
            if tuple(jnp.shape(params[name])) != shape:
                raise ValueError(
                    f"params[{name!r}] has shape {tuple(jnp.shape(params[name]))}, "
                    f"expected {shape}"
                )

    # ------------------------------------------------------------------ forward

    def _uses_dropout(self, dropout) -> bool:
        # An explicit concrete 0 turns dropout off (no key needed); a traced value may not be 0.
        if dropout is None:
            return self.dropout > 0
        return not _is_static_zero(dropout)

    def _forward(self, params, state, X, *, train, key, dropout):
        """Scores, new state and the per-layer caches."""
        p = self.dropout if dropout is None else dropout
        use_dropout = self._uses_dropout(dropout)
        if train and use_dropout and key is None:
            raise ValueError(
                "training with dropout needs a PRNG key: pass key=jax.random.key(...)"
            )
        new_state = dict(state)
        caches = []
        h = X.astype(self.computation_dtype)
        params = self._to_compute(params)
        for i in range(1, self.num_layers):
            norm = self.normalization
            bn_state = state.get(f"bn{i}")
            if bn_state is not None and not train:
                bn_state = self._to_compute(bn_state)
            h, bn_state, cache = layers.affine_norm_relu_dropout_forward(
                h,
                params[f"W{i}"],
                params[f"b{i}"],
                params.get(f"gamma{i}"),
                params.get(f"beta{i}"),
                bn_state,
                normalization=norm,
                train=train,
                dropout=p if use_dropout else 0.0,
                key=jax.random.fold_in(key, i) if (train and use_dropout) else None,
                momentum=self.bn_momentum,
                eps=self.eps,
            )
            if norm == "batchnorm" and train:
                # Running statistics stay in the parameters' dtype.
                new_state[f"bn{i}"] = jax.tree_util.tree_map(
                    lambda s: s.astype(self.dtype), bn_state
                )
            caches.append(cache)
        L = self.num_layers
        scores, cache = layers.affine_forward(h, params[f"W{L}"], params[f"b{L}"])
        caches.append(cache)
        return scores.astype(self.dtype), new_state, caches

    @property
    def computation_dtype(self) -> np.dtype:
        """The dtype the layers compute in: ``compute_dtype``, or ``dtype`` when None."""
        return self.dtype if self.compute_dtype is None else self.compute_dtype

    @property
    def effective_loss_scale(self) -> float:
        """``loss_scale``, or when None: 2**10 for float16 computation, else 1."""
        if self.loss_scale is not None:
            return self.loss_scale
        return 2.0**10 if self.computation_dtype == np.float16 else 1.0

    @property
    def mixed_precision(self) -> bool:
        return self.computation_dtype != self.dtype

    def _to_compute(self, tree):
        if not self.mixed_precision:
            return tree
        return jax.tree_util.tree_map(lambda a: a.astype(self.computation_dtype), tree)

    def apply(
        self,
        params: Params,
        state: State,
        X: Array,
        *,
        train: bool = False,
        key: Array | None = None,
        dropout=None,
    ) -> tuple[Array, State]:
        """Class scores (N, C) and the new state (unchanged in evaluation)."""
        self._check_params(params)
        X = self._prepare_inputs(X)
        scores, new_state, _ = self._forward(
            params, state, X, train=train, key=key, dropout=dropout
        )
        return scores, new_state

    def predict(self, params: Params, state: State, X: Array) -> Array:
        """Predicted labels in evaluation mode."""
        return jnp.argmax(self.apply(params, state, X, train=False)[0], axis=1)

    # ------------------------------------------------------------------ loss

    def _l2_penalty(self, params: Params, reg) -> Array | float:
        if _is_static_zero(reg):  # skip the sum (XLA cannot fold 0 * x away: NaN semantics)
            return 0.0
        return 0.5 * reg * sum(
            jnp.sum(params[f"W{i}"] ** 2) for i in range(1, self.num_layers + 1)
        )

    def loss_value(
        self, params, state, X, y, *, train=True, key=None, reg=None, dropout=None
    ) -> tuple[Array, State]:
        """The forward loss ``data_loss + 0.5 * reg * sum(W**2)`` and the new state; this is
        what ``gradients='autodiff'`` differentiates."""
        self._check_params(params)
        X = self._prepare_inputs(X, y)
        reg = self.reg if reg is None else reg
        scores, new_state, _ = self._forward(
            params, state, X, train=train, key=key, dropout=dropout
        )
        data_loss, _ = get_loss(self.loss_type)(scores, y)
        return data_loss + self._l2_penalty(params, reg), new_state

    def loss(
        self,
        params: Params,
        state: State,
        X: Array,
        y: Array,
        *,
        train: bool = True,
        key: Array | None = None,
        gradients: str = "manual",
        reg=None,
        dropout=None,
    ) -> tuple[Array, Params, State]:
        """``(loss, grads, new_state)``; grads have the structure of params.

        ``gradients='manual'`` runs the hand-written backward passes through the layer caches;
        ``'autodiff'`` uses ``jax.grad`` of :meth:`loss_value`. ``reg`` and ``dropout``
        override the configured values and may be traced arrays (for sweeps).
        """
        if gradients == "autodiff":
            scale = self.effective_loss_scale

            def scaled_loss(params):
                loss, new_state = self.loss_value(
                    params, state, X, y, train=train, key=key, reg=reg, dropout=dropout
                )
                return loss * scale, (loss, new_state)

            grads, (loss, new_state) = jax.grad(scaled_loss, has_aux=True)(params)
            if scale != 1.0:
                grads = jax.tree_util.tree_map(lambda g: g / scale, grads)
            return loss, grads, new_state
        if gradients != "manual":
            raise ValueError(f"gradients must be one of {GRADIENT_MODES}, got {gradients!r}")
        self._check_params(params)
        X = self._prepare_inputs(X, y)
        reg = self.reg if reg is None else reg
        scores, new_state, caches = self._forward(
            params, state, X, train=train, key=key, dropout=dropout
        )
        data_loss, dscores = get_loss(self.loss_type)(scores, y)
        loss = data_loss + self._l2_penalty(params, reg)
        if self.mixed_precision or self.effective_loss_scale != 1.0:
            return loss, self._backward_mixed(params, dscores, caches, reg), new_state

        no_reg = _is_static_zero(reg)
        weight_grad = lambda dw, i: dw if no_reg else dw + reg * params[f"W{i}"]
        grads: Params = {}
        L = self.num_layers
        dh, dw, db = layers.affine_backward(dscores, caches[-1])
        grads[f"W{L}"], grads[f"b{L}"] = weight_grad(dw, L), db
        for i in range(L - 1, 0, -1):
            dh, dw, db, dgamma, dbeta = layers.affine_norm_relu_dropout_backward(
                dh, caches[i - 1]
            )
            grads[f"W{i}"], grads[f"b{i}"] = weight_grad(dw, i), db
            if self.normalization:
                grads[f"gamma{i}"], grads[f"beta{i}"] = dgamma, dbeta
        return loss, {name: grads[name] for name in params}, new_state

    def _backward_mixed(self, params, dscores, caches, reg) -> Params:
        """The manual backward pass in ``computation_dtype`` with loss scaling; gradients come
        back unscaled in the parameters' dtype, the L2 term added in that dtype."""
        scale = self.effective_loss_scale
        dscores = (dscores * scale).astype(self.computation_dtype)
        raw = {}
        L = self.num_layers
        dh, raw[f"W{L}"], raw[f"b{L}"] = layers.affine_backward(dscores, caches[-1])
        for i in range(L - 1, 0, -1):
            dh, dw, db, dgamma, dbeta = layers.affine_norm_relu_dropout_backward(
                dh, caches[i - 1]
            )
            raw[f"W{i}"], raw[f"b{i}"] = dw, db
            if self.normalization:
                raw[f"gamma{i}"], raw[f"beta{i}"] = dgamma, dbeta
        grads = {}
        for name in params:
            g = raw[name].astype(self.dtype) / scale
            if name.startswith("W") and not _is_static_zero(reg):
                g = g + reg * params[name]
            grads[name] = g
        return grads


@dataclasses.dataclass(frozen=True)
class TwoLayerNet:
    """cs231n's ``affine - relu - affine - softmax`` with its defaults (weight_scale 1e-3).

    The same functions as :class:`FullyConnectedNet` (``init``, ``apply``, ``predict``,
    ``loss_value``, ``loss``), parameters ``W1, b1, W2, b2``.
    """

    input_dim: int = 3 * 32 * 32
    hidden_dim: int = 100
    num_classes: int = 10
    weight_scale: float | str = 1e-3
    reg: float = 0.0
    dtype: Any = np.float32
    loss_type: str = "softmax"
    compute_dtype: Any = None
    loss_scale: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "dtype", _canonical_dtype(self.dtype))
        hidden = self.hidden_dim
        if not isinstance(hidden, int | np.integer) or isinstance(hidden, bool) or hidden <= 0:
            raise ValueError(f"hidden_dim must be a positive integer, got {hidden!r}")
        self.network  # validates the rest of the configuration  # noqa: B018

    @property
    def network(self) -> FullyConnectedNet:
        return FullyConnectedNet(
            hidden_dims=(self.hidden_dim,),
            input_dim=self.input_dim,
            num_classes=self.num_classes,
            reg=self.reg,
            weight_scale=self.weight_scale,
            dtype=self.dtype,
            loss_type=self.loss_type,
            compute_dtype=self.compute_dtype,
            loss_scale=self.loss_scale,
        )

    # The model functions, defined on the class (not only through ``__getattr__``) so that
    # ``jax.jit(TwoLayerNet.loss, static_argnums=0)`` works as for FullyConnectedNet.

    def init(self, key: Array) -> tuple[Params, State]:
        return self.network.init(key)

    def apply(self, params, state, X, *, train=False, key=None, dropout=None):
        return self.network.apply(params, state, X, train=train, key=key, dropout=dropout)

    def predict(self, params, state, X) -> Array:
        return self.network.predict(params, state, X)

    def loss_value(
        self, params, state, X, y, *, train=True, key=None, reg=None, dropout=None
    ) -> tuple[Array, State]:
        return self.network.loss_value(
            params, state, X, y, train=train, key=key, reg=reg, dropout=dropout
        )

    def loss(
        self,
        params,
        state,
        X,
        y,
        *,
        train=True,
        key=None,
        gradients="manual",
        reg=None,
        dropout=None,
    ) -> tuple[Array, Params, State]:
        return self.network.loss(
            params,
            state,
            X,
            y,
            train=train,
            key=key,
            gradients=gradients,
            reg=reg,
            dropout=dropout,
        )

    init.__doc__ = FullyConnectedNet.init.__doc__
    apply.__doc__ = FullyConnectedNet.apply.__doc__
    predict.__doc__ = FullyConnectedNet.predict.__doc__
    loss_value.__doc__ = FullyConnectedNet.loss_value.__doc__
    loss.__doc__ = FullyConnectedNet.loss.__doc__

    def __getattr__(self, name):
        # Delegate the rest (param_shapes, num_layers, ...) to the equivalent network.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.network, name)


Model = FullyConnectedNet | TwoLayerNet


def compare_gradients(
    model: Model,
    params: Params,
    state: State,
    X: Array,
    y: Array,
    *,
    key: Array | None = None,
    train: bool = True,
    numeric: bool = False,
    h: float = 1e-5,
    reg=None,
    dropout=None,
) -> GradCheckReport:
    """Per-parameter relative errors of the hand-written gradients of ``model.loss``.

    Compares ``gradients='manual'`` against ``gradients='autodiff'`` (same ``key``, hence the
    same dropout masks) and, with ``numeric=True``, against centered differences of
    :meth:`~FullyConnectedNet.loss_value` with respect to every parameter entry
    (:func:`jaxfc.gradcheck.numerical_gradient` over the raveled params, step ``h``). Errors
    are cs231n's ``max |m - r| / max(1e-8, |m| + |r|)``; everything runs at
    ``jax.default_matmul_precision('highest')``.

    Returns a :class:`~jaxfc.gradcheck.GradCheckReport`: ``print(report)`` shows one row per
    parameter (in layer order: W1, b1, gamma1, beta1, W2, ...) with the error against each
    reference and the worst entry's index and values; ``report['W1'].err_vs_autodiff``,
    ``report.assert_close(tol)`` and ``report.failures(tol)`` name the parameters that fail.

    In float32 the manual-vs-autodiff errors are around 1e-6 even for correct code; check in
    float64 (a ``dtype=np.float64`` model inside ``with jax.enable_x64(True):``), where a
    correct backward pass gives about 1e-10 or less. ``numeric=True`` requires exactly that:
    it raises ``RuntimeError`` without 64-bit mode and ``ValueError`` for a float32 model
    (the loss would be computed in float32 and its differences would be mostly rounding).
    """
    if numeric:
        require_x64("compare_gradients(numeric=True)")
        if model.dtype != np.float64:
            raise ValueError(
                f"compare_gradients(numeric=True) needs a float64 model, got "
                f"dtype={model.dtype.name}: numeric differences of a float32 loss are mostly "
                "rounding error. Build the model with dtype=np.float64 (inside "
                "`with jax.enable_x64(True):`) and initialize its params there."
            )
    kwargs = dict(train=train, key=key, reg=reg, dropout=dropout)
    with jax.default_matmul_precision("highest"):
        _, manual, _ = model.loss(params, state, X, y, gradients="manual", **kwargs)
        _, autodiff, _ = model.loss(params, state, X, y, gradients="autodiff", **kwargs)
        references = {"autodiff": autodiff}
        if numeric:
            # One flat vector: one compiled batch of perturbed losses instead of one per leaf.
            flat, unravel = ravel_pytree(jax.tree.map(lambda p: p.astype(jnp.float64), params))
            references["numeric"] = unravel(
                numerical_gradient(
                    lambda v: model.loss_value(unravel(v), state, X, y, **kwargs)[0], flat, h
                )
            )
    names = list(model.param_shapes())
    return compare_trees(
        [manual[n] for n in names],
        tuple([ref[n] for n in names] for ref in references.values()),
        names,
        reference_name=tuple(references),
    )
