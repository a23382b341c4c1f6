"""`labkit export-tb`: fabricated and resumed run directories, read back with tensorboard's own reader."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

from labkit import export_tb, runs
from labkit.config import UserError

ROOT = Path(__file__).resolve().parent.parent
METRICS = [("train", "loss"), ("train", "pass@1"), ("test_target", "pass@1"), ("train", "status/fail")]


def records(steps, offset=0.0):
    """Metric lines as a trainer logs them (every key a line of metrics.jsonl has)."""
    return [{"step": s, "epoch": s / 20, "tokens": s * 512, "wall_time": s * 1.5 + offset, "split": split,
             "metric": metric, "value": 1 / (3 + s + i) + offset}
            for s in steps for i, (split, metric) in enumerate(METRICS)]


def metrics_run(path, steps=(0, 10, 20, 30, 40)):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"seed": 0}))
    runs.write_jsonl(path / "metrics.jsonl", records(steps))
    return path


def cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "labkit", "export-tb", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)


def read_back(run_out: Path) -> dict[str, list]:
    acc = EventAccumulator(str(run_out), size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def expected(metrics: list[dict]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list] = {}
    for r in metrics:
        out.setdefault(f"{r['split']}/{r['metric']}", []).append((r["step"], float(np.float32(r["value"]))))
    return out


def test_every_metric_line_becomes_a_scalar_tagged_split_metric(tmp_path):
    run = metrics_run(tmp_path / "runs" / "sft")
    p = cli(run, "--out", tmp_path / "tb")
    assert p.returncode == 0, p.stderr
    assert "20 scalars, 4 tags, steps 0-40" in p.stdout
    files = os.listdir(tmp_path / "tb" / "sft")
    assert files == [export_tb.EVENT_FILE]
    got = read_back(tmp_path / "tb" / "sft")
    metrics = runs.read_jsonl(run / "metrics.jsonl")
    assert {tag: [(e.step, e.value) for e in events] for tag, events in got.items()} == expected(metrics)
    start = (run / "config.json").stat().st_mtime
    walls = sorted(e.wall_time - start for events in got.values() for e in events)
    assert walls == pytest.approx(sorted(r["wall_time"] for r in metrics), abs=1e-6)


def test_a_resumed_run_exports_each_step_once_and_a_live_one_up_to_its_last_line(tmp_path):
    torch = pytest.importorskip("torch")
    run = metrics_run(tmp_path / "sft", steps=(0, 10, 20, 30, 40))
    out = tmp_path / "tb"
    assert cli(run, "--out", out).returncode == 0
    # Killed after step 40 with its last checkpoint at 20, then resumed: RunDir.resume drops the lines after
    # the checkpoint, the trainer logs steps 30 and 40 again (other values), and is now writing step 50.
    ckpt = run / "checkpoints" / "step-000020"
    ckpt.mkdir(parents=True)
    torch.save({"step": 20, "wall_time": 30.0}, ckpt / "trainer_state.pt")
    (run / "checkpoints" / "index.json").write_text(json.dumps({"last": "step-000020"}))
    rd = runs.RunDir(run)
    assert rd.resume()["step"] == 20
    relogged = [{k: v for k, v in r.items() if k != "wall_time"} for r in records((30, 40), offset=0.5)]
    rd.log(relogged)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2.5, "metric": "loss", "split": "tr')  # a torn append: no newline yet
    first, second = cli(run, "--out", out), cli(run, "--out", out)
    assert first.returncode == second.returncode == 0, first.stderr
    assert "still being written" in first.stdout and "20 scalars" in first.stdout
    got = read_back(out / "sft")
    for tag, events in got.items():
        assert [e.step for e in events] == [0, 10, 20, 30, 40], tag  # no duplicate step, none lost
    assert {t: [(e.step, e.value) for e in ev] for t, ev in got.items()} == \
        expected(runs.read_jsonl(run / "metrics.jsonl"))  # the re-logged values, not the killed run's
    assert got["train/loss"][-1].value == pytest.approx(1 / 43 + 0.5)
    assert os.listdir(out / "sft") == [export_tb.EVENT_FILE]


def test_export_is_deterministic_sorted_by_step_and_keeps_the_last_of_a_repeated_pair(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    lines = [{"step": 10, "split": "train", "metric": "loss", "value": 2.0, "wall_time": 5.0},
             {"step": 0, "split": "train", "metric": "loss", "value": 3.0, "wall_time": 1.0},
             {"step": 10, "split": "train", "metric": "loss", "value": 1.5, "wall_time": 6.0},
             {"step": 10, "metric": "lr", "value": 0.1}, {"step": 5, "split": "train", "metric": "x", "value": None}]
    runs.write_jsonl(run / "metrics.jsonl", lines)
    report = export_tb.export([run, tmp_path / "r/"], tmp_path / "tb")
    assert len(report) == 1 and "1 unreadable" in report[0] and "1 repeated" in report[0]
    blob = (tmp_path / "tb" / "r" / export_tb.EVENT_FILE).read_bytes()
    export_tb.export([run], tmp_path / "tb")
    assert (tmp_path / "tb" / "r" / export_tb.EVENT_FILE).read_bytes() == blob
    got = read_back(tmp_path / "tb" / "r")
    assert [(e.step, e.value) for e in got["train/loss"]] == [(0, 3.0), (10, 1.5)]
    assert [(e.step, e.value) for e in got["lr"]] == [(10, np.float32(0.1))]


def test_runs_are_named_by_their_path_below_the_common_parent(tmp_path):
    a, b = metrics_run(tmp_path / "e4" / "fine" / "s0"), metrics_run(tmp_path / "e4" / "coarse" / "s0")
    assert export_tb.run_names([a, b]) == ["fine/s0", "coarse/s0"]
    assert export_tb.run_names([a]) == ["s0"]
    export_tb.export([a, b], tmp_path / "tb")
    assert sorted(read_back(tmp_path / "tb" / "coarse" / "s0")) == sorted(f"{s}/{m}" for s, m in METRICS)


def test_the_checksums_are_tensorboards():
    for data in (b"", b"a", bytes(range(256)) * 3):
        assert export_tb._masked_crc(data) == masked_crc32c(data).to_bytes(4, "little")


def test_a_directory_that_is_not_a_run_is_refused_with_how_to_make_one(tmp_path):
    good = metrics_run(tmp_path / "good")
    (tmp_path / "empty").mkdir()
    p = cli(good, tmp_path / "empty", "--out", tmp_path / "tb")
    assert p.returncode == 2
    assert "not a run directory" in p.stderr and "--out" in p.stderr and "metrics.jsonl" in p.stderr
    assert not (tmp_path / "tb").exists()  # every run is checked before anything is written
    with pytest.raises(UserError, match="no such directory"):
        export_tb.read_scalars(tmp_path / "missing")
