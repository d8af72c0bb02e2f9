"""Tests for jaxfc.checkpoint: round trips, atomic writes and every error path."""

import os
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxfc import checkpoint as ckpt
from jaxfc.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    load_checkpoint,
    read_metadata,
    restore_checkpoint,
    save_checkpoint,
)


class AdamLike(NamedTuple):
    count: jax.Array
    m: dict
    v: dict


def _tree():
    """Nested dict + NamedTuple + typed key + int32 step + Python scalars (float32 mode)."""
    params = {"W1": jnp.arange(6, dtype=jnp.float32).reshape(2, 3), "b1": jnp.full((3,), -0.5)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    return {
        "params": params,
        "opt": AdamLike(
            jnp.asarray(3, jnp.int32), zeros, {"W1": params["W1"] * 2, "b1": zeros["b1"]}
        ),
        "key": jax.random.key(42),
        "keys": jax.random.split(jax.random.key(1), 4),
        "step": jnp.asarray(17, jnp.int32),
        "bf16": jnp.asarray([1.5, -2.25], jnp.bfloat16),
        "np_u8": np.arange(4, dtype=np.uint8),
        "epoch": 2,
        "lr": 1e-3,
        "done": False,
    }


def _assert_bitwise_equal(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        assert type(x) is type(y) or (isinstance(x, jax.Array) and isinstance(y, jax.Array))
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert x.dtype == y.dtype and x.shape == y.shape
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        xa, ya = np.asarray(x), np.asarray(y)
        assert xa.dtype == ya.dtype and xa.shape == ya.shape
        assert xa.tobytes() == ya.tobytes()


META = {"loss_history": [2.3, 1.9], "config": {"hidden": [100, 50], "reg": 0.0}, "epoch": 2}


def test_round_trip_is_bit_exact(tmp_path):
    tree = _tree()
    path = save_checkpoint(tmp_path / "ckpt.npz", tree, META)
    assert path == tmp_path / "ckpt.npz" and path.is_file()
    restored, meta = restore_checkpoint(path, tree)
    _assert_bitwise_equal(tree, restored)
    assert meta == META
    assert isinstance(restored["opt"], AdamLike)
    assert isinstance(restored["np_u8"], np.ndarray)
    assert type(restored["epoch"]) is int and type(restored["done"]) is bool
    # The rebuilt keys draw the same numbers as the originals.
    np.testing.assert_array_equal(
        jax.random.normal(restored["key"], (5,)), jax.random.normal(tree["key"], (5,))
    )
    np.testing.assert_array_equal(
        jax.vmap(jax.random.uniform)(restored["keys"]), jax.vmap(jax.random.uniform)(tree["keys"])
    )


def test_round_trip_float64_under_x64(tmp_path, x64):
    tree = {
        "w": jnp.asarray([np.pi, 1e-300, -0.0], jnp.float64),
        "step": jnp.asarray(5, jnp.int32),
        "i64": jnp.asarray([2**40], jnp.int64),
        "state": AdamLike(jnp.asarray(1, jnp.int32), {"a": jnp.ones(2, jnp.float64)}, {}),
        "key": jax.random.key(0),
    }
    restored, _ = restore_checkpoint(save_checkpoint(tmp_path / "c.npz", tree), tree)
    _assert_bitwise_equal(tree, restored)
    assert restored["w"].dtype == jnp.float64


def test_nan_payloads_and_signed_zero_survive(tmp_path):
    bits = np.array([0x7FC00001, 0xFFC00123, 0x80000000, 0x7F800000], np.uint32)
    tree = {"x": jnp.asarray(bits.view(np.float32))}
    restored, _ = restore_checkpoint(save_checkpoint(tmp_path / "n.npz", tree), tree)
    np.testing.assert_array_equal(np.asarray(restored["x"]).view(np.uint32), bits)


def test_big_endian_leaf_is_stored_native(tmp_path):
    x = np.arange(4, dtype=">f4")
    flat, _ = load_checkpoint(save_checkpoint(tmp_path / "c.npz", {"x": x}))
    assert flat["['x']"].dtype == np.float32 and flat["['x']"].dtype.isnative
    np.testing.assert_array_equal(flat["['x']"], x)


def test_restore_into_abstract_template(tmp_path):
    tree = _tree()
    path = save_checkpoint(tmp_path / "c.npz", tree)
    template = jax.eval_shape(lambda: tree)  # ShapeDtypeStructs (scalars become 0-d structs)
    template["epoch"], template["lr"], template["done"] = 0, 0.0, True
    template["np_u8"] = np.zeros(4, np.uint8)
    restored, _ = restore_checkpoint(path, template)
    _assert_bitwise_equal(tree, restored)


def test_restored_state_works_under_jit(tmp_path):
    tree = {"W": jnp.ones((2, 2)), "key": jax.random.key(3)}
    restored, _ = restore_checkpoint(save_checkpoint(tmp_path / "c.npz", tree), tree)

    @jax.jit
    def f(t):
        return t["W"] @ jax.random.normal(t["key"], (2,))

    np.testing.assert_array_equal(f(restored), f(tree))


def test_bare_leaf_and_empty_tree(tmp_path):
    x = jnp.arange(3.0)
    restored, _ = restore_checkpoint(save_checkpoint(tmp_path / "leaf.npz", x), x)
    _assert_bitwise_equal(x, restored)
    assert list(load_checkpoint(tmp_path / "leaf.npz")[0]) == [""]
    restored, meta = restore_checkpoint(save_checkpoint(tmp_path / "e.npz", {}, {"a": 1}), {})
    assert restored == {} and meta == {"a": 1}


def test_load_checkpoint_and_read_metadata(tmp_path):
    tree = _tree()
    path = save_checkpoint(tmp_path / "c.npz", tree, META)
    flat, meta = load_checkpoint(path)
    assert meta == META and read_metadata(path) == META
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]
    assert list(flat) == paths
    assert all(isinstance(v, np.ndarray) for v in flat.values())
    np.testing.assert_array_equal(flat["['params']['W1']"], np.asarray(tree["params"]["W1"]))
    np.testing.assert_array_equal(flat["['opt'].count"], 3)
    assert flat["['bf16']"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(flat["['key']"], np.asarray(jax.random.key_data(tree["key"])))
    assert flat["['keys']"].shape == (4, 2) and flat["['keys']"].dtype == np.uint32
    assert flat["['epoch']"].shape == () and flat["['epoch']"] == 2
    # Plain NumPy reads the file without pickle.
    with np.load(path, allow_pickle=False) as npz:
        assert "['params']['b1']" in npz.files


def test_metadata_numpy_and_jax_scalars_become_json(tmp_path):
    meta = {
        "loss": [np.float32(0.5), jnp.float32(0.25)],
        "acc": np.array([0.5, 1.0]),
        "n": np.int64(3),
    }
    path = save_checkpoint(tmp_path / "c.npz", {"a": jnp.ones(1)}, meta)
    assert read_metadata(path) == {"loss": [0.5, 0.25], "acc": [0.5, 1.0], "n": 3}


def test_metadata_nan_round_trips(tmp_path):
    path = save_checkpoint(tmp_path / "c.npz", {}, {"loss": [float("nan"), float("inf")]})
    loss = read_metadata(path)["loss"]
    assert np.isnan(loss[0]) and loss[1] == float("inf")


def test_creates_parent_dirs_and_overwrites(tmp_path):
    path = tmp_path / "a" / "b" / "c.npz"
    save_checkpoint(path, {"x": jnp.zeros(2)}, {"v": 1})
    save_checkpoint(path, {"x": jnp.ones(2)}, {"v": 2})
    restored, meta = restore_checkpoint(path, {"x": jnp.zeros(2)})
    np.testing.assert_array_equal(restored["x"], 1.0)
    assert meta == {"v": 2}
    assert os.listdir(path.parent) == ["c.npz"]


def test_suffix_is_not_appended(tmp_path):
    save_checkpoint(tmp_path / "model.ckpt", {"x": jnp.zeros(1)})
    assert os.listdir(tmp_path) == ["model.ckpt"]


# ----------------------------------------------------------------------------- atomicity


def _partial_savez(file, **arrays):
    file.write(b"PK\x03\x04 partial garbage")
    raise OSError("disk full")


@pytest.mark.parametrize("target", ["savez", "fsync", "replace"])
def test_failed_write_leaves_old_checkpoint_and_no_temp_files(tmp_path, monkeypatch, target):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"x": jnp.zeros(3)}, {"v": "old"})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(f"{target} failed")

    if target == "savez":
        monkeypatch.setattr(ckpt.np, "savez", _partial_savez)
    elif target == "fsync":
        monkeypatch.setattr(ckpt.os, "fsync", boom)
    else:
        monkeypatch.setattr(ckpt.os, "replace", boom)
    with pytest.raises(OSError, match="failed|disk full"):
        save_checkpoint(path, {"x": jnp.ones(3)}, {"v": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]
    assert read_metadata(path) == {"v": "old"}


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt.np, "savez", _partial_savez)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "c.npz", {"x": jnp.ones(1)})
    assert os.listdir(tmp_path) == []


