"""Live curves: points collected from a trainer's records, and runs in other processes followed by their files."""
import pytest

from labkit import runs
from labkit.viz import live


@pytest.fixture
def shown(monkeypatch):
    """Record each redraw instead of displaying it."""
    calls = []
    monkeypatch.setattr(live.LiveCurves, "show", lambda self: calls.append(self.title))
    return calls


def rec(step, split, metric, value):
    return {"step": step, "split": split, "metric": metric, "value": value}


def test_live_curves_collect_the_metric_per_split_and_the_loss(shown):
    curves = live.LiveCurves("run", metric="pass@1", loss="reward_mean")
    curves([rec(0, "train", "pass@1", 0.1), rec(0, "test_target", "pass@1", 0.0), rec(0, "train", "kl", 0.0)])
    curves([rec(1, "rl", "reward_mean", 0.5)])
    curves([rec(1, "rl", "kl", 0.01)])                      # nothing drawn changes: no redraw
    assert curves.points == {"train": [(0, 0.1)], "test_target": [(0, 0.0)], "reward_mean": [(1, 0.5)]}
    assert shown == ["run", "run"]
    fig = curves.figure()
    assert [t.name for t in fig.data] == ["train", "test_target", "reward_mean"]


def test_live_runs_follow_metrics_files_as_they_grow_and_when_a_resume_cuts_them(tmp_path, shown):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    follow = live.LiveRuns({"A": a, "B": b})
    follow()                                                # no files yet: nothing drawn
    assert shown == []
    runs.write_jsonl(a / "metrics.jsonl", [rec(0, "train", "pass@1", 0.0), rec(10, "train", "train_loss", 2.0)])
    follow()
    follow()                                                # unchanged: not redrawn
    assert shown == ["A"] and follow.curves["A"].points == {"train": [(0, 0.0)], "train_loss": [(10, 2.0)]}
    with open(a / "metrics.jsonl", "a") as f:
        f.write('{"step": 20, "split": "train", "metric": "train_lo')   # a line being written
    follow()
    assert shown == ["A"]
    runs.write_jsonl(a / "metrics.jsonl", [rec(0, "train", "pass@1", 0.0)])   # resumed: the tail dropped
    follow()
    assert shown == ["A", "A"] and follow.curves["A"].points == {"train": [(0, 0.0)]}


def test_in_a_kernel_each_figure_is_one_output_redrawn_in_place():
    import nbclient
    import nbformat
    code = ("from labkit.viz.live import LiveCurves\n"
            "a, b = LiveCurves('a'), LiveCurves('b')\n"
            "for step in range(4):\n"
            "    a([{'step': step, 'split': 'train', 'metric': 'pass@1', 'value': step / 4}])\n"
            "    b([{'step': step, 'split': 'train', 'metric': 'train_loss', 'value': 1 / (step + 1)}])")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["display_data", "display_data"]
    fig = outputs[0].data["application/vnd.plotly.v1+json"]
    assert fig["layout"]["title"]["text"] == "a" and len(fig["data"][0]["x"]) == 4   # the last state
