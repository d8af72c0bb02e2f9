"""Datasets as NumPy arrays: scikit-learn digits (bundled), CIFAR-10 and MNIST (local files).

Every loader returns a dict with ``X_train, y_train, X_val, y_val, X_test, y_test`` where ``X`` is
float32 channel-first ``(N, C, H, W)`` and ``y`` is int32, plus ``class_names`` (list of str) and,
when the mean image was subtracted, ``mean_image`` (float32 ``(C, H, W)``, from the training split
only). Arrays stay on the host; the Solver moves them to the device.

CIFAR-10 follows cs231n's ``get_CIFAR10_data`` (first ``num_training`` rows of the 50000 for
training, the next ``num_validation`` for validation, the first ``num_test`` of ``test_batch``) but
keeps cs231n's channel-first layout instead of transposing to ``(N, H, W, C)``, and leaves pixel
values in 0..255 (only the mean is removed), as cs231n does. Nothing is downloaded.
"""

from __future__ import annotations

import gzip
import importlib
import os
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_URL",
    "DATASETS",
    "MNIST_URL",
    "DatasetError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "subtract_mean_image",
    "train_val_test_split",
]

DATASETS = ("digits", "cifar10", "mnist")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

MNIST_URL = "http://yann.lecun.com/exdb/mnist/"
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_MNIST_HELP = (
    f"get the four IDX files (gzipped or not) from Yann LeCun's MNIST page {MNIST_URL} or a "
    "mirror such as https://ossci-datasets.s3.amazonaws.com/mnist/"
)
_CIFAR_HELP = f"download and extract {CIFAR10_URL}"

_SPLITS = ("train", "val", "test")


class DatasetError(Exception):
    """Base class for dataset errors."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset folder or file is missing."""


class DatasetFormatError(DatasetError, ValueError):
    """A dataset file is corrupt, truncated or not in the expected format."""


