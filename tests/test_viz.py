"""The run figures are pure readers of run directories: fabricate a few runs and check what they draw, what the
dashboard wires to its controls, and what the one writer (`labkit.viz.export`) puts in files. Also the package's
arrows: nothing outside labkit/viz draws."""
import json
import math
import shutil
import subprocess
import sys

import plotly.graph_objects as go
import pytest

from labkit import runs
from labkit.config import UserError
from labkit.viz import export
from labkit.viz import runs as vruns
from labkit.viz.dashboard import dashboard

SPLITS = ("train", "test_target")


@pytest.fixture
def run_dirs(fake_run, tmp_path):
    return [fake_run(tmp_path / "a" / f"sft-s{s}", seed=s) for s in (0, 1, 2)] + \
           [fake_run(tmp_path / "b" / "sft-s0", seed=0, lr=1e-2)]


def test_labels_are_unique_and_short(run_dirs):
    names = vruns.labels(run_dirs)
    assert names[run_dirs[0]] == "a/sft-s0"  # two runs named sft-s0: all labels take the parent
    assert len(set(names.values())) == 4
    assert vruns.labels(run_dirs[1:3]) == {run_dirs[1]: "sft-s1", run_dirs[2]: "sft-s2"}


def test_load_rejects_a_directory_without_metrics(tmp_path):
    with pytest.raises(UserError, match="no metrics.jsonl"):
        vruns.load([tmp_path])


def test_curves_one_trace_per_run_and_split(run_dirs):
    fig = vruns.curves(run_dirs, metric="pass@5", x="tokens")
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 4 * 2
    assert fig.data[0].name == "a/sft-s0 · test_target"
    assert list(fig.data[0].x) == [0, 5120, 10240, 15360, 20480]
    assert max(fig.data[0].y) == pytest.approx(0.6) and max(fig.data[1].y) == pytest.approx(0.9)


