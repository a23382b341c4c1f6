"""What the SFT and RL trainers share: the evaluation schedule and the checkpoint/resume glue.

A trainer holds an `EvalConfig` as its nested `eval` field and, around its own update loop, calls:

    sets = eval_sets(cfg.eval, data_dir, train_tasks, seed)        # fixed task samples per split, chosen once
    score = evaluate_and_log(run, callbacks, model, tok, sets, cfg.eval, seed, step=..., epoch=..., tokens=...)
                 # pass@1, pass@k, error shares, reference loss per split -> metrics.jsonl, samples/, callbacks
    log(run, callbacks, records, step=..., epoch=..., tokens=...)  # other metric lines (training loss, ...)
    save(run, step, model, tok, optimizer, scheduler, state, score)  # last + best, with RNG states
    state = resume(run, model, optimizer, scheduler)                # None for a fresh run

Every metric line has the same schema whatever the stage: step, epoch, tokens, wall_time, split, metric,
value. The evaluation itself (sampling, the sandbox, pass@k) is `labkit.evaluate`; this module only decides
what is evaluated when, and turns results into metric lines.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from labkit import tasks as tasks_mod
from labkit.config import UserError

TRAIN = "train"   # the eval split made of a fixed sample of the trainer's own training prompts


@dataclass
class EvalConfig:
    every: int = 50               # evaluate every N optimizer steps, and at step 0 and at the end; 0: start/end
    # Tasks evaluated per split, a fixed sample drawn once per run ("train": the trainer's own prompts).
    # Set a size to 0 to skip that split.
    sizes: dict[str, int] = field(default_factory=lambda: {TRAIN: 64, "atom_base": 64, "test_in_domain": 64,
                                                           "test_target": 64})
    n_samples: int = 8            # sampled completions per task for pass@k (pass@1 is always greedy)
    k: int = 8                    # pass@k from the n_samples samples (k <= n_samples)
    temperature: float = 0.8
    max_new_tokens: int = 128
    # Sandbox seconds per test. The lab's tests run in microseconds; a program that hangs costs this once per
    # test (8 tests at 5 s made one looping program 40 s: most of an evaluation's wall time).
    timeout: float = 1.0
    best_split: str = "test_in_domain"   # the checkpoint with the highest greedy pass@1 here is kept as best


def check(cfg: EvalConfig) -> None:
    splits = [s for s, n in cfg.sizes.items() if n > 0]
    unknown = [s for s in cfg.sizes if s != TRAIN and s not in tasks_mod.SPLITS]
    if unknown:
        raise UserError(f"eval.sizes names unknown splits {unknown}; use {TRAIN!r} or one of "
                        f"{', '.join(tasks_mod.SPLITS)}")
    if cfg.n_samples and not 1 <= cfg.k <= cfg.n_samples:
        raise UserError(f"eval.k={cfg.k} must be between 1 and eval.n_samples={cfg.n_samples}")
    if splits and cfg.best_split not in splits:
        raise UserError(f"eval.best_split={cfg.best_split!r} is not evaluated; evaluated splits: "
                        f"{', '.join(splits)}")


def eval_sets(cfg: EvalConfig, data_dir, train_tasks: list, seed: int) -> dict[str, list]:
    """The fixed task sample of each evaluated split (same seed -> same tasks, so curves are comparable)."""
    check(cfg)
    out = {}
    for split, size in cfg.sizes.items():
        if size <= 0:
            continue
        pool = train_tasks if split == TRAIN else tasks_mod.load_split(data_dir, split)
        pool = list(pool)
        random.Random(f"{seed}-eval-{split}").shuffle(pool)
        out[split] = pool[:size]
    return out


# --- examples as token ids: shared by the SFT loss and the held-out loss of every evaluation --------------

def encode(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for prompt + completion + eos, with the prompt's labels masked (-100).

    Prompt and completion are tokenised separately, as at generation time (the model is given the prompt's
    tokens and continues): tokenising the joined text could merge "\\n" + "    " across the boundary into a
    token the model never sees at inference.
    """
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p + c, [-100] * len(p) + c


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest example; padding is masked by attention_mask and labels, never by id."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, :len(x)], labels[i, :len(y)], mask[i, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def token_losses(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of next-token cross-entropy over labelled tokens, number of labelled tokens)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                                             ignore_index=-100, reduction="sum")
    return loss, (targets != -100).sum()


