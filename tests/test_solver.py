"""The Solver: histories, best parameters, learning rates, compiled epochs, NaN handling,
checkpoints and resuming, data validation, and cs231n's recipes run unchanged."""

import contextlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxfc.solver as solver_module
from jaxfc.checkpoint import CheckpointError, load_checkpoint, read_metadata
from jaxfc.models import FullyConnectedNet, TwoLayerNet
from jaxfc.optim import learning_rate
from jaxfc.solver import NonFiniteLossError, Solver, check_data, load_best_model

D, C = 10, 4


def blobs(n_train, n_val, dim=D, classes=C, seed=0, spread=2.0, noise=1.0, shape=None):
    """Gaussian class clusters split into train and val (same centers)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, spread, (classes, dim))
    n = n_train + n_val
    y = np.arange(n) % classes
    rng.shuffle(y)
    X = (centers[y] + rng.normal(0, noise, (n, dim))).astype(np.float32)
    if shape is not None:
        X = X.reshape(n, *shape)
    y = y.astype(np.int32)
    return {"X_train": X[:n_train], "y_train": y[:n_train],
            "X_val": X[n_train:], "y_val": y[n_train:]}


def small_net(**kwargs):
    kwargs = {"hidden_dims": (16,), "input_dim": D, "num_classes": C, "weight_scale": "he",
              **kwargs}
    return FullyConnectedNet(**kwargs)


def assert_trees_equal(a, b):
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def assert_trees_differ(a, b):
    leaves = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    assert any(not np.array_equal(np.asarray(x), np.asarray(y)) for x, y in leaves)


HISTORIES = ("loss_history", "train_acc_history", "val_acc_history", "lr_history")


# ----------------------------------------------------------------------------- one shared run

N_TRAIN, BATCH, EPOCHS, LR, DECAY = 230, 50, 3, 0.05, 0.5  # 230 // 50 = 4 steps per epoch


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 3-epoch batchnorm run with lr_decay and per-epoch checkpoints; counts how often the
    epoch function is traced."""
    traces = []
    real = solver_module.make_epoch_on_batches

    def counting(*args, **kwargs):
        epoch = real(*args, **kwargs)

        def traced(*a):
            traces.append(1)
            return epoch(*a)

        return traced

    tmp = tmp_path_factory.mktemp("run")
    data = blobs(N_TRAIN, 60)
    model = small_net(normalization="batchnorm")
    solver_module.clear_program_cache()  # this Solver builds its programs itself
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(solver_module, "make_epoch_on_batches", counting)
        solver = Solver(model, data, update_rule="sgd_momentum",
                        optim_config={"learning_rate": LR}, lr_decay=DECAY, batch_size=BATCH,
                        num_epochs=EPOCHS, num_train_samples=100, verbose=False,
                        checkpoint_name=str(tmp / "ep"), seed=3)
    init_params = solver.params
    solver.train()
    return {"solver": solver, "data": data, "model": model, "traces": traces, "tmp": tmp,
            "init_params": init_params}


