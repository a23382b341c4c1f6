"""The runner of stage runs side by side: dependencies, skipping, failures, the watch callback, interruption."""
import os
import sys
import time

import pytest

from labkit import jobs


class Script(jobs.Job):
    """A job that runs a Python snippet instead of a stage (the runner only needs argv and the done file)."""
    def __init__(self, name, tmp, code, after=(), done_file="done"):
        super().__init__(name, "x", tmp / name, "x", {}, done_file, after)
        self.code = code

    def argv(self):
        return [sys.executable, "-c", self.code]


def touch(tmp_path, name):
    return (f"import pathlib; p = pathlib.Path({str(tmp_path / name)!r}); p.mkdir(parents=True, exist_ok=True);"
            f"(p / 'done').touch(); (p.parent / ({name!r} + '.ran')).touch()")


def test_runner_skips_complete_jobs_and_blocks_dependents_of_failures(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "done").touch()
    js = [Script("old", tmp_path, touch(tmp_path, "old")), Script("a", tmp_path, touch(tmp_path, "a"), after=("old",)),
          Script("b", tmp_path, "raise SystemExit(3)"), Script("c", tmp_path, touch(tmp_path, "c"), after=("b",)),
          Script("d", tmp_path, touch(tmp_path, "d"), after=("a",))]
    status = jobs.run_jobs(js, workers=2, log_dir=tmp_path / "logs", poll=0.05)
    assert status == {"old": "skipped", "a": "done", "b": "failed", "c": "blocked", "d": "done"}
    assert not (tmp_path / "old.ran").exists() and (tmp_path / "d.ran").exists()
    assert not (tmp_path / "c").exists()
    assert jobs.run_jobs(js[:2] + js[4:], workers=2, poll=0.05) == {"old": "skipped", "a": "skipped",
                                                                    "d": "skipped"}


def test_a_job_without_a_done_file_always_runs_and_its_argv_carries_the_overrides(tmp_path):
    job = Script("again", tmp_path, touch(tmp_path, "again"), done_file="")
    assert jobs.run_jobs([job], poll=0.05) == {"again": "done"}
    assert jobs.run_jobs([job], poll=0.05) == {"again": "done"}
    stage = jobs.Job("r", "sft", tmp_path / "r", "lab", {"mixture": {"atom_base": 1}, "lr": 0.001})
    assert stage.argv()[1:] == ["-m", "labkit", "sft", "--preset", "lab", "--out", str(tmp_path / "r"),
                                "--set", 'mixture={"atom_base": 1}', "--set", "lr=0.001"]


def test_watch_is_called_while_jobs_run_and_once_after(tmp_path):
    calls = []
    js = [Script(n, tmp_path, f"import time; time.sleep(0.3); {touch(tmp_path, n)}") for n in ("a", "b", "c")]
    jobs.run_jobs(js, workers=2, poll=0.05, watch=lambda: calls.append(sorted(p.name for p in tmp_path.glob("*.ran"))))
    assert len(calls) > 5 and calls[0] == [] and calls[-1] == ["a.ran", "b.ran", "c.ran"]


def test_run_or_raise_names_the_failed_runs_and_their_logs(tmp_path):
    js = [Script("ok", tmp_path, touch(tmp_path, "ok")), Script("bad", tmp_path, "print('boom'); raise SystemExit(1)")]
    with pytest.raises(RuntimeError, match=r"1 of 2 runs did not finish:\nbad \(failed, log .*bad\.log\)\n    boom"):
        jobs.run_or_raise(js, tmp_path / "logs", poll=0.05)


def test_an_interrupted_runner_stops_its_jobs(tmp_path):
    pid_file = tmp_path / "pid"
    code = f"import os, pathlib, time; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); time.sleep(60)"

    def interrupt():
        while not pid_file.exists():
            time.sleep(0.02)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        jobs.run_jobs([Script("sleeper", tmp_path, code)], poll=0.05, watch=lambda: pid_file.exists() and interrupt())
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):   # terminated and reaped
        os.kill(pid, 0)
