"""Pretrain the embedded default base model on a local corpus: Python's standard library plus the atomic library.

    python -m labkit pretrain --preset quick --out runs/pretrain

The corpus is function definitions from the standard library that ships with the interpreter and every atomic
task exactly as the later stages format it (prompt + reference body, once per phrasing), repeated
`atomic_repeat` times: that repetition is what gives the base model a prior on the atomic functions
(DESIGN §2.3). With `phrase_first` every atom also comes as often with its phrase above its name (a `# phrase`
comment, then the function): the direction, phrase -> name, that a composite's body needs. Synthetic
composites are never part of it, so the base model has not seen any test function.

Documents are tokenised, joined with eos and packed into fixed blocks of `seq_len` tokens. Training is plain
causal-LM loss with AdamW, linear warmup then cosine decay, and gradient clipping, driven by the shared
training loop (`labkit/loop.py`): every `eval_every` steps the loss on held-out standard-library functions and
on the atomic documents is logged and a checkpoint written, plus one every `save_every` steps. Re-running the
same command on the same --out resumes from the last checkpoint; because the batch order is a function of
(seed, step) alone, a resumed run ends with the same weights as an uninterrupted one.

Output: OUT/model (loads with AutoModelForCausalLM/AutoTokenizer.from_pretrained, or model.name_or_path=OUT),
OUT/metrics.jsonl, OUT/config.json, OUT/checkpoints/.
"""
from __future__ import annotations

import functools
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from labkit import base, batches, loop, runs
from labkit.models import (HELDOUT_EVERY, STDLIB_CHARS, ModelConfig, atomic_documents, load, n_params,
                           phrase_first_documents, stdlib_documents)
from labkit.config import UserError


_QUICK = {"model.size": "small", "steps": 700, "batch_size": 16, "seq_len": 256, "warmup": 50, "eval_every": 100,
          "save_every": 100, "stdlib_chars": STDLIB_CHARS, "atomic_repeat": 10}


@dataclass
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    out_dir: str = "runs/pretrain"
    seed: int = 0
    steps: int = 1000
    batch_size: int = 16
    seq_len: int = 256
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    log_every: int = 10         # train loss is averaged over this many steps
    eval_every: int = 100
    eval_blocks: int = 16       # blocks per held-out loss estimate
    save_every: int = 200
    stdlib_chars: int = STDLIB_CHARS  # how much standard-library source (characters of function definitions)
    heldout_every: int = HELDOUT_EVERY  # every Nth standard-library function is held out for the held-out loss
    atomic_repeat: int = 10         # copies of every atomic document in the corpus
    phrase_first: bool = False      # also every atom phrase-first (`# phrase` above its def), as often

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"model.size": "tiny", "steps": 60, "batch_size": 8, "seq_len": 128, "warmup": 10,
                  "eval_every": 20, "eval_blocks": 4, "save_every": 30, "stdlib_chars": 100_000,
                  "atomic_repeat": 3},
        "quick": _QUICK,
        # The committed base model (labkit/base_model/, loaded as "base"): quick's run with the atoms also written
        # phrase-first (what that changes: README, "The base model").
        "embedded": {**_QUICK, "phrase_first": True},
        "full": {"model.size": "medium", "steps": 20_000, "batch_size": 64, "seq_len": 512, "lr": 1e-3,
                 "warmup": 500, "eval_every": 500, "eval_blocks": 64, "save_every": 1000,
                 "stdlib_chars": 40_000_000, "atomic_repeat": 50},
    }


CONFIG = PretrainConfig
CLI_ALIASES = {"--out": "out_dir", "--seed": "seed"}


# --- the corpus ------------------------------------------------------------------------------------------

def corpus(cfg: PretrainConfig) -> dict[str, list[str]]:
    """Documents by role: "train" (stdlib + repeated atomic), "heldout" (stdlib only), "atomic" (one copy)."""
    stdlib = stdlib_documents(cfg.stdlib_chars)
    atomic = atomic_documents(cfg.seed)
    heldout = stdlib[::cfg.heldout_every]
    train = [d for i, d in enumerate(stdlib) if i % cfg.heldout_every] + atomic * cfg.atomic_repeat
    if cfg.phrase_first:
        train += phrase_first_documents(cfg.seed) * cfg.atomic_repeat
    return {"train": train, "heldout": heldout, "atomic": atomic}


def pack_blocks(docs: list[str], tokenizer, seq_len: int, seed: int) -> torch.Tensor:
    """Shuffle documents, join them with eos and cut into [n_blocks, seq_len] (the remainder is dropped)."""
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist()
    ids = tokenizer([docs[i] for i in order])["input_ids"]
    flat = [t for doc in ids for t in doc + [tokenizer.eos_token_id]]
    n = len(flat) // seq_len
    if n == 0:
        raise UserError(f"the corpus has {len(flat)} tokens, fewer than one block of seq_len={seq_len}; "
                        f"raise stdlib_chars or lower seq_len")
    return torch.tensor(flat[:n * seq_len]).view(n, seq_len)


def batch_indices(step: int, batch_size: int, n_blocks: int, seed: int) -> list[int]:
    """The blocks of one step: consecutive slices of per-epoch permutations, a function of (seed, step) only."""
    out = []
    for pos in range(step * batch_size, (step + 1) * batch_size):
        epoch, i = divmod(pos, n_blocks)
        out.append(_permutation(seed, epoch, n_blocks)[i])
    return out


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, epoch: int, n: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()


