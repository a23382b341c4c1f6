"""Online RL with unit-test feedback: GRPO and RLTF, from the base model or from an SFT checkpoint.

    python -m labkit rl --preset quick --init runs/sft --out runs/rl

One RL step (DESIGN §2.1, §2.2):
  1. sample `num_generations` completions for each of `prompts_per_step` prompts of the pool (`prompts.py`;
     batched, KV cache, each sample stopped at the end of its function: `rollouts.py`);
  2. run every program against its unit tests in the sandbox and turn the verdicts into rewards, per token
     (`rewards.py`: the `fine` mode puts its penalty on exactly the tokens of the erroring line);
  3. update the policy (the math: `policy.py`):
     - `grpo`: advantages relative to each prompt's group, PPO-clip over `num_iterations` passes on the batch,
       KL to the frozen init with the k3 estimator (with LoRA the reference is the model with its adapter off);
     - `rltf`: samples go to a buffer (queue) that the trainer draws from; a generator, refreshed from the
       trainer's weights every `refresh_every` steps, fills it; the baseline is the reward of the prompt's greedy
       sample; optionally every `sl_every`-th step is a supervised step on the reference solutions.
Token-level advantages carry both algorithms: A_t = A(completion) + line penalty_t: `fine` adds RLTF's -0.3 on
exactly the tokens of the line an error points at (so even a group of equal rewards learns which line failed).
Evaluation, metrics, checkpoints and resume are the shared loop's (`loop.py`), so RL curves continue SFT curves;
the per-step metrics of the samples go to the split "rl" (reward, pass rate, KL, entropy, lengths, error shares).
Sandbox runs are not overlapped with sampling: GRPO needs a step's verdicts before its update, and running a
step's programs is a small share of the step (`bench/rl_step.py`).

Why RL long did not raise even its own prompts' pass rate here, as measured by bench/rl_learning.py (its
results in bench/results/rl_learning/, the numbers in the README):
  * most groups teach nothing: at temperature 1 an SFT start that passes about a third of its prompts greedily
    passes under a tenth of its samples, so about 70 % of the groups have equal rewards (nearly all: all fail)
    and give no gradient. Sampling at 0.7, keeping only prompts at the edge of competence (`prompt_filter`)
    and dynamic sampling bring that share down to about 30 % at the start;
  * with one optimizer step per batch the PPO ratio is exactly 1, so the clip never acts; `num_iterations=2`
    (with `epsilon_high`) takes a second, bounded step on the same samples;
  * the "train" evaluation was a sample of a pool RL barely revisited; with `max_prompts` RL trains on the
    prompts it is judged on, and `fit_prompts` leaves out those whose reference cannot fit `max_new_tokens`.
Together (the benchmark's "new" settings) they raised the SFT start's greedy train-prompt pass@1 by about 0.24
in 120 steps where the old settings moved it by a few hundredths. From the base model the pool must hold
prompts the base solves sometimes but not greedily (the call-form atomic prompts: it solves no composite and
nearly every atom_base prompt), and at lr 1e-4 RL from the base first breaks its greedy answers; with lr 3e-5
(`BASE_START`) it rose by about 0.16 in 120 steps (README).
"""
from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Literal

import torch

from labkit import batches, config, files, forgetting, loop, prompts, runs, sampling
from labkit.config import UserError
from labkit.loop import EVAL_PRESETS, EvalSchedule
from labkit.models import ModelConfig, add_lora, base_model, load
from labkit.policy import (clipped_surrogate, group_advantages, k3, length_chunks, ratio_bounds, reference_of,
                           token_advantages, token_logprobs, token_weights, varied_groups)
from labkit.rewards import RewardMode
from labkit.rollouts import (ROLLOUT, Rollout, Scored, collate_experience, experiences, reward_rollout,
                             rollout_records, sample, save_rollouts, select_groups)
from labkit.sft import SFTConfig


