"""Tests for jaxfc.data: loaders read tiny files written in the exact on-disk formats."""

import gzip
import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits as sk_load_digits

from jaxfc.data import (
    CIFAR10_CLASSES,
    DATASETS,
    DatasetError,
    DatasetFormatError,
    DatasetNotFoundError,
    load_cifar10,
    load_dataset,
    load_digits,
    load_mnist,
    subtract_mean_image,
    train_val_test_split,
)

SPLITS = ("train", "val", "test")
KEYS = {f"{xy}_{s}" for xy in "Xy" for s in SPLITS}


def _check_common(data, shape, n_classes=10):
    assert KEYS <= data.keys()
    for s in SPLITS:
        X, y = data[f"X_{s}"], data[f"y_{s}"]
        assert X.dtype == np.float32 and y.dtype == np.int32
        assert X.shape[1:] == shape and y.shape == (len(X),)
        assert X.flags.c_contiguous and X.flags.writeable
        assert y.size == 0 or (0 <= y.min() and y.max() < n_classes)
    assert len(data["class_names"]) == n_classes


# ----------------------------------------------------------------------------- CIFAR-10

ROWS = 20  # rows per fake batch; 5 train batches -> 100 training rows


def _cifar_pixel(row, c, h, w):
    """Value of pixel (c, h, w) of global image ``row`` in the fake data."""
    return (row * 11 + c * 101 + h * 7 + w * 3) % 256


def _cifar_batch(first_row, rows=ROWS):
    r = np.arange(first_row, first_row + rows)[:, None, None, None]
    c, h, w = np.ogrid[:3, :32, :32]
    images = _cifar_pixel(r, c[None], h[None], w[None]).astype(np.uint8)
    # CIFAR rows: 1024 red values (row-major 32x32), then green, then blue.
    flat = np.stack([images[:, k].reshape(rows, 1024) for k in range(3)], axis=1)
    return {
        b"batch_label": b"fake batch",
        b"data": flat.reshape(rows, 3072),
        b"labels": [int(i) % 10 for i in range(first_row, first_row + rows)],
        b"filenames": [b"img%d.png" % i for i in range(rows)],
    }


def _dump(path, obj, protocol=2, legacy_numpy_names=False):
    blob = pickle.dumps(obj, protocol=protocol)
    if legacy_numpy_names:  # as written by NumPy 1.x / the original Python 2 files
        assert b"numpy._core.multiarray" in blob
        blob = blob.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.write_bytes(blob)


def _write_cifar(root, protocol=2, meta=True, legacy_numpy_names=False):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(5):
        _dump(folder / f"data_batch_{i + 1}", _cifar_batch(i * ROWS), protocol, legacy_numpy_names)
    _dump(folder / "test_batch", _cifar_batch(1000), protocol, legacy_numpy_names)
    if meta:
        names = [b"c%d" % i for i in range(10)]
        _dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072}, protocol)
    return folder


SIZES = {"num_training": 70, "num_validation": 20, "num_test": 15}


@pytest.fixture
def cifar(tmp_path):
    return _write_cifar(tmp_path)


@pytest.mark.parametrize(
    ("protocol", "legacy"), [(2, False), (2, True), (4, False), (5, False), (0, True)]
)
@pytest.mark.parametrize("use_parent", [True, False])
def test_cifar_layout_and_values(tmp_path, protocol, legacy, use_parent):
    folder = _write_cifar(tmp_path, protocol=protocol, legacy_numpy_names=legacy)
    data = load_cifar10(tmp_path if use_parent else folder, subtract_mean=False, **SIZES)
    _check_common(data, (3, 32, 32))
    assert [len(data[f"y_{s}"]) for s in SPLITS] == [70, 20, 15]
    assert "mean_image" not in data
    assert data["class_names"] == [f"c{i}" for i in range(10)]
    # Train = rows 0..69 of the concatenated batches, val = 70..89, test = test rows 0..14.
    for split, first in [("train", 0), ("val", 70), ("test", 1000)]:
        n = len(data[f"y_{split}"])
        rows = np.arange(first, first + n)
        np.testing.assert_array_equal(data[f"y_{split}"], rows % 10)
        r, c, h, w = np.ix_(rows, range(3), range(32), range(32))
        np.testing.assert_array_equal(data[f"X_{split}"], _cifar_pixel(r, c, h, w))
    # Spot check: pixel (c=2, h=5, w=31) of validation image 3 is global row 73.
    assert data["X_val"][3, 2, 5, 31] == _cifar_pixel(73, 2, 5, 31)


