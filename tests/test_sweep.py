"""Sweeps: K models in one compiled program equal K Solver runs; chunking; search spaces;
bad input; result files; the `jaxfc sweep` command."""

import csv
import json
import math

import numpy as np
import pytest

from jaxfc import cli
from jaxfc.checkpoint import read_metadata
from jaxfc.models import FullyConnectedNet, TwoLayerNet
from jaxfc.solver import NonFiniteLossError, Solver, load_best_model
from jaxfc.sweep import (
    choice,
    estimate_bytes_per_model,
    grid,
    loguniform,
    random_search,
    sweep,
    sweepable_names,
    uniform,
)

EPOCHS, BATCH = 2, 20


def _blobs(n, seed):
    centers = np.random.default_rng(123).normal(0, 2, (4, 12))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n).astype(np.int32)
    return (centers[y] + rng.normal(0, 1.5, (n, 12))).astype(np.float32), y


@pytest.fixture(scope="module")
def data():
    X, y = _blobs(160, 0)
    Xv, yv = _blobs(50, 1)
    return {"X_train": X, "y_train": y, "X_val": Xv, "y_val": yv}


MODEL = FullyConnectedNet([16], input_dim=12, num_classes=4, weight_scale=0.1,
                          normalization="batchnorm")
SETTINGS = grid(learning_rate=[1e-2, 3e-3], reg=[0.0, 1e-2])
SEEDS = [0, 7]
COMMON = dict(update_rule="adam", num_epochs=EPOCHS, batch_size=BATCH, num_train_samples=60,
              verbose=False)


def _solver(model, data, **kwargs):
    solver = Solver(model, data, verbose=False, **kwargs)
    solver.train()
    return solver


