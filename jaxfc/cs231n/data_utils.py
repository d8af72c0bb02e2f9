"""cs231n ``data_utils.py``: CIFAR-10 loading, delegated to :mod:`jaxfc.data`.

``get_CIFAR10_data`` reads the ``cifar-10-batches-py`` folder from, in order: its
``cifar_dir`` argument, the environment variable ``JAXFC_CIFAR10_DIR``, or the assignment's
relative path ``cs231n/datasets/cifar-10-batches-py``. Nothing is downloaded. It returns the
assignment's six arrays (channel-first images), as float32 rather than the assignment's
float64. :func:`get_digits_data` gives the same dict for scikit-learn's bundled 8x8 digits, for
running a notebook without CIFAR-10.
"""

from __future__ import annotations

import os

import numpy as np

from jaxfc import data

__all__ = ["get_CIFAR10_data", "get_digits_data", "load_CIFAR10"]

CIFAR10_DIR_ENV = "JAXFC_CIFAR10_DIR"
DEFAULT_CIFAR10_DIR = "cs231n/datasets/cifar-10-batches-py"
_KEYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
_TRAIN_ROWS, _TEST_ROWS = 50000, 10000  # CIFAR-10's


def load_CIFAR10(ROOT):
    """All of CIFAR-10 in ROOT: ``Xtr (50000, 32, 32, 3), Ytr, Xte (10000, 32, 32, 3), Yte``,
    images as float64 in 0..255 (channels last, as in the assignment)."""
    d = data.load_cifar10(ROOT, _TRAIN_ROWS, 0, _TEST_ROWS, subtract_mean=False)
    hwc = lambda X: X.transpose(0, 2, 3, 1).astype(np.float64)
    return hwc(d["X_train"]), d["y_train"], hwc(d["X_test"]), d["y_test"]


def get_CIFAR10_data(num_training=49000, num_validation=1000, num_test=1000, subtract_mean=True,
                     cifar_dir=None):  # fmt: skip
    """CIFAR-10 split as in the assignment: the first ``num_training`` training rows, the next
    ``num_validation`` for validation, the first ``num_test`` test rows; the training mean
    image subtracted from all three when ``subtract_mean``. Returns a dict of
    ``X_train, y_train, X_val, y_val, X_test, y_test`` with images of shape (N, 3, 32, 32)."""
    if cifar_dir is None:
        cifar_dir = os.environ.get(CIFAR10_DIR_ENV, DEFAULT_CIFAR10_DIR)
    d = data.load_cifar10(cifar_dir, num_training, num_validation, num_test, subtract_mean)
    return {k: d[k] for k in _KEYS}


def get_digits_data(num_validation=200, num_test=300, subtract_mean=True, seed=0):
    """scikit-learn's digits (1797 8x8 images, 10 classes, bundled), as the same six-key dict
    with images of shape (N, 1, 8, 8) scaled to [0, 1]; see :func:`jaxfc.data.load_digits`."""
    d = data.load_digits(num_validation, num_test, seed=seed, subtract_mean=subtract_mean)
    return {k: d[k] for k in _KEYS}
