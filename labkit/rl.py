"""Online RL with unit-test feedback: GRPO and RLTF, from the base model or from an SFT checkpoint.

    python -m labkit rl --preset quick --init runs/sft --out runs/rl

One RL step (DESIGN §2.1, §2.2):
  1. sample `group_size` completions for each of `prompts_per_step` training prompts (batched, KV cache, each
     sample stopped at the end of its function: generation dominates a step, NOTES-environment.md);
  2. run every program against its unit tests in the sandbox and turn the verdicts into rewards, per token
     (`rewards.py`: the `fine` mode puts its penalty on exactly the tokens of the erroring line);
  3. update the policy:
     - `grpo`: advantages normalised within each prompt's group, PPO-clip ratio over `inner_updates` passes on
       the batch, KL to the frozen init with the k3 estimator (with LoRA the reference is the same model with
       its adapter disabled, not a second copy);
     - `rltf`: samples go to a buffer (queue) that the trainer draws from; a generator, refreshed from the
       trainer's weights every `refresh_every` steps, fills it; the baseline is the reward of the prompt's greedy
       sample; optionally every `sl_every`-th step is a supervised step on the reference solutions.
Token-level advantages carry both algorithms: A_t = A(completion) + line penalty_t. With a per-completion
reward every token of a sample shares its advantage; `fine` adds RLTF's -0.3 on exactly the tokens of the line an
error points at (so even a group whose samples all got the same reward still learns which line failed).
Sampling and rewards are `labkit/rollouts.py`; evaluation, metrics, checkpoints and resume are the shared loop's
(`labkit/loop.py`), so RL curves continue SFT curves. The per-step metrics of the samples RL trains on go to the
split "rl" (reward mean/spread, pass rate, KL, entropy, completion length, verdict and error-type shares).

Sandbox runs are not overlapped with sampling: GRPO needs a step's verdicts before its update, and running a
step's programs is a small share of the step (`bench/rl_step.py`), so overlap would have to split the sampling
batch, which costs more than it could hide.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Literal

import torch

from labkit import batches, config, loop, runs, sampling, tasks
from labkit.config import UserError
from labkit.loop import EVAL_PRESETS, EvalSchedule
from labkit.models import ModelConfig, add_lora, load
from labkit.rewards import RewardMode
from labkit.rollouts import (ROLLOUT, Rollout, Scored, collate_experience, experiences, reward_rollout,
                             rollout_records, sample)
from labkit.sft import SFTConfig


@dataclass
class RLConfig:
    # The policy's starting point: "base" (the model in `model`), an SFT run directory (its `init_checkpoint`,
    # with the SFT run's model settings), or any model directory. With init != "base", `model` contributes only
    # device, dtype and `lora` (an adapter for RL itself, on top of the merged init).
    model: ModelConfig = field(default_factory=ModelConfig)
    init: str = "base"
    init_checkpoint: Literal["last", "best"] = "last"
    data_dir: str = ""                # "" = the SFT run's data directory
    # Training prompts: "sft" = exactly the SFT run's training prompts (its mixture's splits), "fresh" =
    # in-domain prompts the SFT run never saw (train_C minus its mixture), or comma-separated training splits.
    prompts: str = "sft"
    algorithm: Literal["grpo", "rltf"] = "grpo"
    # Default binary: with the lab's ~1 M model, the shaped rewards (coarse, and fine on top of it) score a wrong
    # answer above an error, and RL from a half-trained SFT checkpoint collapsed to bodies like `return 0`
    # (train pass@1 0.33 -> 0.18 in 40 steps, while binary rose to 0.38). Notebook 05 runs the ablation.
    reward: RewardMode = "binary"
    steps: int = 100
    prompts_per_step: int = 8         # global (split across processes under accelerate)
    group_size: int = 8               # completions sampled per prompt
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 96
    lr: float = 1e-4
    kl_coef: float = 0.05             # weight of the k3 KL to the init; 0 skips the reference pass
    clip_eps: float = 0.2             # PPO clip range of the probability ratio
    inner_updates: int = 1            # optimizer steps on each sampled batch (grpo)
    micro_batch: int = 0              # completions per forward/backward; 0 = the whole batch at once
    grad_clip: float = 1.0
    # rltf: the generator fills a buffer (queue) the trainer samples from; refreshed from the trainer's weights
    buffer_size: int = 512
    refresh_every: int = 10
    rltf_batch: int = 64              # completions per rltf update, drawn from the buffer
    sl_every: int = 0                 # every n-th step is a supervised step on reference solutions; 0: never
    sandbox_timeout: float = 1.0      # seconds per test (a hanging program pays it once per test)
    log_every: int = 1
    eval: EvalSchedule = field(default_factory=EvalSchedule)
    seed: int = 0
    out_dir: str = "runs/rl"

    # The evaluation presets are SFT's (loop.EVAL_PRESETS), so RL curves continue the SFT run's curves.
    PRESETS: ClassVar[dict] = {
        # Tests and notebook smoke runs: a few steps (seconds with a tiny model).
        "smoke": {**EVAL_PRESETS["smoke"], "steps": 4, "prompts_per_step": 4, "group_size": 4, "max_new_tokens": 40,
                  "lr": 1e-3, "rltf_batch": 16, "refresh_every": 2, "eval.every": 4},
        # The CPU lab: a ~1 M model, a few minutes per run.
        "quick": {**EVAL_PRESETS["quick"], "steps": 120, "prompts_per_step": 8, "group_size": 8, "max_new_tokens": 64,
                  "eval.every": 30},
        # The quick preset cut to fit notebook 05 into the main job (lab.sh); `quick` is the reference.
        "lab": {**EVAL_PRESETS["lab"], "steps": 20, "prompts_per_step": 4, "group_size": 8, "max_new_tokens": 64,
                "eval.every": 10},
        # A GPU.
        "full": {**EVAL_PRESETS["full"], "steps": 1000, "prompts_per_step": 32, "group_size": 16,
                 "max_new_tokens": 160, "inner_updates": 2, "micro_batch": 128, "eval.every": 100},
    }


CONFIG = RLConfig
CLI_ALIASES = {"--init": "init", "--out": "out_dir", "--seed": "seed", "--data": "data_dir"}


# --- the policy-gradient math -------------------------------------------------------------------------------

def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO: each reward minus its group's mean, over the group's standard deviation. A group whose samples
    all got the same reward teaches nothing (advantage 0): RL on prompts SFT has memorised (DESIGN §2.3)."""
    r = rewards.view(-1, group_size)
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + eps)).view(-1)