# ----------------------------------------------------------------------------- helpers


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def train_val_test_split(
    X: np.ndarray,
    y: np.ndarray,
    num_validation: int,
    num_test: int,
    seed: int = 0,
    *,
    stratify: bool = True,
) -> dict[str, np.ndarray]:
    """Shuffle ``(X, y)`` with ``seed`` and split off ``num_test`` then ``num_validation`` rows.

    Returns ``{'X_train', 'y_train', 'X_val', 'y_val', 'X_test', 'y_test'}``; the training split
    is everything left (at least one row). With ``stratify`` the class proportions of ``y`` are
    kept in every split (scikit-learn's ``StratifiedShuffleSplit`` allocation); this needs every
    class to have at least two rows and each non-empty held-out split to be at least as large as
    the number of classes. The same ``seed`` always gives the same split.
    """
    X, y = np.asarray(X), np.asarray(y)
    num_validation = _check_count("num_validation", num_validation)
    num_test = _check_count("num_test", num_test)
    if X.shape[:1] != y.shape or y.ndim != 1:
        raise ValueError(f"X and y must have the same number of rows; got {X.shape} and {y.shape}")
    n = len(y)
    if num_validation + num_test >= n:
        raise ValueError(
            f"num_validation={num_validation} + num_test={num_test} leaves no training rows "
            f"out of {n}"
        )
    from sklearn.model_selection import train_test_split

    rng = np.random.RandomState(seed)
    rest = np.arange(n)

    def split_off(idx: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        if size == 0:
            return rng.permutation(idx), idx[:0]
        try:
            return train_test_split(
                idx, test_size=size, random_state=rng, stratify=y[idx] if stratify else None
            )
        except ValueError as e:
            raise ValueError(f"cannot split {size} of {len(idx)} rows stratified: {e}") from e

    rest, test = split_off(rest, num_test)
    train, val = split_off(rest, num_validation)
    out = {}
    for split, idx in zip(_SPLITS, (train, val, test), strict=True):
        out[f"X_{split}"], out[f"y_{split}"] = X[idx], y[idx]
    return out


def _subtract_mean_inplace(data: dict[str, Any]) -> dict[str, Any]:
    if "mean_image" in data:
        raise ValueError("the mean image has already been subtracted ('mean_image' is present)")
    X_train = data["X_train"]
    if len(X_train) == 0:
        raise ValueError("cannot compute a mean image from an empty training split")
    mean = X_train.mean(axis=0, dtype=np.float64).astype(X_train.dtype)
    for split in _SPLITS:
        data[f"X_{split}"] -= mean
    data["mean_image"] = mean
    return data


def subtract_mean_image(data: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with the training mean image removed from every ``X_*`` split.

    The mean (accumulated in float64, stored in the data's float dtype; integer images become
    float32) is computed over the training split only and stored as ``data['mean_image']``
    (shape ``X_train.shape[1:]``). ``data`` is not modified. Raises ``ValueError`` if ``data``
    already has a ``mean_image``.
    """
    out = dict(data)
    dtype = np.result_type(np.asarray(data["X_train"]).dtype, np.float32)
    for split in _SPLITS:
        out[f"X_{split}"] = np.array(data[f"X_{split}"], dtype=dtype)
    return _subtract_mean_inplace(out)


def _finish(data: dict[str, Any], class_names: list[str], subtract_mean: bool) -> dict[str, Any]:
    for split in _SPLITS:
        data[f"X_{split}"] = np.ascontiguousarray(data[f"X_{split}"], dtype=np.float32)
        data[f"y_{split}"] = np.ascontiguousarray(data[f"y_{split}"], dtype=np.int32)
    data["class_names"] = list(class_names)
    return _subtract_mean_inplace(data) if subtract_mean else data


def _split_in_file_order(folder, X_all, y_all, X_test, y_test, num_training, num_validation,
                         num_test) -> dict:
    """The assignment's split: train, then validation, from the training files in order;
    the first ``num_test`` test samples."""
    _check_split_sizes(folder, num_training, num_validation, len(y_all), num_test, len(y_test))
    val_end = num_training + num_validation
    return {
        "X_train": X_all[:num_training],
        "y_train": y_all[:num_training],
        "X_val": X_all[num_training:val_end],
        "y_val": y_all[num_training:val_end],
        "X_test": X_test[:num_test],
        "y_test": y_test[:num_test],
    }


def _check_split_sizes(
    folder: Path, num_training: int, num_validation: int, n_train: int, num_test: int, n_test: int
) -> None:
    if num_training + num_validation > n_train or num_test > n_test:
        raise ValueError(
            f"requested num_training={num_training} + num_validation={num_validation} of the "
            f"{n_train} training rows and num_test={num_test} of the {n_test} test rows in "
            f"{folder}"
        )


# ----------------------------------------------------------------------------- digits


def load_digits(
    num_validation: int = 200,
    num_test: int = 300,
    seed: int = 0,
    subtract_mean: bool = True,
    scale: bool = True,
) -> dict[str, Any]:
    """scikit-learn's bundled handwritten digits (1797 images, 8x8, 10 classes), no download.

    ``X`` has shape ``(N, 1, 8, 8)``; pixel values 0..16 are divided by 16 when ``scale``. The
    split is a stratified shuffle from ``seed`` (see :func:`train_val_test_split`); the training
    split gets the rest (1297 rows with the defaults).
    """
    from sklearn.datasets import load_digits as sk_load_digits

    digits = sk_load_digits()
    X = digits.images.astype(np.float32)[:, None, :, :]
    if scale:
        X /= 16.0
    data = train_val_test_split(X, digits.target, num_validation, num_test, seed)
    return _finish(data, [str(c) for c in digits.target_names], subtract_mean)


# ----------------------------------------------------------------------------- CIFAR-10


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild NumPy arrays and nothing else (no arbitrary code)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):  # bytes pickled by Python 3, protocol < 3
            import codecs

            return codecs.encode
        if (module, name) in self._ALLOWED:
            submodule, attr = self._ALLOWED[(module, name)]
            try:  # NumPy >= 2 moved numpy.core to numpy._core
                mod = importlib.import_module(f"numpy._core.{submodule}")
            except ImportError:
                mod = importlib.import_module(f"numpy.core.{submodule}")
            return getattr(mod, attr)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _unpickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return _ArrayOnlyUnpickler(f, encoding="bytes").load()


def _cifar_folder(data_dir: str | os.PathLike[str]) -> Path:
    """Resolve ``data_dir`` (the ``cifar-10-batches-py`` folder or its parent)."""
    root = Path(data_dir).expanduser()
    expected = ", ".join((*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE))
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"CIFAR-10 folder not found: {root} (expected a folder {CIFAR10_FOLDER}/ holding "
            f"{expected}, or its parent; {_CIFAR_HELP})"
        )
    if (root / CIFAR10_FOLDER).is_dir() and not (root / CIFAR10_TRAIN_FILES[0]).exists():
        root = root / CIFAR10_FOLDER
    missing = [f for f in (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE) if not (root / f).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"CIFAR-10 files missing in {root}: {', '.join(missing)} (expected {expected}, as "
            f"extracted from {CIFAR10_URL} into {CIFAR10_FOLDER}/)"
        )
    return root


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (uint8 (N, 3, 32, 32), int32 (N,))."""

    def bad(reason: str) -> DatasetFormatError:
        return DatasetFormatError(
            f"CIFAR-10 batch {path} is corrupt or not a CIFAR-10 python batch: {reason} "
            f"(re-download and extract {CIFAR10_URL})"
        )

    try:
        batch = _unpickle(path)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, ImportError, UnicodeDecodeError, OverflowError) as e:  # fmt: skip
        raise bad(f"{type(e).__name__}: {e}") from e
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise bad("expected a dict with b'data' and b'labels'")
    data = np.asarray(batch[b"data"])
    try:
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise bad(f"labels are not integers ({e})") from e
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise bad(f"b'data' is {data.dtype}{list(data.shape)}, expected uint8[N, 3072]")
    if labels.shape != (len(data),):
        raise bad(f"{labels.size} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise bad(f"labels outside 0..9 (min {labels.min()}, max {labels.max()})")
    # Each row is 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane.
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int32)


def _cifar_class_names(folder: Path) -> list[str]:
    meta_path = folder / "batches.meta"
    if not meta_path.is_file():
        return list(CIFAR10_CLASSES)
    try:
        meta = _unpickle(meta_path)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"]]
    except Exception as e:  # any failure here means a corrupt file
        raise DatasetFormatError(
            f"CIFAR-10 metadata {meta_path} is corrupt: {type(e).__name__}: {e} "
            f"(delete it or re-extract {CIFAR10_URL})"
        ) from e
    if len(names) != 10:
        raise DatasetFormatError(
            f"CIFAR-10 metadata {meta_path} lists {len(names)} classes, not 10"
        )
    return names


def load_cifar10(
    data_dir: str | os.PathLike[str],
    num_training: int = 49000,
    num_validation: int = 1000,
    num_test: int = 1000,
    subtract_mean: bool = True,
) -> dict[str, Any]:
    """CIFAR-10 from the python pickles, split as cs231n's ``get_CIFAR10_data``.

    ``data_dir`` is the extracted ``cifar-10-batches-py`` folder or its parent. Training rows
    are the first ``num_training`` of ``data_batch_1..5`` (in order), validation the next
    ``num_validation``, test the first ``num_test`` of ``test_batch``. ``X`` is float32
    ``(N, 3, 32, 32)`` with values 0..255 (minus the mean image when ``subtract_mean``).
    ``class_names`` comes from ``batches.meta`` when present. Batches are unpickled with an
    unpickler that only rebuilds NumPy arrays.
    """
    num_training = _check_count("num_training", num_training)
    num_validation = _check_count("num_validation", num_validation)
    num_test = _check_count("num_test", num_test)
    folder = _cifar_folder(data_dir)
    parts = [_load_cifar_batch(folder / f) for f in CIFAR10_TRAIN_FILES]
    X_all = np.concatenate([p[0] for p in parts])
    y_all = np.concatenate([p[1] for p in parts])
    X_test, y_test = _load_cifar_batch(folder / CIFAR10_TEST_FILE)
    data = _split_in_file_order(folder, X_all, y_all, X_test, y_test, num_training,
                                num_validation, num_test)
    return _finish(data, _cifar_class_names(folder), subtract_mean)


# ----------------------------------------------------------------------------- MNIST

_IDX_MAGIC = {"images": (2051, 3), "labels": (2049, 1)}  # unsigned bytes, 3 or 1 dimensions


def _mnist_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_idx(path: Path, kind: str) -> np.ndarray:
    """Parse one IDX file (raw or gzip, detected from its first bytes) of unsigned bytes."""
    magic_expected, ndim = _IDX_MAGIC[kind]

    def bad(reason: str) -> DatasetFormatError:
        return DatasetFormatError(
            f"MNIST file {path} is corrupt or not an IDX {kind} file: {reason} ({_MNIST_HELP})"
        )

    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise bad(f"cannot decompress ({type(e).__name__}: {e})") from e
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise bad(f"{len(raw)} bytes is shorter than the {header_len}-byte header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != magic_expected:
        raise bad(f"magic number {magic} (expected {magic_expected})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64))
    found = len(raw) - header_len
    if found != expected:
        raise bad(f"header says {list(dims)} = {expected} bytes of data, file has {found}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def _load_mnist_pair(folder: Path, which: str) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(_mnist_file(folder, MNIST_FILES[f"{which}_images"]), "images")
    labels = _read_idx(_mnist_file(folder, MNIST_FILES[f"{which}_labels"]), "labels")
    if len(images) != len(labels):
        raise DatasetFormatError(
            f"MNIST {which} files in {folder} disagree: {len(images)} images but "
            f"{len(labels)} labels ({_MNIST_HELP})"
        )
    if labels.size and labels.max() > 9:
        raise DatasetFormatError(
            f"MNIST {which} labels in {folder} go up to {labels.max()}, expected 0..9"
        )
    return images[:, None, :, :], labels


def load_mnist(
    data_dir: str | os.PathLike[str],
    num_validation: int = 5000,
    num_test: int = 10000,
    subtract_mean: bool = True,
    scale: bool = True,
    *,
    num_training: int | None = None,
) -> dict[str, Any]:
    """MNIST from the four IDX files in ``data_dir`` (each raw or ``.gz``).

    Training rows are the first ``num_training`` of the 60000 (default: all but the last
    ``num_validation``), validation the next ``num_validation``, test the first ``num_test`` of
    the 10000. ``X`` is float32 ``(N, 1, 28, 28)``, divided by 255 when ``scale``.
    """
    num_validation = _check_count("num_validation", num_validation)
    num_test = _check_count("num_test", num_test)
    if num_training is not None:
        num_training = _check_count("num_training", num_training)
    folder = Path(data_dir).expanduser()
    names = ", ".join(f"{n}[.gz]" for n in MNIST_FILES.values())
    if not folder.is_dir():
        raise DatasetNotFoundError(
            f"MNIST folder not found: {folder} (expected {names}; {_MNIST_HELP})"
        )
    missing = [n for n in MNIST_FILES.values() if _mnist_file(folder, n) is None]
    if missing:
        raise DatasetNotFoundError(
            f"MNIST files missing in {folder}: {', '.join(missing)} (expected {names}; "
            f"{_MNIST_HELP})"
        )
    X_all, y_all = _load_mnist_pair(folder, "train")
    X_test, y_test = _load_mnist_pair(folder, "test")
    if num_training is None:
        num_training = max(len(y_all) - num_validation, 0)
    data = _split_in_file_order(folder, X_all, y_all, X_test, y_test, num_training,
                                num_validation, num_test)
    data = _finish(data, [str(i) for i in range(10)], subtract_mean=False)
    if scale:
        for split in _SPLITS:
            data[f"X_{split}"] /= 255.0
    return _subtract_mean_inplace(data) if subtract_mean else data


# ----------------------------------------------------------------------------- dispatch


def load_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, seed: int = 0, **kwargs: Any
) -> dict[str, Any]:
    """Load dataset ``name`` (one of :data:`DATASETS`, case-insensitive).

    ``'digits'`` is bundled with scikit-learn: ``data_dir`` is ignored and ``seed`` picks the
    split. ``'cifar10'`` and ``'mnist'`` need ``data_dir`` and have fixed (cs231n-style) splits,
    so ``seed`` does not affect them. ``kwargs`` go to the loader.
    """
    key = str(name).lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if key == "digits":
        return load_digits(seed=seed, **kwargs)
    if data_dir is None:
        where = CIFAR10_URL if key == "cifar10" else MNIST_URL
        raise ValueError(
            f"dataset {key!r} is read from local files: pass data_dir (files from {where})"
        )
    loader = load_cifar10 if key == "cifar10" else load_mnist
    return loader(data_dir, **kwargs)
