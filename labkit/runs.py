"""Run directories: the one place a training run's config, metrics, samples and checkpoints live.

    RUN/
      config.json          the stage config (written once; a re-run must match it)
      metrics.jsonl        append-only, one JSON object per line: step, split, metric, value, wall_time, ...
      samples/step-N.jsonl the programs sampled at an evaluation, with their verdicts
      rollouts/step-N.jsonl.gz
                           RL: the programs one training step sampled, a row each (`write_rollouts` below)
      checkpoints/
        step-N/            save_pretrained format + trainer_state.pt (optimizer, scheduler, RNG, counters)
        index.json         {"last": "step-N", "best": "step-M", "best_score": ...}, replaced atomically

Crash safety: every file is written to a temporary name and renamed; metric lines are appended and fsync'ed.
Re-running the same command on a run directory resumes from the last checkpoint and first drops the metric
lines, sample files and rollout files of the steps after it, so a killed run ends with each (step, split,
metric) exactly once and one rollout file per step. Figures and the
dashboard read run directories only, never a live trainer. This module knows no trainer.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import time
from pathlib import Path

from labkit import config, files
from labkit.config import UserError


def write_jsonl(path: str | Path, records: list[dict]) -> None:
    """Write a whole JSONL file atomically (used for samples and data files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file; a torn last line (a kill mid-append) is skipped rather than fatal."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class RunDir:
    """A run directory opened for writing by one trainer process (the main process under accelerate)."""

    def __init__(self, path: str | Path, cfg=None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.path / "metrics.jsonl"
        self.ckpt_dir = self.path / "checkpoints"
        self._t0 = time.time()
        self._wall_offset = 0.0
        if cfg is not None:
            self._check_or_write_config(cfg)

    def _check_or_write_config(self, cfg) -> None:
        path = self.path / "config.json"
        if path.exists():
            old = json.loads(path.read_text())
            try:   # written by an older version: renamed keys under their new names, new keys at their defaults
                old = config.to_dict(config.from_dict(type(cfg), old))
            except config.ConfigError:
                pass
            new = config.to_dict(cfg)
            if old != new:
                diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise UserError(f"{self.path} holds a run with a different config (differs in: "
                                f"{', '.join(diff)}); resume with the same settings or choose a new --out")
        else:
            config.save(cfg, path)

    # --- metrics ---------------------------------------------------------------------------------------------

    @property
    def wall_time(self) -> float:
        """Seconds of training so far, summed over resumed sessions."""
        return self._wall_offset + time.time() - self._t0

    def log(self, records: list[dict]) -> None:
        """Append metric records (each with at least step, split, metric, value); wall_time is added."""
        wall = round(self.wall_time, 3)
        lines = "".join(json.dumps({"wall_time": wall, **r}, sort_keys=True) + "\n" for r in records)
        with open(self.metrics_path, "a") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())

    def metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path) if self.metrics_path.exists() else []

    def write_samples(self, step: int, records: list[dict]) -> Path:
        path = self.path / "samples" / f"step-{step:06d}.jsonl"
        write_jsonl(path, records)
        return path

    def write_rollouts(self, step: int, rows: list[dict]) -> Path:
        """One RL step's rollout table (a row per sampled completion, `rollouts.rollout_table`), each row
        stamped with `step`, to `rollouts/step-NNNNNN.jsonl.gz`.

        One gzip'ed JSONL file per step, written whole (temporary name, fsync, rename), rather than one
        appendable table: a step's file is there complete or not at all after a kill, resume drops later steps'
        files by name exactly as it drops their samples (no appended tail to truncate, which a compressed or a
        Parquet file cannot take), and writing needs only the standard library in the trainer. JSONL keeps the
        record format of metrics.jsonl and samples/; gzip shrinks the repetitive program text several times over;
        `mtime=0` keeps the bytes of a step re-taken after a resume identical. pandas reads a file as it is
        (`pd.read_json(path, lines=True)`); `read_rollouts` reads a whole run.
        """
        path = rollout_path(self.path, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps({**r, "step": step}, sort_keys=True) + "\n" for r in rows)
        files.write_atomic(path, gzip.compress(text.encode(), mtime=0))
        return path

    # --- checkpoints -----------------------------------------------------------------------------------------

    def _index(self) -> dict:
        path = self.ckpt_dir / "index.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def save_checkpoint(self, step: int, model, tokenizer, state: dict, score: float | None = None) -> Path:
        """Save model + tokenizer (save_pretrained) and the trainer's state; keep only last and best.

        `score` (higher is better, e.g. held-out pass@1) decides the best checkpoint; None keeps the old best.
        """
        import torch  # only trainers call this; keeps the run store importable without torch

        name = f"step-{step:06d}"
        self.ckpt_dir.mkdir(exist_ok=True)
        tmp = self.ckpt_dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save({**state, "step": step, "wall_time": self.wall_time}, tmp / "trainer_state.pt")
        shutil.rmtree(self.ckpt_dir / name, ignore_errors=True)
        os.replace(tmp, self.ckpt_dir / name)

        index = self._index()
        index["last"] = name
        if score is not None and (index.get("best_score") is None or score > index["best_score"]):
            index["best"], index["best_score"] = name, score
        files.write_atomic(self.ckpt_dir / "index.json", json.dumps(index, indent=1, sort_keys=True))
        keep = {index.get("last"), index.get("best")}
        for old in self.ckpt_dir.glob("step-*"):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
        return self.ckpt_dir / name

    def checkpoint(self, which: str = "last") -> Path | None:
        name = self._index().get(which)
        return self.ckpt_dir / name if name else None

    def resume(self) -> dict | None:
        """Load the trainer state of the last checkpoint and drop metric lines logged after it.

        Returns None for a fresh run (and then clears any metrics a run killed before its first checkpoint
        left behind). The model weights are at `self.checkpoint("last")`, for the trainer to load.
        """
        import torch

        ckpt = self.checkpoint("last")
        state = None
        if ckpt is not None:
            state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
            self._wall_offset = state["wall_time"]
            self._t0 = time.time()
        last_step = state["step"] if state else -1
        kept = [r for r in self.metrics() if r["step"] <= last_step]
        write_jsonl(self.metrics_path, kept)
        for stale in (self.path / "samples").glob("step-*.jsonl"):
            if int(stale.stem.split("-")[1]) > last_step:
                stale.unlink()
        for path in (self.path / ROLLOUTS).glob("*step-*"):
            step = _rollout_step(path)
            if step is None or step > last_step:   # None: a temporary file a kill left behind
                path.unlink()
        return state


