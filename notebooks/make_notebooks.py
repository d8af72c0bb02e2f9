"""Build the notebooks from their sources, and optionally execute them.

Each notebook is written as a plain Python file in ``notebooks/src/`` in the "percent" format:
a line ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose lines are
comments (``# `` is stripped). The sources are what reviewers read and edit; the ``.ipynb``
files are generated from them, without outputs and with stable cell ids, so regenerating an
unchanged source changes nothing. Each source also runs as a script (``python src/X.py``).

    python notebooks/make_notebooks.py                  # write notebooks/*.ipynb
    python notebooks/make_notebooks.py --check          # fail if an .ipynb is out of date
    python notebooks/make_notebooks.py --execute [NAME ...] [--out runs/notebooks]

``--execute`` runs each notebook top to bottom in a fresh ``python3`` kernel (nbclient) with
the output folder as working directory, and writes the executed copies (outputs, plots) there;
the default folder ``runs/notebooks/`` is git-ignored. Set ``JAXFC_CIFAR_DIR`` to a
``cifar-10-batches-py`` folder to run them on CIFAR-10 instead of the bundled digits.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def parse_percent(text: str) -> list[tuple[str, str]]:
    """``[(kind, source), ...]`` from a percent-format script (kind: 'code' or 'markdown')."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
            cells.append((kind, []))
        elif cells:
            cells[-1][1].append(line)
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"code before the first '# %%' marker: {line!r}")
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        source = "\n".join(lines).strip("\n")
        if source:
            out.append((kind, source))
    return out


def build(src: Path) -> nbformat.NotebookNode:
    """The notebook for one source file: no outputs, cell ids ``cell-00, cell-01, ...``."""
    nb = new_notebook(
        metadata={"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    )
    for i, (kind, source) in enumerate(parse_percent(src.read_text())):
        cell = (new_markdown_cell if kind == "markdown" else new_code_cell)(source)
        cell["id"] = f"cell-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def sources() -> list[Path]:
    return sorted(SRC.glob("*.py"))


def target(src: Path) -> Path:
    return HERE / f"{src.stem}.ipynb"


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def execute(path: Path, out_dir: Path, timeout: int = 900) -> float:
    """Run the notebook at ``path`` in a fresh kernel inside ``out_dir``; write the executed
    copy there and return the seconds it took. Raises ``CellExecutionError`` on a failure."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    out_dir.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3",
        resources={"metadata": {"path": str(out_dir)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        nbformat.write(nb, out_dir / path.name)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="notebook names (default: all)")
    parser.add_argument("--check", action="store_true", help="only check the .ipynb are current")
    parser.add_argument("--execute", action="store_true", help="also execute the notebooks")
    parser.add_argument("--out", default="runs/notebooks", help="folder for executed copies")
    args = parser.parse_args(argv)

    srcs = sources()
    if args.names:
        wanted = {Path(n).stem for n in args.names}
        unknown = wanted - {s.stem for s in srcs}
        if unknown:
            parser.error(f"unknown notebook(s) {sorted(unknown)}; have {[s.stem for s in srcs]}")
        srcs = [s for s in srcs if s.stem in wanted]

    stale = []
    for src in srcs:
        text = render(build(src))
        dest = target(src)
        if dest.exists() and dest.read_text() == text:
            continue
        if args.check:
            stale.append(dest.name)
        else:
            dest.write_text(text)
            print(f"wrote {dest.relative_to(HERE.parent)}")
    if stale:
        print(f"out of date (run python notebooks/make_notebooks.py): {stale}", file=sys.stderr)
        return 1

    if args.execute:
        out_dir = Path(args.out).resolve()
        for src in srcs:
            seconds = execute(target(src), out_dir)
            print(f"executed {src.stem}.ipynb in {seconds:.1f}s -> {out_dir / target(src).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