def test_history_lengths(run):
    s = run["solver"]
    steps = max(N_TRAIN // BATCH, 1)
    assert s.steps_per_epoch == steps == 4
    assert len(s.loss_history) == EPOCHS * steps
    assert len(s.train_acc_history) == len(s.val_acc_history) == EPOCHS + 1
    assert len(s.lr_history) == len(s.epoch_time_history) == EPOCHS
    assert s.epoch == EPOCHS
    assert all(np.isfinite(s.loss_history))
    assert all(0.0 <= a <= 1.0 for a in s.train_acc_history + s.val_acc_history)
    # It learned something on these separable clusters.
    assert s.val_acc_history[-1] > s.val_acc_history[0]
    assert np.mean(s.loss_history[-steps:]) < np.mean(s.loss_history[:steps])


def test_public_state_is_in_the_model_layout(run):
    """The Solver trains on weights stored (out, in); everything it hands out, checkpoints
    included, is in the model's (in, out) layout, and setting train_state converts back."""
    s, model = run["solver"], run["model"]
    for tree in (s.params, s.best_params, s.train_state.params, s.train_state.opt_state.velocity):
        assert tree["W1"].shape == (D, 16) and tree["W2"].shape == (16, C)
    assert s._state.params["W1"].shape == (16, D)
    scores, _ = model.apply(s.params, s.model_state, run["data"]["X_val"], train=False)
    acc = np.mean(np.argmax(np.asarray(scores), axis=1) == run["data"]["y_val"])
    assert acc == pytest.approx(s.best_val_acc)
    assert s.check_accuracy(run["data"]["X_val"], run["data"]["y_val"]) == pytest.approx(acc)
    flat, _ = load_checkpoint(run["tmp"] / f"ep_epoch_{EPOCHS}.npz")
    for name in ("['train_state'].params['W1']", "['train_state'].opt_state.velocity['W1']",
                 "['best_params']['W1']"):
        assert flat[name].shape == (D, 16), name
    other = Solver(model, run["data"], update_rule="sgd_momentum", verbose=False, seed=5)
    other.train_state = s.train_state
    assert_trees_equal(other.train_state, s.train_state)
    assert_trees_equal(other._state, s._state)


def test_steps_per_epoch_at_least_one():
    data = blobs(30, 10)
    s = Solver(small_net(), data, batch_size=50, num_epochs=1, verbose=False)
    assert s.steps_per_epoch == 1


def test_lr_decay_multiplies_learning_rate_each_epoch(run):
    s = run["solver"]
    # float32 precision: the base rate is read back from the optimizer state.
    np.testing.assert_allclose(s.lr_history, [LR * DECAY**e for e in range(EPOCHS)], rtol=1e-7)
    np.testing.assert_allclose(np.divide(s.lr_history[1:], s.lr_history[:-1]), DECAY,
                               rtol=1e-12)
    # The optimizer really used the last epoch's rate (held as an array in its state).
    assert float(learning_rate(s.opt_state)) == pytest.approx(s.lr_history[-1], rel=1e-6)


def test_best_params_agree_with_val_history(run):
    s = run["solver"]
    assert s.best_val_acc == max(s.val_acc_history)
    assert s.best_epoch == int(np.argmax(s.val_acc_history))
    # After train(), the solver holds the best parameters.
    assert_trees_equal(s.params, s.best_params)
    assert_trees_equal(s.model_state, s.best_model_state)
    # The best parameters score best_val_acc on the (whole) validation set.
    acc = Solver.evaluate(run["model"], s.best_params, s.best_model_state,
                          run["data"]["X_val"], run["data"]["y_val"])
    assert acc == s.best_val_acc
    # And they are the parameters the run had at the end of that epoch.
    if s.best_epoch == 0:
        assert_trees_equal(s.best_params, run["init_params"])
    else:
        flat, _ = load_checkpoint(run["tmp"] / f"ep_epoch_{s.best_epoch}.npz")
        for name, value in s.best_params.items():
            np.testing.assert_array_equal(flat[f"['train_state'].params['{name}']"], value)


def test_epoch_compiles_once_across_epochs_and_learning_rates(run):
    s = run["solver"]
    assert len(set(s.lr_history)) == EPOCHS  # the rate changed every epoch...
    assert len(run["traces"]) == 1  # ...and the epoch was traced once
    assert s._epoch_fn._cache_size() == 1


def test_checkpoint_name_writes_one_file_per_epoch(run):
    s = run["solver"]
    files = sorted(p.name for p in run["tmp"].glob("ep_epoch_*.npz"))
    assert files == [f"ep_epoch_{e}.npz" for e in range(1, EPOCHS + 1)]
    for e in range(1, EPOCHS + 1):
        history = read_metadata(run["tmp"] / f"ep_epoch_{e}.npz")["history"]
        assert history["epoch"] == e
        assert history["loss_history"] == s.loss_history[: e * s.steps_per_epoch]
        assert history["val_acc_history"] == s.val_acc_history[: e + 1]


def test_checkpoint_round_trip(run, tmp_path):
    s = run["solver"]
    path = tmp_path / "ck.npz"
    s.save_checkpoint(path)
    fresh = Solver(run["model"], run["data"], update_rule="sgd_momentum",
                   optim_config={"learning_rate": LR}, lr_decay=DECAY, batch_size=BATCH,
                   verbose=False, seed=99)
    assert_trees_differ(fresh.params, s.params)
    fresh.load_checkpoint(path)
    assert_trees_equal(fresh.train_state, s.train_state)
    assert_trees_equal(fresh.best_params, s.best_params)
    assert_trees_equal(fresh.best_model_state, s.best_model_state)
    assert_trees_equal(fresh.key, s.key)
    for name in (*HISTORIES, "epoch_time_history"):
        assert getattr(fresh, name) == getattr(s, name), name
    assert (fresh.epoch, fresh.best_epoch, fresh.best_val_acc) == (
        s.epoch, s.best_epoch, s.best_val_acc)


@pytest.mark.parametrize(
    "model, match",
    [(small_net(hidden_dims=(17,), normalization="batchnorm"), r"expected float32\[17\]"),
     (small_net(hidden_dims=(16, 16), normalization="batchnorm"), r"W3"),
     (small_net(hidden_dims=(16,)), r"gamma1|bn1")],
)
def test_load_checkpoint_into_different_model_is_clear_error(run, model, match):
    other = Solver(model, run["data"], update_rule="sgd_momentum",
                   optim_config={"learning_rate": LR}, verbose=False)
    with pytest.raises(CheckpointError, match=match):
        other.load_checkpoint(run["tmp"] / "ep_epoch_1.npz")


def test_load_best_model(run):
    s = run["solver"]
    params, state = load_best_model(run["tmp"] / f"ep_epoch_{EPOCHS}.npz", run["model"])
    assert_trees_equal(params, s.best_params)
    assert_trees_equal(state, s.best_model_state)
    with pytest.raises(CheckpointError, match="W1"):
        load_best_model(run["tmp"] / f"ep_epoch_{EPOCHS}.npz", small_net(hidden_dims=(8,)))


# ----------------------------------------------------------------------------- options


def test_lr_schedule_replaces_lr_decay_without_recompiling(tmp_path):
    """Epoch 0 at 0.1, epoch 1 at 0: with plain sgd the second epoch leaves params alone."""
    solver_module.clear_program_cache()
    data = blobs(120, 40)
    s = Solver(small_net(), data, update_rule="sgd", optim_config={"learning_rate": 0.5},
               lr_decay=0.3, lr_schedule=lambda epoch: [0.1, 0.0][epoch], batch_size=40,
               num_epochs=2, verbose=False, checkpoint_name=str(tmp_path / "s"))
    init = s.params
    s.train()
    assert s.lr_history == [0.1, 0.0]
    assert float(learning_rate(s.opt_state)) == 0.0
    flat1, _ = load_checkpoint(tmp_path / "s_epoch_1.npz")
    flat2, _ = load_checkpoint(tmp_path / "s_epoch_2.npz")
    for name, value in init.items():
        key = f"['train_state'].params['{name}']"
        np.testing.assert_array_equal(flat1[key], flat2[key])
        if name.startswith("W"):
            assert not np.array_equal(flat1[key], value)
    assert s._epoch_fn._cache_size() == 1


def test_solvers_differing_in_hyperparameters_share_programs_and_train_as_their_own(x64):
    """A tuning loop: Solvers that differ in learning rate, momentum, decay and seed reuse the
    first one's compiled programs, and each trains exactly as with programs of its own."""
    data = blobs(120, 40)
    model = small_net(normalization="batchnorm", dtype=np.float64)
    configs = [dict(optim_config={"learning_rate": 0.05, "momentum": 0.9}, seed=1),
               dict(optim_config={"learning_rate": 0.2, "momentum": 0.5}, lr_decay=0.5, seed=2)]
    common = dict(update_rule="sgd_momentum", batch_size=40, num_epochs=2, verbose=False)
    solver_module.clear_program_cache()
    shared = [Solver(model, data, **common, **c).train() for c in configs]
    assert shared[0]._epoch_fn is shared[1]._epoch_fn
    assert shared[1]._epoch_fn._cache_size() == 1  # compiled once, for both
    for solver, config in zip(shared, configs, strict=True):
        solver_module.clear_program_cache()
        alone = Solver(model, data, **common, **config).train()
        assert alone._epoch_fn is not solver._epoch_fn
        assert alone.loss_history == solver.loss_history
        assert_trees_equal(alone.train_state, solver.train_state)
    assert_trees_differ(shared[0].params, shared[1].params)
    # A different static setting (clipping, another rule) gets programs of its own.
    clipped = Solver(model, data, **common, **configs[0], max_grad_norm=1.0)
    assert clipped._epoch_fn is not shared[0]._epoch_fn


@pytest.mark.parametrize("data_seed", [None, 5])
def test_epoch_draws_on_the_host_equal_the_compiled_draws(data_seed):
    """The Solver draws minibatches, dropout keys and accuracy subsamples on the host
    (jaxfc.host_random); they are exactly what its compiled ``device_batches`` and
    ``device_subsamples`` (make_train_epoch's and make_subsampled_accuracy's draws) give."""
    solver = Solver(_resume_model(), blobs(110, 20), batch_size=25, data_seed=data_seed,
                    num_train_samples=100, seed=9, verbose=False)
    for epoch in range(3):
        indices, step_key_data = solver._epoch_inputs(epoch)
        assert isinstance(indices, np.ndarray)  # drawn on the host
        device = solver._device_batches(solver.key, solver.data_key, epoch, 110)
        np.testing.assert_array_equal(indices, device[0])
        np.testing.assert_array_equal(step_key_data, device[1])
        train_idx, val_idx = solver._record_inputs(epoch)
        device_train, device_val = solver._device_subsamples(solver.key, epoch, 110, 20)
        np.testing.assert_array_equal(train_idx, device_train)  # 100 of 110 samples
        assert val_idx is None and device_val is None  # all 20


@pytest.mark.parametrize("setting", ["rbg_key", "rbg_default", "threefry_not_partitionable"])
def test_keys_the_host_cannot_hash_train_with_draws_on_the_device(setting):
    """An rbg key, another default implementation, or Threefry without partitionable
    derivations: the Solver splits its seed and draws its epochs with compiled programs,
    and two Solvers with the same seed or key train identically."""
    kw = dict(batch_size=25, num_epochs=2, verbose=False)
    if setting == "rbg_key":
        context, kw["key"] = contextlib.nullcontext(), jax.random.key(4, impl="rbg")
    else:
        context, kw["seed"] = (jax.default_prng_impl("rbg") if setting == "rbg_default"
                               else jax.threefry_partitionable(False)), 5
    data, model = blobs(110, 20), _resume_model()
    with context:
        runs = [Solver(model, data, **kw) for _ in range(2)]
        indices, _ = runs[0]._epoch_inputs(0)
        assert isinstance(indices, jax.Array) and indices.shape == (4, 25)
        for solver in runs:
            solver.train()
    assert np.all(np.isfinite(runs[0].loss_history))
    np.testing.assert_array_equal(runs[0].loss_history, runs[1].loss_history)


def test_draws_prefetched_during_an_epoch_are_the_ones_used_after_it():
    """_dispatch_epoch draws the next accuracy subsamples and epoch inputs while the device
    trains; the Solver then uses those (and they equal fresh draws)."""
    solver = Solver(_resume_model(), blobs(110, 20), batch_size=25, num_train_samples=100,
                    seed=9, verbose=False)
    fresh_record, fresh_epoch = solver._record_inputs(1), solver._epoch_inputs(1)
    solver._dispatch_epoch(solver._state, 0, 1e-3)
    assert len(solver._prefetched) == 2
    record, epoch_inputs = solver._record_inputs(1), solver._epoch_inputs(1)
    assert solver._prefetched == {}  # both consumed, none drawn again
    np.testing.assert_array_equal(record[0], fresh_record[0])
    for a, b in zip(epoch_inputs, fresh_epoch, strict=True):
        np.testing.assert_array_equal(a, b)


def test_building_a_solver_compiles_nothing_once_its_model_is_known(compiled_programs):
    """Data placement, keys, the kernel layout and the optimizer state are all made on the
    host; only model.init runs compiled, once per model (each compilation is ~0.1 s of the
    time to the first step)."""
    data, model = blobs(110, 20), _resume_model()
    kw = dict(update_rule="adam", batch_size=25, verbose=False)
    first = Solver(model, data, seed=1, **kw)
    params = {k: np.asarray(v) for k, v in first.params.items()}
    compiled_programs.clear()
    second = Solver(model, data, seed=2, **kw)
    third = Solver(model, data, params=params, model_state=first.model_state, seed=3, **kw)
    assert compiled_programs == []
    assert_trees_differ(second.params, first.params)  # seed 2's own init
    assert_trees_equal(third.params, first.params)


def test_manual_and_autodiff_gradients_give_the_same_trajectory(x64):
    data = blobs(96, 32)
    model = small_net(hidden_dims=(16, 8), normalization="batchnorm", dropout=0.2, reg=1e-3,
                      dtype=np.float64)
    runs = {}
    for mode in ("manual", "autodiff"):
        s = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-2},
                   batch_size=32, num_epochs=2, gradients=mode, verbose=False, seed=1)
        s.train()
        runs[mode] = s
    manual, auto = runs["manual"], runs["autodiff"]
    np.testing.assert_allclose(manual.loss_history, auto.loss_history, rtol=1e-9)
    assert manual.train_acc_history == auto.train_acc_history
    assert manual.val_acc_history == auto.val_acc_history
    for name in manual.params:
        np.testing.assert_allclose(manual.params[name], auto.params[name], rtol=1e-7,
                                   atol=1e-9, err_msg=name)
    assert manual.params["W1"].dtype == np.float64


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [({"num_epoch": 3}, ValueError, "num_epoch"),
     ({"learning_rate": 1e-3}, ValueError, "learning_rate"),
     ({"update_rule": "adamax"}, ValueError, "adamax"),
     ({"gradients": "numeric"}, ValueError, "numeric"),
     ({"optim_config": {"learning_rat": 1e-3}}, ValueError, "learning_rat"),
     ({"batch_size": 0}, ValueError, "batch_size")],
)
def test_bad_solver_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Solver(small_net(), blobs(20, 8), verbose=False, **kwargs)