def test_interrupt_also_cleans_up(tmp_path, monkeypatch):
    def interrupted(file, **arrays):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "c.npz", {"x": jnp.ones(1)})
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- errors


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "nope.npz"
    for fn in (
        lambda: restore_checkpoint(path, {}),
        lambda: load_checkpoint(path),
        lambda: read_metadata(path),
    ):
        with pytest.raises(CheckpointNotFoundError, match="nope.npz") as info:
            fn()
        assert isinstance(info.value, FileNotFoundError)
        assert isinstance(info.value, CheckpointError) and isinstance(info.value, ValueError)


def test_directory_is_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_file_names_path(tmp_path, fraction):
    tree = _tree()
    path = save_checkpoint(tmp_path / "c.npz", tree, META)
    data = path.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: int(len(data) * fraction)])
    for fn in (
        lambda: restore_checkpoint(bad, tree),
        lambda: load_checkpoint(bad),
        lambda: read_metadata(bad),
    ):
        with pytest.raises(CheckpointError, match=r"truncated\.npz.*corrupt"):
            fn()


def test_flipped_byte_in_leaf_is_detected(tmp_path):
    tree = {"x": jnp.arange(64.0)}
    path = save_checkpoint(tmp_path / "c.npz", tree)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("['x'].npy")
    data[info.header_offset + 200] ^= 0xFF  # inside the stored array data
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="c.npz"):
        restore_checkpoint(path, tree)


