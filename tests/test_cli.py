"""`jaxfc train` and `jaxfc evaluate`: outputs, resuming, and errors that name the problem."""

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxfc.checkpoint import load_checkpoint, read_metadata
from jaxfc.cli import main

# A small, fast run on the bundled digits (the default dataset): 1297 // 100 = 12 steps.
SMALL = ["--hidden-dims", "16", "--batch-size", "100", "--seed", "1"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRIC_KEYS = {"train_acc", "val_acc", "test_acc", "best_epoch", "wall_time_s", "settings"}


def cli(*argv):
    """Run ``jaxfc`` in-process: (exit code, stdout, stderr). Any exception other than
    SystemExit (a traceback for the user) fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:
            if isinstance(e.code, str):  # sys.exit(message): printed, exit status 1
                err.write(e.code + "\n")
                code = 1
            else:
                code = e.code or 0
    return code, out.getvalue(), err.getvalue()


def read_history(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """`jaxfc train --epochs 2` as a user runs it: a separate process, plot included."""
    tmp = tmp_path_factory.mktemp("cli")
    out = tmp / "run"
    script = Path(sys.executable).with_name("jaxfc")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "jaxfc.cli"]
    proc = subprocess.run(
        [*command, "train", "--epochs", "2", *SMALL, "--out", str(out)],
        cwd=tmp, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stderr
    return {"out": out, "stdout": proc.stdout, "tmp": tmp}


def test_train_writes_metrics_history_plot_and_checkpoint(first_run):
    out = first_run["out"]
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "history.csv", "training.png",
                                               "checkpoint.npz"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= metrics.keys()
    for split in ("train_acc", "val_acc", "test_acc"):
        assert 0.5 < metrics[split] <= 1.0, split  # 2 epochs on digits: far above chance
    assert metrics["wall_time_s"] > 0
    settings = metrics["settings"]
    assert settings["epochs"] == 2 and settings["hidden_dims"] == [16]
    assert settings["batch_size"] == 100 and settings["seed"] == 1
    assert settings["dataset"] == "digits"

    rows = read_history(out / "history.csv")
    assert len(rows) == 2 + 1
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert rows[0]["mean_loss"] == "" and all(float(r["mean_loss"]) > 0 for r in rows[1:])
    val = [float(r["val_acc"]) for r in rows]
    assert metrics["best_epoch"] == int(np.argmax(val))
    assert metrics["best_val_acc"] == max(val)
    assert float(rows[2]["learning_rate"]) < float(rows[1]["learning_rate"])  # lr decay

    assert (out / "training.png").read_bytes()[:8] == PNG_MAGIC
    meta = read_metadata(out / "checkpoint.npz")
    assert meta["history"]["epoch"] == 2 and meta["cli"]["epochs"] == 2
    flat, _ = load_checkpoint(out / "checkpoint.npz")
    assert flat["['best_params']['W1']"].shape == (64, 16)
    assert "(Epoch 2 / 2)" in first_run["stdout"]


@pytest.mark.parametrize("split, key", [("test", "test_acc"), ("val", "val_acc")])
def test_evaluate_reports_the_accuracy_in_metrics(first_run, split, key):
    out = first_run["out"]
    metrics = json.loads((out / "metrics.json").read_text())
    code, stdout, stderr = cli("evaluate", "--checkpoint", out / "checkpoint.npz",
                               "--split", split)
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["split"] == split and report["dataset"] == "digits"
    assert report["accuracy"] == metrics[key]
    assert report["num_samples"] == {"test": 300, "val": 200}[split]


def test_resume_continues_exactly_and_the_history_grows(first_run, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(first_run["out"], resumed)
    code, stdout, stderr = cli("train", "--out", resumed, "--resume", "--epochs", "3",
                               "--no-plot", "--quiet")
    assert code == 0, stderr
    assert "at epoch 2 of 3" in stdout
    rows = read_history(resumed / "history.csv")
    assert len(rows) == 3 + 1
    before = read_history(first_run["out"] / "history.csv")
    assert rows[:3] == before  # the first epochs' rows (times included) are kept as they were
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["settings"]["epochs"] == 3 and metrics["epochs"] == 3
    assert read_metadata(resumed / "checkpoint.npz")["history"]["epoch"] == 3

    # The same 3 epochs in one go give the same run, bit for bit.
    straight = tmp_path / "straight"
    code, _, stderr = cli("train", "--epochs", "3", *SMALL, "--out", straight, "--no-plot",
                          "--quiet")
    assert code == 0, stderr
    columns = ("epoch", "train_acc", "val_acc", "mean_loss", "learning_rate")
    assert ([[r[c] for c in columns] for r in read_history(straight / "history.csv")]
            == [[r[c] for c in columns] for r in rows])
    a, _ = load_checkpoint(resumed / "checkpoint.npz")
    b, _ = load_checkpoint(straight / "checkpoint.npz")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    straight_metrics = json.loads((straight / "metrics.json").read_text())
    for key in ("train_acc", "val_acc", "test_acc", "best_epoch"):
        assert metrics[key] == straight_metrics[key], key


def test_train_into_an_existing_run_without_resume_refuses_and_touches_nothing(
        first_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(first_run["out"], run)
    before = snapshot(run)
    code, _, stderr = cli("train", "--epochs", "1", *SMALL, "--out", run)
    assert code != 0
    assert "--resume" in stderr and str(run) in stderr
    assert snapshot(run) == before


def test_resume_needs_a_run(tmp_path):
    code, _, stderr = cli("train", "--resume", "--out", tmp_path / "empty")
    assert code != 0 and "no checkpoint" in stderr and "empty" in stderr
    code, _, stderr = cli("train", "--resume")
    assert code != 0 and "--out" in stderr


@pytest.mark.parametrize("dims", ["16,x", "0", "16,-3", ",", "1.5"])
def test_bad_hidden_dims(dims, tmp_path):
    code, _, stderr = cli("train", "--hidden-dims", dims, "--out", tmp_path / "r")
    assert code == 2
    assert "--hidden-dims" in stderr and repr(dims) in stderr
    assert not (tmp_path / "r").exists()


def test_cifar10_without_data_dir(tmp_path):
    code, _, stderr = cli("train", "--dataset", "cifar10", "--epochs", "1", "--out",
                          tmp_path / "r")
    assert code != 0
    assert "cifar10" in stderr and ("--data-dir" in stderr or "data_dir" in stderr)
    assert "Traceback" not in stderr


@pytest.mark.parametrize("dataset", ["cifar10", "mnist"])
def test_missing_data_folder(dataset, tmp_path):
    missing = tmp_path / "no-such-folder"
    code, _, stderr = cli("train", "--dataset", dataset, "--data-dir", missing, "--epochs",
                          "1", "--out", tmp_path / "r")
    assert code != 0
    assert str(missing) in stderr and "not found" in stderr


def _corrupt(kind, good: Path, path: Path) -> None:
    data = good.read_bytes()
    if kind == "garbage":
        path.write_bytes(b"this is not a checkpoint\n" * 40)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "flipped":  # damage the middle of the archive (a leaf or the header)
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 64])
                         + data[mid + 64:])


CORRUPTIONS = ["garbage", "empty", "truncated", "flipped"]


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_evaluate_corrupt_checkpoint_is_a_clear_error(first_run, tmp_path, kind):
    path = tmp_path / "checkpoint.npz"
    _corrupt(kind, first_run["out"] / "checkpoint.npz", path)
    code, stdout, stderr = cli("evaluate", "--checkpoint", path)
    assert code != 0
    assert str(path) in stderr and "Traceback" not in stderr
    assert stdout == ""


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_resume_from_corrupt_checkpoint_is_a_clear_error(first_run, tmp_path, kind):
    run = tmp_path / "run"
    shutil.copytree(first_run["out"], run)
    _corrupt(kind, first_run["out"] / "checkpoint.npz", run / "checkpoint.npz")
    code, _, stderr = cli("train", "--out", run, "--resume", "--epochs", "3", "--quiet")
    assert code != 0
    assert "checkpoint.npz" in stderr


def test_evaluate_missing_checkpoint(tmp_path):
    code, _, stderr = cli("evaluate", "--checkpoint", tmp_path / "nope.npz")
    assert code != 0 and "nope.npz" in stderr and "not found" in stderr


def _solver_checkpoint(path):
    """A valid checkpoint written by the Solver API, not by `jaxfc train`."""
    from jaxfc.models import FullyConnectedNet
    from jaxfc.solver import Solver

    rng = np.random.default_rng(0)
    data = {"X_train": rng.normal(size=(20, 64)).astype(np.float32),
            "y_train": rng.integers(0, 10, 20).astype(np.int32),
            "X_val": rng.normal(size=(10, 64)).astype(np.float32),
            "y_val": rng.integers(0, 10, 10).astype(np.int32)}
    Solver(FullyConnectedNet((16,), input_dim=64), data, verbose=False).save_checkpoint(path)


def test_checkpoint_not_written_by_the_cli_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _solver_checkpoint(run / "checkpoint.npz")
    code, _, stderr = cli("evaluate", "--checkpoint", run / "checkpoint.npz")
    assert code != 0 and "jaxfc train" in stderr
    code, _, stderr = cli("train", "--out", run, "--resume", "--quiet")
    assert code != 0 and "checkpoint.npz" in stderr