def test_curves_carry_the_standard_error_where_runs_log_it(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text("{}")
    rows = [{"step": s, "epoch": 0, "tokens": 0, "wall_time": 0, "split": "train", "metric": m, "value": v}
            for s in (0, 10) for m, v in (("pass@1", 0.5), ("pass@1_se", 0.05 + s / 1000))]
    runs.write_jsonl(run / "metrics.jsonl", rows)
    trace = vruns.curves([run], splits=["train"]).data[0]
    assert list(trace.error_y.array) == pytest.approx([0.05, 0.06])


def test_smoothing_flattens_but_keeps_the_first_point(run_dirs):
    raw = vruns.curves(run_dirs[:1], splits=["test_target"]).data[0].y
    smoothed = vruns.curves(run_dirs[:1], splits=["test_target"], smoothing=0.8).data[0].y
    assert smoothed[0] == raw[0]
    assert max(smoothed) < max(raw)


def test_unknown_x_axis_is_a_user_error(run_dirs):
    with pytest.raises(UserError, match="x-axis"):
        vruns.curves(run_dirs, x="flops")


def test_seed_groups_ignore_seed_and_out_dir(run_dirs):
    groups = vruns.seed_groups(run_dirs)
    assert sorted(len(m) for m in groups.values()) == [1, 3]


def test_seed_groups_join_runs_started_from_sibling_seeds(fake_run, tmp_path):
    # RL runs of seeds 0 and 1, each started from the SFT run of its own seed: one experiment
    for seed in (0, 1):
        fake_run(tmp_path / f"sft-s{seed}", seed=seed)
        rl = fake_run(tmp_path / f"rl-s{seed}", seed=seed)
        cfg = json.loads((rl / "config.json").read_text())
        (rl / "config.json").write_text(json.dumps({**cfg, "init": str(tmp_path / f"sft-s{seed}")}))
    groups = vruns.seed_groups([tmp_path / "rl-s0", tmp_path / "rl-s1"])
    assert list(groups.values()) == [[tmp_path / "rl-s0", tmp_path / "rl-s1"]]
    # started from different experiments: two groups
    cfg = json.loads((tmp_path / "sft-s1" / "config.json").read_text())
    (tmp_path / "sft-s1" / "config.json").write_text(json.dumps({**cfg, "lr": 1.0}))
    assert len(vruns.seed_groups([tmp_path / "rl-s0", tmp_path / "rl-s1"])) == 2


def test_seed_bands_mean_and_band(run_dirs):
    fig = vruns.seed_bands(run_dirs, split="test_target")
    lines = [t for t in fig.data if t.fill != "toself"]
    three = next(t for t in lines if "n=3" in t.name)
    # held-out at step 20 is 0.5 + 0.01*seed: mean over seeds 0,1,2 is 0.51
    assert three.y[2] == pytest.approx(0.51)
    band = next(t for t in fig.data if t.fill == "toself" and t.legendgroup == three.legendgroup)
    assert max(band.y) == pytest.approx(0.52) and min(band.y) == pytest.approx(0.30)
    # wall time differs by seed: x is averaged over the seeds
    wall = next(t for t in vruns.seed_bands(run_dirs, split="test_target", x="wall time (s)").data if "n=3" in
                (t.name or ""))
    assert wall.x[1] == pytest.approx(15 + 1)


def test_gap_marks_the_held_out_peak(fake_run, run_dirs):
    fig = vruns.gap(run_dirs[:1])
    peak = next(t for t in fig.data if t.name.startswith("held-out peak"))
    assert list(peak.x) == [20] and peak.y[0] == pytest.approx(0.5)
    assert "overfitting onset" in peak.name
    assert fig.layout.shapes[0].x0 == 20
    # a held-out curve still rising at the end has a peak but no onset
    rising = vruns.gap([fake_run(run_dirs[0].parent / "late", peak_at=40)])
    assert next(t for t in rising.data if t.name.startswith("held-out peak")).name == "held-out peak"


def test_atom_heatmap_pass_rates(run_dirs):
    fig = vruns.atom_heatmap(run_dirs[0])
    heat = fig.data[0]
    assert set(heat.y) == {"add", "atom0", "atom1", "atom2"}
    add = list(heat.y).index("add")
    # at step 0 one of 6 samples passes; at step 40 five of 6
    assert heat.z[add][0] == pytest.approx(1 / 6) and heat.z[add][-1] == pytest.approx(5 / 6)
    assert all(0 <= v <= 1 for row in heat.z for v in row if not math.isnan(v))


def test_error_shares_sum_to_one_and_split_runtime_errors_by_type(run_dirs):
    fig = vruns.error_shares(run_dirs[0])
    names = [t.name for t in fig.data]
    assert names[0] == "pass" and "NameError" in names and "syntax_error" in names
    totals = [sum(t.y[i] for t in fig.data) for i in range(5)]
    assert totals == pytest.approx([1.0] * 5)


def test_samples_table_shows_code_and_verdicts(run_dirs):
    fig = vruns.samples_table(run_dirs[0], step=10)
    cells = fig.data[0].cells.values
    assert "step 10" in fig.layout.title.text
    assert list(cells[3]).count("pass") == 2
    assert "&lt;" in cells[4][0] and "\u00a0" in cells[4][0]  # escaped, indentation kept
    assert vruns.samples_table(run_dirs[0], split="train").data[0].cells.values[1] == ["train"] * 3


def test_runs_without_samples_still_draw(tmp_path, run_dirs):
    bare = tmp_path / "bare"
    shutil.copytree(run_dirs[0], bare)
    shutil.rmtree(bare / "samples")
    assert vruns.atom_heatmap(bare).data == ()
    assert "no samples" in vruns.samples_table(bare).layout.title.text
    assert set(export.all_figures([bare])) == {"curves", "seed-bands", "gap-bare"}


def test_dashboard_widgets_redraw_on_change(run_dirs):
    board = dashboard(run_dirs)
    controls, tabs = board.children
    run_sel, (split_sel, metric_sel), (x_sel, smooth_sel) = controls.children[0], *[
        c.children for c in controls.children[1:]]
    curves_view, samples_view = tabs.children[0].children[0], tabs.children[3].children[1]

    def shown(view):
        (output,) = view.outputs
        return output["data"]["application/vnd.plotly.v1+json"]

    before = shown(curves_view)["data"][0]["y"]
    smooth_sel.value = 0.9
    assert shown(curves_view)["data"][0]["y"] != before
    metric_sel.value = "pass@5"
    assert shown(curves_view)["layout"]["yaxis"]["title"]["text"] == "pass@5"
    run_sel.value = run_sel.options[:1]
    assert len(shown(curves_view)["data"]) == 1
    step_sel = tabs.children[3].children[0].children[1]
    assert list(step_sel.options) == [0, 10, 20, 30, 40] and "step 40" in shown(samples_view)["layout"]["title"]["text"]
    step_sel.value = 0
    assert "step 0" in shown(samples_view)["layout"]["title"]["text"]


def add_rollouts(path, steps=(1, 2, 3), per_step=50):
    """RL's rollout tables as `rl.train` writes them: statuses in turn; a `fine` penalty on the NameError rows."""
    run = runs.RunDir(path)
    for step in steps:
        rows = []
        for i in range(per_step):
            status = ("pass", "fail", "runtime_error")[i % 3]
            error = status == "runtime_error"
            rows.append({"task_id": f"t{i // 4}", "split": "train_A", "sample": i % 4, "reward": 1.0 if i % 3 == 0
                         else -0.3, "completion": "    y = x\n    return y < z\n", "status": status,
                         "error_type": "NameError" if error else None, "error_line": 2 if error else None,
                         "penalty_line": 2 if error else None, "truncated": False})
        run.write_rollouts(step, rows)


def test_samples_table_pages_through_training_rollouts_by_status(run_dirs):
    add_rollouts(run_dirs[0])
    fig = vruns.samples_table(run_dirs[0], source="rollouts")
    cells = fig.data[0].cells.values
    assert "training rollouts at step 3" in fig.layout.title.text and "page 1 of 2" in fig.layout.title.text
    assert len(cells[0]) == 40 and list(cells[3][:3]) == ["pass", "fail", "NameError"]
    assert list(cells[2][:2]) == ["1.00", "-0.30"] and cells[4][2] == "2"
    # The penalised line is drawn in red; the others as they are.
    assert '<span style="color:#d62728">\u00a0\u00a0\u00a0\u00a0return\u00a0y\u00a0&lt;\u00a0z</span>' in cells[5][2]
    assert "span" not in cells[5][0]
    assert len(vruns.samples_table(run_dirs[0], source="rollouts", page=2).data[0].cells.values[0]) == 10
    errors = vruns.samples_table(run_dirs[0], step=1, source="rollouts", status="runtime_error")
    assert set(errors.data[0].cells.values[3]) == {"NameError"} and len(errors.data[0].cells.values[3]) == 16
    assert "status runtime_error" in errors.layout.title.text and "step 1" in errors.layout.title.text
    assert "no training rollouts" in vruns.samples_table(run_dirs[1], source="rollouts").layout.title.text
    # Evaluation samples take the status filter too.
    passed = vruns.samples_table(run_dirs[0], step=40, status="pass").data[0].cells.values[3]
    assert set(passed) == {"pass"} and len(passed) == 5


def test_dashboard_browses_training_rollouts_by_status_and_page(run_dirs):
    add_rollouts(run_dirs[0])
    board = dashboard(run_dirs)
    browser = board.children[1].children[3]
    (sample_run, step_sel, source_sel, status_sel, page_sel), samples_view = browser.children[0].children, \
        browser.children[1]

    def table():
        (output,) = samples_view.outputs
        fig = output["data"]["application/vnd.plotly.v1+json"]
        return fig["layout"]["title"]["text"], fig["data"][0]["cells"]["values"]

    assert sample_run.value == "a/sft-s0" and "samples at step 40" in table()[0]
    source_sel.value = "training rollouts"
    assert list(step_sel.options) == [1, 2, 3] and page_sel.max == 2
    title, cells = table()
    assert "training rollouts at step 3" in title and len(cells[0]) == 40
    page_sel.value = 2
    assert "page 2 of 2" in table()[0] and len(table()[1][0]) == 10
    status_sel.value = "runtime_error"
    title, cells = table()
    assert set(cells[3]) == {"NameError"} and "page 1 of 1" in title and page_sel.value == 1
    step_sel.value = 1
    assert "step 1" in table()[0]
    source_sel.value = "evaluation samples"
    assert list(step_sel.options) == [0, 10, 20, 30, 40]
    assert "samples at step 40, status runtime_error: 0 of 0 shown" in table()[0]   # step 40 has none
    status_sel.value = "syntax_error"
    assert list(table()[1][3]) == ["syntax_error"]


def test_figures_cli_writes_html_and_png(run_dirs, tmp_path):
    if not shutil.which("chromium"):
        pytest.skip("Debian chromium is not installed (setup.sh installs it): PNG export needs it")
    out = tmp_path / "figs"
    proc = subprocess.run([sys.executable, "-m", "labkit", "figures", *map(str, run_dirs[:2]), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "curves.png" in pngs and "atoms-sft-s0.png" in pngs
    assert sorted(p.stem for p in out.glob("*.html")) == [p[:-4] for p in pngs]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plotly" in (out / "curves.html").read_text()[:20000].lower()


def test_find_runs_by_path_and_glob(run_dirs, tmp_path):
    assert vruns.find_runs([tmp_path / "a"]) == sorted(run_dirs[:3])
    assert vruns.find_runs(str(tmp_path / "*" / "sft-s0")) == sorted([run_dirs[0], run_dirs[3]])
    assert vruns.find_runs([tmp_path / "nothing-here"]) == []


def test_samples_without_atoms_take_them_from_the_runs_data_dir(run_dirs, tmp_path):
    data = tmp_path / "data"
    runs.write_jsonl(data / "train_A.jsonl", [{"id": f"t{t}", "atoms": ["from_data"]} for t in range(6)])
    run = run_dirs[0]
    (run / "config.json").write_text(json.dumps({"seed": 0, "data_dir": str(data)}))
    for path in (run / "samples").glob("*.jsonl"):
        runs.write_jsonl(path, [{k: v for k, v in r.items() if k != "atoms"} for r in runs.read_jsonl(path)])
    assert list(vruns.atom_heatmap(run).data[0].y) == ["from_data"]


def test_continued_draws_rl_on_from_the_sft_step_it_started_at(fake_run, tmp_path):
    sft = fake_run(tmp_path / "sft")
    (sft / "checkpoints").mkdir()
    (sft / "checkpoints" / "index.json").write_text(json.dumps({"last": "step-000040", "best": "step-000020"}))
    rl = fake_run(tmp_path / "rl", steps=(0, 5, 10))
    (rl / "config.json").write_text(json.dumps({"seed": 0, "init": str(sft)}))
    fig = vruns.continued(sft, [rl])
    assert [t.name for t in fig.data] == ["sft", "rl"] and fig.data[1].line.dash == "dash"
    assert list(fig.data[0].x) == [0, 10, 20, 30, 40] and list(fig.data[1].x) == [40, 45, 50]
    base = fake_run(tmp_path / "rl-base", steps=(0, 5))
    (base / "config.json").write_text(json.dumps({"seed": 0, "init": "base"}))
    assert list(vruns.continued(sft, [base]).data[1].x) == [0, 5]


def test_final_bars_show_each_runs_last_evaluation(run_dirs):
    fig = vruns.final_bars(run_dirs[:2], splits=["train", "test_target"])
    assert [t.name for t in fig.data] == ["sft-s0", "sft-s1"] and fig.layout.barmode == "group"
    # step 40: train min(1, 0.8 + 0.01*seed), held-out 0.5 - 0.2 + 0.01*seed
    assert list(fig.data[1].y) == pytest.approx([0.81, 0.31])


def test_export_writes_html_under_subfolders_and_png_needs_a_chrome(run_dirs, tmp_path, monkeypatch):
    figs = {"04/curves": vruns.curves(run_dirs[:1]), "gap": vruns.gap(run_dirs[:1])}
    written = export.write(figs, tmp_path / "out", png=False)
    assert written == [tmp_path / "out" / "04" / "curves.html", tmp_path / "out" / "gap.html"]
    assert all(p.stat().st_size > 100_000 for p in written)   # plotly.js inlined: opens offline
    monkeypatch.setattr(export, "chrome", lambda: None)
    with pytest.raises(UserError, match="png=false"):
        export.write(figs, tmp_path / "again")
    assert (tmp_path / "again" / "gap.html").exists()          # the HTML is written before the PNGs are tried
    assert export.write({}, tmp_path / "none") == []           # nothing to draw: no browser wanted


def test_nothing_outside_labkit_viz_draws_and_only_regress_imports_viz():
    # The arrows of the package (labkit/viz/__init__.py): plotly, ipywidgets and kaleido are imported only under
    # labkit/viz, lazy imports inside functions included, and of the modules outside it only regress (above
    # viz) imports it; the cli names its stage modules as strings.
    import ast
    from pathlib import Path

    import labkit

    root = Path(labkit.__file__).parent
    drawing, viz_users = [], []
    for path in sorted(root.rglob("*.py")):
        if path.parent.name == "viz":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                     if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in ("plotly", "ipywidgets", "kaleido") for n in names):
                drawing.append(path.name)
            if any(n == "labkit.viz" or n.startswith("labkit.viz.") for n in names):
                viz_users.append(path.name)
    assert drawing == [] and set(viz_users) <= {"regress.py"}, (drawing, viz_users)