ROLLOUTS = "rollouts"
_ROLLOUT_FILE = re.compile(r"step-(\d+)\.jsonl\.gz")


def rollout_path(run: str | Path, step: int) -> Path:
    return Path(run) / ROLLOUTS / f"step-{step:06d}.jsonl.gz"


def _rollout_step(path: Path) -> int | None:
    match = _ROLLOUT_FILE.fullmatch(path.name)
    return int(match.group(1)) if match else None


def rollout_steps(run: str | Path) -> list[int]:
    """The RL steps that have a rollout file, in order."""
    found = (_rollout_step(p) for p in (Path(run) / ROLLOUTS).glob("step-*.jsonl.gz"))
    return sorted(s for s in found if s is not None)


def read_rollouts(run: str | Path, steps=None):
    """A run's rollout tables (`RunDir.write_rollouts`) as one pandas DataFrame, a row per sampled completion,
    ordered by step; `steps` reads only those steps' files. No rollout files: an empty frame."""
    import pandas as pd

    wanted = rollout_steps(run) if steps is None else sorted(set(steps) & set(rollout_steps(run)))
    rows = []
    for step in wanted:
        with gzip.open(rollout_path(run, step), "rt") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return pd.DataFrame(rows) if rows else pd.DataFrame({"step": pd.Series(dtype=int)})


def load_metrics(run: str | Path):
    """A run's metrics as a pandas DataFrame, with the run's name in a `run` column (for the dashboard)."""
    import pandas as pd

    run = Path(run)
    df = pd.DataFrame(read_jsonl(run / "metrics.jsonl"))
    df["run"] = run.name
    return df
