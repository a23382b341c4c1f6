"""The what-if launcher of the dashboard (notebook 06): start one SFT or RL run from the base model or from any
run shown, watch its curve grow beside theirs, stop it.

    launcher = Launcher(work_dir="runs/whatif", runs=[...], data_dir="runs/data")
    launcher.widget            # display it

A teacher asks "what if we drop the atomic data?": set the mixture, press start, and the run trains in its own
process (`labkit.jobs.start`, the runner notebooks 04, 05 and the findings suite use), writing an ordinary run
directory (config.json, metrics.jsonl, checkpoints) under WORK_DIR/<name> that every other view reads. Its
curve is redrawn beside the runs already shown whenever its metrics change. Stop terminates the process; the run
directory stays resumable from its last checkpoint (start the same settings again to continue).

Every value is checked before anything starts, by the stage's own config (`config.resolve`, `rl.check_config`,
the mixture's splits): a bad one is a message in the launcher, never a traceback.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import ipywidgets as W

from labkit import config, jobs, rewards, tasks
from labkit.config import UserError
from labkit.viz.runs import curves
from labkit.viz.widgets import show_figure, show_text

PRESETS = ("smoke", "lab", "quick")


class Launcher:
    def __init__(self, work_dir, runs=(), data_dir: str = "", split: str = "test_target", poll: float = 2.0):
        self.work, self.runs, self.split, self.poll = Path(work_dir), [Path(r) for r in runs], split, poll
        self.proc, self.job, self._seen = None, None, -1
        starts = ["base"] + [str(r) for r in self.runs]
        self.stage = W.ToggleButtons(options=["sft", "rl"], value="rl", description="stage")
        self.init = W.Dropdown(options=starts, value=starts[0], description="start from")
        self.data = W.Text(value=data_dir or _data_dir_of(self.runs), description="data dir")
        self.mixture = W.Text(value='{"atom_base": 1, "train_A": 1}', description="mixture")
        self.prompts = W.Text(value="atom_base,train_A", description="prompts")
        self.steps = W.IntText(value=20, description="steps")
        self.reward = W.Dropdown(options=list(rewards.MODES), value="binary", description="reward")
        self.loss_type = W.Dropdown(options=["dapo", "grpo", "dr_grpo"], value="dapo", description="loss_type")
        self.beta = W.FloatText(value=0.0, description="beta (KL)")
        self.dynamic = W.Checkbox(value=True, description="dynamic sampling")
        self.seed = W.IntText(value=0, description="seed")
        self.preset = W.Dropdown(options=PRESETS, value="lab", description="preset")
        self.name = W.Text(value="what-if", description="run name")
        self.start_button = W.Button(description="start", button_style="success")
        self.stop_button = W.Button(description="stop", button_style="danger", disabled=True)
        self.message, self.plot = W.Output(), W.Output()
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.stage.observe(lambda _: self._show_stage_options(), names="value")
        self.sft_box = W.VBox([self.mixture])
        self.rl_box = W.VBox([self.prompts, self.reward, self.loss_type, self.beta, self.dynamic])
        self._show_stage_options()
        self.widget = W.VBox([
            W.HBox([W.VBox([self.stage, self.init, self.data, self.preset, self.steps, self.seed, self.name]),
                    W.VBox([self.sft_box, self.rl_box])]),
            W.HBox([self.start_button, self.stop_button]), self.message, self.plot])
        show_text(self.message, "set the run, then press start")

    def _show_stage_options(self) -> None:
        self.sft_box.layout.display = None if self.stage.value == "sft" else "none"
        self.rl_box.layout.display = None if self.stage.value == "rl" else "none"

    # --- what a press of start does ------------------------------------------------------------------------

    def overrides(self) -> dict:
        """The stage's config overrides from the widgets (raises UserError on a value that cannot be used)."""
        if not self.name.value.strip() or "/" in self.name.value or self.name.value.startswith("."):
            raise UserError("run name: a plain directory name, e.g. what-if-no-atomic")
        if self.steps.value < 1:
            raise UserError(f"steps must be at least 1 (got {self.steps.value})")
        data = self.data.value.strip()
        if not (Path(data) / "manifest.json").exists():
            raise UserError(f"data dir {data!r} holds no manifest.json; give a `python -m labkit synth` directory")
        out = {"seed": self.seed.value, "data_dir": data}
        if self.stage.value == "sft":
            try:
                mixture = json.loads(self.mixture.value)
            except json.JSONDecodeError as e:
                raise UserError(f"mixture is not JSON ({e.msg}); write it like {{\"atom_base\": 1, \"train_A\": 1}}")
            tasks.load_mixture(data, mixture)   # unknown splits say which exist
            return {**out, "model.name_or_path": self.init.value, "mixture": mixture, "max_steps": self.steps.value,
                    "epochs": 10_000}
        return {**out, "init": self.init.value, "prompts": self.prompts.value, "steps": self.steps.value,
                "reward": self.reward.value, "loss_type": self.loss_type.value, "beta": self.beta.value,
                "dynamic_sampling": self.dynamic.value}

    def check(self, overrides: dict) -> None:
        """The stage's own checks of the settings, before any process starts."""
        if self.stage.value == "sft":
            from labkit.sft import SFTConfig
            config.resolve(SFTConfig, self.preset.value, overrides)
        else:
            from labkit.prompts import prompt_pool
            from labkit.rl import RLConfig, check_config, init_source
            cfg = config.resolve(RLConfig, self.preset.value, overrides)
            check_config(cfg)
            prompt_pool(cfg, init_source(cfg), cfg.data_dir)   # the prompts exist for this start

    def start(self) -> bool:
        """Start the run the widgets describe; False (and a message) if a value is bad or a run is going."""
        if self.proc is not None and self.proc.poll() is None:
            show_text(self.message, f"{self.job.name} is still running: stop it first")
            return False
        try:
            overrides = self.overrides()
            self.check(overrides)
        except UserError as e:   # config.ConfigError is a UserError
            show_text(self.message, f"not started: {e}")
            return False
        self.job = jobs.Job(self.name.value.strip(), self.stage.value, self.work / self.name.value.strip(),
                            self.preset.value, overrides)
        self.proc = jobs.start(self.job, threads=1, log_dir=self.work / "logs")
        self._seen = -1
        self.start_button.disabled, self.stop_button.disabled = True, False
        show_text(self.message, f"started {self.stage.value} run {self.job.out} (log: {self.work / 'logs'}/"
                                f"{self.job.name}.log)")
        threading.Thread(target=self._follow, daemon=True).start()
        return True

    def stop(self) -> None:
        """Terminate the run; its directory stays resumable from its last checkpoint."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()
            show_text(self.message, f"stopped {self.job.name}; start the same settings again to resume it "
                                    f"from its last checkpoint")
        self.start_button.disabled, self.stop_button.disabled = False, True
        self.refresh()

    # --- following the run ---------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Redraw the curves if the run's metrics changed; True if they did."""
        if self.job is None:
            return False
        path = self.job.out / "metrics.jsonl"
        size = path.stat().st_size if path.exists() else 0
        if size == self._seen:
            return False
        self._seen = size
        shown = [r for r in self.runs if (r / "metrics.jsonl").exists()] + ([self.job.out] if size else [])
        if shown:
            show_figure(self.plot, curves(shown, splits=[self.split]).update_layout(
                title=f"{self.split}: the what-if run {self.job.name} beside the runs shown"))
        return True

    def _follow(self) -> None:
        proc = self.proc
        while proc.poll() is None:
            self.refresh()
            time.sleep(self.poll)
        self.refresh()
        if proc is self.proc and proc.returncode not in (0, -15):   # -15: stopped by the stop button
            log = self.work / "logs" / f"{self.job.name}.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-4:] if log.exists() else []
            show_text(self.message, f"{self.job.name} failed (exit {proc.returncode}):\n" + "\n".join(tail))
        elif proc is self.proc and proc.returncode == 0:
            show_text(self.message, f"{self.job.name} finished: {self.job.out}")
        self.start_button.disabled, self.stop_button.disabled = False, True


def _data_dir_of(runs) -> str:
    """The data directory the first run shown was trained on (its config.json), else ""."""
    for run in runs:
        cfg = Path(run) / "config.json"
        if cfg.exists():
            data = json.loads(cfg.read_text()).get("data_dir")
            if data:
                return data
    return ""
