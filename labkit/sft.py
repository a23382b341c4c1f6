"""Supervised fine-tuning with generalisation and overfitting curves, checkpoints and crash-safe resume.

    python -m labkit sft --preset quick --model base --data runs/data --out runs/sft

Trains a causal LM on prompt -> reference body pairs drawn from a mixture of data splits (atomic functions
and/or the synthetic pools A ⊂ B ⊂ C), with the loss on the response tokens only. Every `eval.every` steps the
model is evaluated on a fixed sample of its own training prompts, `atom_base`, `test_in_domain` and
`test_target` (greedy pass@1, sampled pass@k, error shares, reference loss): the curves of DESIGN §2.1.

The loop is plain PyTorch (AdamW, warmup + cosine/linear schedule, gradient clipping) driven by an
`accelerate.Accelerator`, so the same code runs on one CPU, one GPU, or data parallel under
`accelerate launch` (`batch_size` is the global batch; each process gets its slice of every batch).
Batches group examples of similar length (shuffle, then sort inside windows of 64 batches) to waste little
compute on padding while keeping the order random.

Re-running the same command on a run directory resumes from its last checkpoint: weights, optimizer,
scheduler, RNG states, and the data position (which is a pure function of the seed and the step).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Literal

import torch
from tqdm.auto import tqdm

from labkit import batches, forgetting, loop, runs, tasks
from labkit.config import UserError
from labkit.loop import EVAL_PRESETS, EvalSchedule
from labkit.models import ModelConfig, base_model, load


@dataclass
class SFTConfig:
    model: ModelConfig = field(default_factory=base_model)   # the committed base or a model directory, + LoRA
    data_dir: str = "runs/data"            # output of `python -m labkit synth`
    out_dir: str = "runs/sft"              # the run directory (re-run to resume)
    # Data mixture: split -> weight. Each epoch holds round(weight * len(split)) examples of the split:
    # 1 takes it once, 2 twice, 0.5 a fresh random half every epoch. "train_C:60" is the split's first 60
    # tasks (a fixed subset: the size sweeps of DESIGN §2.3 between and beyond the pools A ⊂ B ⊂ C).
    mixture: dict[str, float] = field(default_factory=lambda: {"atom_base": 1.0, "train_A": 1.0})
    epochs: int = 3
    max_steps: int = 0                     # stop after this many optimizer steps; 0: after `epochs` epochs
    batch_size: int = 16                   # global batch (split across processes under accelerate)
    lr: float = 1e-3
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup: float = 0.05                   # fraction of all steps with a linear warmup
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_seq_len: int = 384                 # longer examples are dropped (a cut-off body teaches nonsense)
    completion_only_loss: bool = True      # loss on the response tokens only (prompt tokens masked)
    log_every: int = 10                    # training loss / lr lines every N steps
    save_every: int = 0                    # extra checkpoints every N steps; 0: at each evaluation only
    eval: EvalSchedule = field(default_factory=EvalSchedule)
    seed: int = 0

    PRESETS: ClassVar[dict] = {
        # Tests and notebook smoke runs: a dozen steps (seconds with a tiny model).
        "smoke": {**EVAL_PRESETS["smoke"], "epochs": 1, "max_steps": 12, "batch_size": 8, "lr": 3e-3, "log_every": 2,
                  "max_seq_len": 256, "eval.every": 6},
        # The CPU lab (~1 M model): the same step budget for every mixture, a few minutes per run.
        "quick": {**EVAL_PRESETS["quick"], "epochs": 20, "max_steps": 400, "batch_size": 16, "lr": 2e-3,
                  "eval.every": 100},
        # The quick preset cut to fit notebooks 04/05 into the main job (lab.sh): 300 steps (past the early
        # SFT steps that first break the base's answers, README) and smaller evaluations. `quick` itself is the
        # reference CPU run.
        "lab": {**EVAL_PRESETS["lab"], "epochs": 20, "max_steps": 300, "batch_size": 16, "lr": 2e-3,
                "eval.every": 150},
        # A GPU: more steps.
        "full": {**EVAL_PRESETS["full"], "epochs": 10, "batch_size": 32, "lr": 1e-3, "eval.every": 200},
    }


CONFIG = SFTConfig
CLI_ALIASES = {"--model": "model.name_or_path", "--data": "data_dir", "--out": "out_dir", "--seed": "seed"}


# --- data ---------------------------------------------------------------------------------------------------

def epoch_batches(splits: dict[str, list[int]], weights: dict[str, float], batch_size: int,
                  lengths: list[int], seed: int, epoch: int) -> list[list[int]]:
    """The batches (example indices) of one epoch: a pure function of (seed, epoch), so resume needs only
    the step. Same-length examples are grouped: shuffle, sort by length inside windows of 64 batches, cut
    into batches, shuffle the batches. The incomplete last batch is dropped (a fresh remainder each epoch)."""
    rng = random.Random(f"{seed}-epoch-{epoch}")
    order = []
    for split, idx in splits.items():
        whole, frac = divmod(weights[split], 1.0)
        order += idx * int(whole) + rng.sample(idx, round(frac * len(idx)))
    rng.shuffle(order)
    order = order[:len(order) // batch_size * batch_size]
    window = 64 * batch_size
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def examples_per_epoch(splits: dict[str, list[int]], weights: dict[str, float]) -> int:
    return sum(int(weights[s] // 1.0) * len(idx) + round(weights[s] % 1.0 * len(idx)) for s, idx in splits.items())


def lr_lambda(cfg: SFTConfig, total_steps: int) -> Callable[[int], float]:
    warmup = max(1, round(cfg.warmup * total_steps)) if cfg.warmup > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if cfg.schedule == "linear":
            return max(0.0, 1 - progress)
        return 1.0
    return factor


# --- the trainer --------------------------------------------------------------------------------------------

def train(cfg: SFTConfig, callbacks: list[Callable[[list[dict]], None]] = ()) -> runs.RunDir:
    """Train (or resume) the run in `cfg.out_dir`. `callbacks` receive each batch of logged metric records."""
    if cfg.batch_size < 1 or cfg.epochs < 1:
        raise UserError(f"batch_size ({cfg.batch_size}) and epochs ({cfg.epochs}) must be at least 1")
    mixture = tasks.load_mixture(cfg.data_dir, cfg.mixture)
    loop.check_schedule(cfg.eval)
    model, tokenizer = load(cfg.model, seed=cfg.seed)
    trainer = loop.Loop(cfg, "sft", callbacks, cpu=next(model.parameters()).device.type == "cpu",
                        split_batches=True)
    accelerator = trainer.accelerator
    if cfg.batch_size % accelerator.num_processes:
        raise UserError(f"batch_size={cfg.batch_size} is the global batch; it must divide evenly among "
                        f"{accelerator.num_processes} processes")

    # Tokenise once. Examples longer than max_seq_len are dropped, not cut: a truncated body is not code.
    examples, split_idx, dropped = [], {}, 0
    for split, task_list in mixture.items():
        split_idx[split] = []
        for t in task_list:
            ids, labels = batches.encode(tokenizer, t.prompt, t.solution)
            if len(ids) > cfg.max_seq_len:
                dropped += 1
                continue
            if not cfg.completion_only_loss:
                labels = list(ids)
            split_idx[split].append(len(examples))
            examples.append((ids, labels))
    lengths = [len(ids) for ids, _ in examples]
    per_epoch = examples_per_epoch(split_idx, cfg.mixture) // cfg.batch_size
    if per_epoch == 0:
        raise UserError(f"the mixture {cfg.mixture} gives {len(examples)} usable examples ({dropped} dropped as "
                        f"longer than max_seq_len={cfg.max_seq_len}), fewer than one batch of {cfg.batch_size}")
    total_steps = min(per_epoch * cfg.epochs, cfg.max_steps or per_epoch * cfg.epochs)
    train_tasks = [t for task_list in mixture.values() for t in task_list]
    sets = loop.eval_sets(cfg.eval, cfg.data_dir, train_tasks, cfg.seed) if trainer.main else {}

    optimizer = loop.adamw(model, cfg.lr, cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
    forget = forgetting.measure(cfg.eval, model, tokenizer) if trainer.main else None   # before resume loads weights
    state = trainer.start(model, tokenizer, optimizer, scheduler, {"tokens": 0, "loss_sum": 0.0, "loss_count": 0})
    if trainer.main:
        print(f"sft: {len(examples)} examples ({dropped} too long) from {', '.join(mixture)}; "
              f"{per_epoch} steps/epoch, {total_steps} steps"
              + (f"; resuming at step {trainer.step}" if trainer.step else ""))

    def epoch_loader(epoch: int, offset: int):
        """The rest of one epoch's batches from `offset` on: the data position is a function of the step."""
        flat = [i for b in epoch_batches(split_idx, cfg.mixture, cfg.batch_size, lengths, cfg.seed, epoch)[offset:]
                for i in b]
        return iter(accelerator.prepare_data_loader(torch.utils.data.DataLoader(
            examples, batch_sampler=torch.utils.data.BatchSampler(flat, cfg.batch_size, drop_last=True),
            collate_fn=lambda b: batches.collate(b, tokenizer.pad_token_id))))

    loader = None

    def step(lp: loop.Loop) -> list[dict]:
        nonlocal loader
        batch = next(loader, None) if loader is not None else None
        if batch is None:
            loader = epoch_loader(*divmod(lp.step, per_epoch))
            batch = next(loader)
        loss_sum, n_labels = batches.token_losses(lp.model, batch)
        # Normalise by the labelled tokens of the *global* batch, so that data-parallel gradients (averaged
        # over processes by DDP) equal the one-process gradient exactly, however tokens split.
        totals = accelerator.reduce(torch.stack([loss_sum.detach(), n_labels.float(),
                                                 batch["attention_mask"].sum().float()]), "sum")
        (loss_sum * accelerator.num_processes / totals[1]).backward()
        accelerator.clip_grad_norm_(lp.model.parameters(), cfg.grad_clip)
        lp.optimizer.step()
        scheduler.step()
        lp.optimizer.zero_grad(set_to_none=True)
        state["tokens"] += int(totals[2].item())
        state["loss_sum"] += totals[0].item() / totals[1].item()
        state["loss_count"] += 1
        if not lp.log_due:
            return []
        loss = state["loss_sum"] / state["loss_count"]
        state["loss_sum"], state["loss_count"] = 0.0, 0
        return [{"split": "train", "metric": "train_loss", "value": loss},
                {"split": "train", "metric": "lr", "value": scheduler.get_last_lr()[0]}]

    evaluator = loop.task_evaluator(cfg.eval, sets, tokenizer, cfg.seed, forget) if sets else None
    return trainer.run(total_steps, step, evaluator=evaluator, every=cfg.eval.every, save_every=cfg.save_every,
                       log_every=cfg.log_every, epoch=lambda s: s / per_epoch, progress=("train_loss",))


def run_cli(cfg: SFTConfig, args) -> int:
    run = train(cfg)
    if run is not None:
        ckpt = run.checkpoint("best") or run.checkpoint("last")
        print(f"sft: done; metrics in {run.metrics_path}, best checkpoint {ckpt}")
    return 0
