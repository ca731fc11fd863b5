"""The notebooks in notebooks/: committed without outputs, and each runs top to bottom in a fresh kernel.

They run on a subset (``DIGITS_NOTEBOOK_LIMIT`` training images, one epoch;
2,000 unless the environment says otherwise) with nbclient, and any cell
that raises fails the test.  The kernel is this test's own Python, from a
kernel spec written for the test, so it imports this checkout's ``digits``
whatever kernels the machine has installed; IPython's profile is a fresh
one, so no startup file of the user's runs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from helpers import skip_or_fail

try:
    import nbclient
    import nbformat
except ImportError:
    skip_or_fail("no nbclient and nbformat (pip install -e '.[test]')", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LIMIT = os.environ.get("DIGITS_NOTEBOOK_LIMIT", "2000")
CELL_TIMEOUT = 300  # seconds; a cell trains or starts a server at most


def test_there_are_the_two_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "your-own-pictures.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_have_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"


@pytest.fixture
def kernel(tmp_path, monkeypatch, mnist_dir) -> str:
    """A kernel spec running this Python on this checkout, in a folder only this test's Jupyter sees."""
    name = "digits-test"
    spec = tmp_path / "jupyter" / "kernels" / name
    spec.mkdir(parents=True)
    pythonpath = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Digits (test)",
        "language": "python",
        # The kernel runs in another folder: a relative data dir (CI's) is made absolute.
        "env": {"PYTHONPATH": pythonpath, "DIGITS_DATA_DIR": str(Path(mnist_dir).resolve()),
                "DIGITS_NOTEBOOK_LIMIT": LIMIT,
                "IPYTHONDIR": str(tmp_path / "ipython")},
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    return name


def _outputs(nb, kind: str) -> list:
    """Every output of that MIME type, in order."""
    return [o["data"][kind] for c in nb.cells if c.cell_type == "code"
            for o in c.outputs if kind in o.get("data", {})]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, kernel, tmp_path):
    nb = nbformat.read(path, as_version=4)
    work = tmp_path / "work"
    work.mkdir()
    client = nbclient.NotebookClient(nb, kernel_name=kernel, timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell raises

    figures, html = _outputs(nb, "image/png"), "\n".join(_outputs(nb, "text/html"))
    if path.stem == "quickstart":
        # Samples, curves, confusion, mistakes, predictions, comparison (Digits' figures), and the photo.
        assert len(figures) >= 7
        assert "Run mlp" in html and "Run fast" in html and "test accuracy" in html
        assert "Evaluation" in html and "Prediction" in html and "Reading" in html
        assert sorted(p.name.split("-")[0] for p in (work / "runs").iterdir()) == ["fast", "mlp"]
    else:
        assert len(figures) >= 2  # the photo before and after, the page of numbers
        assert "Prediction" in html and "Reading" in html
        printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
        assert "server stopped: True" in printed, printed[-2000:]
