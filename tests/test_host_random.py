"""jaxfc.host_random computes on the host exactly what jax.random and the compiled epoch draw."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxfc import host_random
from jaxfc.training import (
    accuracy_draws,
    epoch_batches,
    epoch_draws,
    random_permutation,
    subsample_indices,
)

seeds = st.integers(0, 2**32 - 1)


def _key(seed):
    return jax.random.wrap_key_data(host_random.seed_words(seed))


@settings(max_examples=20, deadline=None)
@given(seed=seeds, data=st.integers(0, 2**31 - 1), num=st.integers(1, 9))
def test_key_derivations_match_jax_random(seed, data, num):
    key = jax.random.key(seed) if seed < 2**31 else _key(seed)
    words = host_random.key_words(key)
    np.testing.assert_array_equal(words, host_random.seed_words(seed))
    np.testing.assert_array_equal(host_random.fold_in(words, data),
                                  jax.random.key_data(jax.random.fold_in(key, data)))
    np.testing.assert_array_equal(host_random.split(words, num),
                                  jax.random.key_data(jax.random.split(key, num)))
    np.testing.assert_array_equal(host_random.bits(words, (3, num)),
                                  jax.random.bits(key, (3, num), jnp.uint32))


@settings(max_examples=10, deadline=None)
@given(seed=seeds, n=st.integers(1, 300))
def test_permutation_matches_the_device_permutation(seed, n):
    words = host_random.seed_words(seed)
    perm = host_random.permutation(words, n)
    assert perm.dtype == np.int32
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))
    np.testing.assert_array_equal(perm, random_permutation(_key(seed), n))


@pytest.mark.parametrize("batch_seed", [None, 7])
@pytest.mark.parametrize("num_train,batch_size,steps", [(230, 50, 4), (64, 64, 1), (10, 3, 3)])
def test_epoch_batches_match_the_device(num_train, batch_size, steps, batch_seed):
    key = jax.random.fold_in(jax.random.key(3), 4)
    batch_key = None if batch_seed is None else jax.random.key(batch_seed)
    indices, step_keys = epoch_batches(key, num_train, batch_size, steps, batch_key)
    host = host_random.epoch_batches(
        host_random.key_words(key), num_train, batch_size, steps,
        None if batch_key is None else host_random.key_words(batch_key))
    assert host is not None
    np.testing.assert_array_equal(host[0], indices)
    np.testing.assert_array_equal(host[1], jax.random.key_data(step_keys))


def test_epochs_drawn_with_replacement_are_left_to_the_device():
    # 2 steps of 60 from 100 samples cannot be a permutation: randint, device only.
    assert host_random.epoch_batches(host_random.seed_words(0), 100, 60, 2) is None


def test_supports_only_single_partitionable_threefry_keys():
    assert host_random.supports(jax.random.key(0))
    assert not host_random.supports(jax.random.key(0, impl="rbg"))
    assert not host_random.supports(jax.random.PRNGKey(0))  # raw uint32 key data
    assert not host_random.supports(jax.random.split(jax.random.key(0)))
    assert not host_random.supports(None)


def test_seed_words_rejects_seeds_outside_uint32():
    with pytest.raises(ValueError, match="2\\*\\*32"):
        host_random.seed_words(-1)


@pytest.mark.parametrize("n,num", [(50, 20), (50, 50), (50, None), (50, 80)])
def test_subsample_matches_the_device(n, num):
    key = jax.random.key(11)
    device = subsample_indices(key, n, num)
    host = host_random.subsample(host_random.key_words(key), n, num)
    if num is None or num >= n:
        assert host is None and device is None
    else:
        np.testing.assert_array_equal(host, device)


@pytest.mark.parametrize("data_seed", [None, 4])
def test_the_run_key_schedule_matches_the_device(data_seed):
    """Epoch e trains with fold_in(key, 2e) (minibatches from fold_in(data_key, e) if
    given), its accuracy checks subsample with split(fold_in(key, 2e + 1))."""
    key = jax.random.key(21)
    data_key = None if data_seed is None else jax.random.key(data_seed)
    words = host_random.key_words(key)
    data_words = None if data_key is None else host_random.key_words(data_key)
    for epoch in (0, 3):
        host = host_random.epoch_draws(words, epoch, 120, 25, 4, data_words)
        device = epoch_draws(key, epoch, 120, 25, 4, data_key)
        for h, d in zip(host, device, strict=True):
            np.testing.assert_array_equal(h, d)
        _, keys_only = host_random.epoch_draws(words, epoch, 120, 25, 4, data_words,
                                               indices=False)
        np.testing.assert_array_equal(keys_only, host[1])
        h_train, h_val = host_random.accuracy_draws(words, epoch, 120, 30, 50, None)
        d_train, d_val = accuracy_draws(key, epoch, 120, 30, 50, None)
        np.testing.assert_array_equal(h_train, d_train)
        assert h_val is None and d_val is None


def test_default_keys_supported_only_for_partitionable_threefry():
    assert host_random.supports_default_keys()
    with jax.threefry_partitionable(False):
        assert not host_random.supports_default_keys()
        assert not host_random.supports(jax.random.key(0))
