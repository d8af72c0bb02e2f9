"""The persistent compilation cache: a second process loads the compiled epoch from disk."""

import json
import os
import subprocess
import sys

import pytest

from jaxfc.compilation_cache import default_cache_dir, enable_compilation_cache

# Builds a small Solver, runs its first epoch (compilation included), trains; prints the
# cache folder's entries and the last loss.
SCRIPT = r"""
import json, sys
import jax
import jaxfc
from jaxfc import FullyConnectedNet, Solver, load_digits
folder = jaxfc.enable_compilation_cache(sys.argv[1])
data = load_digits()
model = FullyConnectedNet((32,), input_dim=64, num_classes=10)
solver = Solver(model, data, update_rule="adam", num_epochs=1, batch_size=100, verbose=False)
state, _ = solver._epoch_fn(solver._state, solver.X_train, solver.y_train,
                            *solver._epoch_inputs(0), 1e-3)
jax.block_until_ready(state)
loss = float(solver.train().loss_history[-1])
print(json.dumps({"files": sorted(p.name for p in folder.iterdir()), "loss": loss}))
"""


def _run(folder):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(folder)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_second_process_reuses_the_compiled_programs(tmp_path):
    folder = tmp_path / "xla"
    first = _run(folder)
    assert len(first["files"]) >= 3  # start, epoch and accuracy programs were written
    second = _run(folder)
    # Every program came from the cache (no new entries), with the same training result.
    assert second["files"] == first["files"]
    assert second["loss"] == first["loss"]


def test_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXFC_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("JAXFC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "jaxfc" / "xla"


def test_unusable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="cannot create the compilation cache folder .*a_file"):
        enable_compilation_cache(blocker / "xla")


@pytest.mark.parametrize("flag, kept", [([], True), (["--no-compile-cache"], False)])
def test_command_line_keeps_programs_unless_told_not_to(tmp_path, flag, kept):
    folder = tmp_path / "xla"
    proc = subprocess.run(
        [sys.executable, "-m", "jaxfc.cli", "train", "--epochs", "1", "--hidden-dims", "8",
         "--no-plot", "--quiet", "--out", str(tmp_path / "run"), *flag],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "JAXFC_CACHE_DIR": str(folder), "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 0, proc.stderr
    assert (folder.is_dir() and any(folder.iterdir())) == kept


def test_command_line_runs_without_a_cache_when_the_folder_is_unusable(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = subprocess.run(
        [sys.executable, "-m", "jaxfc.cli", "train", "--epochs", "1", "--hidden-dims", "8",
         "--no-plot", "--quiet", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "JAXFC_CACHE_DIR": str(blocker / "xla"), "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: cannot create the compilation cache folder" in proc.stderr
    assert (tmp_path / "run" / "checkpoint.npz").is_file()
