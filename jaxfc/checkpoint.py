"""Save and restore pytrees of arrays as a single ``.npz`` file, atomically and without pickle.

File layout (format version 1): a NumPy ``.npz`` archive holding

* one array per pytree leaf, stored under the leaf's key-path string
  (``jax.tree_util.keystr``: ``"['W1']"``, ``".count"``, ``"[0]['b']"``; ``""`` for a bare leaf);
* ``__jaxfc_checkpoint__``: a uint8 array with UTF-8 JSON ``{"format", "version", "leaves",
  "metadata"}`` where ``leaves`` lists, in flatten order, each leaf's ``path``, ``kind``
  (``"array"``, ``"scalar"`` for a Python bool/int/float, ``"prng_key"``), ``dtype`` and ``shape``.

Typed PRNG keys (``jax.random.key``) are stored as their ``jax.random.key_data`` (uint32) plus the
implementation name and rebuilt with ``jax.random.wrap_key_data``. Dtypes NumPy cannot save
natively (``bfloat16`` and the other ml_dtypes) are stored as raw unsigned integers of the same
width and viewed back. Loading always uses ``allow_pickle=False``.

Unlike Orbax/Flax serialization this is one plain file per checkpoint, readable with nothing but
NumPy (``np.load(path)``), and restoring requires a template that fixes the tree structure.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "CheckpointNotFoundError",
    "load_checkpoint",
    "read_metadata",
    "restore_checkpoint",
    "save_checkpoint",
]

FORMAT_NAME = "jaxfc-checkpoint"
FORMAT_VERSION = 1
_HEADER_KEY = "__jaxfc_checkpoint__"


class CheckpointError(ValueError):
    """A checkpoint is corrupt, not a jaxfc checkpoint, or does not match the template."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


# ----------------------------------------------------------------------------- encoding


def _is_prng_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _needs_raw(dtype: np.dtype) -> bool:
    # ml_dtypes (bfloat16, float8_*, int4, ...) are user-defined NumPy dtypes that np.save
    # writes as opaque void data; store their bits as unsigned integers instead.
    return dtype.num >= 256