def _bad(change):
    data = blobs(20, 8)
    change(data)
    return data


BAD_DATA = [
    (lambda d: d.pop("X_val"), ValueError, "X_val"),
    (lambda d: d.pop("y_train"), ValueError, "y_train"),
    (lambda d: d.update(y_train=d["y_train"][:, None]), ValueError, "y_train"),
    (lambda d: d.update(y_val=d["y_val"][:-1]), ValueError, "y_val"),
    (lambda d: d.update(y_train=d["y_train"].astype(np.float32)), TypeError, "y_train"),
    (lambda d: d.update(y_val=np.full_like(d["y_val"], C)), ValueError, "y_val"),
    (lambda d: d.update(y_train=d["y_train"] - 1), ValueError, "y_train"),
    (lambda d: d.update(X_train=d["X_train"][:, :-1]), ValueError, "X_train.*input_dim"),
    (lambda d: d.update(X_val=np.zeros((0, D), np.float32), y_val=np.zeros(0, np.int32)),
     ValueError, "X_val"),
    (lambda d: d.update(X_test=d["X_val"]), ValueError, "y_test"),
]


@pytest.mark.parametrize("change, exc, match", BAD_DATA)
def test_bad_data_is_a_clear_error_naming_the_key(change, exc, match):
    data = _bad(change)
    with pytest.raises(exc, match=match):
        check_data(data, D, C)
    with pytest.raises(exc, match=match):
        Solver(small_net(), data, verbose=False)


