"""jaxfc: fully-connected neural networks in JAX, as pure functions with hand-written
backward passes checked against ``jax.grad``, trained by jit-compiled programs."""

from jaxfc import gradcheck, layers, losses, ops, optim, schedules
from jaxfc.compilation_cache import enable_compilation_cache
from jaxfc.data import load_cifar10, load_dataset, load_digits, load_mnist
from jaxfc.layers import BatchNormState
from jaxfc.models import FullyConnectedNet, TwoLayerNet, compare_gradients
from jaxfc.optim import Optimizer, get_optimizer
from jaxfc.solver import Solver

__version__ = "0.1.0"

__all__ = [
    "BatchNormState",
    "FullyConnectedNet",
    "Optimizer",
    "Solver",
    "TwoLayerNet",
    "compare_gradients",
    "enable_compilation_cache",
    "get_optimizer",
    "gradcheck",
    "layers",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "losses",
    "ops",
    "optim",
    "schedules",
]