@dataclass
class RLConfig:
    # The policy's starting point: "base" (the model in `model`), an SFT run directory (its `init_checkpoint`, with
    # the SFT run's model settings), or any model directory. With init != "base", `model` gives only device, dtype
    # and `lora` (an adapter for RL itself, on top of the merged init).
    model: ModelConfig = field(default_factory=base_model)
    init: str = "base"
    init_checkpoint: Literal["last", "best"] = "last"
    data_dir: str = ""                # "" = the SFT run's data directory
    # Training prompts: "sft" = exactly the SFT run's training prompts (its mixture's splits), "fresh" =
    # in-domain prompts the SFT run never saw (train_C minus its mixture), or comma-separated training splits.
    prompts: str = "sft"
    algorithm: Literal["grpo", "rltf"] = "grpo"
    # Default binary: the shaped rewards (coarse, and fine on top of it) score a wrong answer above an error, and
    # a tiny model learns to write bodies like `return 0` (notebook 05 runs the ablation; README: its numbers).
    reward: RewardMode = "binary"
    steps: int = 100
    prompts_per_step: int = 8         # global (split across processes under accelerate)
    # The pool: at most `max_prompts` of the chosen prompts (a fixed random subset; 0 = all), so that RL revisits
    # the prompts it is judged on; with `fit_prompts`, none whose reference body is longer than `max_new_tokens`
    # (such a prompt can never pass; the log counts them).
    max_prompts: int = 300
    fit_prompts: bool = True
    # "edge": keep only the prompts the start policy solves sometimes (0 < pass rate < 1 over num_generations
    # samples, measured once at the start, recorded in OUT/prompt_filter.json): the others give groups with equal
    # rewards, hence no gradient.
    prompt_filter: Literal["none", "edge"] = "edge"
    # Option names and meanings follow TRL's GRPOConfig; the old labkit names are aliases (ALIASES below). The
    # defaults are the ones bench/rl_learning.py chose against the lab's earlier settings (`OLD` there; README).
    num_generations: int = 8          # completions sampled per prompt: one GRPO group (was group_size)
    # At 1.0 the lab's small models pass far less often in samples than greedily, and most groups tie.
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 96
    lr: float = 1e-4
    beta: float = 0.0                 # weight of the k3 KL to the init; 0 skips the reference pass (was kl_coef)
    epsilon: float = 0.2              # PPO clip: the ratio is kept above 1 - epsilon (was clip_eps)
    epsilon_high: float | None = 0.28  # ... and below 1 + epsilon_high (DAPO's clip-higher); None: = epsilon
    num_iterations: int = 2           # optimizer steps per sampled batch; > 1 lets the clip act (was inner_updates)
    # How token losses become the batch loss: "grpo" the mean over each completion's tokens, then over completions;
    # "dr_grpo" the sum over tokens / (completions x max_new_tokens); "dapo" the sum over tokens / all tokens.
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = "dapo"
    # Advantages: reward minus the group's mean, divided by the group's std ("group"), by the batch's std
    # ("batch"), or not divided ("none": Dr. GRPO; the std favours prompts whose rewards barely differ).
    scale_rewards: Literal["group", "batch", "none"] = "group"
    mask_truncated_completions: bool = False   # completions cut at max_new_tokens get no loss
    # DAPO's dynamic sampling: groups whose rewards are all equal are dropped and further prompts sampled, up to
    # `max_resample` extra rounds per step, until the step holds `prompts_per_step` groups (grpo).
    dynamic_sampling: bool = True
    max_resample: int = 1
    # Completions per forward/backward (0: the whole batch at once). The batch is sorted by length first and each
    # chunk padded only to its own longest completion: on a CPU, where the cost follows the padded tokens, chunks
    # of 16 halve the update against one padded batch (bench/rl_step.py). A GPU wants larger chunks (`full`).
    micro_batch: int = 16
    grad_clip: float = 1.0
    # rltf: the generator fills a buffer (queue) the trainer samples from; refreshed from the trainer's weights
    buffer_size: int = 512
    refresh_every: int = 10
    rltf_batch: int = 64              # completions per rltf update, drawn from the buffer
    sl_every: int = 0                 # every n-th step is a supervised step on reference solutions; 0: never
    sandbox_timeout: float = 1.0      # seconds per test (a hanging program pays it once per test)
    log_every: int = 1
    rollout_rows: int = 64            # completions per step written to OUT/rollouts/ (runs.read_rollouts); 0: none
    eval: EvalSchedule = field(default_factory=EvalSchedule)
    seed: int = 0
    out_dir: str = "runs/rl"

    # The evaluation presets are SFT's (loop.EVAL_PRESETS), so RL curves continue the SFT run's curves.
    PRESETS: ClassVar[dict] = {
        # Tests and notebook smoke runs: a few steps (seconds with a tiny model). A random tiny model solves no
        # prompt, so the edge filter would keep none: smoke samples the whole pool.
        "smoke": {**EVAL_PRESETS["smoke"], "steps": 4, "prompts_per_step": 4, "num_generations": 4,
                  "prompt_filter": "none", "max_new_tokens": 40, "lr": 1e-3, "rltf_batch": 16, "refresh_every": 2,
                  "eval.every": 4},
        # The CPU lab: a ~1 M model, a few minutes per run.
        "quick": {**EVAL_PRESETS["quick"], "steps": 120, "prompts_per_step": 8, "num_generations": 8,
                  "max_new_tokens": 64, "eval.every": 30},
        # The quick preset cut to fit notebook 05 into the main job (lab.sh); `quick` is the reference.
        # A pool of 48 prompts before the edge filter: sampling each once stays cheap, and 20 steps of 4 prompts
        # revisit the kept ones a few times each.
        "lab": {**EVAL_PRESETS["lab"], "steps": 20, "prompts_per_step": 4, "num_generations": 8,
                "max_new_tokens": 64, "max_prompts": 48, "eval.every": 20},
        # A GPU.
        "full": {**EVAL_PRESETS["full"], "steps": 1000, "prompts_per_step": 32, "num_generations": 16,
                 "max_new_tokens": 160, "num_iterations": 2, "micro_batch": 128, "eval.every": 100},
    }
    ALIASES: ClassVar[dict] = {"group_size": "num_generations", "kl_coef": "beta", "clip_eps": "epsilon",
                               "inner_updates": "num_iterations"}