def test_check_data_accepts_images_with_matching_feature_count():
    data = blobs(20, 8, dim=12, shape=(3, 2, 2))
    assert check_data(data, 12, C) is data
    with pytest.raises(ValueError, match="X_train"):
        check_data(data, 13, C)


# ----------------------------------------------------------------------------- non-finite loss


def test_huge_learning_rate_raises_and_keeps_last_complete_epoch(tmp_path):
    data = blobs(120, 40)
    path = tmp_path / "last.npz"
    model = small_net(normalization="batchnorm")
    kwargs = dict(update_rule="sgd", optim_config={"learning_rate": 0.05},
                  lr_schedule=lambda e: 0.05 if e == 0 else 1e30, batch_size=30, num_epochs=3,
                  verbose=False, seed=2)
    s = Solver(model, data, checkpoint_path=path, **kwargs)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step [1-4]\b") as info:
        s.train()
    assert isinstance(info.value, FloatingPointError)
    step = int(re.search(r"step (\d+)", str(info.value)).group(1))
    assert step >= 2  # the first step's loss is computed before the huge update
    # The solver holds the state after epoch 1.
    assert s.epoch == 1
    assert len(s.loss_history) == s.steps_per_epoch == 4
    assert len(s.train_acc_history) == len(s.val_acc_history) == 2
    assert s.lr_history == [0.05]
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree_util.tree_leaves(s.params))
    # The checkpoint of epoch 1 is intact, loadable and holds the same state.
    assert read_metadata(path)["history"]["epoch"] == 1
    restored = Solver(model, data, **kwargs).load_checkpoint(path)
    assert_trees_equal(restored.train_state, s.train_state)
    assert restored.loss_history == s.loss_history
    assert restored.val_acc_history == s.val_acc_history