def _encode_leaf(path: str, leaf: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Return (array to store, header entry) for one leaf."""
    if _is_prng_key(leaf):
        data = np.asarray(jax.random.key_data(leaf))
        entry = {
            "path": path,
            "kind": "prng_key",
            "impl": str(jax.random.key_impl(leaf)),
            "dtype": str(data.dtype),
            "shape": list(np.shape(leaf)),
        }
        return data, entry
    if isinstance(leaf, bool | int | float) and not isinstance(leaf, np.generic):
        kind = "scalar"
        arr = np.asarray(leaf)
    elif isinstance(leaf, jax.Array | np.ndarray | np.generic):
        kind = "array"
        arr = np.asarray(leaf)
    else:
        raise TypeError(
            f"save_checkpoint: leaf at {path or '<root>'} has type {type(leaf).__name__}; "
            "leaves must be jax/numpy arrays, NumPy scalars, typed PRNG keys or Python "
            "bool/int/float"
        )
    if not _needs_raw(arr.dtype) and arr.dtype.kind in "OUSVMm":
        raise TypeError(
            f"save_checkpoint: leaf at {path or '<root>'} has dtype {arr.dtype}, which cannot "
            "be stored without pickle (numeric and bool dtypes only)"
        )
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    entry = {"path": path, "kind": kind, "dtype": arr.dtype.name, "shape": list(arr.shape)}
    if _needs_raw(arr.dtype):
        arr = arr.view(np.dtype(f"u{arr.dtype.itemsize}"))
    return arr, entry


def _decode_dtype(name: str) -> np.dtype:
    return np.dtype(jnp.dtype(name))


def _decode_array(stored: np.ndarray, entry: Mapping[str, Any]) -> np.ndarray:
    """Undo the raw-bits encoding of ``_encode_leaf`` for an array or scalar leaf."""
    dtype = _decode_dtype(entry["dtype"])
    if _needs_raw(dtype):
        return stored.view(dtype)
    return stored


def _json_default(obj: Any) -> Any:
    # Histories often hold NumPy/JAX scalars; store them as plain numbers/lists.
    if isinstance(obj, np.generic | np.ndarray | jax.Array):
        return np.asarray(obj).tolist()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def _flatten(tree: Any) -> tuple[list[tuple[str, Any]], Any]:
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    flat = [(jax.tree_util.keystr(p), leaf) for p, leaf in leaves_with_path]
    seen: set[str] = set()
    for path, _ in flat:
        if path in seen:
            raise ValueError(f"tree has two leaves with the same key path {path!r}")
        seen.add(path)
    return flat, treedef


# ----------------------------------------------------------------------------- saving


def save_checkpoint(
    path: str | os.PathLike[str], tree: Any, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Atomically write ``tree`` (and JSON ``metadata``) to the ``.npz`` file ``path``.

    ``tree`` is any pytree whose leaves are jax/numpy arrays, NumPy scalars, typed PRNG keys or
    Python bool/int/float. ``metadata`` must be a JSON-serialisable mapping (NumPy/JAX scalars
    and arrays inside it are converted with ``tolist()``; NaN/inf are kept as JSON extensions).
    ``path`` is used exactly as given (no ``.npz`` suffix is appended); missing parent
    directories are created.

    The archive is written to a temporary file in the same directory, flushed and fsynced, then
    moved over ``path`` with ``os.replace``; if anything fails the temporary file is removed and
    a checkpoint already at ``path`` is left untouched. Returns ``path`` as a ``Path``.
    """
    path = Path(path)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping (dict), got {type(metadata).__name__}")

    flat, _ = _flatten(tree)
    arrays: dict[str, np.ndarray] = {}
    entries = []
    for leaf_path, leaf in flat:
        arr, entry = _encode_leaf(leaf_path, leaf)
        arrays[leaf_path] = arr
        entries.append(entry)
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "leaves": entries,
        "metadata": dict(metadata),
    }
    try:
        header_json = json.dumps(header, default=_json_default)
    except (TypeError, ValueError) as e:
        raise TypeError(f"metadata is not JSON-serialisable: {e}") from e
    arrays[_HEADER_KEY] = np.frombuffer(header_json.encode("utf-8"), dtype=np.uint8)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with tmp:
            np.savez(tmp, **arrays)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)
    except BaseException:
        try:
            os.unlink(tmp.name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    # Make the rename durable; not supported on every platform/filesystem.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- loading


def _read(path: str | os.PathLike[str], *, header_only: bool = False):
    """Return (header, {path: stored array}) after validating the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path {path} is a directory, not a file")
    try:
        # Open the file ourselves: np.load leaks its handle when the archive is corrupt.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            if _HEADER_KEY not in npz.files:
                raise CheckpointError(
                    f"{path} is not a jaxfc checkpoint (no {_HEADER_KEY!r} entry; "
                    f"found {len(npz.files)} arrays)"
                )
            header = json.loads(npz[_HEADER_KEY].tobytes().decode("utf-8"))
            _check_header(path, header)
            stored: dict[str, np.ndarray] = {}
            if not header_only:
                for entry in header["leaves"]:
                    if entry["path"] not in npz.files:
                        raise CheckpointError(
                            f"{path} is corrupt: header lists leaf {entry['path']!r} "
                            "but the archive has no such array"
                        )
                    stored[entry["path"]] = npz[entry["path"]]
                    _check_stored(path, entry, stored[entry["path"]])
    except CheckpointError:
        raise
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        # np.load/zipfile/json report truncation and garbage with several exception types.
        raise CheckpointError(
            f"{path} is corrupt, truncated or not a jaxfc checkpoint: {type(e).__name__}: {e}"
        ) from e
    return header, stored


def _check_header(path: Path, header: Any) -> None:
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a jaxfc checkpoint (bad header)")
    version = header.get("version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this jaxfc reads version "
            f"{FORMAT_VERSION}"
        )
    leaves = header.get("leaves")
    if not isinstance(leaves, list) or not isinstance(header.get("metadata"), dict):
        raise CheckpointError(f"{path} is corrupt: malformed header")
    for entry in leaves:
        if not isinstance(entry, dict) or not {"path", "kind", "dtype", "shape"} <= entry.keys():
            raise CheckpointError(f"{path} is corrupt: malformed header entry {entry!r}")


def _check_stored(path: Path, entry: Mapping[str, Any], stored: np.ndarray) -> None:
    """The stored array must agree with what the header says about it."""
    shape = tuple(entry["shape"])
    if entry["kind"] == "prng_key":
        expect_dtype = np.dtype(entry["dtype"])
        ok = stored.dtype == expect_dtype and stored.shape[: len(shape)] == shape
    else:
        dtype = _decode_dtype(entry["dtype"])
        expect_dtype = np.dtype(f"u{dtype.itemsize}") if _needs_raw(dtype) else dtype
        ok = stored.dtype == expect_dtype and stored.shape == shape
    if not ok:
        raise CheckpointError(
            f"{path} is corrupt: leaf {entry['path']!r} is stored as {stored.dtype}"
            f"{list(stored.shape)} but the header says {entry['dtype']}{list(shape)}"
        )


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the metadata dict of the checkpoint at ``path`` without loading any leaf."""
    header, _ = _read(path, header_only=True)
    return header["metadata"]


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load a checkpoint without a template: ``({key_path: np.ndarray}, metadata)``.

    Leaves come back as NumPy arrays in flatten order. Python-scalar leaves are 0-d arrays and
    typed PRNG keys are returned as their uint32 ``key_data`` (shape ``key_shape + (2,)`` for
    threefry); use :func:`restore_checkpoint` with a template to get the original types back.
    """
    header, stored = _read(path)
    flat = {}
    for entry in header["leaves"]:
        arr = stored[entry["path"]]
        flat[entry["path"]] = arr if entry["kind"] == "prng_key" else _decode_array(arr, entry)
    return flat, header["metadata"]


def _key_impl_name(leaf: Any) -> str:
    try:
        return str(jax.random.key_impl(leaf))
    except TypeError:  # abstract leaves (ShapeDtypeStruct) only carry the key dtype
        return str(leaf.dtype)


def _template_spec(leaf: Any) -> tuple[str, tuple[int, ...], Any]:
    """(kind, shape, dtype) that the template leaf expects."""
    if _is_prng_key(leaf):
        return "prng_key", tuple(leaf.shape), leaf.dtype
    if isinstance(leaf, bool | int | float) and not isinstance(leaf, np.generic):
        return "scalar", (), np.asarray(leaf).dtype
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):  # arrays, jax.ShapeDtypeStruct
        return "array", tuple(leaf.shape), np.dtype(leaf.dtype)
    raise TypeError(
        f"restore_checkpoint: template leaf of type {type(leaf).__name__} is not an array, "
        "ShapeDtypeStruct, PRNG key or Python scalar"
    )


def restore_checkpoint(path: str | os.PathLike[str], template: Any) -> tuple[Any, dict[str, Any]]:
    """Restore the checkpoint at ``path`` into the structure of ``template``.

    Returns ``(tree, metadata)``. ``tree`` has ``template``'s treedef; every leaf must match the
    template leaf's key path, shape and dtype exactly (no casting). Each restored leaf has the
    template leaf's type: ``np.ndarray`` for NumPy leaves, Python bool/int/float for Python
    scalars, ``jax.Array`` otherwise (jax arrays, ``jax.ShapeDtypeStruct``, typed PRNG keys
    rebuilt with the stored implementation).

    Raises ``CheckpointNotFoundError`` if the file is missing and ``CheckpointError`` if it is
    corrupt, not a jaxfc checkpoint, has different key paths (listing the missing and the
    unexpected ones) or a leaf whose shape, dtype or PRNG implementation differs.
    """
    header, stored = _read(path)
    flat, treedef = _flatten(template)
    entries = {entry["path"]: entry for entry in header["leaves"]}
    wanted = [p for p, _ in flat]
    missing = [p for p in wanted if p not in entries]
    unexpected = [p for p in entries if p not in set(wanted)]
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match the template's structure: "
            f"missing from the checkpoint: {missing or 'none'}; "
            f"in the checkpoint but not in the template: {unexpected or 'none'}"
        )

    leaves = []
    for leaf_path, tleaf in flat:
        entry = entries[leaf_path]
        kind, shape, dtype = _template_spec(tleaf)
        found_shape = tuple(entry["shape"])
        name = leaf_path or "<root>"
        if kind == "prng_key" or entry["kind"] == "prng_key":
            if kind != entry["kind"]:
                raise CheckpointError(
                    f"{path}: leaf {name}: template expects "
                    f"{'a PRNG key' if kind == 'prng_key' else 'an array'} but the checkpoint "
                    f"holds {'a PRNG key' if entry['kind'] == 'prng_key' else 'an array'}"
                )
            try:
                found_dtype = jax.random.key_dtype(entry["impl"])
            except (ValueError, TypeError, KeyError) as e:
                raise CheckpointError(
                    f"{path}: leaf {name}: unknown PRNG implementation {entry['impl']!r}"
                ) from e
            if found_dtype != dtype or found_shape != shape:
                raise CheckpointError(
                    f"{path}: leaf {name}: expected PRNG key {_key_impl_name(tleaf)}"
                    f"{list(shape)}, found {entry['impl']}{list(found_shape)}"
                )
            data = jnp.asarray(stored[leaf_path])
            leaves.append(jax.random.wrap_key_data(data, dtype=dtype))
            continue
        found_dtype = _decode_dtype(entry["dtype"])
        if found_shape != shape or found_dtype != dtype:
            raise CheckpointError(
                f"{path}: leaf {name}: expected {dtype}{list(shape)}, "
                f"found {found_dtype}{list(found_shape)}"
            )
        arr = _decode_array(stored[leaf_path], entry)
        if kind == "scalar":
            leaves.append(type(tleaf)(arr.item()))
        elif isinstance(tleaf, np.ndarray | np.generic):
            leaves.append(arr if isinstance(tleaf, np.ndarray) else arr[()])
        else:
            leaves.append(jnp.asarray(arr, dtype=dtype))
    return jax.tree_util.tree_unflatten(treedef, leaves), header["metadata"]
