"""Data-parallel training over 8 forced host devices equals single-device training.

The device count must be fixed before JAX starts, so the check runs in a fresh process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from jaxfc.parallel import check_batch_divisible, data_mesh

SCRIPT = Path(__file__).parent / "scripts" / "data_parallel_check.py"


@pytest.fixture(scope="module")
def report_lines():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.strip().splitlines()
            if line.startswith("{")]


@pytest.fixture(scope="module")
def report(report_lines):
    return report_lines[0]


def test_runs_on_eight_devices(report):
    assert report["num_devices"] == 8
    assert report["param_devices"] == 8


def test_batch_is_split_across_the_devices(report):
    assert report["num_shards"] == 8
    assert report["shard_shape"] == [8, 64]
    # Gradients and batch-norm statistics are reduced across devices inside the epoch.
    assert report["all_reduces"] > 0


def test_sharded_training_matches_single_device(report):
    assert report["max_param_diff"] < 1e-4
    assert report["loss_diff"] < 1e-4
    assert report["val_acc_sharded"] == pytest.approx(report["val_acc_single"], abs=0.011)


def test_batch_not_divisible_by_devices_names_the_fix():
    mesh = data_mesh(1)
    check_batch_divisible(7, mesh)  # one device divides everything
    fake = type("FakeMesh", (), {"devices": __import__("numpy").empty(8)})()
    with pytest.raises(ValueError, match=r"batch_size=100 does not split evenly over 8 devices"):
        check_batch_divisible(100, fake)


def test_asking_for_more_devices_than_exist_is_an_error():
    with pytest.raises(ValueError, match="JAX sees"):
        data_mesh(len(jax.devices()) + 1)


@pytest.fixture(scope="module")
def sweep_report(report_lines):
    return report_lines[-1]


def test_sweep_spreads_models_over_the_devices(sweep_report):
    # 6 models on 8 devices: the chunk is rounded up to a multiple of the device count.
    assert sweep_report["sweep_chunk_size"] == 8
    assert sweep_report["sweep_max_diff"] < 1e-4
    assert sweep_report["sweep_val_diff"] < 0.011