def test_inf_in_data_raises_at_first_step(tmp_path):
    data = blobs(120, 40)
    data["X_train"][:, 0] = np.inf
    path = tmp_path / "never.npz"
    s = Solver(small_net(), data, batch_size=30, num_epochs=2, verbose=False,
               checkpoint_path=path)
    init = s.params
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1\b"):
        s.train()
    assert s.epoch == 0 and s.loss_history == [] and s.lr_history == []
    assert_trees_equal(s.params, init)
    assert not path.exists()


# ----------------------------------------------------------------------------- resuming


RESUME_KW = dict(update_rule="adam", optim_config={"learning_rate": 5e-3}, lr_decay=0.9,
                 batch_size=25, num_train_samples=60, num_val_samples=30, verbose=False,
                 seed=7)


def _resume_model():
    return small_net(hidden_dims=(16, 16), normalization="batchnorm", dropout=0.25)


def _assert_same_run(a, b):
    assert_trees_equal(a.train_state, b.train_state)
    assert_trees_equal(a.best_params, b.best_params)
    assert_trees_equal(a.best_model_state, b.best_model_state)
    assert_trees_equal(a.key, b.key)
    for name in HISTORIES:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.epoch, a.best_epoch, a.best_val_acc) == (b.epoch, b.best_epoch, b.best_val_acc)