@pytest.mark.parametrize(
    "writer",
    [
        lambda f: f.write(b"hello, not a checkpoint"),
        lambda f: np.save(f, np.zeros(3)),
        lambda f: np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True),
        lambda f: np.savez(f, x=np.zeros(3)),
    ],
    ids=["text", "npy", "pickled-npy", "npz-without-header"],
)
def test_not_a_checkpoint(tmp_path, writer):
    path = tmp_path / "other.npz"
    with open(path, "wb") as f:
        writer(f)
    with pytest.raises(CheckpointError, match="other.npz.*(not a jaxfc checkpoint|corrupt)"):
        load_checkpoint(path)


def _rewrite_header(path, edit):
    import json

    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays[ckpt._HEADER_KEY].tobytes())
    edit(header)
    arrays[ckpt._HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda h: h.update(version=99), "version 99"),
        (lambda h: h.update(format="other"), "not a jaxfc checkpoint"),
        (lambda h: h.update(leaves="x"), "malformed header"),
        (lambda h: h["leaves"][0].pop("dtype"), "malformed header entry"),
        (lambda h: h["leaves"][0].update(path="['ghost']"), "no such array"),
        (lambda h: h["leaves"][0].update(shape=[5]), r"stored as float32\[3\].*says float32\[5\]"),
        (lambda h: h["leaves"][0].update(dtype="not-a-dtype"), "corrupt"),
    ],
)
def test_inconsistent_header(tmp_path, edit, pattern):
    path = save_checkpoint(tmp_path / "c.npz", {"a": jnp.zeros(3)})
    _rewrite_header(path, edit)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(path)
    assert "c.npz" in str(info.value)


def test_structure_mismatch_names_missing_and_unexpected(tmp_path):
    path = save_checkpoint(tmp_path / "c.npz", {"W1": jnp.zeros(2), "b1": jnp.zeros(2), "old": 1})
    template = {"W1": jnp.zeros(2), "b1": jnp.zeros(2), "W2": jnp.zeros(2), "b2": jnp.zeros(2)}
    with pytest.raises(CheckpointError) as info:
        restore_checkpoint(path, template)
    msg = str(info.value)
    assert "c.npz" in msg
    assert "missing from the checkpoint: [\"['W2']\", \"['b2']\"]" in msg
    assert "in the checkpoint but not in the template: [\"['old']\"]" in msg