def test_cifar_mean_subtraction(cifar):
    raw = load_cifar10(cifar, subtract_mean=False, **SIZES)
    data = load_cifar10(cifar, **SIZES)
    mean = data["mean_image"]
    assert mean.shape == (3, 32, 32) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, raw["X_train"].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(data["X_train"].mean(axis=0), 0.0, atol=1e-4)
    for s in SPLITS:
        np.testing.assert_allclose(data[f"X_{s}"], raw[f"X_{s}"] - mean, rtol=0, atol=1e-5)


def test_cifar_defaults_need_full_data_and_name_numbers(cifar):
    with pytest.raises(ValueError, match="num_training=49000.*100 training rows.*num_test=1000"):
        load_cifar10(cifar)


@pytest.mark.parametrize(
    "sizes",
    [
        {"num_training": 90, "num_validation": 11, "num_test": 1},
        {"num_training": 101, "num_validation": 0, "num_test": 1},
        {"num_training": 10, "num_validation": 10, "num_test": 21},
    ],
)
def test_cifar_split_sizes_too_large(cifar, sizes):
    with pytest.raises(ValueError, match=f"num_training={sizes['num_training']}"):
        load_cifar10(cifar, **sizes)


def test_cifar_whole_data_and_bad_counts(cifar):
    data = load_cifar10(cifar, num_training=90, num_validation=10, num_test=20)
    assert [len(data[f"y_{s}"]) for s in SPLITS] == [90, 10, 20]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="num_validation must be a non-negative int"):
            load_cifar10(cifar, num_validation=bad)


def test_cifar_without_meta_uses_standard_names(tmp_path):
    _write_cifar(tmp_path, meta=False)
    data = load_cifar10(tmp_path, **SIZES)
    assert data["class_names"] == list(CIFAR10_CLASSES)


def test_cifar_missing_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10(tmp_path / "nowhere", **SIZES)
    msg = str(info.value)
    assert str(tmp_path / "nowhere") in msg
    assert "cifar-10-python.tar.gz" in msg and "data_batch_1" in msg and "test_batch" in msg
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, DatasetError)


def test_cifar_folder_without_batches(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="missing in .*data_batch_1, .*test_batch"):
        load_cifar10(tmp_path, **SIZES)


@pytest.mark.parametrize("name", ["data_batch_3", "test_batch"])
def test_cifar_missing_file(cifar, name):
    (cifar / name).unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10(cifar.parent, **SIZES)
    msg = str(info.value)
    assert f"missing in {cifar}: {name} (" in msg and "cifar-10-python.tar.gz" in msg


@pytest.mark.parametrize("keep", [0, 1, 50, 0.5, 0.99])
def test_cifar_truncated_batch(cifar, keep):
    path = cifar / "data_batch_2"
    blob = path.read_bytes()
    path.write_bytes(blob[: keep if isinstance(keep, int) else int(len(blob) * keep)])
    with pytest.raises(DatasetFormatError) as info:
        load_cifar10(cifar, **SIZES)
    assert str(path) in str(info.value) and "cifar-10-python.tar.gz" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("batch", "pattern"),
    [
        ([1, 2, 3], "expected a dict"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "expected a dict"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"uint8\[2, 100\]"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, r"float32\[2, 3072\]"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 images"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "outside 0..9"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [b"x"]}, "not integers"),
    ],
)
def test_cifar_bad_batch_contents(cifar, batch, pattern):
    _dump(cifar / "test_batch", batch)
    with pytest.raises(DatasetFormatError, match=pattern) as info:
        load_cifar10(cifar, **SIZES)
    assert str(cifar / "test_batch") in str(info.value)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_cifar_refuses_arbitrary_pickled_code(cifar):
    _dump(cifar / "data_batch_1", {b"data": _Evil(), b"labels": []})
    with pytest.raises(DatasetFormatError, match="refusing to load global (posix|os|nt).system"):
        load_cifar10(cifar, **SIZES)