def test_resumed_run_is_bit_for_bit_the_uninterrupted_run(tmp_path):
    """4 epochs straight vs: the checkpoint after epoch 2, a new Solver, load, train to 4."""
    data = blobs(110, 50, seed=4)  # 110 // 25 = 4 steps per epoch
    model = _resume_model()
    straight = Solver(model, data, num_epochs=4, checkpoint_name=str(tmp_path / "s"),
                      **RESUME_KW)
    straight.train()

    resumed = Solver(model, data, num_epochs=4, **{**RESUME_KW, "seed": 123})
    resumed.load_checkpoint(tmp_path / "s_epoch_2.npz")
    assert resumed.epoch == 2 and len(resumed.loss_history) == 2 * 4
    resumed.train()
    _assert_same_run(resumed, straight)
    assert len(resumed.loss_history) == 4 * 4
    # The last 2 epochs did something.
    half, _ = load_checkpoint(tmp_path / "s_epoch_2.npz")
    full, _ = load_checkpoint(tmp_path / "s_epoch_4.npz")
    w1 = "['train_state'].params['W1']"
    assert not np.array_equal(half[w1], full[w1])


# A learning rate at which 8 steps learn the clusters (training accuracy ~0.9).
STOPPED_KW = {**RESUME_KW, "optim_config": {"learning_rate": 5e-2}}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A finished 2-epoch run whose best epoch is not its last: validation labels are shifted
    so that learning the training labels makes validation accuracy drop (best epoch 0)."""
    tmp = tmp_path_factory.mktemp("stopped")
    data = blobs(110, 50, seed=4)
    data["y_val"] = (data["y_val"] + 1) % C
    s = Solver(_resume_model(), data, num_epochs=2, checkpoint_path=tmp / "auto.npz",
               **STOPPED_KW)
    s.train()
    assert s.best_epoch < s.epoch  # precondition: the best params are not the last ones
    s.save_checkpoint(tmp / "manual.npz")  # written after train() returned
    return {"solver": s, "data": data, "tmp": tmp}


def test_checkpoint_saved_after_train_holds_the_last_epoch_state(stopped):
    """The training state in a checkpoint written after train() must be where training
    stopped (what the per-epoch checkpoint holds), not the best params swapped in: else
    resuming from it differs from the uninterrupted run."""
    auto, _ = load_checkpoint(stopped["tmp"] / "auto.npz")
    manual, _ = load_checkpoint(stopped["tmp"] / "manual.npz")
    assert auto.keys() == manual.keys()
    for key, value in auto.items():
        np.testing.assert_array_equal(manual[key], value, err_msg=key)


def test_train_again_continues_from_the_last_epoch(stopped):
    """train(3) after train(2) on the same solver continues exactly as a resumed run."""
    s = stopped["solver"]
    resumed = Solver(_resume_model(), stopped["data"], num_epochs=3, **STOPPED_KW)
    resumed.load_checkpoint(stopped["tmp"] / "auto.npz")
    resumed.train()
    s.train(3)
    _assert_same_run(s, resumed)


# ----------------------------------------------------------------------------- cs231n recipes


def _cifar_like(n_train, n_val, classes=10, seed=0):
    """Small CIFAR-shaped problem: 3x8x8 'images' on a 0..255 pixel scale, mean-subtracted."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 255, (classes, 3, 8, 8))
    n = n_train + n_val
    y = rng.integers(0, classes, n)
    X = np.clip(templates[y] + rng.normal(0, 40, (n, 3, 8, 8)), 0, 255)
    X = (X - X[:n_train].mean(axis=0)).astype(np.float32)
    y = y.astype(np.int32)
    return {"X_train": X[:n_train], "y_train": y[:n_train],
            "X_val": X[n_train:], "y_val": y[n_train:]}