def token_advantages(seq_advantages: torch.Tensor, scored: Scored, mask: torch.Tensor) -> torch.Tensor:
    """[N, Tc]: each completion's advantage on all its tokens, plus the fine mode's line penalties on exactly
    the tokens of the erroring line. Token-level credit: a sample with one bad line is not blamed evenly."""
    return (seq_advantages.unsqueeze(1) + scored.line_penalties) * mask


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(policy || reference) estimate from the sampled tokens (Schulman's k3): exp(d) - d - 1 with
    d = ref - policy. Unbiased, never negative, lower variance than -d."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def clipped_surrogate(logp, old_logp, advantages, clip_eps: float) -> torch.Tensor:
    """PPO-clip per token, to minimise: -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)."""
    ratio = torch.exp(logp - old_logp)
    return -torch.min(ratio * advantages, ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages)


def token_logprobs(model, batch: dict, temperature: float, with_entropy: bool = False):
    """Log-probability of each completion token at the sampling temperature ([N, Tc]) and, when asked, the
    policy's entropy per token. Only the completion positions go through the output layer."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    positions = (mask.cumsum(1) - 1).clamp(min=0)   # as `generate` numbers left-padded prompts
    tc = batch["completion_ids"].shape[1]
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                   logits_to_keep=tc + 1).logits[:, :-1].float() / temperature
    norm = logits.logsumexp(-1)
    logp = logits.gather(-1, batch["completion_ids"].unsqueeze(-1)).squeeze(-1) - norm
    if not with_entropy:
        return logp, None
    with torch.no_grad():
        entropy = norm - (logits.softmax(-1) * logits).sum(-1)
    return logp, entropy


@contextlib.contextmanager
def reference_of(model, frozen):
    """The reference policy: a frozen copy of the init, or, with LoRA, the model itself with its adapter
    disabled (the init's weights are exactly the base under the adapter: no second copy in memory)."""
    if frozen is not None:
        yield frozen
    else:
        with model.disable_adapter():
            yield model


# --- updates ------------------------------------------------------------------------------------------------

def policy_update(lp: loop.Loop, rl: "Actors", batch: dict, advantages: torch.Tensor) -> dict:
    """`inner_updates` optimizer steps on one batch: PPO-clip on the token advantages + kl_coef * k3.

    The first pass's log-probs are the "old" ones (the weights that sampled the batch, or for RLTF the
    trainer's current weights: plain policy gradient, as RLTF), so no extra forward pass is spent on them.
    The loss is normalised by the completion tokens of the *global* batch, so data-parallel gradients
    (averaged over processes) equal the one-process gradient.
    """
    cfg, model, accelerator = rl.cfg, lp.model, lp.accelerator
    mask = batch["completion_mask"].float()
    n_tokens = accelerator.reduce(mask.sum(), "sum").clamp(min=1)
    size = cfg.micro_batch or len(mask)
    chunks = [slice(i, i + size) for i in range(0, len(mask), size)]
    part = [{k: v[c] for k, v in batch.items()} for c in chunks]
    ref_logp = [None] * len(chunks)
    if cfg.kl_coef > 0:
        with torch.no_grad(), reference_of(lp.unwrapped, rl.frozen) as reference:
            ref_logp = [token_logprobs(reference, b, cfg.temperature)[0] for b in part]
    old_logp = [None] * len(chunks)
    sums = collections.Counter()
    for it in range(cfg.inner_updates):
        for j, (c, b) in enumerate(zip(chunks, part)):
            logp, entropy = token_logprobs(model, b, cfg.temperature, with_entropy=it == 0)
            old = logp.detach() if old_logp[j] is None else old_logp[j]
            per_token = clipped_surrogate(logp, old, advantages[c], cfg.clip_eps)
            if ref_logp[j] is not None:
                kl = k3(logp, ref_logp[j])
                per_token = per_token + cfg.kl_coef * kl
            loss = (per_token * mask[c]).sum() * accelerator.num_processes / n_tokens
            sync = contextlib.nullcontext() if j == len(chunks) - 1 else accelerator.no_sync(model)
            with sync:
                accelerator.backward(loss)
            if it == 0:
                old_logp[j] = logp.detach()
                sums["loss"] += loss.item() / accelerator.num_processes
                sums["entropy"] += (entropy * mask[c]).sum().item()
                if ref_logp[j] is not None:
                    sums["kl"] += (kl.detach() * mask[c]).sum().item()
        accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        lp.optimizer.step()
        lp.optimizer.zero_grad(set_to_none=True)
    local = mask.sum().clamp(min=1).item()
    out = {"train_loss": sums["loss"], "entropy": sums["entropy"] / local}
    if cfg.kl_coef > 0:
        out["kl"] = sums["kl"] / local
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
    advantages = token_advantages(group_advantages(scored.rewards, cfg.group_size), scored, mask)
    stats = policy_update(lp, rl, rollout.batch, advantages)
    stats["zero_advantage_groups"] = (scored.rewards.view(-1, cfg.group_size).std(1) == 0).float().mean().item()
    stats["tokens"] = int(lp.accelerator.reduce(mask.sum(), "sum").item())
    return stats


def rltf_update(lp: loop.Loop, rl: Actors, rollout: Rollout, scored: Scored) -> dict:
    """RLTF on one step's samples: they join the buffer with their advantage (reward minus the reward of the
    prompt's greedy sample), then the trainer updates on a random draw from the buffer, or on the reference
    solutions every `sl_every`-th step."""
    cfg, accelerator = rl.cfg, lp.accelerator
    chosen = rollout.tasks[::cfg.group_size]
    greedy = rl.sample(lp.tokenizer, chosen, 1, greedy=True)
    baseline = reward_rollout(greedy, cfg.reward, cfg.sandbox_timeout).rewards.repeat_interleave(cfg.group_size)
    mask = rollout.batch["completion_mask"]
    rl.buffer.extend(experiences(rollout, token_advantages(scored.rewards - baseline, scored, mask)))
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


def rl_step(lp: loop.Loop, rl: Actors, chosen: list) -> tuple[Rollout, Scored, dict]:
    """One RL step on this process's prompts: sample their groups, reward them, update the policy."""
    cfg = rl.cfg
    if cfg.algorithm == "rltf" and rl.generator is not lp.unwrapped and lp.step % cfg.refresh_every == 0:
        rl.generator.load_state_dict(lp.unwrapped.state_dict())
    rollout = rl.sample(lp.tokenizer, chosen, cfg.group_size)
    scored = reward_rollout(rollout, cfg.reward, cfg.sandbox_timeout)
    stats = (grpo_update if cfg.algorithm == "grpo" else rltf_update)(lp, rl, rollout, scored)
    return rollout, scored, stats


# --- the starting point and the prompts ---------------------------------------------------------------------

def _sft_config(path: Path):
    """The SFTConfig of an SFT run directory, or None when `path` is not one."""
    if not (path / "config.json").exists() or not (path / "checkpoints" / "index.json").exists():
        return None
    return config.load(SFTConfig, path / "config.json")


def init_source(cfg: RLConfig):
    """The SFT config when `init` is an SFT run directory, else None (checked before any model is loaded)."""
    if cfg.init == "base":
        return None
    if not Path(cfg.init).is_dir():
        raise UserError(f"init={cfg.init!r} is neither 'base' nor a directory; give an SFT run directory "
                        f"(the --out of `python -m labkit sft`) or a model directory")
    return _sft_config(Path(cfg.init))


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


def prompt_pool(cfg: RLConfig, sft_cfg, data_dir: str) -> list:
    """The training prompts (see `RLConfig.prompts`), with errors that say how to fix a bad choice."""
    if cfg.prompts in ("sft", "fresh"):
        if sft_cfg is None:
            raise UserError(f"prompts={cfg.prompts!r} refers to the SFT run given as init, but init={cfg.init!r} "
                            f"is not an SFT run directory; name the splits instead, e.g. prompts=atom_base,train_A")
        seen = [t for ts in tasks.load_mixture(data_dir, sft_cfg.mixture).values() for t in ts]
        if cfg.prompts == "sft":
            return seen
        known = {t.prompt for t in seen}
        fresh = [t for t in tasks.load_split(data_dir, "train_C") if t.prompt not in known]
        if not fresh:
            raise UserError(f"no fresh prompts: every task of train_C in {data_dir} was in the SFT mixture; "
                            f"use prompts=sft or a larger train_C (synth pool_c)")
        return fresh
    splits = [s.strip() for s in cfg.prompts.split(",") if s.strip()]
    bad = [s for s in splits if s not in tasks.TRAIN_SPLITS]
    if not splits or bad:
        raise UserError(f"prompts={cfg.prompts!r}: use 'sft', 'fresh' or training splits among "
                        f"{', '.join(tasks.TRAIN_SPLITS)} (test splits are for evaluation only)")
    return [t for s in splits for t in tasks.load_split(data_dir, s)]


def check_config(cfg: RLConfig) -> None:
    if min(cfg.steps, cfg.prompts_per_step, cfg.group_size, cfg.inner_updates, cfg.max_new_tokens) < 1:
        raise UserError("steps, prompts_per_step, group_size, inner_updates and max_new_tokens must be >= 1")
    if cfg.algorithm == "grpo" and cfg.group_size < 2:
        raise UserError("grpo compares the samples of a group: set group_size >= 2")
    if cfg.temperature <= 0 or not 0 < cfg.top_p <= 1:
        raise UserError(f"temperature ({cfg.temperature}) must be > 0 and top_p ({cfg.top_p}) in (0, 1]")
    loop.check_schedule(cfg.eval)


# --- the trainer --------------------------------------------------------------------------------------------

def step_tasks(pool: list, cfg: RLConfig, step: int, rank: int, world: int) -> list:
    """The prompts of one step: a pure function of (seed, step), so a resumed run continues identically;
    each process takes its share."""
    rng = random.Random(f"{cfg.seed}-rl-{step}")
    chosen = rng.sample(pool, cfg.prompts_per_step) if cfg.prompts_per_step <= len(pool) else \
        rng.choices(pool, k=cfg.prompts_per_step)
    return chosen[rank::world]


def train(cfg: RLConfig, callbacks: list[Callable[[list[dict]], None]] = ()) -> runs.RunDir:
    """Train (or resume) the RL run in `cfg.out_dir`. `callbacks` receive each batch of logged metric records."""
    check_config(cfg)
    sft_cfg = init_source(cfg)
    data_dir = cfg.data_dir or (sft_cfg.data_dir if sft_cfg else "")
    if not data_dir:
        raise UserError("no data directory: pass --data DIR (made by `python -m labkit synth`) or init from an "
                        "SFT run, whose data directory is used")
    pool = prompt_pool(cfg, sft_cfg, data_dir)
    model, tokenizer = load_init(cfg, sft_cfg)
    trainer = loop.Loop(cfg, "rl", callbacks, cpu=next(model.parameters()).device.type == "cpu")
    accelerator = trainer.accelerator
    rank, world = accelerator.process_index, accelerator.num_processes
    if cfg.prompts_per_step % world:
        raise UserError(f"prompts_per_step={cfg.prompts_per_step} is global; it must divide evenly among "
                        f"{world} processes")
    # The reference policy for the KL term: with LoRA, the adapter switched off (no copy).
    frozen = None
    if cfg.kl_coef > 0 and not cfg.model.lora.enabled:
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
    sets = loop.eval_sets(cfg.eval, data_dir, pool, cfg.seed) if trainer.main else {}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    state = trainer.start(model, tokenizer, optimizer, None, {"tokens": 0, "buffer": []})
    unwrapped = trainer.unwrapped
    # RLTF: the generator is a copy refreshed from the trainer every `refresh_every` steps (a resumed run starts
    # with a fresh copy); its samples wait in a queue, restored from the checkpoint.
    generator = copy.deepcopy(unwrapped) if cfg.algorithm == "rltf" and cfg.refresh_every > 1 else unwrapped
    rl = Actors(cfg, frozen, generator, sampling.token_pieces(tokenizer),
                collections.deque(state.pop("buffer", []), maxlen=cfg.buffer_size),
                random.Random(f"{cfg.seed}-buffer-{rank}"))
    if trainer.main:
        print(f"rl: {cfg.algorithm}, reward {cfg.reward}, {len(pool)} prompts, {cfg.steps} steps of "
              f"{cfg.prompts_per_step} x {cfg.group_size} samples"
              + (f"; resuming at step {trainer.step}" if trainer.step else ""))

    def step(lp: loop.Loop) -> list[dict]:
        rollout, scored, stats = rl_step(lp, rl, step_tasks(pool, cfg, lp.step, rank, world))
        state["tokens"] += stats.pop("tokens")
        if not lp.log_due:
            return []
        stats = {k: accelerator.reduce(torch.tensor(float(v)), "mean").item() for k, v in stats.items()}
        records = rollout_records(rollout, scored, accelerator)
        return records + [{"split": ROLLOUT, "metric": m, "value": v} for m, v in sorted(stats.items())]

    evaluator = loop.task_evaluator(cfg.eval, sets, tokenizer, cfg.seed) if sets else None
    return trainer.run(cfg.steps, step, evaluator=evaluator, every=cfg.eval.every, log_every=cfg.log_every,
                       epoch=lambda s: s * cfg.prompts_per_step / len(pool), extra_state=lambda: {"buffer": list(rl.buffer)},
                       progress=("reward_mean", "sample_pass_rate"))


def run_cli(cfg: RLConfig, args) -> int:
    run = train(cfg)
    if run is not None:
        ckpt = run.checkpoint("best") or run.checkpoint("last")
        print(f"rl: done; metrics in {run.metrics_path}, best checkpoint {ckpt}")
    return 0