def test_cifar_corrupt_meta(cifar):
    (cifar / "batches.meta").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DatasetFormatError, match="batches.meta is corrupt"):
        load_cifar10(cifar, **SIZES)


# ----------------------------------------------------------------------------- MNIST

N_TRAIN, N_TEST = 12, 5


def _mnist_pixel(i, h, w):
    return (i * 13 + h * 5 + w) % 256


def _idx_bytes(arr, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _mnist_arrays(n, offset):
    i = np.arange(offset, offset + n)[:, None, None]
    h, w = np.ogrid[:28, :28]
    return _mnist_pixel(i, h[None], w[None]).astype(np.uint8), (np.arange(n) + offset) % 10


def _write_mnist(folder, gz=(False, False, False, False)):
    folder.mkdir(parents=True, exist_ok=True)
    X_tr, y_tr = _mnist_arrays(N_TRAIN, 0)
    X_te, y_te = _mnist_arrays(N_TEST, 500)
    files = [
        ("train-images-idx3-ubyte", X_tr, 2051),
        ("train-labels-idx1-ubyte", y_tr, 2049),
        ("t10k-images-idx3-ubyte", X_te, 2051),
        ("t10k-labels-idx1-ubyte", y_te, 2049),
    ]
    paths = []
    for (name, arr, magic), zipped in zip(files, gz, strict=True):
        blob = _idx_bytes(arr, magic)
        path = folder / (name + ".gz" if zipped else name)
        path.write_bytes(gzip.compress(blob) if zipped else blob)
        paths.append(path)
    return paths


MNIST_SIZES = {"num_validation": 4, "num_test": 5}


@pytest.mark.parametrize(
    "gz", [(False,) * 4, (True,) * 4, (True, False, False, True)], ids=["raw", "gz", "mixed"]
)
def test_mnist_layout_and_values(tmp_path, gz):
    _write_mnist(tmp_path, gz)
    data = load_mnist(tmp_path, subtract_mean=False, **MNIST_SIZES)
    _check_common(data, (1, 28, 28))
    assert [len(data[f"y_{s}"]) for s in SPLITS] == [8, 4, 5]
    for split, first in [("train", 0), ("val", 8), ("test", 500)]:
        n = len(data[f"y_{split}"])
        rows = np.arange(first, first + n)
        np.testing.assert_array_equal(data[f"y_{split}"], rows % 10)
        i, c, h, w = np.ix_(rows, [0], range(28), range(28))
        np.testing.assert_array_equal(
            data[f"X_{split}"], _mnist_pixel(i, h, w).astype(np.float32) / np.float32(255)
        )
    assert data["X_train"].max() <= 1.0 and data["class_names"] == [str(i) for i in range(10)]


def test_mnist_unscaled_num_training_and_mean(tmp_path):
    _write_mnist(tmp_path)
    raw = load_mnist(tmp_path, 2, 3, subtract_mean=False, scale=False, num_training=6)
    assert [len(raw[f"y_{s}"]) for s in SPLITS] == [6, 2, 3]
    assert raw["X_train"].max() > 1.0
    np.testing.assert_array_equal(raw["X_val"][1, 0, 2, 3], _mnist_pixel(7, 2, 3))
    data = load_mnist(tmp_path, **MNIST_SIZES)
    assert data["mean_image"].shape == (1, 28, 28)
    np.testing.assert_allclose(data["X_train"].mean(axis=0), 0.0, atol=1e-6)


def test_mnist_defaults_need_full_data(tmp_path):
    _write_mnist(tmp_path)
    with pytest.raises(ValueError, match="num_validation=5000 of the 12 training rows"):
        load_mnist(tmp_path)
    with pytest.raises(ValueError, match="num_test=6 of the 5 test rows"):
        load_mnist(tmp_path, num_validation=1, num_test=6)


def test_mnist_missing_folder_and_file(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path / "none", **MNIST_SIZES)
    assert str(tmp_path / "none") in str(info.value) and "yann.lecun.com" in str(info.value)
    paths = _write_mnist(tmp_path)
    paths[3].unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, **MNIST_SIZES)
    msg = str(info.value)
    assert f"missing in {tmp_path}: t10k-labels-idx1-ubyte (" in msg
    assert "train-images-idx3-ubyte[.gz]" in msg and "yann.lecun.com" in msg


