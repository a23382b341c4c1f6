"""Stage runs side by side: each `python -m labkit STAGE ...` in its own process, with its own torch threads.

    jobs = [Job("atomic-only", "sft", Path("runs/04/atomic-only"), "lab", {"mixture": {"atom_base": 1}})]
    status = run_jobs(jobs, workers=2, threads=1, log_dir=Path("runs/04/logs"), watch=LiveRuns(...))

Why processes: on the lab's 2 shared cores a ~1 M-parameter model uses a second thread poorly, and independent
runs side by side with one thread each finish sooner (DESIGN §2.3; the README has the measurement). The
findings suite (`experiments.py`) and
notebooks 04 and 05 run their grids this way. A run's numbers depend on its thread count only in the last
bits of its floats (the same seed and thread count give the same numbers).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass
class Job:
    """One stage run: `python -m labkit STAGE --preset PRESET --out OUT --set k=v ...`."""
    name: str                        # unique among the jobs run together, e.g. "e1/atomic+60/s0"
    stage: str                       # synth | pretrain | sft | rl
    out: Path
    preset: str
    overrides: dict[str, Any]
    done_file: str = ""              # relative to out: exists once the run is complete ("": never skipped)
    after: tuple[str, ...] = ()      # jobs that must be complete before this one starts

    def argv(self) -> list[str]:
        args = [sys.executable, "-m", "labkit", self.stage, "--preset", self.preset, "--out", str(self.out)]
        for key, value in self.overrides.items():
            text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
            args += ["--set", f"{key}={text}"]
        return args

    def complete(self) -> bool:
        return bool(self.done_file) and (self.out / self.done_file).exists()


def start(job: Job, threads: int, log_dir: Path | None = None) -> subprocess.Popen:
    """Start one job in its own process with `threads` torch threads, its output appended to LOG_DIR/<name>.log;
    returns at once. Stopping it (`proc.terminate()`) leaves its run directory resumable from its last
    checkpoint: the same job started again continues from there."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OMP_WAIT_POLICY": "PASSIVE", "TQDM_MININTERVAL": "10"}
    log = None
    if log_dir is not None:
        (log_dir / job.name).parent.mkdir(parents=True, exist_ok=True)
        log = open(log_dir / f"{job.name}.log", "a")
    proc = subprocess.Popen(job.argv(), env=env, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)
    if log is not None:
        log.close()   # the child holds its own copy
    return proc


def run_jobs(jobs: list[Job], workers: int = 2, threads: int | None = None, log_dir: Path | None = None,
             poll: float = 0.5, watch: Callable[[], None] | None = None) -> dict[str, str]:
    """Run the incomplete jobs, `workers` at a time, each after the jobs it depends on, with `threads` torch
    threads each (None: an equal share of this machine's cores).

    Returns name -> "skipped" (already complete), "done", "failed" (non-zero exit; see its log) or "blocked"
    (a job it depends on failed). Logs go to LOG_DIR/<name>.log. `watch` is called at every poll and once at
    the end (e.g. `viz.live.LiveRuns`, which draws the runs' curves as their metrics arrive). If this is
    interrupted, the running jobs are stopped; the stages resume from their last checkpoint when run again.
    """
    threads = threads or max(1, len(os.sched_getaffinity(0)) // workers)
    status = {j.name: "skipped" for j in jobs if j.complete()}
    pending = [j for j in jobs if j.name not in status]
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    total, started = len(pending), time.time()
    try:
        while pending or running:
            for name, (proc, t0) in list(running.items()):
                if proc.poll() is not None:
                    status[name] = "done" if proc.returncode == 0 else "failed"
                    del running[name]
                    print(f"jobs: {status[name]} {name} in {time.time() - t0:.0f}s "
                          f"({sum(s in ('done', 'failed') for s in status.values())}/{total}, "
                          f"{time.time() - started:.0f}s)", flush=True)
            for job in list(pending):
                if any(status.get(a) in ("failed", "blocked") for a in job.after):
                    status[job.name] = "blocked"
                    pending.remove(job)
                elif len(running) < workers and all(status.get(a) in ("done", "skipped") for a in job.after):
                    running[job.name] = (start(job, threads, log_dir), time.time())
                    pending.remove(job)
            if watch is not None:
                watch()
            time.sleep(poll)
    finally:
        for proc, _ in running.values():   # interrupted (e.g. a notebook's stop button): leave no orphans
            proc.terminate()
        for proc, _ in running.values():
            proc.wait()
    if watch is not None:
        watch()
    return status


def run_or_raise(jobs: list[Job], log_dir: Path, **kwargs) -> None:
    """`run_jobs`, then an error naming every job that failed or was blocked, with the end of its log (where a
    stage prints what went wrong, e.g. an unknown config key)."""
    status = run_jobs(jobs, log_dir=log_dir, **kwargs)
    bad = [n for n, s in status.items() if s in ("failed", "blocked")]
    if bad:
        def tail(name):
            log = log_dir / f"{name}.log"
            lines = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
            return f"{name} ({status[name]}, log {log})" + "".join(f"\n    {line}" for line in lines)
        raise RuntimeError(f"{len(bad)} of {len(jobs)} runs did not finish:\n" + "\n".join(map(tail, bad)))
