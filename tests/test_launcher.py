"""The dashboard's what-if launcher, driven through its widgets in-process: bad values are messages, a run starts
in its own process, its curve appears, stop leaves a run directory that the same settings resume."""
import time

from labkit import runs
from labkit.viz.launcher import Launcher


def _wait(condition, timeout=180.0):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def _message(launcher) -> str:
    return "".join(o.get("text", "") for o in launcher.message.outputs)


def test_bad_values_are_messages_not_tracebacks(tmp_path, smoke_data, tiny_model_dir):
    launcher = Launcher(tmp_path / "whatif", runs=[tiny_model_dir], data_dir=smoke_data)
    launcher.stage.value = "sft"
    for widget, value, says in ((launcher.mixture, '{"atom_base": 1', "mixture is not JSON"),
                                (launcher.mixture, '{"test_target": 1}', "not a training split"),
                                (launcher.steps, 0, "steps must be at least 1"),
                                (launcher.data, str(tmp_path), "holds no manifest.json")):
        old = widget.value
        widget.value = value
        assert launcher.start() is False and says in _message(launcher)
        widget.value = old
    launcher.stage.value = "rl"
    launcher.prompts.value = "test_target"
    assert launcher.start() is False and "test splits are for evaluation only" in _message(launcher)
    launcher.prompts.value, launcher.init.value = "sft", tiny_model_dir
    assert launcher.start() is False and "not an SFT run directory" in _message(launcher)
    assert launcher.proc is None and not (tmp_path / "whatif").exists()   # nothing started, nothing written


def test_start_shows_the_curve_stop_leaves_a_run_the_same_settings_resume(tmp_path, smoke_data, tiny_model_dir):
    launcher = Launcher(tmp_path / "whatif", runs=[tiny_model_dir], data_dir=smoke_data, poll=0.2)
    launcher.stage.value, launcher.preset.value = "sft", "smoke"
    launcher.init.value, launcher.mixture.value, launcher.steps.value = tiny_model_dir, '{"atom_base": 1}', 400
    assert launcher.start(), _message(launcher)
    run = runs.RunDir(launcher.job.out)
    _wait(lambda: run.checkpoint("last") is not None)
    _wait(lambda: launcher.plot.outputs)          # the follower thread drew the run's curve
    assert "plotly" in str(launcher.plot.outputs[0]["data"]).lower()
    launcher.stop()
    assert launcher.proc.returncode != 0 and "resume" in _message(launcher)
    stopped_at = max(r["step"] for r in runs.read_jsonl(run.metrics_path))
    assert stopped_at < 400 and (launcher.job.out / "config.json").exists()

    assert launcher.start(), _message(launcher)   # the same settings: it resumes from its last checkpoint
    _wait(lambda: max(r["step"] for r in runs.read_jsonl(run.metrics_path)) > stopped_at)
    launcher.stop()
    lines = [(r["step"], r["split"], r["metric"]) for r in runs.read_jsonl(run.metrics_path)]
    assert len(lines) == len(set(lines)), "the resume duplicated metric lines"