@pytest.mark.parametrize(
    ("saved", "template", "pattern"),
    [
        (
            jnp.zeros((2, 3)),
            jnp.zeros((3, 2)),
            r"\['w'\].*expected float32\[3, 2\], found float32\[2, 3\]",
        ),
        (
            jnp.zeros(3),
            jnp.zeros(3, jnp.int32),
            r"\['w'\].*expected int32\[3\], found float32\[3\]",
        ),
        (jnp.zeros(2, jnp.bfloat16), jnp.zeros(2, jnp.float16), "expected float16.*found bfloat16"),
        (1, 1.0, r"expected float64\[\], found int64\[\]"),
        (
            jax.random.key(0),
            jnp.zeros(2, jnp.uint32),
            "template expects an array.*holds a PRNG key",
        ),
        (
            jnp.zeros(2, jnp.uint32),
            jax.random.key(0),
            "template expects a PRNG key.*holds an array",
        ),
        (
            jax.random.key(0),
            jax.random.split(jax.random.key(0)),
            r"expected PRNG key threefry2x32\[2\]",
        ),
        (
            jax.random.key(0, impl="rbg"),
            jax.random.key(0),
            "expected PRNG key threefry2x32.*found rbg",
        ),
    ],
    ids=[
        "shape",
        "dtype",
        "ml-dtype",
        "python-scalar",
        "key-vs-array",
        "array-vs-key",
        "key-shape",
        "key-impl",
    ],
)
def test_leaf_mismatch_names_path_expected_and_found(tmp_path, saved, template, pattern):
    path = save_checkpoint(tmp_path / "c.npz", {"w": saved})
    with pytest.raises(CheckpointError, match=pattern) as info:
        restore_checkpoint(path, {"w": template})
    assert "c.npz" in str(info.value)


def test_rbg_keys_round_trip(tmp_path):
    tree = {"k": jax.random.split(jax.random.key(0, impl="rbg"), 2)}
    restored, _ = restore_checkpoint(save_checkpoint(tmp_path / "c.npz", tree), tree)
    _assert_bitwise_equal(tree, restored)
    assert str(jax.random.key_impl(restored["k"])) == "rbg"


@pytest.mark.parametrize(
    ("tree", "pattern"),
    [
        ({"name": "adam"}, r"\['name'\].*type str"),
        ({"obj": np.array([object()])}, r"\['obj'\].*dtype object"),
        ({"s": np.array(["a"])}, r"\['s'\].*dtype <U1"),
        ({"rec": np.zeros(2, dtype=[("a", "f4")])}, r"\['rec'\].*dtype"),
        ({"big": 2**70}, r"\['big'\]"),
    ],
)
def test_unsavable_leaves_are_type_errors(tmp_path, tree, pattern):
    with pytest.raises((TypeError, OverflowError), match=pattern):
        save_checkpoint(tmp_path / "c.npz", tree)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("metadata", "pattern"),
    [({"f": object()}, "not JSON-serialisable"), ([1, 2], "must be a mapping")],
)
def test_bad_metadata_is_type_error(tmp_path, metadata, pattern):
    with pytest.raises(TypeError, match=pattern):
        save_checkpoint(tmp_path / "c.npz", {}, metadata)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- property test

_DTYPES = [
    np.bool_,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.complex64,
    np.complex128,
]


@st.composite
def _array_trees(draw):
    n = draw(st.integers(0, 4))
    tree = {}
    for i in range(n):
        dtype = draw(st.sampled_from(_DTYPES))
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        arr = draw(hnp.arrays(dtype, shape))
        tree[f"k{i}"] = (
            arr if draw(st.booleans()) else (arr, {"nested": arr[()] if arr.ndim == 0 else arr})
        )
    if draw(st.booleans()):
        bits = draw(hnp.arrays(np.uint16, draw(hnp.array_shapes(min_dims=0, max_dims=2))))
        tree["bf16"] = bits.view(jnp.bfloat16)
    return tree


@given(tree=_array_trees(), meta=st.dictionaries(st.text(max_size=5), st.integers() | st.text()))
def test_property_round_trip(tree, meta):
    with tempfile.TemporaryDirectory() as d:
        path = save_checkpoint(Path(d) / "p.npz", tree, meta)
        restored, got_meta = restore_checkpoint(path, tree)
        flat, _ = load_checkpoint(path)
        assert os.listdir(d) == ["p.npz"]
    _assert_bitwise_equal(tree, restored)
    assert got_meta == meta
    for (p, leaf), (q, arr) in zip(
        jax.tree_util.tree_leaves_with_path(tree), flat.items(), strict=True
    ):
        assert jax.tree_util.keystr(p) == q
        assert np.asarray(leaf).tobytes() == arr.tobytes()
