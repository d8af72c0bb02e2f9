"""jax.random's Threefry derivations computed on the host with NumPy, bit for bit.

The Solver draws each epoch's minibatch order and dropout keys, and the subsamples its
accuracy checks use, here, between epochs, instead of inside its compiled programs: on CPU,
XLA compiles every Threefry call site of a program into a loop of ~9 kernels (60-80 ms each
on a 2-core machine); the key derivations and the permutation made up a third of the
epoch's compile time and two thirds of the accuracy program's. On the host they cost ~1 ms
per epoch for 10,000 samples, and the arrays they produce are exactly those
:func:`jaxfc.training.epoch_batches` and :func:`jaxfc.training.subsample_indices` draw on
the device from the same key (the tests check this), so a Solver and a sweep still see the
same minibatches and subsamples.

Keys are handled as their raw data (``uint32`` words, shape ``(2,)``): only typed Threefry
keys with ``jax_threefry_partitionable`` on (JAX's defaults) are supported, see
:func:`supports`; callers fall back to the device otherwise.
"""

from __future__ import annotations

import jax
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def threefry_2x32(key_words: np.ndarray, x1: np.ndarray, x2: np.ndarray):
    """The Threefry-2x32 block cipher (20 rounds, JAX's ``threefry2x32_p``) of the counter
    pairs ``(x1, x2)`` (uint32 arrays) under ``key_words`` (uint32, shape (2,))."""
    k1, k2 = (np.asarray(key_words[i], np.uint32).reshape(1) for i in (0, 1))
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = (x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r))
            x2 = x1 ^ x2
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def supports(key) -> bool:
    """Whether draws from ``key`` can be computed here: a typed Threefry key (one key, not
    an array of them) with partitionable Threefry on."""
    dtype = getattr(key, "dtype", None)
    return (
        dtype is not None
        and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
        and getattr(key, "shape", None) == ()
        and str(jax.random.key_impl(key)) == "threefry2x32"
        and bool(jax.config.jax_threefry_partitionable)
    )


def supports_default_keys() -> bool:
    """Whether :func:`supports` the keys ``jax.random.key(seed)`` makes (JAX's default
    implementation is Threefry and partitionable), without making one."""
    return (str(jax.config.jax_default_prng_impl) == "threefry2x32"
            and bool(jax.config.jax_threefry_partitionable))


def key_words(key) -> np.ndarray:
    """The raw data of a typed key, as a host ``uint32`` array of shape (2,)."""
    return np.asarray(jax.random.key_data(key), np.uint32).reshape(2)


def seed_words(seed: int) -> np.ndarray:
    """The data of ``jax.random.key(seed)`` for ``0 <= seed < 2**32``."""
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed_words needs 0 <= seed < 2**32, got {seed}")
    return np.array([0, seed], np.uint32)


def _hash_counters(words: np.ndarray, size: int):
    """Both output words of the hash of counters 0 .. size-1, as ``jax.random`` numbers
    the draws of one call."""
    return threefry_2x32(words, np.zeros(size, np.uint32), np.arange(size, dtype=np.uint32))


def fold_in(words: np.ndarray, data: int) -> np.ndarray:
    """``jax.random.fold_in``: key data of the key folded with the integer ``data``."""
    o1, o2 = threefry_2x32(words, np.zeros(1, np.uint32),
                           np.array([data], np.int64).astype(np.uint32))
    return np.concatenate([o1, o2])


def split(words: np.ndarray, num: int = 2) -> np.ndarray:
    """``jax.random.split``: key data of ``num`` new keys, shape (num, 2)."""
    o1, o2 = _hash_counters(words, num)
    return np.stack([o1, o2], axis=-1)


def bits(words: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``jax.random.bits`` (uint32) of that shape."""
    o1, o2 = _hash_counters(words, int(np.prod(shape, dtype=np.int64)))
    return (o1 ^ o2).reshape(shape)


def permutation(words: np.ndarray, n: int) -> np.ndarray:
    """:func:`jaxfc.training.random_permutation`: ``arange(n)`` sorted by two 32-bit words
    each (equal unless two of the 64-bit sort keys tie, probability ~n**2 / 2**65)."""
    b = bits(words, (2, n))
    return np.lexsort((b[1], b[0])).astype(np.int32)


def epoch_batches(words: np.ndarray, num_train: int, batch_size: int, steps: int,
                  batch_words: np.ndarray | None = None):
    """:func:`jaxfc.training.epoch_batches` on the host: ``(indices, step_key_words)`` of
    shapes (steps, batch_size) and (steps, 2), or None when the epoch draws with
    replacement (fewer samples than one epoch needs), which only the device computes."""
    if steps * batch_size > num_train:
        return None
    batch = split(words)[0] if batch_words is None else batch_words
    return batch_indices(batch, num_train, batch_size, steps), dropout_keys(words, steps)


def batch_indices(batch_words: np.ndarray, num_train: int, batch_size: int,
                  steps: int) -> np.ndarray:
    """An epoch's minibatch indices (steps, batch_size) from the batch key: the first
    ``steps * batch_size`` entries of a permutation (needs ``steps * batch_size <= num_train``)."""
    perm = permutation(batch_words, num_train)
    return perm[: steps * batch_size].reshape(steps, batch_size)


def dropout_keys(words: np.ndarray, steps: int) -> np.ndarray:
    """An epoch's dropout key data (steps, 2): ``split`` of the second half of
    ``split(epoch key)``."""
    return split(split(words)[1], steps)


def subsample(words: np.ndarray, n: int, num_samples: int | None) -> np.ndarray | None:
    """:func:`jaxfc.training.subsample_indices` on the host."""
    if num_samples is None or num_samples >= n:
        return None
    return permutation(words, n)[:num_samples]


def epoch_draws(words: np.ndarray, epoch: int, num_train: int, batch_size: int, steps: int,
                data_words: np.ndarray | None = None, *, indices: bool = True):
    """:func:`jaxfc.training.epoch_draws` on the host: ``(indices, step_key_words)``, or
    None when the epoch draws with replacement. ``indices=False`` skips the permutation
    (returns None in its place: models sharing their minibatches need it once)."""
    if steps * batch_size > num_train:
        return None
    epoch_words = fold_in(words, 2 * epoch)
    if not indices:
        return None, dropout_keys(epoch_words, steps)
    batch = None if data_words is None else fold_in(data_words, epoch)
    return epoch_batches(epoch_words, num_train, batch_size, steps, batch)


def accuracy_draws(words: np.ndarray, epoch: int, num_train: int, num_val: int,
                   num_train_samples: int | None, num_val_samples: int | None):
    """:func:`jaxfc.training.accuracy_draws` on the host."""
    k_train, k_val = split(fold_in(words, 2 * epoch + 1))
    return (subsample(k_train, num_train, num_train_samples),
            subsample(k_val, num_val, num_val_samples))
