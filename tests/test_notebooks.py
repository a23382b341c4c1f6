"""Every notebook runs headless under papermill at the smoke preset and writes its metrics.json."""
import json
from pathlib import Path

import nbformat
import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), "no papermill parameters cell"
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"cells with outputs committed: {dirty}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_headless_at_smoke(path, tmp_path):
    out_dir = tmp_path / "out"
    papermill.execute_notebook(str(path), str(tmp_path / path.name), cwd=str(path.parent),
                               parameters={"preset": "smoke", "out_dir": str(out_dir)},
                               kernel_name="python3", progress_bar=False,
                               execution_timeout=600)  # a hung cell fails the test instead of CI
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics, "the notebook wrote an empty metrics.json"