def _corrupt_wrong_magic(path):
    blob = path.read_bytes()
    path.write_bytes((2049).to_bytes(4, "big") + blob[4:])


def _corrupt_truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


def _corrupt_extra(path):
    path.write_bytes(path.read_bytes() + b"\x00")


def _corrupt_tiny(path):
    path.write_bytes(b"\x00\x00\x08")


@pytest.mark.parametrize(
    ("corrupt", "pattern"),
    [
        (_corrupt_wrong_magic, "magic number 2049 \\(expected 2051\\)"),
        (_corrupt_truncate, r"header says \[12, 28, 28\] = 9408 bytes of data, file has 9401"),
        (_corrupt_extra, "file has 9409"),
        (_corrupt_tiny, "shorter than the 16-byte header"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_corrupt_images(tmp_path, corrupt, pattern, gz):
    path = _write_mnist(tmp_path, (False,) * 4)[0]
    corrupt(path)
    if gz:
        gz_path = path.with_name(path.name + ".gz")
        gz_path.write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
        path = gz_path
    with pytest.raises(DatasetFormatError, match=pattern) as info:
        load_mnist(tmp_path, **MNIST_SIZES)
    assert str(path) in str(info.value) and "yann.lecun.com" in str(info.value)


@pytest.mark.parametrize("damage", ["cut-5", "cut-half", "cut-3-from-end", "flip-middle"])
def test_mnist_damaged_gzip(tmp_path, damage):
    path = _write_mnist(tmp_path, (True, False, False, False))[0]
    blob = bytearray(path.read_bytes())
    if damage == "flip-middle":
        blob[len(blob) // 2] ^= 0xFF
    else:
        blob = blob[: {"cut-5": 5, "cut-half": len(blob) // 2, "cut-3-from-end": -3}[damage]]
    path.write_bytes(bytes(blob))
    with pytest.raises(DatasetFormatError, match="cannot decompress") as info:
        load_mnist(tmp_path, **MNIST_SIZES)
    assert str(path) in str(info.value)


def test_mnist_wrong_label_magic_and_mismatch(tmp_path):
    paths = _write_mnist(tmp_path)
    X_te, _ = _mnist_arrays(N_TEST, 0)
    paths[3].write_bytes(_idx_bytes(X_te, 2051))  # an images file where labels belong
    with pytest.raises(DatasetFormatError, match="magic number 2051 \\(expected 2049\\)"):
        load_mnist(tmp_path, **MNIST_SIZES)
    paths[3].write_bytes(_idx_bytes(np.arange(4), 2049))
    with pytest.raises(DatasetFormatError, match="5 images but 4 labels"):
        load_mnist(tmp_path, **MNIST_SIZES)
    paths[3].write_bytes(_idx_bytes(np.array([0, 1, 2, 3, 12]), 2049))
    with pytest.raises(DatasetFormatError, match="go up to 12"):
        load_mnist(tmp_path, **MNIST_SIZES)


# ----------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_digits_shapes_and_classes(digits):
    _check_common(digits, (1, 8, 8))
    assert [len(digits[f"y_{s}"]) for s in SPLITS] == [1297, 200, 300]
    for s in SPLITS:
        assert set(np.unique(digits[f"y_{s}"])) == set(range(10))
    assert digits["mean_image"].shape == (1, 8, 8)
    np.testing.assert_allclose(digits["X_train"].mean(axis=0), 0.0, atol=1e-6)


def test_digits_split_is_stratified(digits):
    props = np.bincount(sk_load_digits().target) / 1797
    for s, n in [("val", 200), ("test", 300)]:
        counts = np.bincount(digits[f"y_{s}"], minlength=10)
        assert np.all(np.abs(counts - props * n) <= 1.0)


def test_digits_determinism(digits):
    again = load_digits()
    other = load_digits(seed=1)
    for k in KEYS:
        np.testing.assert_array_equal(digits[k], again[k])
    assert not np.array_equal(digits["y_val"], other["y_val"])


def _sorted_rows(X, y):
    """Each (image, label) as bytes, sorted: equal lists mean the same multiset of examples."""
    X = X.reshape(len(X), -1).astype(np.uint8)
    return sorted(a.tobytes() + bytes([int(b)]) for a, b in zip(X, y, strict=True))


def test_digits_splits_partition_the_data():
    data = load_digits(seed=3, subtract_mean=False, scale=False)
    sk = sk_load_digits()
    X = np.concatenate([data[f"X_{s}"] for s in SPLITS])
    y = np.concatenate([data[f"y_{s}"] for s in SPLITS])
    assert _sorted_rows(X, y) == _sorted_rows(sk.images, sk.target)
    assert data["X_train"].max() == 16.0


def test_digits_scaled_range():
    data = load_digits(subtract_mean=False)
    for s in SPLITS:
        assert 0.0 <= data[f"X_{s}"].min() and data[f"X_{s}"].max() <= 1.0
    assert data["X_train"].max() == 1.0


@pytest.mark.parametrize(
    ("num_validation", "num_test", "pattern"),
    [
        (1000, 797, "num_validation=1000 \\+ num_test=797 leaves no training rows out of 1797"),
        (5, 300, "cannot split 5 of 1497 rows stratified"),
        (-1, 300, "num_validation must be a non-negative int"),
    ],
)
def test_digits_bad_sizes(num_validation, num_test, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_digits(num_validation, num_test)


# ----------------------------------------------------------------------------- helpers


def test_train_val_test_split_unstratified_and_empty():
    X = np.arange(40, dtype=np.float32).reshape(10, 1, 2, 2)
    y = np.arange(10)
    out = train_val_test_split(X, y, 0, 3, seed=7, stratify=False)
    assert [len(out[f"y_{s}"]) for s in SPLITS] == [7, 0, 3]
    assert out["X_val"].shape == (0, 1, 2, 2)
    assert sorted(np.concatenate([out[f"y_{s}"] for s in SPLITS])) == list(range(10))
    np.testing.assert_array_equal(out["X_train"][:, 0, 0, 0], out["y_train"] * 4)
    again = train_val_test_split(X, y, 0, 3, seed=7, stratify=False)
    np.testing.assert_array_equal(out["y_train"], again["y_train"])
    with pytest.raises(ValueError, match="same number of rows"):
        train_val_test_split(X, y[:9], 1, 1)


def test_subtract_mean_image_copies_and_refuses_twice():
    rng = np.random.default_rng(0)
    sizes = dict(zip(SPLITS, (6, 2, 2), strict=True))
    data = {f"X_{s}": rng.integers(0, 255, (n, 3, 2, 2), dtype=np.uint8) for s, n in sizes.items()}
    before = {k: v.copy() for k, v in data.items()}
    out = subtract_mean_image(data)
    for k in before:
        np.testing.assert_array_equal(data[k], before[k])
    assert "mean_image" not in data
    assert out["X_train"].dtype == np.float32 and out["mean_image"].shape == (3, 2, 2)
    np.testing.assert_allclose(out["X_train"].mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out["X_val"], before["X_val"] - before["X_train"].mean(0), atol=1e-4)
    with pytest.raises(ValueError, match="already been subtracted"):
        subtract_mean_image(out)


def test_load_dataset_dispatch(tmp_path):
    assert DATASETS == ("digits", "cifar10", "mnist")
    data = load_dataset("Digits", seed=2, num_validation=50, num_test=50)
    np.testing.assert_array_equal(data["y_val"], load_digits(50, 50, seed=2)["y_val"])
    _write_mnist(tmp_path / "mnist")
    assert len(load_dataset("mnist", tmp_path / "mnist", **MNIST_SIZES)["y_val"]) == 4
    _write_cifar(tmp_path)
    assert load_dataset("cifar10", str(tmp_path), **SIZES)["X_test"].shape == (15, 3, 32, 32)
    with pytest.raises(
        ValueError, match="unknown dataset 'svhn'; valid names: digits, cifar10, mnist"
    ):
        load_dataset("svhn")
    for name in ("cifar10", "mnist"):
        with pytest.raises(ValueError, match=f"'{name}' is read from local files: pass data_dir"):
            load_dataset(name)
