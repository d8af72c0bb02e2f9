"""The notebooks in ``notebooks/``: generated from their sources, committed without outputs,
and executed top to bottom in a fresh ``python3`` kernel (nbclient), in a temporary working
directory, on the bundled digits. Each notebook ``assert``s its own claims (a failed claim is
a cell error); the test also checks that key cells printed what they should and that the
plots were produced.

Every ``notebooks/*.ipynb`` is executed (a new notebook is covered automatically), and the
notebooks listed in ``EXPECTATIONS`` must exist.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds per cell; the notebooks take well under a minute in all

_spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOK_DIR / "make_notebooks.py")
make_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_notebooks)

NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"  # a printed number, as a group

# Per notebook: (regex over the printed output, predicate on its groups as floats), and the
# least number of figures it must show.
EXPECTATIONS = {
    "FullyConnectedNets": {
        "figures": 4,
        "checks": [
            (rf"affine_forward: difference from the reference {NUM}", lambda e: e < 1e-8),
            (rf"relu_forward: difference from the reference {NUM}", lambda e: e < 1e-7),
            (rf"TwoLayerNet scores: difference from the reference {NUM}", lambda e: e < 1e-6),
            (rf"loss {NUM} \(reference 3.4702243556\), with reg=1.0 {NUM}",
             lambda a, b: abs(a - 3.4702243556) < 1e-8 and abs(b - 26.5948426952) < 1e-8),
            (rf"TwoLayerNet best validation accuracy: {NUM}", lambda a: a > 0.9),
            (rf"overfit 3-layer: train accuracy {NUM}", lambda a: a == 1.0),
            (rf"overfit 5-layer: train accuracy {NUM}", lambda a: a == 1.0),
            (rf"test accuracy {NUM}", lambda a: a > 0.85),
        ],
        "gradient_tables": (8, 1e-3),  # at least this many check tables, each max below this
    },
    "BatchNormalization": {
        "figures": 2,
        "checks": [
            (rf"batchnorm_backward vs batchnorm_backward_alt: max relative difference {NUM}",
             lambda e: e < 1e-10),
            (r"weight scales \(of 9\) reaching 80% validation accuracy: "
             rf"\{{'baseline': {NUM}, 'batchnorm': {NUM}\}}", lambda base, bn: bn >= base + 3),
        ],
        # The whole-model table's max is the biases before batch norm against the numeric
        # gradient (exactly 0 vs noise); the notebook asserts the other rows to 1e-5 itself.
        "gradient_tables": (4, 1e-2),
    },
    "Dropout": {
        "figures": 1,
        "checks": [
            (rf"mean over seeds: val acc {NUM} -> {NUM}, val loss {NUM} -> {NUM} with dropout",
             lambda acc0, acc1, loss0, loss1: acc1 > acc0 + 0.01 and loss1 < loss0 - 0.1),
        ],
        "gradient_tables": (3, 1e-3),
    },
    "ManualVsAutodiff": {
        "figures": 2,
        "checks": [
            (rf"float64, manual vs autodiff: largest scaled error {NUM}", lambda e: e < 1e-12),
            (rf"jax.grad through jaxfc.ops vs the model's manual gradients: {NUM}",
             lambda e: e < 1e-5),
            (rf"\d+ iterations: largest loss difference {NUM}", lambda e: e < 1e-3),
        ],
    },
    "Sweeps": {
        "figures": 2,
        "checks": [
            (rf"{NUM} models in \S+; compiled programs: \{{'init': \d+, 'train': {NUM}",
             lambda models, programs: models == 24 and programs == 1),
            (rf"largest loss difference from the Solver {NUM}", lambda e: e < 1e-3),
        ],
    },
}


def _stdout(nb) -> str:
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.output_type == "stream" and out.get("name") == "stdout"
    )


def _figures(nb) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.output_type in ("display_data", "execute_result")
    )


def test_expected_notebooks_exist():
    names = {path.stem for path in NOTEBOOKS}
    missing = sorted(set(EXPECTATIONS) - names)
    assert not missing, f"notebooks missing from {NOTEBOOK_DIR}: {missing}"


def test_notebooks_are_generated_from_their_sources():
    sources = {src.stem: src for src in make_notebooks.sources()}
    assert set(sources) == {path.stem for path in NOTEBOOKS}, (
        "every notebooks/*.ipynb needs a source notebooks/src/<name>.py and vice versa"
    )
    stale = [
        path.name
        for path in NOTEBOOKS
        if path.read_text() != make_notebooks.render(make_notebooks.build(sources[path.stem]))
    ]
    assert not stale, f"out of date, run `python notebooks/make_notebooks.py`: {stale}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.id


def test_python3_kernel_runs_this_interpreter():
    # nbclient starts the 'python3' kernelspec; ipykernel ships it, and jupyter_client runs
    # an argv[0] of 'python' with sys.executable, so the kernel sees this environment.
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] in ("python", "python3", sys.executable), spec.argv


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_and_shows_its_claims(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("JAXFC_CIFAR_DIR", "JAX_ENABLE_X64", "MPLBACKEND"):
        monkeypatch.delenv(var, raising=False)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the traceback, if a cell fails

    check_outputs(nb, path.stem)
    assert not list(tmp_path.iterdir()), "the notebook wrote files into its working directory"


def check_outputs(nb, name: str) -> None:
    """No error outputs; the expected lines printed, with values that hold; enough figures."""
    errors = [
        out for cell in nb.cells if cell.cell_type == "code"
        for out in cell.outputs if out.output_type == "error"
    ]
    assert not errors
    text = _stdout(nb)
    expected = EXPECTATIONS.get(name, {})
    for pattern, holds in expected.get("checks", []):
        match = re.search(pattern, text)
        assert match, f"{name} printed nothing matching {pattern!r}"
        values = [float(g) for g in match.groups()]
        assert holds(*values), f"{name}: {match.group(0)!r}"
    if "gradient_tables" in expected:
        count, tol = expected["gradient_tables"]
        table = rf"relative errors, max over entries \(max {NUM}\)"
        maxima = [float(m) for m in re.findall(table, text)]
        assert len(maxima) >= count and max(maxima) < tol, maxima
    assert _figures(nb) >= expected.get("figures", 0)
