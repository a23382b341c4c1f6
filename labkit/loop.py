"""The one training skeleton that pretraining, SFT and RL share: a `Loop` that owns everything but the step.

    loop = Loop(cfg, "sft", callbacks, cpu=True)           # the accelerator (one process, or one per device)
    ... the stage builds its model, optimizer, scheduler and data ...
    state = loop.start(model, tokenizer, optimizer, scheduler, {"tokens": 0})  # fresh, or resumed
    loop.run(total_steps, step_fn, evaluator=..., every=..., save_every=..., epoch=...)

The loop owns the run directory (on the main process), the `accelerate.Accelerator`, resume from the last
checkpoint (weights, optimizer, scheduler, RNG states, the stage's counters in `loop.state`), the evaluation and
checkpoint schedule (step 0, every `every` steps, the end), metric logging with the step fields, the last and
best checkpoints, the progress bar and the callbacks that show metrics live. A stage contributes its config,
its data and `step_fn(loop) -> records`, which takes one optimizer step (reading `loop.step`, `loop.model`,
`loop.optimizer`, ...) and returns the metric lines to log after it (`loop.log_due` says whether this step logs).
Adding a trainer is one step function and a config.

Every metric line has the same schema whatever the stage: step, epoch, tokens, wall_time, split, metric,
value. "train_loss" is the training loss; "loss" on an evaluated split is the loss of its reference text.

The in-training evaluation of tasks (the `eval` field of the SFT and RL configs, `EvalSchedule`) is here too:
which tasks are evaluated (a fixed sample per split, drawn once per run) and how; the evaluation itself
(sampling, the sandbox, pass@k) is `labkit.evaluate`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from labkit import batches, evaluate, runs, tasks
from labkit.config import UserError

TRAIN = "train"   # the eval split made of a fixed sample of the trainer's own training prompts


# --- what is evaluated during training, and how ------------------------------------------------------------

@dataclass
class EvalSchedule:
    every: int = 50               # evaluate every N optimizer steps, and at step 0 and at the end; 0: start/end
    # Tasks evaluated per split, a fixed sample drawn once per run ("train": the trainer's own prompts).
    # Set a size to 0 to skip that split.
    sizes: dict[str, int] = field(default_factory=lambda: {TRAIN: 64, "atom_base": 64, "test_in_domain": 64,
                                                           "test_target": 64})
    n_samples: int = 8            # sampled completions per task for pass@k (pass@1 is always greedy)
    k: int = 8                    # pass@k from the n_samples samples (k <= n_samples)
    temperature: float = 0.8
    max_new_tokens: int = 128
    # Sandbox seconds per test. The lab's tests run in microseconds; a program that hangs pays this once per
    # test, so a generous limit makes a few looping programs most of an evaluation's wall time.
    timeout: float = 1.0
    best_split: str = "test_in_domain"   # the checkpoint with the highest greedy pass@1 here is kept as best
    # Forgetting (`labkit.forgetting`; 0 = off): the loss on this many blocks of held-out standard-library code
    # ("general/loss"), and the KL to the run's start on this many of the "train" tasks ("train/kl_to_init").
    general_blocks: int = 0
    kl_prompts: int = 0
    # The loss of each split's reference solutions ("loss"; the overfitting view: train loss falling while a
    # held-out loss rises). A third of an evaluation's time at the lab's sizes: the findings suite skips it
    # where no figure uses it.
    reference_loss: bool = True


def _sizes(n: int) -> dict[str, int]:
    return {TRAIN: n, "atom_base": n, "test_in_domain": n, "test_target": n}


# The evaluation presets, one definition for every trainer: SFT and RL runs of the same preset evaluate the
# same tasks the same way, so an RL run's curves continue its SFT start's. Trainers add their own `eval.every`.
EVAL_PRESETS = {
    # Tests and notebook smoke runs: tiny evaluations (seconds with a tiny model).
    "smoke": {"eval.n_samples": 2, "eval.k": 2, "eval.max_new_tokens": 32, "eval.sizes": _sizes(6)},
    # The CPU lab (~1 M model): 300 tasks per split (the whole of each test split), so that a change of 0.05 in
    # greedy pass@1 is about two standard errors; greedy only, as sampled pass@k would cost n_samples times more.
    "quick": {"eval.n_samples": 0, "eval.max_new_tokens": 128, "eval.sizes": _sizes(300)},
    # The quick preset cut to fit notebooks 04/05 into the main job (lab.sh): greedy pass@1 only, the whole
    # target split (100 tasks per kind: held-out atoms are measurable) and 100 tasks of each other split.
    "lab": {"eval.n_samples": 0, "eval.max_new_tokens": 64, "eval.sizes": {**_sizes(100), "test_target": 300}},
    # A GPU: larger samples.
    "full": {"eval.n_samples": 10, "eval.k": 5, "eval.max_new_tokens": 160,
             "eval.sizes": {**_sizes(300), "test_target": 400}},
}


def check_schedule(cfg: EvalSchedule) -> None:
    splits = [s for s, n in cfg.sizes.items() if n > 0]
    unknown = [s for s in cfg.sizes if s != TRAIN and s not in tasks.SPLITS]
    if unknown:
        raise UserError(f"eval.sizes names unknown splits {unknown}; use {TRAIN!r} or one of "
                        f"{', '.join(tasks.SPLITS)}")
    if cfg.general_blocks < 0 or cfg.kl_prompts < 0:
        raise UserError(f"eval.general_blocks ({cfg.general_blocks}) and eval.kl_prompts ({cfg.kl_prompts}) "
                        "count blocks and prompts: 0 (off) or more")
    if cfg.n_samples and not 1 <= cfg.k <= cfg.n_samples:
        raise UserError(f"eval.k={cfg.k} must be between 1 and eval.n_samples={cfg.n_samples}")
    if splits and cfg.best_split not in splits:
        raise UserError(f"eval.best_split={cfg.best_split!r} is not evaluated; evaluated splits: "
                        f"{', '.join(splits)}")


def eval_sets(cfg: EvalSchedule, data_dir, train_tasks: list, seed: int) -> dict[str, list]:
    """The fixed task sample of each evaluated split (same seed -> same tasks, so curves are comparable)."""
    check_schedule(cfg)
    out = {}
    for split, size in cfg.sizes.items():
        if size <= 0:
            continue
        pool = train_tasks if split == TRAIN else tasks.load_split(data_dir, split)
        pool = list(pool)
        random.Random(f"{seed}-eval-{split}").shuffle(pool)
        out[split] = pool[:size]
    return out


def task_evaluator(cfg: EvalSchedule, sets: dict[str, list], tokenizer, seed: int, forgetting=None) -> Callable:
    """The `evaluator` of `Loop.run` for task-solving trainers: model, step -> (records, samples, best score).

    Each split: greedy pass@1, sampled pass@k, error shares and (`reference_loss`) the reference loss; then, if given,
    `forgetting(model, train tasks)` (`labkit.forgetting.measure`). Sampling draws from its own
    seeded RNG (seed, step) and the training RNG is restored afterwards, so an evaluation is reproducible and
    never shifts the training run's random stream (resume stays exact).
    """
    def run(model, step: int):
        records, samples = [], []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1_000_003 + step)
            for split, task_list in sets.items():
                result = evaluate.evaluate_tasks(model, tokenizer, task_list, n=cfg.n_samples, k=cfg.k, greedy=True,
                                                 temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                                                 timeout=cfg.timeout)
                metrics = {m: v for m, v in result.metrics.items() if m not in ("n_tasks", "n_completions")}
                if cfg.reference_loss:
                    metrics["loss"] = batches.reference_loss(model, tokenizer, task_list)
                records += [{"split": split, "metric": m, "value": float(v)} for m, v in sorted(metrics.items())]
                samples += [{**s, "split": split} for s in result.samples]
            if forgetting is not None:
                records += forgetting(model, sets.get(TRAIN, []))
        best = next((r["value"] for r in records if r["split"] == cfg.best_split and r["metric"] == "pass@1"), None)
        return records, samples, best
    return run


# --- RNG states and weights in checkpoints ----------------------------------------------------------------

def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def adamw(model, lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW over the model's trainable parameters, as SFT and RL train. `foreach`: one kernel per operation over
    all tensors instead of a Python loop over them (on a CPU torch defaults to the loop, a few percent of a small
    model's step); the same numbers, bit for bit."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay,
                             foreach=True)


def load_weights(model, ckpt: Path) -> None:
    """Load a checkpoint's weights into an already built model (full model or LoRA adapter)."""
    from safetensors.torch import load_file

    if hasattr(model, "peft_config"):
        import peft
        peft.set_peft_model_state_dict(model, load_file(ckpt / "adapter_model.safetensors"))
        return
    missing, unexpected = model.load_state_dict(load_file(ckpt / "model.safetensors"), strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    if unexpected or set(missing) - tied:
        raise UserError(f"checkpoint {ckpt} does not fit the model (missing {sorted(missing)[:3]}, unexpected "
                        f"{unexpected[:3]}); resume with the model settings the run started with")


# --- the loop -------------------------------------------------------------------------------------------------

class Loop:
    """One training run of a stage (see the module docstring). `callbacks` receive each batch of metric lines."""

    def __init__(self, cfg, name: str, callbacks=(), *, cpu: bool, split_batches: bool = False):
        from accelerate import Accelerator

        self.cfg, self.name, self.callbacks = cfg, name, list(callbacks)
        self.accelerator = Accelerator(split_batches=split_batches, cpu=cpu)
        self.main = self.accelerator.is_main_process
        self.run_dir: runs.RunDir | None = None
        self.state: dict = {}
        self.log_due = False
        self._epoch: Callable[[int], float] = lambda step: 0.0

    @property
    def step(self) -> int:
        """Optimizer steps taken so far (inside `step_fn`: the 0-based index of the step being taken)."""
        return self.state["step"]

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    def start(self, model, tokenizer, optimizer, scheduler, state: dict) -> dict:
        """Open the run directory and resume from its last checkpoint, or start with `state` (the stage's
        counters, checkpointed with it); then hand model and optimizer to the accelerator. -> `self.state`."""
        self.tokenizer, self.scheduler = tokenizer, scheduler
        if self.main:
            self.run_dir = runs.RunDir(self.cfg.out_dir, self.cfg)
            saved = self._resume(self.run_dir.resume(), model, optimizer)
        self.accelerator.wait_for_everyone()   # the main process has cleaned up the run directory
        if not self.main:
            # The other processes of a data-parallel run only read the checkpoint.
            ckpt = runs.RunDir(self.cfg.out_dir).checkpoint("last")
            saved = self._resume(torch.load(ckpt / "trainer_state.pt", weights_only=False) if ckpt else None,
                                 model, optimizer)
        self.state = saved or {"step": 0, **state}
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        return self.state

    def _resume(self, saved: dict | None, model, optimizer) -> dict | None:
        if saved is None:
            return None
        load_weights(model, runs.RunDir(self.cfg.out_dir).checkpoint("last"))
        optimizer.load_state_dict(saved.pop("optimizer"))
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved.pop("scheduler"))
        _set_rng_state(saved.pop("rng"))
        saved.pop("wall_time", None)
        return saved

    def fields(self) -> dict:
        return {"step": self.step, "epoch": round(self._epoch(self.step), 4), "tokens": self.state.get("tokens", 0)}

    def log(self, records: list[dict]) -> None:
        """Metric lines (with the step fields) to metrics.jsonl on the main process, then to the callbacks."""
        if not self.main:
            return
        common = {"wall_time": round(self.run_dir.wall_time, 3), **self.fields()}
        records = [{**common, **r} for r in records]
        self.run_dir.log(records)
        for callback in self.callbacks:
            callback(records)

    def save(self, score: float | None, extra: dict) -> None:
        """A checkpoint of everything a resumed run needs: weights, optimizer, scheduler, RNG and the state."""
        full = {**{k: v for k, v in self.state.items() if k != "step"}, **extra,
                "optimizer": self.optimizer.state_dict(), "rng": _rng_state()}
        if self.scheduler is not None:
            full["scheduler"] = self.scheduler.state_dict()
        self.run_dir.save_checkpoint(self.step, self.unwrapped, self.tokenizer, full, score=score)

    def run(self, total_steps: int, step_fn: Callable[["Loop"], list[dict]], *, evaluator: Callable | None = None,
            every: int = 0, save_every: int = 0, log_every: int = 1, epoch: Callable[[int], float] | None = None,
            extra_state: Callable[[], dict] = dict, progress: tuple[str, ...] = ()) -> runs.RunDir | None:
        """Take steps until `total_steps`: evaluate (`evaluator(model, step) -> (records, samples | None, score)`)
        at step 0, every `every` steps and at the end, each time followed by a checkpoint; extra checkpoints
        every `save_every` steps. `extra_state()` adds to each checkpoint what lives outside `self.state`;
        `progress` names the logged metrics shown on the progress bar."""
        self._epoch = epoch or self._epoch
        if self.step >= total_steps:
            if self.main:
                print(f"{self.name}: {self.cfg.out_dir} is already complete ({total_steps} steps)")
            return self.run_dir

        def evaluate_now() -> float | None:
            if not (self.main and evaluator):
                return None
            was_training = self.unwrapped.training
            self.unwrapped.eval()
            records, samples, score = evaluator(self.unwrapped, self.step)
            self.unwrapped.train(was_training)
            if samples is not None:
                self.run_dir.write_samples(self.step, samples)
            self.log(records)
            return score

        if self.step == 0:
            evaluate_now()
        self.model.train()
        bar = tqdm(total=total_steps, initial=self.step, desc=self.name, disable=not self.main, dynamic_ncols=True,
                   mininterval=1.0)
        while self.step < total_steps:
            self.log_due = (self.step + 1) % log_every == 0 or self.step + 1 == total_steps
            records = step_fn(self)
            self.state["step"] += 1
            bar.update(1)
            if records:
                shown = {r["metric"]: r["value"] for r in records if r["metric"] in progress}
                bar.set_postfix({m: f"{v:.3f}" for m, v in shown.items()})
                self.log(records)
            do_eval = every > 0 and self.step % every == 0 or self.step == total_steps
            if do_eval or (save_every and self.step % save_every == 0):
                score = evaluate_now() if do_eval else None
                if self.main:
                    self.save(score, extra_state())
                self.accelerator.wait_for_everyone()
        bar.close()
        self.accelerator.end_training()
        return self.run_dir