CONFIG = RLConfig
# RL straight from the base model takes a smaller step: at lr 1e-4 its first steps broke the base's greedy answers
# (atom_base 0.77 -> 0.48 in 10 steps, its own prompts falling), at 3e-5 its own prompts rose (README, *RL*).
# Notebook 05, the findings suite and bench/rl_learning.py apply it to every run with init="base".
BASE_START = {"lr": 3e-5}
FILTER_FILE = "prompt_filter.json"   # the start policy's pass rate on every prompt (prompt_filter=edge)
CLI_ALIASES = {"--init": "init", "--out": "out_dir", "--seed": "seed", "--data": "data_dir"}


# --- updates ------------------------------------------------------------------------------------------------

def policy_update(lp: loop.Loop, rl: "Actors", batch: dict, advantages: torch.Tensor,
                  loss_mask: torch.Tensor | None = None) -> dict:
    """`num_iterations` optimizer steps on one batch: PPO-clip on the token advantages + beta * k3, token losses
    summed with the weights of `loss_type`; `loss_mask` [N] (0/1) leaves completions out of the loss.

    The first pass's log-probs are the "old" ones (the weights that sampled the batch, or for RLTF the
    trainer's current weights: plain policy gradient, as RLTF), so no extra forward pass is spent on them; from
    the second pass on the ratio moves away from 1 and the clip bounds the step ("clip_frac": the share of
    tokens whose ratio is out of bounds, over those passes).
    """
    cfg, model, accelerator = rl.cfg, lp.model, lp.accelerator
    mask = batch["completion_mask"].float()
    if loss_mask is not None:
        mask = mask * loss_mask.unsqueeze(1)
    n_tokens = accelerator.reduce(mask.sum(), "sum").clamp(min=1)
    weights = None   # dapo keeps its plain sum / tokens below
    if cfg.loss_type != "dapo":
        n_completions = accelerator.reduce(torch.tensor(float(len(mask)), device=mask.device), "sum")
        weights = token_weights(mask, cfg.loss_type, n_tokens, n_completions, cfg.max_new_tokens)
    # Chunks of rows of similar length, each padded only to its own longest row; per-row tensors follow them.
    chunks = []
    for rows, b in length_chunks(batch, cfg.micro_batch):
        width = b["completion_ids"].shape[1]
        chunks.append({"batch": b, "mask": mask[rows][:, :width], "advantages": advantages[rows][:, :width],
                       "weights": None if weights is None else weights[rows][:, :width]})
    ref_logp = [None] * len(chunks)
    if cfg.beta > 0:
        with torch.no_grad(), reference_of(lp.unwrapped, rl.frozen) as reference:
            ref_logp = [token_logprobs(reference, c["batch"], cfg.temperature)[0] for c in chunks]
    old_logp = [None] * len(chunks)
    low, high = ratio_bounds(cfg.epsilon, cfg.epsilon_high)
    sums = collections.Counter()
    for it in range(cfg.num_iterations):
        for j, c in enumerate(chunks):
            logp, entropy = token_logprobs(model, c["batch"], cfg.temperature, with_entropy=it == 0)
            old = logp.detach() if old_logp[j] is None else old_logp[j]
            per_token = clipped_surrogate(logp, old, c["advantages"], cfg.epsilon, cfg.epsilon_high)
            if ref_logp[j] is not None:
                kl = k3(logp, ref_logp[j])
                per_token = per_token + cfg.beta * kl
            if cfg.loss_type == "dapo":
                loss = (per_token * c["mask"]).sum() * accelerator.num_processes / n_tokens
            else:
                loss = (per_token * c["weights"]).sum() * accelerator.num_processes
            if it > 0:
                ratio = torch.exp(logp.detach() - old)
                out_of_bounds = ((ratio < low) | (ratio > high)).float()
                sums["clipped"] += (out_of_bounds * c["mask"]).sum().item()
            sync = contextlib.nullcontext() if j == len(chunks) - 1 else accelerator.no_sync(model)
            with sync:
                accelerator.backward(loss)
            if it == 0:
                old_logp[j] = logp.detach()
                sums["loss"] += loss.item() / accelerator.num_processes
                sums["entropy"] += (entropy * c["mask"]).sum().item()
                if ref_logp[j] is not None:
                    sums["kl"] += (kl.detach() * c["mask"]).sum().item()
        accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        lp.optimizer.step()
        lp.optimizer.zero_grad(set_to_none=True)
    local = mask.sum().clamp(min=1).item()
    out = {"train_loss": sums["loss"], "entropy": sums["entropy"] / local}
    if cfg.beta > 0:
        out["kl"] = sums["kl"] / local
    if cfg.num_iterations > 1:
        out["clip_frac"] = sums["clipped"] / (local * (cfg.num_iterations - 1))
    return out


