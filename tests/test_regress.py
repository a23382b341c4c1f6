"""The regression runner on tiny notebooks in a temporary directory (the real sequence: tests/test_notebooks.py)."""
import json
from pathlib import Path

import nbformat
import pytest

from labkit import cli, regress


def write_notebook(path: Path, parameters: str, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(parameters), nbformat.v4.new_code_cell("import json, pathlib\n" + body)]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


WRITE = "pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)\n" \
        "(pathlib.Path(out_dir) / 'metrics.json').write_text(json.dumps(m))\n"


@pytest.fixture
def notebooks(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    # 00 declares no work_dir: regress must not hand it one
    write_notebook(nbs / "00_make.ipynb", 'preset = "quick"\nout_dir = "x"',
                   "assert 'work_dir' not in dir()\n"
                   "m = {'value': 3, 'preset': preset, 'nested': {'x': 0.5}}\n" + WRITE)
    # 01 reads what 00 wrote, through work_dir, and leaves a run directory for the figures
    write_notebook(nbs / "01_use.ipynb", 'preset = "quick"\nout_dir = "x"\nwork_dir = "y"',
                   "from labkit import runs\n"
                   "prev = json.loads((pathlib.Path(work_dir) / '00' / 'metrics.json').read_text())\n"
                   "run = runs.RunDir(pathlib.Path(out_dir) / 'run')\n"
                   "run.log([{'step': s, 'split': 'train', 'metric': 'pass@1', 'value': s / 4} for s in range(4)])\n"
                   "m = {'doubled': 2 * prev['value']}\n" + WRITE)
    return nbs


def thresholds(tmp_path, table: dict) -> Path:
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"smoke": table}))
    return path


def regress_cli(nbs, tmp_path, limits, *extra):
    return cli.main(["regress", "--preset", "smoke", "--notebooks", str(nbs), "--out", str(tmp_path / "out"),
                     "--thresholds", str(thresholds(tmp_path, limits)), *extra])


def test_passes_hands_outputs_on_and_reports(notebooks, tmp_path, capsys):
    limits = {"00_make": {"value": {"min": 3, "max": 3}, "nested.x": {"min": 0.4}},
              "01_use": {"doubled": {"min": 6}}}
    assert regress_cli(notebooks, tmp_path, limits) == 0
    out = capsys.readouterr().out
    assert "[1/2] 00_make" in out and "[2/2] 01_use" in out and "OK: every notebook ran" in out
    work = tmp_path / "out" / "smoke"
    results = json.loads((work / "results.json").read_text())
    assert results["results"][1]["metrics"] == {"doubled": 6}
    assert results["results"][0]["metrics"]["preset"] == "smoke"
    report = (work / "report.html").read_text()
    assert "nested.x" in report and "FAIL" not in report
    table = out[out.index("notebook  "):]
    lines = {tuple(line.split()[:2]): line for line in table.splitlines()[2:] if line.strip()}
    # a metric with a threshold reads "ok"; one without guards nothing and says so
    assert lines[("00_make", "value")].endswith(" ok") and lines[("00_make", "preset")].endswith(" reported")
    assert (work / "figures" / "01" / "curves.html").exists()
    assert (work / "01" / "01_use.ipynb").exists()  # the executed copy, for reading what happened


def test_broken_threshold_and_failed_notebook_fail_with_a_readable_table(notebooks, tmp_path, capsys):
    # a failing notebook between two others: it is a row with its error; the next one still runs
    write_notebook(notebooks / "01_use.ipynb", 'out_dir = "x"', "raise ValueError('boom in the middle')")
    write_notebook(notebooks / "02_after.ipynb", 'out_dir = "x"', "m = {'ran': 1}\n" + WRITE)
    limits = {"00_make": {"value": {"max": 1}, "gone": {"min": 0}}, "02_after": {"ran": {"min": 1}}}
    assert regress_cli(notebooks, tmp_path, limits, "--set", "figures=false") == 1
    out = capsys.readouterr().out
    table = out[out.index("notebook  "):]
    lines = {tuple(line.split()[:2]): line for line in table.splitlines()[2:] if line.strip()}
    assert lines[("00_make", "value")].split()[-3:] == ["<=", "1", "FAIL"]
    assert lines[("00_make", "gone")].split()[2] == "missing" and lines[("00_make", "gone")].endswith("FAIL")
    assert "ValueError: boom in the middle" in lines[("01_use", "(run)")] and lines[("01_use", "(run)")].endswith(
        "FAIL")
    assert lines[("02_after", "ran")].endswith("ok") and lines[("02_after", "(run)")].endswith("ok")
    assert "REGRESSION: 3 failing row(s)" in out
    assert (tmp_path / "out" / "smoke" / "report.html").read_text().count("class=fail") == 3


def test_bad_input_is_a_user_error(tmp_path):
    assert cli.main(["regress", "--notebooks", str(tmp_path)]) == 2
    (tmp_path / "00_x.ipynb").write_text("{}")
    assert cli.main(["regress", "--notebooks", str(tmp_path), "--thresholds", str(tmp_path / "no.json")]) == 2


def test_check_and_flatten():
    assert regress.flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
    assert regress.within(0.5, {"min": 0.4, "max": 0.6}) and not regress.within(0.7, {"max": 0.6})
    assert not regress.within("n/a", {"min": 0}) and not regress.within(float("nan"), {"min": 0})
    assert regress.within("anything", None)
