"""Plain numpy in the cs231n assignment's style: forward/backward layer functions with
caches, a model loss that returns (loss, grads), and the assignment's Adam.

One deviation from the assignment: the first layer's backward skips dx (no one needs the
input's gradient; PyTorch and JAX skip it too), so every peer does the same matmul work.
``dtype=np.float64`` gives the correctness gate's reference.
"""

from __future__ import annotations

import numpy as np

from . import RunConfig, Trainer, epoch_permutations


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w)


def affine_backward(dout, cache, need_dx=True):
    x, w = cache
    x2 = x.reshape(x.shape[0], -1)
    dx = (dout @ w.T).reshape(x.shape) if need_dx else None
    return dx, x2.T @ dout, dout.sum(axis=0)


def relu_forward(x):
    return np.maximum(x, 0), x


def relu_backward(dout, x):
    return dout * (x > 0)


def batchnorm_forward(x, gamma, beta, bn_param):
    eps, momentum = bn_param.get("eps", 1e-5), bn_param.get("momentum", 0.9)
    mean = x.mean(axis=0)
    var = x.var(axis=0)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    bn_param["running_mean"] = momentum * bn_param["running_mean"] + (1 - momentum) * mean
    bn_param["running_var"] = momentum * bn_param["running_var"] + (1 - momentum) * var
    return gamma * x_hat + beta, (x_hat, inv_std, gamma)


def batchnorm_backward_alt(dout, cache):
    x_hat, inv_std, gamma = cache
    n = dout.shape[0]
    dgamma = (dout * x_hat).sum(axis=0)
    dbeta = dout.sum(axis=0)
    dx_hat = dout * gamma
    dx = inv_std / n * (n * dx_hat - dx_hat.sum(axis=0) - x_hat * (dx_hat * x_hat).sum(axis=0))
    return dx, dgamma, dbeta


def dropout_forward(x, p, rng):
    """Inverted dropout; ``p`` is the drop probability."""
    mask = (rng.random(x.shape, dtype=np.float32) >= p) / np.float32(1 - p)
    return x * mask.astype(x.dtype), mask


def dropout_backward(dout, mask):
    return dout * mask


def softmax_loss(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = x.shape[0]
    loss = -log_probs[np.arange(n), y].mean()
    dx = np.exp(log_probs)
    dx[np.arange(n), y] -= 1
    return loss, dx / n


def adam(w, dw, config):
    config["t"] += 1
    b1, b2 = config["beta1"], config["beta2"]
    config["m"] = b1 * config["m"] + (1 - b1) * dw
    config["v"] = b2 * config["v"] + (1 - b2) * (dw * dw)
    mb = config["m"] / (1 - b1 ** config["t"])
    vb = config["v"] / (1 - b2 ** config["t"])
    return w - config["learning_rate"] * mb / (np.sqrt(vb) + config["epsilon"]), config


class FullyConnectedNet:
    def __init__(self, workload, params, dtype):
        self.L = workload.num_layers
        self.dropout = workload.dropout
        self.batchnorm = workload.batchnorm
        self.params = {k: np.array(v, dtype) for k, v in params.items()}
        self.bn_params = [
            {"running_mean": np.zeros(d, dtype), "running_var": np.zeros(d, dtype)}
            for d in workload.hidden_dims
        ]

    def loss(self, X, y, rng):
        p, caches = self.params, []
        h = X
        for i in range(1, self.L):
            h, fc = affine_forward(h, p[f"W{i}"], p[f"b{i}"])
            bc = None
            if self.batchnorm:
                h, bc = batchnorm_forward(h, p[f"gamma{i}"], p[f"beta{i}"], self.bn_params[i - 1])
            h, rc = relu_forward(h)
            dc = None
            if self.dropout > 0:
                h, dc = dropout_forward(h, self.dropout, rng)
            caches.append((fc, bc, rc, dc))
        scores, fc = affine_forward(h, p[f"W{self.L}"], p[f"b{self.L}"])
        loss, dscores = softmax_loss(scores, y)

        grads = {}
        dh, grads[f"W{self.L}"], grads[f"b{self.L}"] = affine_backward(dscores, fc)
        for i in range(self.L - 1, 0, -1):
            fc, bc, rc, dc = caches[i - 1]
            if dc is not None:
                dh = dropout_backward(dh, dc)
            dh = relu_backward(dh, rc)
            if bc is not None:
                dh, grads[f"gamma{i}"], grads[f"beta{i}"] = batchnorm_backward_alt(dh, bc)
            dh, grads[f"W{i}"], grads[f"b{i}"] = affine_backward(dh, fc, need_dx=i > 1)
        return loss, grads


class NumpyTrainer(Trainer):
    def __init__(self, workload, params, X, y, config: RunConfig, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.model = FullyConnectedNet(workload, params, self.dtype)
        self.X = X if X.dtype == self.dtype else X.astype(self.dtype)
        self.y = y
        self.rng = np.random.default_rng(config.seed + 1)
        self.batches = epoch_permutations(self.rng, X.shape[0], workload.batch_size)
        self.optim_configs = {
            k: {"learning_rate": config.learning_rate, "beta1": 0.9, "beta2": 0.999,
                "epsilon": 1e-8, "m": np.zeros_like(v), "v": np.zeros_like(v), "t": 0}
            for k, v in self.model.params.items()
        }

    def _step(self, idx):
        loss, grads = self.model.loss(self.X[idx], self.y[idx], self.rng)
        for k, w in self.model.params.items():
            self.model.params[k], self.optim_configs[k] = adam(w, grads[k], self.optim_configs[k])
        return loss

    def run_steps(self, n):
        for _ in range(self._check_steps(n)):
            self._step(next(self.batches))

    def train_on(self, indices):
        return np.array([self._step(idx) for idx in indices], np.float64)


def unsupported(config: RunConfig):
    if config.device != "cpu":
        return "numpy runs on the CPU only"
    if config.dtype != "float32":
        return "numpy has no bfloat16 compute"
    return None


def make(workload, params, X, y, *, config: RunConfig, dtype=np.float32) -> NumpyTrainer:
    return NumpyTrainer(workload, params, X, y, config, dtype)
