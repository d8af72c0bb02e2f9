"""PyTorch eager: ``nn.Sequential`` of Linear / BatchNorm1d / ReLU / Dropout, cross-entropy,
``torch.optim.Adam(fused=True)``; X and y stay in tensors, minibatches are indexed from them.
Uses as many intra-op threads as the machine has cores (``RunConfig.torch_threads``).

jaxfc's ``W`` (fan_in, fan_out) is ``Linear.weight.T``; BatchNorm1d's ``momentum=0.1`` is
cs231n's 0.9 (its running variance is unbiased, which never enters a training-mode loss).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import RunConfig, Trainer, epoch_permutations, num_cores


def build_model(workload, params):
    layers: list[nn.Module] = [nn.Flatten()]
    dims = workload.layer_dims
    with torch.no_grad():
        for i in range(1, workload.num_layers + 1):
            linear = nn.Linear(dims[i - 1], dims[i])
            linear.weight.copy_(torch.from_numpy(params[f"W{i}"].T))
            linear.bias.copy_(torch.from_numpy(params[f"b{i}"]))
            layers.append(linear)
            if i == workload.num_layers:
                break
            if workload.batchnorm:
                bn = nn.BatchNorm1d(dims[i], eps=1e-5, momentum=0.1)
                bn.weight.copy_(torch.from_numpy(params[f"gamma{i}"]))
                bn.bias.copy_(torch.from_numpy(params[f"beta{i}"]))
                layers.append(bn)
            layers.append(nn.ReLU())
            if workload.dropout > 0:
                layers.append(nn.Dropout(workload.dropout))
    return nn.Sequential(*layers)


class TorchTrainer(Trainer):
    def __init__(self, workload, params, X, y, config: RunConfig):
        torch.set_num_threads(config.torch_threads or num_cores())
        torch.manual_seed(config.seed + 1)
        self.device = torch.device("cuda" if config.device == "gpu" else "cpu")
        self.model = build_model(workload, params).to(self.device).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate,
                                          fused=True)
        self.X = torch.from_numpy(X).to(self.device)
        self.y = torch.from_numpy(y.astype(np.int64)).to(self.device)
        self._batches = epoch_permutations(np.random.default_rng(config.seed + 1), X.shape[0],
                                           workload.batch_size)

    def _step(self, idx):
        idx = torch.from_numpy(idx).to(self.device)
        loss = nn.functional.cross_entropy(self.model(self.X[idx]), self.y[idx])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def run_steps(self, n):
        for _ in range(self._check_steps(n)):
            self._step(next(self._batches))
        self._sync()

    def train_on(self, indices):
        return np.array([self._step(np.asarray(idx)).item() for idx in indices], np.float64)


def unsupported(config: RunConfig):
    if config.dtype != "float32":
        return "the bfloat16 runs cover the JAX peers only"
    if config.device == "gpu" and not torch.cuda.is_available():
        return "this torch build has no CUDA"
    return None


def make(workload, params, X, y, *, config: RunConfig) -> TorchTrainer:
    return TorchTrainer(workload, params, X, y, config)