def _assert_matches_solver(result, k, solver):
    np.testing.assert_allclose(result.loss_history[k], solver.loss_history, rtol=1e-4,
                               atol=1e-6)
    # Accuracies are counts / n: equal unless a score lands within rounding of a tie.
    n_val = len(solver.val_acc_history)
    np.testing.assert_allclose(result.val_acc_history[k], solver.val_acc_history, atol=1e-6)
    np.testing.assert_allclose(result.train_acc_history[k], solver.train_acc_history,
                               atol=1e-6)
    np.testing.assert_array_equal(result.lr_history[k], np.float32(solver.lr_history))
    assert result.best_epoch[k] == solver.best_epoch
    assert result.best_val_acc[k] == np.float32(solver.best_val_acc)
    assert n_val == EPOCHS + 1
    params, state = result.params_of(k)
    assert set(params) == set(solver.params)
    lr = max(solver.lr_history)
    for name in params:
        # A bias in front of batch norm has a zero gradient up to rounding, which Adam turns
        # into full-size steps of random sign: compare it only to lr * iterations.
        pre_norm = name.startswith("b") and f"gamma{name[1:]}" in params
        atol = lr * len(solver.loss_history) if pre_norm else 1e-6
        np.testing.assert_allclose(params[name], solver.params[name], rtol=1e-4, atol=atol,
                                   err_msg=f"model {k} param {name}")
    for name, bn in state.items():  # the running mean holds that bias too
        expected = solver.model_state[name]
        np.testing.assert_allclose(bn.running_mean, expected.running_mean, rtol=1e-4,
                                   atol=lr * len(solver.loss_history))
        np.testing.assert_allclose(bn.running_var, expected.running_var, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- equivalence
# One adam sweep (8 models: learning rates x regs x seeds, batch norm) checked in one test, so
# that its compilation is paid once also under pytest-xdist.


def test_adam_sweep_equals_solver_runs_compiles_once_chunks_alike_and_writes_files(
        data, tmp_path):
    result = sweep(MODEL, data, SETTINGS, seeds=SEEDS, **COMMON)
    # 8 models, 4 learning-rate/reg settings, 2 epochs: one trace of each program (the models
    # start from the Solver's compiled model.init, one key at a time: no init program).
    assert result.compilations == {"init": 0, "train": 1, "record": 1}
    assert result.num_chunks == 1 and result.chunk_size == 8
    for k in (1, 6):  # (lr 1e-2, reg 0, seed 7) and (lr 3e-3, reg 1e-2, seed 0)
        _check_against_solver(result, data, k)
    _check_chunked(result, data)
    _check_files(result, tmp_path)


def _check_against_solver(result, data, k):
    # Model k: settings[k // 2] with seed SEEDS[k % 2], spelled out (not via solver_kwargs).
    setting = SETTINGS[k // len(SEEDS)]
    assert result.settings[k] == {**setting, "seed": SEEDS[k % len(SEEDS)]}
    model = FullyConnectedNet([16], input_dim=12, num_classes=4, weight_scale=0.1,
                              normalization="batchnorm", reg=setting["reg"])
    solver = _solver(model, data, update_rule="adam",
                     optim_config={"learning_rate": setting["learning_rate"]},
                     num_epochs=EPOCHS, batch_size=BATCH, num_train_samples=60,
                     seed=SEEDS[k % len(SEEDS)])
    _assert_matches_solver(result, k, solver)


def _check_chunked(result, data):
    chunked = sweep(MODEL, data, SETTINGS, seeds=SEEDS, max_models_in_memory=3, **COMMON)
    # 8 models in chunks of at most 3: sizes 3, 3, 2 padded to 3, all one program.
    assert (chunked.chunk_size, chunked.num_chunks) == (3, 3)
    assert chunked.compilations == {"init": 0, "train": 1, "record": 1}
    assert chunked.settings == result.settings
    np.testing.assert_allclose(chunked.loss_history, result.loss_history, rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(chunked.val_acc_history, result.val_acc_history)
    np.testing.assert_array_equal(chunked.best_epoch, result.best_epoch)
    for name in chunked.params:
        np.testing.assert_allclose(chunked.params[name], result.params[name], rtol=1e-5,
                                   atol=1e-7)


def _check_files(r, tmp_path):
    assert r.best_index == int(np.argmax(r.best_val_acc))
    assert r.best_setting == r.settings[r.best_index]
    assert r.best_val_acc[r.best_index] == r.best_val_acc.max()
    np.testing.assert_allclose(r.best_val_acc, np.nanmax(r.val_acc_history, axis=1))

    r.to_csv(tmp_path / "results.csv")
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == r.num_models
    assert {"seed", "learning_rate", "reg", "best_val_acc", "best_epoch"} <= set(rows[0])
    best_row = max(rows, key=lambda row: float(row["best_val_acc"]))
    assert float(best_row["learning_rate"]) == r.best_setting["learning_rate"]

    r.plot(tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"

    r.save_best_checkpoint(tmp_path / "best.npz")
    params, _ = load_best_model(tmp_path / "best.npz", MODEL)
    expected, _ = r.params_of(r.best_index)
    for name in params:
        np.testing.assert_array_equal(params[name], expected[name])
    meta = read_metadata(tmp_path / "best.npz")
    assert meta["sweep"]["setting"] == r.best_setting
    assert meta["model"]["reg"] == r.best_setting["reg"]
    json.dumps(r.summary())


@pytest.mark.parametrize("batching", ["vmap", "map"])
def test_twolayernet_sweep_of_scale_dropout_momentum_decay_equals_solver(data, batching):
    # Weight scale (numbers and 'he'), dropout (TwoLayerNet has none of its own: model k is
    # the equivalent FullyConnectedNet with that dropout), momentum, lr_decay, gradient
    # clipping's max_norm, and a model
    # that diverges (its loss becomes NaN): it stops, and the others are unaffected.
    model = TwoLayerNet(input_dim=12, hidden_dim=16, num_classes=4)
    settings = [
        {"learning_rate": 1e-2, "momentum": 0.9, "weight_scale": 0.05, "dropout": 0.0,
         "lr_decay": 0.5, "max_norm": 0.5, "seed": 3},
        {"learning_rate": 3e-2, "momentum": 0.5, "weight_scale": "he", "dropout": 0.3,
         "lr_decay": 0.9, "max_norm": 100.0, "seed": 4},
        {"learning_rate": 1e30, "momentum": 0.9, "weight_scale": 1.0, "dropout": 0.0,
         "lr_decay": 1.0, "max_norm": 10.0, "seed": 5},
    ]
    result = sweep(model, data, settings, update_rule="sgd_momentum", num_epochs=EPOCHS,
                   batch_size=BATCH, num_train_samples=None, num_val_samples=30,
                   max_grad_norm=1.0, batching=batching, verbose=False)
    for k in (0, 1):
        s = settings[k]
        same = FullyConnectedNet([16], input_dim=12, num_classes=4, dropout=s["dropout"],
                                 weight_scale=s["weight_scale"])
        assert result.model_for(k) == same
        solver = _solver(
            same, data, update_rule="sgd_momentum",
            optim_config={"learning_rate": s["learning_rate"], "momentum": s["momentum"]},
            lr_decay=s["lr_decay"], max_grad_norm=s["max_norm"], num_epochs=EPOCHS,
            batch_size=BATCH, num_train_samples=None, num_val_samples=30, seed=s["seed"])
        _assert_matches_solver(result, k, solver)
        assert result.diverged_epoch[k] == -1
    # The diverging model: the Solver raises in the same epoch; the sweep records it.
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        Solver(result.model_for(2), data, verbose=False, **result.solver_kwargs(2)).train()
    assert result.diverged_epoch[2] == 1
    assert np.isnan(result.val_acc_history[2, 1:]).all()
    assert np.isfinite(result.val_acc_history[2, 0])
    assert result.best_epoch[2] == 0
    assert result.best_index in (0, 1)


@pytest.mark.parametrize("batching", ["vmap", "map"])
def test_shared_batches_sweep_equals_solver_runs_with_a_data_seed(data, batching):
    model = FullyConnectedNet([16], input_dim=12, num_classes=4, weight_scale=0.1,
                              dropout=0.2)
    settings = grid(learning_rate=[1e-2, 3e-2])
    result = sweep(model, data, settings, seeds=[1, 2], update_rule="sgd_momentum",
                   num_epochs=EPOCHS, batch_size=BATCH, num_train_samples=None,
                   shared_batches=True, data_seed=5, batching=batching, verbose=False)
    assert result.num_models == 4
    for k in range(result.num_models):
        kwargs = result.solver_kwargs(k)
        assert kwargs["data_seed"] == 5
        _assert_matches_solver(result, k, _solver(result.model_for(k), data, **kwargs))
    # Same data order, different initializations: different models all the same.
    assert not np.allclose(result.loss_history[0], result.loss_history[2])


def test_memory_estimate_grows_with_batch_and_width():
    from jaxfc.optim import adam

    kw = dict(num_train=1000, num_val=100)
    small = estimate_bytes_per_model(MODEL, adam(), batch_size=10, **kw)
    assert small > 3 * 4 * (12 * 16 + 16 + 16 * 4 + 4)  # params, m, v at least
    assert estimate_bytes_per_model(MODEL, adam(), batch_size=100, **kw) > small
    wide = FullyConnectedNet([256], input_dim=12, num_classes=4)
    assert estimate_bytes_per_model(wide, adam(), batch_size=10, **kw) > small


# ----------------------------------------------------------------------------- search spaces


def test_grid_is_the_cartesian_product():
    g = grid(learning_rate=[1e-3, 1e-2, 1e-1], reg=[0.0, 1e-3], dropout=0.5)
    assert len(g) == 6
    assert g[0] == {"learning_rate": 1e-3, "reg": 0.0, "dropout": 0.5}
    assert g[1] == {"learning_rate": 1e-3, "reg": 1e-3, "dropout": 0.5}
    assert {(s["learning_rate"], s["reg"]) for s in g} == {
        (a, b) for a in (1e-3, 1e-2, 1e-1) for b in (0.0, 1e-3)}
    assert grid(weight_scale=["he", 0.01]) == [{"weight_scale": "he"}, {"weight_scale": 0.01}]


def test_random_search_ranges_and_reproducibility():
    import jax

    draws = random_search(0, 2000, learning_rate=loguniform(1e-4, 1e-1),
                          dropout=uniform(0.0, 0.5), optimizer_choice=choice(["a", "b"]),
                          reg=0.0)
    assert len(draws) == 2000
    lr = np.array([d["learning_rate"] for d in draws])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1
    # Log-uniform: each of the 3 decades holds about a third of the draws.
    per_decade = np.histogram(np.log10(lr), bins=[-4, -3, -2, -1])[0] / len(lr)
    np.testing.assert_allclose(per_decade, 1 / 3, atol=0.05)
    p = np.array([d["dropout"] for d in draws])
    assert p.min() >= 0 and p.max() <= 0.5 and abs(p.mean() - 0.25) < 0.02
    assert {d["optimizer_choice"] for d in draws} == {"a", "b"}
    assert all(d["reg"] == 0.0 for d in draws)
    assert random_search(0, 5, lr=loguniform(1e-3, 1)) == random_search(0, 5, lr=loguniform(
        1e-3, 1))
    assert random_search(0, 5, lr=loguniform(1e-3, 1)) != random_search(1, 5, lr=loguniform(
        1e-3, 1))
    key = jax.random.key(3)
    assert random_search(key, 3, lr=[1, 2]) == random_search(key, 3, lr=[1, 2])


@pytest.mark.parametrize("call, match", [
    (lambda: loguniform(0.0, 1.0), "0 < low"),
    (lambda: uniform(1.0, 0.5), "low <= high"),
    (lambda: choice([]), "at least one"),
    (lambda: grid(lr=[]), "empty"),
    (lambda: random_search(0, 0, lr=[1]), "positive integer"),
])
def test_search_space_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_random_search_rejects_a_float_seed():
    with pytest.raises(TypeError, match="key_or_seed must be an int"):
        random_search(0.5, 2, lr=[1])


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("settings, kwargs, match", [
    ({"learning_rate": [1e-3, 1e-2], "reg": [0.0]}, {}, "mismatched lengths"),
    ([{"learning_rate": 1e-3}, {"reg": 0.0}], {}, "the same hyperparameters"),
    ({"learning_rate": 1e-3}, {}, "must be a list"),
    ([], {}, "no models"),
    ([{"learning_rat": 1e-3}], {}, r"unknown hyperparameter 'learning_rat'.*learning_rate"),
    ([{"momentum": 0.9}], {}, r"belongs to update_rule \['sgd_momentum'"),
    ([{"hidden_dims": (10,)}], {}, "architecture"),
    ([{"normalization": "batchnorm"}], {}, "architecture"),
    ([{"batch_size": 10}], {}, r"sweep\(batch_size=\.\.\.\)"),
    ([{"max_norm": 1.0}], {}, "pass max_grad_norm"),
    ([{"seed": 1}], {"seeds": [0]}, "seed"),
    ([{"dropout": 1.0}], {}, r"settings\[0\]: dropout must be the drop probability"),
    ([{"reg": -1.0}], {}, "reg must be"),
    ([{"weight_scale": "kaiming"}], {}, "'he' / 'xavier'"),
    ([{"learning_rate": float("nan")}], {}, "finite"),
    ([{"beta1": 1.5}], {}, r"settings\[0\].*beta1"),
    ([{"seed": 1.5}], {}, "seed must be an integer"),
    (None, {"max_models_in_memory": 0}, "max_models_in_memory"),
    (None, {"update_rule": "adamm"}, "unknown optimizer"),
    (None, {"batching": "pmap"}, r"batching must be one of \('auto', 'vmap', 'map'\)"),
])
def test_bad_input_raises_clear_errors(data, settings, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sweep(MODEL, data, settings, **{**COMMON, "num_epochs": 1, **kwargs})


def test_sweepable_names_follow_the_optimizer():
    assert sweepable_names("sgd") == ["learning_rate", "lr_decay", "reg", "dropout",
                                      "weight_scale"]
    assert "momentum" in sweepable_names("sgd_momentum")
    assert {"beta1", "beta2", "epsilon"} <= set(sweepable_names("adam"))
    assert "max_norm" in sweepable_names("sgd", max_grad_norm=1.0)


# ----------------------------------------------------------------------------- command line


def test_cli_sweep_grid_writes_its_files_and_evaluate_reads_them(tmp_path, capsys):
    out = tmp_path / "grid"
    common = ["--dataset", "digits", "--hidden-dims", "8", "--normalization", "none",
              "--dropout", "0", "--epochs", "1", "--batch-size", "100", "--quiet"]
    assert cli.main(["sweep", *common, "--lr", "1e-3,1e-2", "--reg", "0,1e-3",
                     "--seeds", "0,1", "--out", str(out)]) == 0
    for name in ("results.csv", "sweep.png", "best_checkpoint.npz", "summary.json"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_models"] == 8 and summary["swept"] == ["learning_rate", "reg"]
    assert 0 <= summary["test_acc"] <= 1
    assert "done: 8 models" in capsys.readouterr().out
    # `jaxfc evaluate` reads the sweep's best checkpoint.
    assert cli.main(["evaluate", "--checkpoint", str(out / "best_checkpoint.npz"),
                     "--split", "val"]) == 0
    val = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"]
    assert math.isclose(val, summary["best_val_acc"], abs_tol=1e-6)



def test_cli_sweep_random_mode_draws_from_the_ranges():
    from jaxfc.sweep import _cli_space

    args = cli.build_parser().parse_args(
        ["sweep", "--random", "5", "--lr-range", "1e-4:1e-1", "--dropout-range", "0:0.5",
         "--reg", "0,1e-3", "--set", "beta1=0.8", "--lr-decay", "0.9"])
    fixed, varying = _cli_space(args)
    assert fixed["beta1"] == 0.8 and fixed["lr_decay"] == 0.9
    assert varying["learning_rate"] == loguniform(1e-4, 1e-1)
    assert varying["dropout"] == uniform(0.0, 0.5)
    assert varying["reg"] == [0.0, 1e-3]  # a random choice
    args = cli.build_parser().parse_args(["sweep", "--lr", "1e-3,1e-2", "--seeds", "1,2"])
    assert _cli_space(args)[1] == {"learning_rate": [1e-3, 1e-2]} and args.seeds == [1, 2]


@pytest.mark.parametrize("argv, match", [
    (["--lr-range", "1e-4:1e-1"], "add --random N"),
    (["--random", "2"], "needs something to vary"),
    (["--set", "momentum=0.5,0.9"], "unknown hyperparameter 'momentum'"),
    (["--lr", "1e-3,fast"], "--lr takes comma-separated numbers"),
])
def test_cli_sweep_bad_input(tmp_path, capsys, argv, match):
    try:  # argparse exits with status 2 on bad option values; main returns 2 on bad settings
        rc = cli.main(["sweep", "--out", str(tmp_path / "x"), "--epochs", "0", *argv])
    except SystemExit as exit:
        rc = exit.code
    assert rc == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("shared_batches", [False, True])
def test_draws_on_the_host_equal_the_compiled_draws(shared_batches):
    """The sweep draws minibatches, dropout keys and accuracy subsamples on the host; its
    compiled fallback (for keys the host cannot hash) gives the same arrays."""
    import jax

    from jaxfc.optim import adam
    from jaxfc.sweep import _Draws, _Programs

    seeds = [0, 7, 7]
    programs = _Programs(MODEL, adam(), batch_size=BATCH, steps_per_epoch=8,
                         gradients="manual", num_train_samples=60, num_val_samples=None,
                         scale_weights=False, donate=False, sequential=True,
                         shared_batches=shared_batches)
    kw = dict(num_train=160, num_val=50, batch_size=BATCH, steps=8, num_train_samples=60,
              num_val_samples=None, shared_batches=shared_batches)
    host = _Draws(programs, seeds, 3, **kw)
    device = _Draws(programs, seeds, 3, **kw)
    device.on_host = False
    assert host.on_host
    run_keys = jax.vmap(lambda s: jax.random.split(jax.random.key(s))[1])(np.asarray(seeds))
    for e in range(2):
        for h, d in zip(host.epoch(seeds, run_keys, e), device.epoch(seeds, run_keys, e),
                        strict=True):
            assert isinstance(h, np.ndarray)
            np.testing.assert_array_equal(h, d)
        h_train, h_val = host.record(seeds, run_keys, e)
        d_train, d_val = device.record(seeds, run_keys, e)
        np.testing.assert_array_equal(h_train, d_train)
        assert h_train.shape == (3, 60) and h_val is None and d_val is None
    indices, _ = host.epoch(seeds, run_keys, 0)
    assert indices.shape == ((8, BATCH) if shared_batches else (3, 8, BATCH))


def test_epochs_drawn_with_replacement_use_the_compiled_draws_and_match_the_solver():
    """Fewer training samples than a minibatch: the draws are with replacement, which only
    the device computes (Solver and sweep alike)."""
    X, y = _blobs(15, 5)
    small = {"X_train": X, "y_train": y, "X_val": X, "y_val": y}
    result = sweep(MODEL, small, [{"learning_rate": 1e-2}], seeds=[3], **COMMON)
    solver = _solver(MODEL, small, seed=3, optim_config={"learning_rate": 1e-2},
                     **{k: v for k, v in COMMON.items() if k != "verbose"})
    np.testing.assert_allclose(result.loss_history[0], solver.loss_history, rtol=1e-4,
                               atol=1e-6)


def test_initial_carry_on_the_host_equals_the_init_program():
    """The sweep initializes models with the Solver's compiled model.init and the rest on the
    host; the vmapped init program (its fallback) gives the same carry."""
    import jax

    from jaxfc.optim import sgd_momentum
    from jaxfc.sweep import _Programs

    model = FullyConnectedNet([16, 8], input_dim=12, num_classes=4, normalization="batchnorm")
    programs = _Programs(model, sgd_momentum(), batch_size=BATCH, steps_per_epoch=8,
                         gradients="manual", num_train_samples=None, num_val_samples=None,
                         scale_weights=True, donate=False, sequential=True,
                         shared_batches=False)
    seeds = [0, 7, 2**31 + 5]
    opt_hp = {"momentum": np.asarray([0.5, 0.9, 0.8], np.float32)}
    scales = np.asarray([[0.1, 1.0, 2.0], [1e-3, 0.5, 1.0], [1.0, 1.0, 3.0]], np.float32)
    root_keys = jax.random.wrap_key_data(np.stack([[0, s] for s in seeds]).astype(np.uint32))
    on_device = jax.device_get(programs.init(root_keys, opt_hp, scales))
    on_host = jax.device_get(programs.init_on_host(seeds, opt_hp, scales))
    assert jax.tree_util.tree_structure(on_host) == jax.tree_util.tree_structure(on_device)
    for a, b in zip(jax.tree_util.tree_leaves(on_host), jax.tree_util.tree_leaves(on_device),
                    strict=True):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


def test_sweep_with_rbg_default_keys_draws_on_the_device_and_matches_the_solver(data):
    import jax

    with jax.default_prng_impl("rbg"):
        result = sweep(MODEL, data, [{"learning_rate": 1e-2}], seeds=[3], **COMMON)
        solver = _solver(MODEL, data, seed=3, optim_config={"learning_rate": 1e-2},
                         **{k: v for k, v in COMMON.items() if k != "verbose"})
    assert result.compilations["init"] == 1  # the compiled fallback start
    np.testing.assert_allclose(result.loss_history[0], solver.loss_history, rtol=1e-4,
                               atol=1e-6)