def test_two_layer_net_recipe(capsys):
    data = _cifar_like(500, 100)
    model = TwoLayerNet(input_dim=3 * 8 * 8, hidden_dim=32, num_classes=10)
    solver = Solver(model, data, update_rule="sgd", optim_config={"learning_rate": 1e-3},
                    lr_decay=0.9, num_epochs=4, batch_size=100, print_every=100,
                    verbose=False)
    solver.train()
    assert capsys.readouterr().out == ""  # verbose=False is silent
    assert len(solver.loss_history) == 4 * 5
    np.testing.assert_allclose(solver.lr_history, [1e-3 * 0.9**e for e in range(4)])
    assert solver.best_val_acc >= 0.5  # chance is 0.1
    assert np.mean(solver.loss_history[-5:]) < np.mean(solver.loss_history[:5])


def test_overfit_recipe_three_layer_net(capsys):
    data = _cifar_like(1050, 100, seed=1)
    small = {"X_train": data["X_train"][:50], "y_train": data["y_train"][:50],
             "X_val": data["X_val"], "y_val": data["y_val"]}
    # cs231n's weight_scale 1e-2 is for 3072 inputs; with 192 the same activation scale
    # needs a 4x larger scale (1e-2 reaches only 96-98% here), so 2e-2.
    model = FullyConnectedNet([100, 100], input_dim=3 * 8 * 8, num_classes=10,
                              weight_scale=2e-2)
    solver = Solver(model, small, print_every=10, num_epochs=20, batch_size=25,
                    update_rule="sgd", optim_config={"learning_rate": 1e-2})
    solver.train()
    assert solver.train_acc_history[-1] == 1.0
    out = capsys.readouterr().out
    assert "(Iteration 1 / 40) loss:" in out and "(Iteration 31 / 40) loss:" in out
    assert "(Epoch 0 / 20) train acc:" in out and "(Epoch 20 / 20) train acc: 1.0000" in out