@torch.no_grad()
def mean_loss(model, tokenizer, task_list: list, batch_size: int = 32) -> float:
    """Per-token loss of the reference solutions (teacher forced): the held-out loss of a split."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    examples = [encode(tokenizer, t.prompt, t.solution) for t in task_list]
    for i in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[i:i + batch_size], tokenizer.pad_token_id).items()}
        loss, n = token_losses(model, batch)
        total, count = total + loss.item(), count + n.item()
    return total / max(count, 1)


# --- evaluation -------------------------------------------------------------------------------------------

def evaluate(model, tokenizer, sets: dict[str, list], cfg: EvalConfig, seed: int, step: int):
    """Evaluate `model` on each split: (metric records without step fields, sample records).

    Sampling draws from its own seeded RNG (seed, step) and the training RNG is restored afterwards, so an
    evaluation is reproducible and never shifts the training run's random stream (resume stays exact).
    """
    from labkit import evaluate as ev

    was_training = model.training
    model.eval()
    records, samples = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1_000_003 + step)
        for split, task_list in sets.items():
            result = ev.evaluate_tasks(model, tokenizer, task_list, n=cfg.n_samples, k=cfg.k, greedy=True,
                                       temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                                       timeout=cfg.timeout)
            metrics = {m: v for m, v in result.metrics.items() if m not in ("n_tasks", "n_completions")}
            metrics["loss"] = mean_loss(model, tokenizer, task_list)
            records += [{"split": split, "metric": m, "value": float(v)} for m, v in sorted(metrics.items())]
            samples += [{**s, "split": split} for s in result.samples]
    model.train(was_training)
    return records, samples


def evaluate_and_log(run, callbacks, model, tokenizer, sets: dict[str, list], cfg: EvalConfig, seed: int,
                     **fields) -> float | None:
    """One scheduled evaluation: metrics to metrics.jsonl and the callbacks, programs to samples/step-N.jsonl.
    `fields` are the step fields (step, epoch, tokens). Returns the best-checkpoint score."""
    records, samples = evaluate(model, tokenizer, sets, cfg, seed, fields["step"])
    run.write_samples(fields["step"], samples)
    log(run, callbacks, records, **fields)
    return score(records, cfg)


def score(records: list[dict], cfg: EvalConfig) -> float | None:
    """The best-checkpoint score of an evaluation: greedy pass@1 on `cfg.best_split`."""
    for r in records:
        if r["split"] == cfg.best_split and r["metric"] == "pass@1":
            return r["value"]
    return None


def log(run, callbacks, records: list[dict], **common) -> None:
    """Write records (with the step fields in `common`) to the run's metrics.jsonl, then show them live."""
    if run is not None:
        common = {"wall_time": round(run.wall_time, 3), **common}
    records = [{**common, **r} for r in records]
    if run is not None:
        run.log(records)
    for callback in callbacks:
        callback(records)


# --- checkpoints: weights via save_pretrained, everything else in trainer_state.pt --------------------------

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


def save(run, step: int, model, tokenizer, optimizer, scheduler, state: dict, score: float | None) -> Path:
    """A checkpoint of everything a resumed run needs: weights, optimizer, scheduler, RNG and `state`."""
    full = {**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng": _rng_state()}
    return run.save_checkpoint(step, model, tokenizer, full, score=score)


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


def resume(run, model, optimizer, scheduler, main: bool = True) -> dict | None:
    """Restore the last checkpoint into model/optimizer/scheduler/RNG; returns the trainer state or None.

    The main process also drops metric lines logged after that checkpoint (RunDir.resume); the other
    processes of a data-parallel run only read the checkpoint.
    """
    if main:
        state = run.resume()
    else:
        ckpt = run.checkpoint("last")
        state = torch.load(ckpt / "trainer_state.pt", weights_only=False) if ckpt else None
    if state is None:
        return None
    load_weights(model, run.checkpoint("last"))
    optimizer.load_state_dict(state.pop("optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    _set_rng_state(state.pop("rng"))
    return state