# --- training ----------------------------------------------------------------------------------------------

def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warmup to cfg.lr, then cosine decay to 10% of it at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def make_optimizer(model, cfg: PretrainConfig) -> torch.optim.AdamW:
    # Weight decay on matrices only; norms' gains (1-D) stay undecayed, as in nanoGPT.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95),
                             fused=next(model.parameters()).is_cuda)


def train(cfg: PretrainConfig) -> Path:
    """Run (or resume) pretraining; returns the directory of the final model."""
    if cfg.model.lora.enabled:
        raise UserError("pretraining trains every weight; set model.lora.enabled=false")
    if cfg.steps < 1 or cfg.eval_every < 1 or cfg.save_every < 1 or cfg.log_every < 1:
        raise UserError("steps, log_every, eval_every and save_every must be at least 1")
    model, tokenizer = load(cfg.model, cfg.seed)
    device = next(model.parameters()).device
    trainer = loop.Loop(cfg, "pretrain", cpu=device.type == "cpu")
    docs = corpus(cfg)
    train_blocks = pack_blocks(docs["train"], tokenizer, cfg.seq_len, cfg.seed)
    eval_blocks = {name: pack_blocks(docs[name], tokenizer, cfg.seq_len, cfg.seed)[:cfg.eval_blocks]
                   for name in ("heldout", "atomic")}
    state = trainer.start(model, tokenizer, make_optimizer(model, cfg), None, {"tokens": 0})
    if trainer.step == 0:
        print(f"pretrain: {n_params(model) / 1e6:.2f} M parameters on {device}, "
              f"{train_blocks.numel() / 1e6:.2f} M training tokens ({len(train_blocks)} blocks of "
              f"{cfg.seq_len}), {cfg.steps * cfg.batch_size * cfg.seq_len / train_blocks.numel():.1f} epochs")
    window = {"losses": [], "seconds": 0.0}   # training steps since the last log line

    def step(lp: loop.Loop) -> list[dict]:
        t0 = time.time()
        batch = train_blocks[batch_indices(lp.step, cfg.batch_size, len(train_blocks), cfg.seed)].to(device)
        lr = lr_at(lp.step, cfg)
        for group in lp.optimizer.param_groups:
            group["lr"] = lr
        loss = lp.model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lp.model.parameters(), cfg.grad_clip)
        lp.optimizer.step()
        lp.optimizer.zero_grad(set_to_none=True)
        state["tokens"] += batch.numel()
        window["losses"].append(loss.item())
        window["seconds"] += time.time() - t0
        if not lp.log_due:
            return []
        losses, seconds = window["losses"], window["seconds"]
        window.update(losses=[], seconds=0.0)
        return [{"split": "train", "metric": "train_loss", "value": sum(losses) / len(losses)},
                {"split": "train", "metric": "lr", "value": lr},
                {"split": "train", "metric": "tokens_per_s", "value": len(losses) * batch.numel() / seconds}]

    def evaluator(model, step: int):
        return [{"split": name, "metric": "loss", "value": batches.block_loss(model, blocks, cfg.batch_size)}
                for name, blocks in eval_blocks.items()], None, None

    finished_before = trainer.step >= cfg.steps
    trainer.run(cfg.steps, step, evaluator=evaluator, every=cfg.eval_every, save_every=cfg.save_every,
                log_every=cfg.log_every, epoch=lambda s: s * cfg.batch_size / len(train_blocks),
                progress=("train_loss", "tokens_per_s"))
    final = trainer.run_dir.path / "model"
    if finished_before and final.exists():
        return final   # re-running a finished run is a no-op
    return save_final(trainer.run_dir, trainer.unwrapped, tokenizer)


def save_final(run: runs.RunDir, model, tokenizer) -> Path:
    """OUT/model: the final weights and tokenizer, replaced as a whole (temp dir + rename)."""
    final, tmp = run.path / "model", run.path / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def add_arguments(parser) -> None:
    parser.add_argument("--verify", action="store_true",
                        help="compare the final model's sha256 with the committed base's "
                             "(labkit/base_model/SHA256SUMS); exit 1 if a file differs")
    parser.add_argument("--publish", action="store_true",
                        help="replace the committed base model (labkit/base_model/) with this run's final model")


def run_cli(cfg: PretrainConfig, args) -> int:
    t0 = time.time()
    final = train(cfg)
    losses = {(r["split"], r["metric"]): r["value"] for r in runs.read_jsonl(Path(cfg.out_dir) / "metrics.jsonl")}
    print(f"pretrain: done in {time.time() - t0:.0f} s; held-out loss {losses[('heldout', 'loss')]:.3f}, "
          f"atomic loss {losses[('atomic', 'loss')]:.3f}; model in {final}")
    if args.publish:
        dest = base.publish(Path(cfg.out_dir), torch.get_num_threads())
        print(f"pretrain: published as the committed base model in {dest}")
    if args.verify:
        same = base.verify(final)
        for name, ok in same.items():
            print(f"  {name}: {'same sha256 as the committed base' if ok else 'DIFFERS from the committed base'}")
        return 0 if all(same.values()) else 1
    return 0
