"""Every notebook runs headless under papermill at the smoke preset, in order, as the main job runs them.

One `labkit regress --preset smoke` run executes the whole sequence: each notebook hands its outputs on to the
next (04 and 05 train from 02's data and 03's base, 06 draws 04's and 05's runs; 07 runs the smoke suite), writes
its metrics.json, and its metrics are checked against the smoke thresholds. A failing notebook shows in the
printed table with its error. The run's figures are skipped here: `tests/test_regress.py` and
`tests/test_viz.py` cover them. Notebooks 04-06 are also run on their own, as a user opening one would.
"""
import json
from pathlib import Path

import nbformat
import pytest

from labkit import cli

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
def test_papermill_reads_every_parameter(path, caplog):
    # papermill skips (with a log line) a parameter it cannot parse, e.g. quotes inside the line's comment;
    # a skipped parameter cannot be set from `regress` or the command line.
    import papermill

    with caplog.at_level("WARNING"):
        names = papermill.inspect_notebook(str(path))
    assert "Unable to parse" not in caplog.text
    assert {"preset", "overrides", "out_dir"} <= set(names)


@pytest.mark.longest
def test_the_sequence_runs_headless_at_smoke_and_passes_regress(tmp_path, capsys):
    # cell_timeout: a hung cell fails the test instead of stalling CI
    rc = cli.main(["regress", "--preset", "smoke", "--out", str(tmp_path), "--set", "figures=false",
                   "--set", "cell_timeout=600"])
    out = capsys.readouterr().out
    assert rc == 0, out[-6000:]
    results = json.loads((tmp_path / "smoke" / "results.json").read_text())["results"]
    assert [r["notebook"] for r in results] == [p.stem for p in NOTEBOOKS]
    for r in results:
        assert r["error"] is None and r["metrics"], r
        assert (tmp_path / "smoke" / r["notebook"][:2] / f"{r['notebook']}.ipynb").exists()


@pytest.mark.slow   # minutes: each notebook makes its own data and model; the sequence test runs every notebook
@pytest.mark.parametrize("stem", ["04_sft", "05_rl", "06_dashboard"])
def test_a_notebook_opened_on_its_own_makes_what_it_lacks(stem, tmp_path):
    # Without the earlier notebooks' outputs beside it, 04 and 05 synthesise their data (and take a random
    # tiny model at smoke), and 06 trains two small demo runs to draw.
    import papermill

    path = next(p for p in NOTEBOOKS if p.stem == stem)
    out = tmp_path / stem[:2]
    parameters = {"preset": "smoke", "out_dir": str(out)}
    if stem == "06_dashboard":
        parameters["work_dir"] = str(tmp_path / "nothing-here")
    papermill.execute_notebook(str(path), str(tmp_path / path.name), parameters=parameters, cwd=str(path.parent),
                               progress_bar=False, execution_timeout=600)
    assert json.loads((out / "metrics.json").read_text())
    made = out / "demo" if stem == "06_dashboard" else out / "data" / "manifest.json"
    assert made.exists()


@pytest.mark.slow   # ~40 s: a smoke pretraining inside the notebook; the sequence test runs 03 without retraining
def test_notebook_03_retrains_on_request_and_compares_the_digests(tmp_path):
    # At smoke the retrain is a tiny pretraining run: not the committed recipe, so the digests must differ.
    import papermill

    path = next(p for p in NOTEBOOKS if p.stem == "03_base_model")
    out = tmp_path / "03"
    nb = papermill.execute_notebook(str(path), str(tmp_path / path.name), cwd=str(path.parent), progress_bar=False,
                                    parameters={"preset": "smoke", "retrain": True, "out_dir": str(out)},
                                    execution_timeout=600)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "differs from the committed base (smoke preset)" in text
    assert (out / "pretrain" / "model" / "model.safetensors").exists()
    assert json.loads((out / "metrics.json").read_text())["heldout_loss"] > 0
