"""cs231n ``classifiers/fc_net.py``: ``TwoLayerNet`` and ``FullyConnectedNet`` as mutable
objects holding NumPy parameters, computed by :mod:`jaxfc.models` and :mod:`jaxfc.layers`.

As in the assignment, ``model.params`` is a dict of NumPy arrays that ``model.loss`` re-reads
at every call (so gradient checks may perturb them in place and a Solver may replace them),
``model.reg`` may change between calls, ``loss(X)`` returns test-mode scores and
``loss(X, y)`` runs in training mode and returns ``(loss, grads)``. In training mode the batch
normalization running statistics are written into ``model.bn_params`` and dropout masks are
drawn from NumPy's global generator (see :func:`jaxfc.cs231n.layers.dropout_forward`).

At each call the model becomes a core :class:`jaxfc.models.FullyConnectedNet` configuration
(from the current parameter shapes, ``normalization``, ``dropout_param``, ``bn_params`` and the
computation dtype); the scores come from its jitted ``apply`` and the training loss from a
jitted pass through the core's layer blocks and hand-written backward passes (the same ones the
core model's ``loss`` runs), with the NumPy dropout masks passed in. Compilation happens once
per configuration, batch shape and dtype; ``reg`` is a traced argument.

The computation dtype is NumPy's promotion of the parameters' dtypes with the model's ``dtype``
(``FullyConnectedNet``) or with X's (``TwoLayerNet``, whose parameters are float64 like the
assignment's); float64 runs inside ``jax.enable_x64(True)``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxfc import layers, models
from jaxfc._checks import check_labels
from jaxfc.cs231n import layer_utils
from jaxfc.cs231n._convert import compute, labels, to_numpy
from jaxfc.cs231n.layer_utils import *  # noqa: F403 - re-exported, as in the assignment
from jaxfc.cs231n.layers import draw_dropout_mask
from jaxfc.losses import get_loss

# The assignment's fc_net starts with ``from cs231n.layers import *`` and
# ``from cs231n.layer_utils import *``, and its notebooks rely on ``from
# cs231n.classifiers.fc_net import *`` bringing the layers: so does this one.
__all__ = ["FullyConnectedNet", "TwoLayerNet", *layer_utils.__all__]


# --------------------------------------------------------------------------- the core calls


def _scores(net, params, state, X):
    return net.apply(params, state, X, train=False)[0]


def _train_loss(net, params, state, X, y, reg, masks):
    """``(loss, grads, new_state)`` in training mode; ``masks`` holds one inverted-dropout mask
    per hidden layer (or is None). Mirrors :meth:`jaxfc.models.FullyConnectedNet.loss`, whose
    keyed dropout cannot take NumPy-drawn masks."""
    L = net.num_layers
    h, caches, new_state = X, [], {}
    for i in range(1, L):
        h, bn_state, cache = layers.affine_norm_relu_dropout_forward(
            h,
            params[f"W{i}"],
            params[f"b{i}"],
            params.get(f"gamma{i}"),
            params.get(f"beta{i}"),
            state.get(f"bn{i}"),
            normalization=net.normalization,
            train=True,
            momentum=net.bn_momentum,
            eps=net.eps,
        )
        if masks is not None:
            h = h * masks[i - 1]
            cache = cache._replace(dropout=masks[i - 1])
        if bn_state is not None:
            new_state[f"bn{i}"] = bn_state
        caches.append(cache)
    scores, last_cache = layers.affine_forward(h, params[f"W{L}"], params[f"b{L}"])
    data_loss, dscores = get_loss(net.loss_type)(scores, y)
    weights = [params[f"W{i}"] for i in range(1, L + 1)]
    loss = data_loss + 0.5 * reg * sum(jnp.sum(w * w) for w in weights)

    grads = {}
    dh, dw, db = layers.affine_backward(dscores, last_cache)
    grads[f"W{L}"], grads[f"b{L}"] = dw + reg * params[f"W{L}"], db
    for i in range(L - 1, 0, -1):
        dh, dw, db, dgamma, dbeta = layers.affine_norm_relu_dropout_backward(dh, caches[i - 1])
        grads[f"W{i}"], grads[f"b{i}"] = dw + reg * params[f"W{i}"], db
        if net.normalization:
            grads[f"gamma{i}"], grads[f"beta{i}"] = dgamma, dbeta
    return loss, grads, new_state


_scores_jit = jax.jit(_scores, static_argnums=0)
_train_loss_jit = jax.jit(_train_loss, static_argnums=0)


def _core_net(params, num_layers, dtype, normalization=None, dropout=0.0, reg=0.0, norm_param=None):
    """The core configuration for the current parameters (validated, hashable)."""
    missing = [f"W{i}" for i in range(1, num_layers + 1) if f"W{i}" not in params]
    if missing:
        raise ValueError(f"model.params is missing {missing}")
    dims = [np.shape(params["W1"])[0]] + [
        np.shape(params[f"W{i}"])[1] for i in range(1, num_layers + 1)
    ]
    norm_param = norm_param or {}
    net = models.FullyConnectedNet(
        hidden_dims=tuple(dims[1:-1]),
        input_dim=dims[0],
        num_classes=dims[-1],
        dropout=dropout,
        normalization=normalization,
        reg=reg,
        dtype=dtype,
        bn_momentum=float(norm_param.get("momentum", 0.9)),
        eps=float(norm_param.get("eps", 1e-5)),
    )
    expected = net.param_shapes()
    if set(params) != set(expected):
        raise ValueError(
            f"model.params has keys {sorted(params)}, expected {sorted(expected)} for "
            f"normalization={normalization!r}"
        )
    for name, shape in expected.items():
        if np.shape(params[name]) != shape:
            raise ValueError(
                f"model.params[{name!r}] has shape {np.shape(params[name])}, expected {shape}"
            )
    return net


def _run(net, params, state, X, y, reg, masks=None):
    """Scores (y None) or ``(loss, grads, new_state)``, all NumPy, in ``net.dtype``."""
    dtype = net.dtype
    with compute(dtype):
        p = {k: np.asarray(v, dtype) for k, v in params.items()}
        X = np.asarray(X, dtype)
        static = dataclasses.replace(net, reg=0.0, dropout=0.0)  # traced or passed as masks
        if y is None:
            return to_numpy(_scores_jit(static, p, state, X))
        y = labels(y)
        check_labels(y, X.shape[0], net.num_classes)
        loss, grads, new_state = _train_loss_jit(
            static, p, state, X, y, np.asarray(reg, dtype), masks
        )
        grads = {k: to_numpy(grads[k]) for k in params}
        new_state = {k: tuple(to_numpy(a) for a in s) for k, s in new_state.items()}
        return np.asarray(loss)[()], grads, new_state


def _float_dtype(*dtypes):
    dtype = np.result_type(*dtypes)
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


# --------------------------------------------------------------------------- models


class TwoLayerNet:
    """affine - relu - affine - softmax, with an optional L2 penalty
    ``0.5 * reg * (sum(W1**2) + sum(W2**2))``.

    Weights ``weight_scale * np.random.randn`` (float64, W1 then W2), biases zero; parameters
    ``W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)`` in ``self.params``.
    """

    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10, weight_scale=1e-3,
                 reg=0.0):  # fmt: skip
        self.params = {}
        self.reg = reg
        self.params["W1"] = weight_scale * np.random.randn(input_dim, hidden_dim)
        self.params["b1"] = np.zeros(hidden_dim)
        self.params["W2"] = weight_scale * np.random.randn(hidden_dim, num_classes)
        self.params["b2"] = np.zeros(num_classes)

    def loss(self, X, y=None):
        """Scores (N, C) when ``y`` is None, else ``(loss, grads)`` with grads like params."""
        X = np.asarray(X)
        dtype = _float_dtype(X.dtype, *(np.asarray(v).dtype for v in self.params.values()))
        net = _core_net(self.params, 2, dtype, reg=self.reg)
        out = _run(net, self.params, {}, X, y, self.reg)
        return out if y is None else out[:2]


class FullyConnectedNet:
    """``{affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax`` with
    an L2 penalty ``0.5 * reg * sum(W**2)`` over all weight matrices.

    Args (the seed's, plus ``normalization``):
      hidden_dims: list of hidden layer sizes.
      input_dim, num_classes: input size D and number of classes C.
      dropout: DROP probability in [0, 1); 0 disables dropout.
      use_batchnorm: batch normalization after each hidden affine layer (the 2017 flag).
      reg: L2 strength. weight_scale: standard deviation of the initial weights.
      dtype: parameters' dtype; np.float64 for gradient checks.
      seed: when given, stored as ``dropout_param['seed']`` (deterministic dropout masks).
      normalization: None, 'batchnorm' or 'layernorm' (the 2018+ argument).

    Weights ``weight_scale * np.random.randn(fan_in, fan_out)`` layer by layer, biases 0,
    gamma 1, beta 0, all cast to ``dtype``. ``self.bn_params`` holds one dict per hidden layer
    (``{'mode': 'train'}`` for batch norm, ``{}`` for layer norm) and ``self.dropout_param`` is
    ``{'mode': 'train', 'p': dropout[, 'seed': seed]}`` when dropout is used, else ``{}``.
    """

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout=0,
                 use_batchnorm=False, reg=0.0, weight_scale=1e-2, dtype=np.float32, seed=None,
                 normalization=None):  # fmt: skip
        if use_batchnorm:
            if normalization not in (None, "batchnorm"):
                raise ValueError(f"use_batchnorm=True contradicts normalization={normalization!r}")
            normalization = "batchnorm"
        # Validate the configuration the way the core does.
        models.FullyConnectedNet(
            hidden_dims=tuple(hidden_dims),
            input_dim=input_dim,
            num_classes=num_classes,
            dropout=dropout,
            normalization=normalization,
            reg=reg,
            dtype=dtype,
        )
        self.normalization = normalization
        self.use_batchnorm = normalization == "batchnorm"
        self.use_dropout = dropout > 0
        self.reg = reg
        self.num_layers = 1 + len(hidden_dims)
        self.dtype = dtype
        self.params = {}

        dims = [input_dim, *hidden_dims, num_classes]
        for i in range(self.num_layers):
            self.params[f"W{i + 1}"] = weight_scale * np.random.randn(dims[i], dims[i + 1])
            self.params[f"b{i + 1}"] = np.zeros(dims[i + 1])
            if normalization and i < self.num_layers - 1:
                self.params[f"gamma{i + 1}"] = np.ones(dims[i + 1])
                self.params[f"beta{i + 1}"] = np.zeros(dims[i + 1])

        self.dropout_param = {}
        if self.use_dropout:
            self.dropout_param = {"mode": "train", "p": dropout}
            if seed is not None:
                self.dropout_param["seed"] = seed

        self.bn_params = []
        if normalization == "batchnorm":
            self.bn_params = [{"mode": "train"} for _ in range(self.num_layers - 1)]
        elif normalization == "layernorm":
            self.bn_params = [{} for _ in range(self.num_layers - 1)]

        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)

    def _normalization(self):
        return "batchnorm" if self.use_batchnorm else self.normalization

    def loss(self, X, y=None):
        """Scores (N, C) in test mode when ``y`` is None; else, in training mode,
        ``(loss, grads)`` with grads like params (and updated ``bn_params`` statistics)."""
        X = np.asarray(X)
        mode = "test" if y is None else "train"
        norm = self._normalization()
        if self.use_dropout:
            self.dropout_param["mode"] = mode
        if norm == "batchnorm":
            for bn_param in self.bn_params:
                bn_param["mode"] = mode

        dtype = _float_dtype(self.dtype, *(np.asarray(v).dtype for v in self.params.values()))
        net = _core_net(
            self.params,
            self.num_layers,
            dtype,
            normalization=norm,
            dropout=self.dropout_param.get("p", 0.0) if self.use_dropout else 0.0,
            reg=self.reg,
            norm_param=self.bn_params[0] if norm else None,
        )
        state = {}
        if norm == "batchnorm":
            pairs = zip(self.bn_params, net.hidden_dims, strict=True)
            for i, (bn_param, dim) in enumerate(pairs, start=1):
                state[f"bn{i}"] = layers.BatchNormState(
                    np.asarray(bn_param.get("running_mean", np.zeros(dim, dtype)), dtype),
                    np.asarray(bn_param.get("running_var", np.zeros(dim, dtype)), dtype),
                )
        if y is None:
            return _run(net, self.params, state, X, None, self.reg)

        masks = None
        if self.use_dropout:
            n = X.shape[0]
            masks = tuple(
                draw_dropout_mask(self.dropout_param, (n, dim), dtype) for dim in net.hidden_dims
            )
        loss, grads, new_state = _run(net, self.params, state, X, y, self.reg, masks)
        for i, bn_param in enumerate(self.bn_params if norm == "batchnorm" else [], start=1):
            bn_param["running_mean"], bn_param["running_var"] = new_state[f"bn{i}"]
        return loss, grads