def sl_update(lp: loop.Loop, task_list: list, cfg: RLConfig) -> dict:
    """RLTF's supervised step: cross-entropy on the reference solutions of `task_list` (as SFT computes it)."""
    model, accelerator = lp.model, lp.accelerator
    device = next(model.parameters()).device
    batch = batches.collate([batches.encode(lp.tokenizer, t.prompt, t.solution) for t in task_list],
                            lp.tokenizer.pad_token_id)
    loss_sum, n = batches.token_losses(model, {k: v.to(device) for k, v in batch.items()})
    total = accelerator.reduce(n.float(), "sum")
    accelerator.backward(loss_sum * accelerator.num_processes / total)
    accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    lp.optimizer.step()
    lp.optimizer.zero_grad(set_to_none=True)
    return {"sl_loss": loss_sum.item() / max(n.item(), 1)}


@dataclass
class Actors:
    """What RL's steps need beside the loop: the config, the frozen reference policy of the KL term (None with
    LoRA, whose reference is the adapter switched off, or without KL), the model that samples (RLTF: a copy of
    the trainer refreshed every `refresh_every` steps; GRPO: the trainer itself), the tokenizer's token pieces,
    and RLTF's buffer of experiences with its own seeded RNG."""
    cfg: RLConfig
    frozen: torch.nn.Module | None
    generator: torch.nn.Module
    pieces: list[str]
    buffer: collections.deque
    buffer_rng: random.Random

    def sample(self, tokenizer, chosen: list, n: int, greedy: bool = False) -> Rollout:
        cfg = self.cfg
        return sample(self.generator, tokenizer, self.pieces, chosen, n, temperature=1.0 if greedy else cfg.temperature,
                      top_p=1.0 if greedy else cfg.top_p, max_new_tokens=cfg.max_new_tokens, greedy=greedy)


def grpo_update(lp: loop.Loop, rl: Actors, rollout: Rollout, scored: Scored) -> dict:
    """GRPO on one step's sampled groups: group-normalised advantages, then the clipped policy update."""
    cfg, mask = rl.cfg, rollout.batch["completion_mask"]
    advantages = token_advantages(group_advantages(scored.rewards, cfg.num_generations, cfg.scale_rewards),
                                  scored.line_penalties, mask)
    loss_mask = None
    if cfg.mask_truncated_completions:
        loss_mask = (~torch.tensor(rollout.truncated, dtype=torch.bool)).float().to(mask.device)
    stats = policy_update(lp, rl, rollout.batch, advantages, loss_mask)
    stats["zero_advantage_groups"] = (scored.rewards.view(-1, cfg.num_generations).std(1) == 0).float().mean().item()
    stats["tokens"] = int(lp.accelerator.reduce(mask.sum(), "sum").item())
    return stats


