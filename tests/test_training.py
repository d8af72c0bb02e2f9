"""The compiled training pieces: one epoch as a lax.scan, minibatch draws, chunked accuracy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfc.models import FullyConnectedNet
from jaxfc.optim import adam, sgd_momentum
from jaxfc.training import (
    TrainState,
    make_accuracy,
    make_subsampled_accuracy,
    make_train_epoch,
    minibatch_indices,
    random_permutation,
    transpose_weights,
)


def _blobs(n, dim, classes, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, (classes, dim))
    y = rng.integers(0, classes, n).astype(np.int32)
    X = (centers[y] + rng.normal(0, 1, (n, dim))).astype(dtype)
    return X, y


# ----------------------------------------------------------------------------- minibatches


@pytest.mark.parametrize(
    "num_train, batch_size, steps",
    [(100, 10, 10), (100, 10, 7), (101, 25, 4), (7, 7, 1), (64, 1, 64)],
)
def test_minibatch_indices_without_replacement_when_enough_samples(num_train, batch_size, steps):
    for seed in range(3):
        idx = np.asarray(minibatch_indices(jax.random.key(seed), num_train, batch_size, steps))
        assert idx.shape == (steps, batch_size)
        assert idx.min() >= 0 and idx.max() < num_train
        # Without replacement: no index appears twice in the whole epoch.
        assert len(np.unique(idx)) == steps * batch_size
        if steps * batch_size == num_train:
            np.testing.assert_array_equal(np.sort(idx.ravel()), np.arange(num_train))


def test_minibatch_indices_shuffle_depends_on_key():
    a = np.asarray(minibatch_indices(jax.random.key(0), 50, 10, 5))
    b = np.asarray(minibatch_indices(jax.random.key(1), 50, 10, 5))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(np.sort(a.ravel()), np.sort(b.ravel()))
    # Not the identity order either: a shuffle.
    assert not np.array_equal(a.ravel(), np.arange(50))


def test_random_permutation_is_uniform():
    """All 24 orders of 4 items, over 24000 keys: each within 5 standard deviations of 1000,
    and every position holds every item about equally often."""
    keys = jax.random.split(jax.random.key(11), 24000)
    perms = np.asarray(jax.jit(jax.vmap(lambda k: random_permutation(k, 4)))(keys))
    assert perms.dtype == np.int32
    np.testing.assert_array_equal(np.sort(perms, axis=1), np.tile(np.arange(4), (24000, 1)))
    _, counts = np.unique(perms, axis=0, return_counts=True)
    assert len(counts) == 24
    sd = np.sqrt(24000 * (1 / 24) * (23 / 24))
    assert np.all(np.abs(counts - 1000) < 5 * sd), counts
    for position in range(4):
        per_item = np.bincount(perms[:, position], minlength=4)
        assert np.all(np.abs(per_item - 6000) < 5 * np.sqrt(24000 * 0.25 * 0.75)), per_item


@pytest.mark.parametrize("num_train, batch_size, steps", [(10, 25, 1), (3, 4, 1), (5, 3, 2)])
def test_minibatch_indices_with_replacement_when_too_few_samples(num_train, batch_size, steps):
    idx = np.asarray(minibatch_indices(jax.random.key(0), num_train, batch_size, steps))
    assert idx.shape == (steps, batch_size)
    assert idx.min() >= 0 and idx.max() < num_train
    # More draws than samples: some index must repeat (pigeonhole), and draws are valid.
    assert len(np.unique(idx)) < steps * batch_size
    # A different key gives different draws.
    other = np.asarray(minibatch_indices(jax.random.key(1), num_train, batch_size, steps))
    assert not np.array_equal(idx, other) or num_train == 1


def test_minibatch_indices_jit_matches_eager():
    key = jax.random.key(3)
    eager = minibatch_indices(key, 40, 8, 5)
    jitted = jax.jit(minibatch_indices, static_argnums=(1, 2, 3))(key, 40, 8, 5)
    np.testing.assert_array_equal(eager, jitted)


# ----------------------------------------------------------------------------- the epoch


def _reference_epoch(model, optimizer, ts, X, y, key, batch_size, steps, gradients):
    """A plain Python loop of model.loss + optimizer.update over the same draws (each step
    jitted on its own, only to keep the test fast)."""

    @jax.jit
    def step(params, state, opt_state, Xb, yb, k):
        loss, grads, state = model.loss(params, state, Xb, yb, train=True, key=k,
                                        gradients=gradients)
        params, opt_state = optimizer.update(params, grads, opt_state)
        return params, state, opt_state, loss

    batch_key, dropout_key = jax.random.split(key)
    indices = np.asarray(minibatch_indices(batch_key, X.shape[0], batch_size, steps))
    step_keys = jax.random.split(dropout_key, steps)
    params, state, opt_state = ts
    losses = []
    for i in range(steps):
        idx = indices[i]
        params, state, opt_state, loss = step(params, state, opt_state, X[idx], y[idx],
                                              step_keys[i])
        losses.append(float(loss))
    return TrainState(params, state, opt_state), np.array(losses)


EPOCH_CASES = [
    # (model kwargs, optimizer, gradients, N, batch)
    (dict(hidden_dims=(16, 12), normalization="batchnorm", dropout=0.2), adam(1e-2), "manual",
     64, 16),
    # N < batch: one step drawn with replacement.
    (dict(hidden_dims=(16,), normalization="layernorm", reg=1e-2, dropout=0.3),
     sgd_momentum(5e-2), "autodiff", 7, 10),
]


@pytest.mark.parametrize("model_kwargs, optimizer, gradients, n, batch", EPOCH_CASES)
def test_train_epoch_equals_python_loop(x64, model_kwargs, optimizer, gradients, n, batch):
    model = FullyConnectedNet(input_dim=6, num_classes=4, dtype=np.float64, weight_scale="he",
                              **model_kwargs)
    X, y = _blobs(n, 6, 4, seed=1, dtype=np.float64)
    params, state = model.init(jax.random.key(0))
    ts = TrainState(params, state, optimizer.init(params))
    steps = max(n // batch, 1)
    key = jax.random.key(42)

    epoch = jax.jit(make_train_epoch(model, optimizer, batch_size=batch, steps_per_epoch=steps,
                                     gradients=gradients))
    got, losses = epoch(ts, jnp.asarray(X), jnp.asarray(y), key, {})
    want, want_losses = _reference_epoch(model, optimizer, ts, X, y, key, batch, steps, gradients)

    assert losses.shape == (steps,)
    np.testing.assert_allclose(np.asarray(losses), want_losses, rtol=1e-10, atol=1e-12)
    flat_got, tree_got = jax.tree_util.tree_flatten(got)
    flat_want, tree_want = jax.tree_util.tree_flatten(want)
    assert tree_got == tree_want
    for a, b in zip(flat_got, flat_want, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-9)
    # Training changed the parameters (the comparison is not vacuous).
    assert not np.allclose(np.asarray(got.params["W1"]), np.asarray(params["W1"]))


# ----------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize(
    "n, chunk, jit",
    [(37, 10, True), (37, 10, False), (5, 10, True), (40, 10, True), (1001, 1000, True)],
)
def test_accuracy_matches_numpy(n, chunk, jit):
    model = FullyConnectedNet(hidden_dims=(16,), input_dim=6, num_classes=5,
                              normalization="batchnorm", weight_scale="he")
    params, state = model.init(jax.random.key(n))
    # Non-trivial running statistics, so evaluation mode matters.
    state = {"bn1": state["bn1"]._replace(running_mean=jnp.full((16,), 0.3),
                                          running_var=jnp.full((16,), 2.0))}
    X, y = _blobs(n, 6, 5, seed=n)
    acc_fn = make_accuracy(model, batch_size=chunk)
    if jit:
        acc_fn = jax.jit(acc_fn)
    got = float(acc_fn(params, state, X, y))
    scores, _ = model.apply(params, state, X, train=False)
    want = np.mean(np.argmax(np.asarray(scores), axis=1) == y)
    assert got == pytest.approx(want, abs=1e-7)


def test_accuracy_padding_never_counts_as_correct():
    """The tail is padded with zero rows. Make every row (padding included) predict class k
    and label every real row wrong: for each k the accuracy must be exactly 0, so a padding
    label equal to any class would show."""
    model = FullyConnectedNet(hidden_dims=(4,), input_dim=3, num_classes=3)
    params, state = model.init(jax.random.key(0))
    X = np.zeros((11, 3), np.float32)
    acc_fn = jax.jit(make_accuracy(model, batch_size=4))  # 3 chunks, 1 padded row
    for k in range(3):
        params = {**params, "b2": 10.0 * jax.nn.one_hot(k, 3)}
        assert int(model.predict(params, state, X[:1])[0]) == k
        wrong = np.full((11,), (k + 1) % 3, np.int32)
        assert float(acc_fn(params, state, X, wrong)) == 0.0
        right = np.full((11,), k, np.int32)
        assert float(acc_fn(params, state, X, right)) == 1.0


# ----------------------------------------------------------------------------- weight layout


def test_transpose_weights_transposes_only_weight_matrices_and_is_an_involution():
    model = FullyConnectedNet(hidden_dims=(5, 4), input_dim=6, num_classes=3,
                              normalization="batchnorm")
    params, state = model.init(jax.random.key(0))
    opt_state = adam(1e-3).init(params)
    tree = TrainState(params, state, opt_state)
    swapped = transpose_weights(tree)
    for name in ("W1", "W2", "W3"):
        for got, want in ((swapped.params[name], params[name]),
                          (swapped.opt_state.m[name], opt_state.m[name]),
                          (swapped.opt_state.v[name], opt_state.v[name])):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want).T)
    # Biases, norm parameters, running statistics and hyperparameters are untouched.
    for name in ("b1", "gamma1", "beta2"):
        np.testing.assert_array_equal(np.asarray(swapped.params[name]), np.asarray(params[name]))
    assert_same = lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    jax.tree_util.tree_map(assert_same, swapped.model_state, state)
    jax.tree_util.tree_map(assert_same, swapped.opt_state.hyperparams, opt_state.hyperparams)
    jax.tree_util.tree_map(assert_same, transpose_weights(swapped), tree)
    # A leaf that only looks like a weight by name but is not a matrix stays as it is.
    odd = {"W1": jnp.ones(3), "Wx": jnp.ones((2, 3)), "W12": jnp.ones((2, 3))}
    got = transpose_weights(odd)
    assert got["W1"].shape == (3,) and got["Wx"].shape == (2, 3) and got["W12"].shape == (3, 2)


@pytest.mark.parametrize("gradients", ["manual", "autodiff"])
def test_kernel_layout_epoch_matches_model_layout_epoch(x64, gradients):
    model = FullyConnectedNet(hidden_dims=(16, 12), input_dim=6, num_classes=4, dtype=np.float64,
                              normalization="layernorm", dropout=0.2, reg=1e-3)
    X, y = _blobs(64, 6, 4, seed=3, dtype=np.float64)
    params, state = model.init(jax.random.key(0))
    optimizer = adam(1e-2)
    ts = TrainState(params, state, optimizer.init(params))
    common = dict(batch_size=16, steps_per_epoch=4, gradients=gradients)
    by_model = jax.jit(make_train_epoch(model, optimizer, **common))
    by_kernel = jax.jit(make_train_epoch(model, optimizer, state_layout="kernel", **common))
    key = jax.random.key(7)
    want, want_losses = by_model(ts, X, y, key, {})
    got, losses = by_kernel(transpose_weights(ts), X, y, key, {})
    assert got.params["W1"].shape == (16, 6)
    np.testing.assert_allclose(np.asarray(losses), np.asarray(want_losses), rtol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(transpose_weights(got)),
                    jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
    # Steps in the model's layout (no transposes, as vmapped sweeps run them): the same run.
    plain = jax.jit(make_train_epoch(model, optimizer, kernel_steps=False, **common))
    got_plain, plain_losses = plain(ts, X, y, key, {})
    np.testing.assert_allclose(np.asarray(plain_losses), np.asarray(want_losses), rtol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(got_plain), jax.tree_util.tree_leaves(want),
                    strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
    acc = make_accuracy(model)(want.params, want.model_state, X, y)
    kernel_acc = make_accuracy(model, state_layout="kernel")(got.params, got.model_state, X, y)
    assert float(acc) == float(kernel_acc)


def test_unknown_state_layout_is_rejected_by_name():
    model = FullyConnectedNet(hidden_dims=(4,), input_dim=3, num_classes=2)
    with pytest.raises(ValueError, match="state_layout must be one of .*'columns'"):
        make_train_epoch(model, adam(), batch_size=2, steps_per_epoch=1, state_layout="columns")
    with pytest.raises(ValueError, match="state_layout"):
        make_accuracy(model, state_layout="rows")
    with pytest.raises(ValueError, match="kernel_steps=False needs state_layout='model'"):
        make_train_epoch(model, adam(), batch_size=2, steps_per_epoch=1, state_layout="kernel",
                         kernel_steps=False)


def test_subsampled_accuracy_draws_num_samples_rows_with_the_key():
    model = FullyConnectedNet(hidden_dims=(8,), input_dim=6, num_classes=3)
    params, state = model.init(jax.random.key(0))
    X, y = _blobs(50, 6, 3, seed=2)
    scores, _ = model.apply(params, state, X, train=False)
    correct = np.argmax(np.asarray(scores), axis=1) == y
    key = jax.random.key(4)
    got = jax.jit(make_subsampled_accuracy(model, 20, batch_size=8))(params, state, X, y, key)
    idx = np.asarray(random_permutation(key, 50)[:20])
    assert float(got) == pytest.approx(np.mean(correct[idx]), abs=1e-7)
    # None, or at least N rows: every row, whatever the key.
    for num in (None, 50, 80):
        everything = make_subsampled_accuracy(model, num)(params, state, X, y, key)
        assert float(everything) == pytest.approx(np.mean(correct), abs=1e-7)