def rltf_update(lp: loop.Loop, rl: Actors, rollout: Rollout, scored: Scored) -> dict:
    """RLTF on one step's samples: they join the buffer with their advantage (reward minus the reward of the
    prompt's greedy sample), then the trainer updates on a random draw from the buffer, or on the reference
    solutions every `sl_every`-th step."""
    cfg, accelerator = rl.cfg, lp.accelerator
    chosen = rollout.tasks[::cfg.num_generations]
    greedy = rl.sample(lp.tokenizer, chosen, 1, greedy=True)
    baseline = reward_rollout(greedy, cfg.reward, cfg.sandbox_timeout).rewards.repeat_interleave(cfg.num_generations)
    mask = rollout.batch["completion_mask"]
    rl.buffer.extend(experiences(rollout, token_advantages(scored.rewards - baseline, scored.line_penalties, mask)))
    if cfg.sl_every and (lp.step + 1) % cfg.sl_every == 0:
        stats = sl_update(lp, chosen, cfg)
        stats["tokens"] = 0
    else:
        items = rl.buffer_rng.sample(list(rl.buffer), min(cfg.rltf_batch // accelerator.num_processes, len(rl.buffer)))
        batch, advantages = collate_experience(items, lp.tokenizer.pad_token_id, mask.device)
        stats = policy_update(lp, rl, batch, advantages)
        stats["tokens"] = int(accelerator.reduce(batch["completion_mask"].sum(), "sum").item())
    stats.update(baseline_reward=baseline.mean().item(), buffer=len(rl.buffer))
    return stats


def rl_step(lp: loop.Loop, rl: Actors, chosen: list, more: Callable[[int], list] | None = None
            ) -> tuple[Rollout, Scored, dict]:
    """One RL step on this process's prompts: sample their groups, reward them, update the policy. With
    dynamic sampling, `more(round)` gives further prompts for the groups with equal rewards that are dropped.
    -> (the rollout of `chosen` and its rewards, as logged; the update's statistics)."""
    cfg = rl.cfg
    if cfg.algorithm == "rltf" and rl.generator is not lp.unwrapped and lp.step % cfg.refresh_every == 0:
        rl.generator.load_state_dict(lp.unwrapped.state_dict())
    rollout = rl.sample(lp.tokenizer, chosen, cfg.num_generations)
    scored = reward_rollout(rollout, cfg.reward, cfg.sandbox_timeout)
    if cfg.algorithm == "rltf":
        return rollout, scored, rltf_update(lp, rl, rollout, scored)
    if not cfg.dynamic_sampling:
        return rollout, scored, grpo_update(lp, rl, rollout, scored)
    # DAPO's dynamic sampling: keep the groups that can teach, sample more prompts until the batch is full.
    n = cfg.num_generations
    first = varied_groups(scored.rewards, n)
    parts, kept, rounds = [(rollout, scored, first)], len(first), 0
    while kept < len(chosen) and rounds < cfg.max_resample and more is not None:
        rounds += 1
        extra = rl.sample(lp.tokenizer, more(rounds), n)
        extra_scored = reward_rollout(extra, cfg.reward, cfg.sandbox_timeout)
        groups = varied_groups(extra_scored.rewards, n)[:len(chosen) - kept]
        parts.append((extra, extra_scored, groups))
        kept += len(groups)
    stats = {"dynamic/groups_kept": kept / len(chosen), "dynamic/rounds": rounds}
    if kept == 0:   # nothing to learn from this step: no update (a zero-variance batch would only move the KL)
        return rollout, scored, {**stats, "tokens": 0}
    batch_rollout, batch_scored = select_groups(parts, n, lp.tokenizer.pad_token_id)
    stats.update(grpo_update(lp, rl, batch_rollout, batch_scored))
    stats["zero_advantage_groups"] = 1 - len(parts[0][2]) / len(chosen)   # of the step's own prompts
    return rollout, scored, stats


# --- the starting point and the prompts ---------------------------------------------------------------------

def init_source(cfg: RLConfig):
    """The SFT config when `init` is an SFT run directory, else None (checked before any model is loaded)."""
    if cfg.init == "base":
        return None
    path = Path(cfg.init)
    if not path.is_dir():
        raise UserError(f"init={cfg.init!r} is neither 'base' nor a directory; give an SFT run directory "
                        f"(the --out of `python -m labkit sft`) or a model directory")
    if not (path / "config.json").exists() or not (path / "checkpoints" / "index.json").exists():
        return None   # a model directory
    return config.load(SFTConfig, path / "config.json")


def load_init(cfg: RLConfig, sft_cfg):
    """(model, tokenizer) of the starting point. Any adapter of the init is merged, so the init is a plain
    model; RL's own LoRA adapter (if `model.lora.enabled`) goes on top of it."""
    no_lora = dataclasses.replace(cfg.model.lora, enabled=False)
    if cfg.init == "base":
        model, tokenizer = load(dataclasses.replace(cfg.model, lora=no_lora), seed=cfg.seed)
    elif sft_cfg is None:
        model, tokenizer = load(dataclasses.replace(cfg.model, name_or_path=cfg.init, lora=no_lora), seed=cfg.seed)
    else:
        ckpt = runs.RunDir(cfg.init).checkpoint(cfg.init_checkpoint)
        if ckpt is None:
            raise UserError(f"the SFT run {cfg.init} has no {cfg.init_checkpoint!r} checkpoint yet; finish it "
                            f"or use init_checkpoint=last")
        model_cfg = dataclasses.replace(sft_cfg.model, device=cfg.model.device, dtype=cfg.model.dtype)
        model, tokenizer = load(model_cfg, seed=cfg.seed)
        loop.load_weights(model, ckpt)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        # An RL adapter saved later names its base by this path: the SFT checkpoint, not SFT's own base
        # (model.load merges an adapter checkpoint into the base it names).
        model.name_or_path = model.config._name_or_path = str(ckpt.resolve())
    if cfg.model.lora.enabled:
        model = add_lora(model, cfg.model.lora)
    return model, tokenizer


def check_config(cfg: RLConfig) -> None:
    if min(cfg.steps, cfg.prompts_per_step, cfg.num_generations, cfg.num_iterations, cfg.max_new_tokens) < 1:
        raise UserError("steps, prompts_per_step, num_generations, num_iterations and max_new_tokens must be >= 1")
    if cfg.algorithm == "grpo" and cfg.num_generations < 2:
        raise UserError("grpo compares the samples of a group: set num_generations >= 2")
    if cfg.temperature <= 0 or not 0 < cfg.top_p <= 1:
        raise UserError(f"temperature ({cfg.temperature}) must be > 0 and top_p ({cfg.top_p}) in (0, 1]")
    for key, allowed in (("loss_type", ("grpo", "dr_grpo", "dapo")), ("scale_rewards", ("group", "batch", "none")),
                         ("prompt_filter", ("none", "edge"))):
        if getattr(cfg, key) not in allowed:
            raise UserError(f"unknown {key}={getattr(cfg, key)!r}; use one of {', '.join(allowed)}")
    if cfg.epsilon_high is not None and cfg.epsilon_high < cfg.epsilon:
        raise UserError(f"epsilon_high={cfg.epsilon_high} is below epsilon={cfg.epsilon}: clip-higher widens the "
                        f"upper bound; set epsilon_high >= {cfg.epsilon} (DAPO uses 0.28 with 0.2) or leave it unset")
    if (cfg.dynamic_sampling or cfg.prompt_filter == "edge") and cfg.num_generations < 2:
        raise UserError(f"{'dynamic_sampling' if cfg.dynamic_sampling else 'prompt_filter=edge'} tells prompts apart "
                        f"by the spread of their group's rewards; set num_generations >= 2 "
                        f"(got {cfg.num_generations})")
    if cfg.max_resample < 0 or cfg.max_prompts < 0:
        raise UserError("max_resample and max_prompts must be >= 0")
    loop.check_schedule(cfg.eval)


# --- the trainer --------------------------------------------------------------------------------------------

def train(cfg: RLConfig, callbacks: list[Callable[[list[dict]], None]] = ()) -> runs.RunDir:
    """Train (or resume) the RL run in `cfg.out_dir`. `callbacks` receive each batch of logged metric records."""
    check_config(cfg)
    sft_cfg = init_source(cfg)
    data_dir = cfg.data_dir or (sft_cfg.data_dir if sft_cfg else "")
    if not data_dir:
        raise UserError("no data directory: pass --data DIR (made by `python -m labkit synth`) or init from an "
                        "SFT run, whose data directory is used")
    pool = prompts.prompt_pool(cfg, sft_cfg, data_dir)
    model, tokenizer = load_init(cfg, sft_cfg)
    pool, counts = prompts.fit_pool(pool, cfg, tokenizer)
    trainer = loop.Loop(cfg, "rl", callbacks, cpu=next(model.parameters()).device.type == "cpu")
    accelerator = trainer.accelerator
    rank, world = accelerator.process_index, accelerator.num_processes
    if cfg.prompts_per_step % world:
        raise UserError(f"prompts_per_step={cfg.prompts_per_step} is global; it must divide evenly among "
                        f"{world} processes")
    # The reference policy for the KL term: with LoRA, the adapter switched off (no copy).
    frozen = None
    if cfg.beta > 0 and not cfg.model.lora.enabled:
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = loop.adamw(model, cfg.lr)
    pieces = sampling.token_pieces(tokenizer)
    if cfg.prompt_filter == "edge" and trainer.main and not (Path(cfg.out_dir) / FILTER_FILE).exists():
        # Measured on the start policy, before a resumed run would load its later weights.
        record = prompts.edge_of_competence(model, tokenizer, pieces, pool, cfg)
    forget = forgetting.measure(cfg.eval, model, tokenizer) if trainer.main else None   # before resume loads weights
    state = trainer.start(model, tokenizer, optimizer, None, {"tokens": 0, "buffer": []})
    if cfg.prompt_filter == "edge":
        path = Path(cfg.out_dir) / FILTER_FILE
        if trainer.main and not path.exists():
            files.write_json(path, record)
        accelerator.wait_for_everyone()
        record = json.loads(path.read_text())
        pool = prompts.on_the_edge(pool, record)
        counts.update(edge=len(pool), always=record["always"], never=record["never"])
    sets = loop.eval_sets(cfg.eval, data_dir, pool, cfg.seed) if trainer.main else {}
    unwrapped = trainer.unwrapped
    # RLTF: the generator is a copy refreshed from the trainer every `refresh_every` steps (a resumed run starts
    # with a fresh copy); its samples wait in a queue, restored from the checkpoint.
    generator = copy.deepcopy(unwrapped) if cfg.algorithm == "rltf" and cfg.refresh_every > 1 else unwrapped
    rl = Actors(cfg, frozen, generator, pieces,
                collections.deque(state.pop("buffer", []), maxlen=cfg.buffer_size),
                random.Random(f"{cfg.seed}-buffer-{rank}"))
    if trainer.main:
        print(f"rl: {cfg.algorithm}, reward {cfg.reward}, {len(pool)} prompts ("
              + ", ".join(f"{k} {v}" for k, v in counts.items()) + f"), {cfg.steps} steps of "
              f"{cfg.prompts_per_step} x {cfg.num_generations} samples"
              + (f"; resuming at step {trainer.step}" if trainer.step else ""))

    def step(lp: loop.Loop) -> list[dict]:
        rollout, scored, stats = rl_step(lp, rl, prompts.step_tasks(pool, cfg, lp.step, rank, world),
                                         lambda r: prompts.step_tasks(pool, cfg, lp.step, rank, world, r))
        save_rollouts(lp.run_dir, lp.step + 1, rollout, scored, cfg.rollout_rows, accelerator)   # main process writes
        state["tokens"] += stats.pop("tokens")
        if not lp.log_due:
            return []
        stats = {k: accelerator.reduce(torch.tensor(float(v)), "mean").item() for k, v in stats.items()}
        records = rollout_records(rollout, scored, accelerator)
        return records + [{"split": ROLLOUT, "metric": m, "value": v} for m, v in sorted(stats.items())]

    evaluator = loop.task_evaluator(cfg.eval, sets, tokenizer, cfg.seed, forget) if sets else None
    return trainer.run(cfg.steps, step, evaluator=evaluator, every=cfg.eval.every, log_every=cfg.log_every,
                       epoch=lambda s: s * cfg.prompts_per_step / len(pool),
                       extra_state=lambda: {"buffer": list(rl.buffer)},
                       progress=("reward_mean", "sample_pass_rate"))


def run_cli(cfg: RLConfig, args) -> int:
    run = train(cfg)
    if run is not None:
        ckpt = run.checkpoint("best") or run.checkpoint("last")
        print(f"rl: done; metrics in {run.metrics_path}, best checkpoint {ckpt}")
    return 0
