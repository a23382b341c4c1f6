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
Evaluation, metrics, checkpoints and resume are SFT's (`labkit/training.py`), so RL curves continue SFT curves;
the per-step metrics of the samples RL trains on go to the split "rl" (reward mean/spread, pass rate, KL,
entropy, completion length, verdict and error-type shares).

Sandbox runs are not overlapped with sampling: scoring a step's 64 programs took 0.25-0.7 s against 5-7 s of
sampling and 5-9 s of update (measured on the 2 shared cores), and GRPO needs a step's verdicts before its update,
so overlap would have to split the sampling batch, which costs more than the ~5% it could hide.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Literal

import torch
from tqdm.auto import tqdm

from labkit import config, rewards, runs, sampling, sandbox, training
from labkit import tasks as tasks_mod
from labkit.config import UserError
from labkit.model import ModelConfig, add_lora, load
from labkit.training import EvalConfig


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
    reward: Literal["binary", "pass_ratio", "coarse", "fine", "adaptive"] = "binary"
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
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    out_dir: str = "runs/rl"

    # Evaluation settings equal SFT's presets, so RL curves continue the SFT run's curves on the same tasks.
    PRESETS: ClassVar[dict] = {
        # Tests and notebook smoke runs: a few steps, tiny evaluations (seconds with a tiny model).
        "smoke": {"steps": 4, "prompts_per_step": 4, "group_size": 4, "max_new_tokens": 40, "lr": 1e-3,
                  "rltf_batch": 16, "refresh_every": 2, "eval.every": 4, "eval.n_samples": 2, "eval.k": 2,
                  "eval.max_new_tokens": 48,
                  "eval.sizes": {training.TRAIN: 6, "atom_base": 6, "test_in_domain": 6, "test_target": 6}},
        # The CPU lab: a ~1 M model, a few minutes per run.
        "quick": {"steps": 120, "prompts_per_step": 8, "group_size": 8, "max_new_tokens": 64, "eval.every": 30,
                  "eval.n_samples": 4, "eval.k": 4, "eval.max_new_tokens": 128,
                  "eval.sizes": {training.TRAIN: 40, "atom_base": 40, "test_in_domain": 40, "test_target": 40}},
        # The quick preset cut to fit notebook 05 into the 15-minute main job (lab.sh); `quick` is the reference.
        "lab": {"steps": 20, "prompts_per_step": 4, "group_size": 8, "max_new_tokens": 64, "eval.every": 10,
                "eval.n_samples": 0, "eval.max_new_tokens": 64,
                "eval.sizes": {training.TRAIN: 30, "atom_base": 30, "test_in_domain": 30, "test_target": 30}},
        # A GPU.
        "full": {"steps": 1000, "prompts_per_step": 32, "group_size": 16, "max_new_tokens": 160,
                 "inner_updates": 2, "micro_batch": 128, "eval.every": 100,
                 "eval.sizes": {training.TRAIN: 200, "atom_base": 200, "test_in_domain": 200, "test_target": 400},
                 "eval.n_samples": 10, "eval.k": 5, "eval.max_new_tokens": 160},
    }


CONFIG = RLConfig
ROLLOUT = "rl"   # the split of the per-step metrics of the samples RL trains on (evaluations use their own)
CLI_ALIASES = {"--init": "init", "--out": "out_dir", "--seed": "seed", "--data": "data_dir"}


# --- sampling (labkit/sampling.py) into the trainer's layout -------------------------------------------

@dataclass
class Rollout:
    """Sampled completions as the trainer needs them: `batch` holds the token ids (prompts left-padded,
    completions right-padded, each up to and including the token that ended its function), plus the program
    text of each completion and each kept token's character span in its raw text (for line rewards)."""
    tasks: list                      # the Task of each completion
    batch: dict                      # prompt_ids, prompt_mask [N, Lp]; completion_ids, completion_mask [N, Tc]
    raw: list[str]                   # the decoded kept tokens
    completions: list[str]           # cut by the stop rule: what goes into the program
    offsets: list[list[tuple[int, int]]]
    truncated: list[bool]            # hit max_new_tokens before the function ended

    def __len__(self):
        return len(self.tasks)


def sample(model, tokenizer, pieces: list[str], task_list: list, n: int, *, temperature: float, top_p: float,
           max_new_tokens: int, greedy: bool = False) -> Rollout:
    """`n` completions per task (task i's are rows i*n .. i*n+n-1), sampled as one batch."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    expanded = [t for t in task_list for _ in range(n)]
    prompt_ids, prompt_mask = sampling.encode_prompts(tokenizer, [t.prompt for t in expanded], device)
    stop = sampling.stop_rule(tokenizer, device)
    gen, lengths = sampling.generate(model, prompt_ids, prompt_mask, stop, max_new_tokens=max_new_tokens,
                            temperature=temperature, top_p=top_p, greedy=greedy, pad_id=tokenizer.pad_token_id)
    model.train(was_training)
    truncated = (lengths < 0).tolist()
    lengths = torch.where(lengths < 0, max_new_tokens, lengths).tolist()
    completion_ids = gen[:, :max(lengths)].clone()
    completion_mask = (torch.arange(completion_ids.shape[1], device=device) < torch.tensor(lengths, device=device)
                       .unsqueeze(1)).long()
    completion_ids[completion_mask == 0] = tokenizer.pad_token_id
    raw, offsets = [], []
    for i, k in enumerate(lengths):
        text, spans = _spans(tokenizer, pieces, gen[i, :k].tolist())
        raw.append(text)
        offsets.append(spans)
    batch = dict(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
                 completion_mask=completion_mask)
    return Rollout(expanded, batch, raw, [tasks_mod.cut_completion(r) for r in raw], offsets, truncated)


def _spans(tokenizer, pieces: list[str], ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """The text of `ids` and each token's (start, end) in it. Token pieces concatenate exactly for byte-level
    BPE on ASCII text; otherwise (a character split across tokens, sentencepiece spaces) decode growing
    prefixes."""
    text = "".join(pieces[i] for i in ids)
    if text == tokenizer.decode(ids, skip_special_tokens=True):
        ends = list(itertools.accumulate(len(pieces[i]) for i in ids))
    else:
        text = tokenizer.decode(ids, skip_special_tokens=True)
        ends = [len(tokenizer.decode(ids[:j + 1], skip_special_tokens=True)) for j in range(len(ids))]
    return text, list(zip([0] + ends[:-1], ends))


# --- rewards: sandbox verdicts -> a reward per completion and per token ------------------------------------

@dataclass
class Scored:
    verdicts: list
    rewards: torch.Tensor            # [N] the completion's reward: what a group or the baseline compares
    line_penalties: torch.Tensor     # [N, Tc] fine mode: the penalty on the tokens of the erroring line, else 0


def score(rollout: Rollout, mode: str, timeout: float) -> Scored:
    """Run every program against its tests in the sandbox and turn the verdicts into rewards.

    As in RLTF, `fine` adds to the coarse reward: the completion's reward is the coarse one, and an error
    pinned to a line (U_line) puts its -0.3 on exactly that line's tokens. Errors without a line (U_global)
    are already in the coarse reward, which reaches every token.
    """
    programs = [tasks_mod.program(t, c) for t, c in zip(rollout.tasks, rollout.completions)]
    verdicts = sandbox.run_many(programs, [tasks_mod.test_snippets(t) for t in rollout.tasks], timeout=timeout)
    scalar = torch.tensor(rewards.scalar_rewards(verdicts, "coarse" if mode == "fine" else mode))
    mask = rollout.batch["completion_mask"]
    penalties = torch.zeros(mask.shape)
    if mode == "fine":
        firsts = [tasks_mod.completion_first_line(t) for t in rollout.tasks]
        per_token = rewards.token_rewards(rollout.raw, verdicts, rollout.offsets, firsts, "fine")
        for i, (v, r) in enumerate(zip(verdicts, per_token)):
            if rewards.error_class(v, rollout.raw[i], firsts[i])[0] == "line":
                penalties[i, :len(r)] = torch.tensor(r)
    return Scored(verdicts, scalar.float().to(mask.device), penalties.to(mask.device))


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

def policy_update(model, unwrapped, frozen, optimizer, accelerator, batch: dict, advantages: torch.Tensor,
                  cfg: RLConfig) -> dict:
    """`inner_updates` optimizer steps on one batch: PPO-clip on the token advantages + kl_coef * k3.

    The first pass's log-probs are the "old" ones (the weights that sampled the batch, or for RLTF the
    trainer's current weights: plain policy gradient, as RLTF), so no extra forward pass is spent on them.
    The loss is normalised by the completion tokens of the *global* batch, so data-parallel gradients
    (averaged over processes) equal the one-process gradient.
    """
    mask = batch["completion_mask"].float()
    n_tokens = accelerator.reduce(mask.sum(), "sum").clamp(min=1)
    size = cfg.micro_batch or len(mask)
    chunks = [slice(i, i + size) for i in range(0, len(mask), size)]
    part = [{k: v[c] for k, v in batch.items()} for c in chunks]
    ref_logp = [None] * len(chunks)
    if cfg.kl_coef > 0:
        with torch.no_grad(), reference_of(unwrapped, frozen) as reference:
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
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    local = mask.sum().clamp(min=1).item()
    out = {"loss": sums["loss"], "entropy": sums["entropy"] / local}
    if cfg.kl_coef > 0:
        out["kl"] = sums["kl"] / local
    return out


def sl_update(model, tokenizer, optimizer, accelerator, task_list: list, cfg: RLConfig) -> dict:
    """RLTF's supervised step: cross-entropy on the reference solutions of `task_list` (as SFT computes it)."""
    device = next(model.parameters()).device
    batch = training.collate([training.encode(tokenizer, t.prompt, t.solution) for t in task_list],
                             tokenizer.pad_token_id)
    loss_sum, n = training.token_losses(model, {k: v.to(device) for k, v in batch.items()})
    total = accelerator.reduce(n.float(), "sum")
    accelerator.backward(loss_sum * accelerator.num_processes / total)
    accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"sl_loss": loss_sum.item() / max(n.item(), 1)}


def collate_experience(items: list[dict], pad_id: int, device) -> tuple[dict, torch.Tensor]:
    """RLTF buffer items (prompt ids, completion ids, token advantages) -> a padded batch + advantages."""
    lp = max(len(x["prompt"]) for x in items)
    tc = max(len(x["completion"]) for x in items)
    batch = dict(prompt_ids=torch.full((len(items), lp), pad_id), prompt_mask=torch.zeros(len(items), lp),
                 completion_ids=torch.full((len(items), tc), pad_id), completion_mask=torch.zeros(len(items), tc))
    advantages = torch.zeros(len(items), tc)
    for i, x in enumerate(items):
        p, c = len(x["prompt"]), len(x["completion"])
        batch["prompt_ids"][i, lp - p:], batch["prompt_mask"][i, lp - p:] = torch.tensor(x["prompt"]), 1
        batch["completion_ids"][i, :c], batch["completion_mask"][i, :c] = torch.tensor(x["completion"]), 1
        advantages[i, :c] = torch.tensor(x["advantages"])
    batch = {k: v.long().to(device) for k, v in batch.items()}
    return batch, advantages.to(device)


def experiences(rollout: Rollout, advantages: torch.Tensor) -> list[dict]:
    """One buffer item per completion: plain lists, so the buffer goes into a checkpoint as it is."""
    b = rollout.batch
    out = []
    for i in range(len(rollout)):
        p, c = b["prompt_mask"][i].bool(), b["completion_mask"][i].bool()
        out.append({"prompt": b["prompt_ids"][i][p].tolist(), "completion": b["completion_ids"][i][c].tolist(),
                    "advantages": advantages[i][c].tolist()})
    return out


def grpo_step(model, unwrapped, frozen, tokenizer, pieces, optimizer, accelerator, chosen: list, cfg: RLConfig):
    """One GRPO step on this process's prompts: sample groups, score, update. -> (rollout, scored, stats)."""
    rollout = sample(unwrapped, tokenizer, pieces, chosen, cfg.group_size, temperature=cfg.temperature,
                     top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens)
    scored = score(rollout, cfg.reward, cfg.sandbox_timeout)
    mask = rollout.batch["completion_mask"]
    advantages = token_advantages(group_advantages(scored.rewards, cfg.group_size), scored, mask)
    stats = policy_update(model, unwrapped, frozen, optimizer, accelerator, rollout.batch, advantages, cfg)
    stats["zero_advantage_groups"] = (scored.rewards.view(-1, cfg.group_size).std(1) == 0).float().mean().item()
    stats["tokens"] = int(accelerator.reduce(mask.sum(), "sum").item())
    return rollout, scored, stats


def rltf_step(model, unwrapped, frozen, generator, buffer, buffer_rng, tokenizer, pieces, optimizer, accelerator,
              chosen: list, cfg: RLConfig, step: int):
    """One RLTF step: the generator's samples (advantage: reward minus the prompt's greedy reward) join the
    buffer, then the trainer updates on a random draw from it, or on the reference solutions every
    `sl_every`-th step. -> (rollout, scored, stats)."""
    rollout = sample(generator, tokenizer, pieces, chosen, cfg.group_size, temperature=cfg.temperature,
                     top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens)
    scored = score(rollout, cfg.reward, cfg.sandbox_timeout)
    greedy = sample(generator, tokenizer, pieces, chosen, 1, temperature=1.0, top_p=1.0,
                    max_new_tokens=cfg.max_new_tokens, greedy=True)
    baseline = score(greedy, cfg.reward, cfg.sandbox_timeout).rewards.repeat_interleave(cfg.group_size)
    mask = rollout.batch["completion_mask"]
    buffer.extend(experiences(rollout, token_advantages(scored.rewards - baseline, scored, mask)))
    if cfg.sl_every and (step + 1) % cfg.sl_every == 0:
        stats = sl_update(model, tokenizer, optimizer, accelerator, chosen, cfg)
        stats["tokens"] = 0
    else:
        items = buffer_rng.sample(list(buffer), min(cfg.rltf_batch // accelerator.num_processes, len(buffer)))
        batch, advantages = collate_experience(items, tokenizer.pad_token_id, mask.device)
        stats = policy_update(model, unwrapped, frozen, optimizer, accelerator, batch, advantages, cfg)
        stats["tokens"] = int(accelerator.reduce(batch["completion_mask"].sum(), "sum").item())
    stats.update(baseline_reward=baseline.mean().item(), buffer=len(buffer))
    return rollout, scored, stats


# --- the starting point and the prompts ---------------------------------------------------------------------

def _sft_config(path: Path):
    """The SFTConfig of an SFT run directory, or None when `path` is not one."""
    from labkit.sft import SFTConfig
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
        training.load_weights(model, ckpt)
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
    from labkit import sft
    if cfg.prompts in ("sft", "fresh"):
        if sft_cfg is None:
            raise UserError(f"prompts={cfg.prompts!r} refers to the SFT run given as init, but init={cfg.init!r} "
                            f"is not an SFT run directory; name the splits instead, e.g. prompts=atom_base,train_A")
        seen = [t for ts in sft.load_mixture(dataclasses.replace(sft_cfg, data_dir=data_dir)).values() for t in ts]
        if cfg.prompts == "sft":
            return seen
        known = {t.prompt for t in seen}
        fresh = [t for t in tasks_mod.load_split(data_dir, "train_C") if t.prompt not in known]
        if not fresh:
            raise UserError(f"no fresh prompts: every task of train_C in {data_dir} was in the SFT mixture; "
                            f"use prompts=sft or a larger train_C (synth pool_c)")
        return fresh
    splits = [s.strip() for s in cfg.prompts.split(",") if s.strip()]
    bad = [s for s in splits if s not in sft.TRAIN_SPLITS]
    if not splits or bad:
        raise UserError(f"prompts={cfg.prompts!r}: use 'sft', 'fresh' or training splits among "
                        f"{', '.join(sft.TRAIN_SPLITS)} (test splits are for evaluation only)")
    return [t for s in splits for t in tasks_mod.load_split(data_dir, s)]


def check(cfg: RLConfig) -> None:
    if min(cfg.steps, cfg.prompts_per_step, cfg.group_size, cfg.inner_updates, cfg.max_new_tokens) < 1:
        raise UserError("steps, prompts_per_step, group_size, inner_updates and max_new_tokens must be >= 1")
    if cfg.algorithm == "grpo" and cfg.group_size < 2:
        raise UserError("grpo compares the samples of a group: set group_size >= 2")
    if cfg.temperature <= 0 or not 0 < cfg.top_p <= 1:
        raise UserError(f"temperature ({cfg.temperature}) must be > 0 and top_p ({cfg.top_p}) in (0, 1]")
    training.check(cfg.eval)


# --- the trainer --------------------------------------------------------------------------------------------

def step_tasks(pool: list, cfg: RLConfig, step: int, rank: int, world: int) -> list:
    """The prompts of one step: a pure function of (seed, step), so a resumed run continues identically;
    each process takes its share."""
    rng = random.Random(f"{cfg.seed}-rl-{step}")
    chosen = rng.sample(pool, cfg.prompts_per_step) if cfg.prompts_per_step <= len(pool) else \
        rng.choices(pool, k=cfg.prompts_per_step)
    return chosen[rank::world]


def rollout_records(rollout: Rollout, scored: Scored, accelerator) -> list[dict]:
    """Per-step sample statistics over all processes: reward mean and spread, pass rate, completion length,
    and the share of each verdict status and runtime error type (named as in `evaluate.metrics`)."""
    from accelerate.utils import gather_object
    mask = rollout.batch["completion_mask"]
    rows = gather_object([(r, v.status, v.error_type, n, t) for r, v, n, t in zip(
        scored.rewards.tolist(), scored.verdicts, mask.sum(1).tolist(), rollout.truncated)])
    rewards_ = torch.tensor([r[0] for r in rows])
    out = {"reward_mean": rewards_.mean().item(), "reward_std": rewards_.std().item() if len(rows) > 1 else 0.0,
           "sample_pass_rate": sum(r[1] == "pass" for r in rows) / len(rows),
           "completion_len": sum(r[3] for r in rows) / len(rows),
           "truncated_rate": sum(r[4] for r in rows) / len(rows)}
    for status, count in collections.Counter(r[1] for r in rows).items():
        out[f"status/{status}"] = count / len(rows)
    for error, count in collections.Counter(r[2] for r in rows if r[1] == "runtime_error").items():
        out[f"error/{error}"] = count / len(rows)
    return [{"split": ROLLOUT, "metric": m, "value": float(v)} for m, v in out.items()]


def train(cfg: RLConfig, callbacks: list[Callable[[list[dict]], None]] = ()) -> runs.RunDir:
    """Train (or resume) the RL run in `cfg.out_dir`. `callbacks` receive each batch of logged metric records."""
    from accelerate import Accelerator

    check(cfg)
    sft_cfg = init_source(cfg)
    data_dir = cfg.data_dir or (sft_cfg.data_dir if sft_cfg else "")
    if not data_dir:
        raise UserError("no data directory: pass --data DIR (made by `python -m labkit synth`) or init from an "
                        "SFT run, whose data directory is used")
    pool = prompt_pool(cfg, sft_cfg, data_dir)
    model, tokenizer = load_init(cfg, sft_cfg)
    accelerator = Accelerator(cpu=next(model.parameters()).device.type == "cpu")
    main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    if cfg.prompts_per_step % world:
        raise UserError(f"prompts_per_step={cfg.prompts_per_step} is global; it must divide evenly among "
                        f"{world} processes")
    # The reference policy for the KL term: with LoRA, the adapter switched off (no copy).
    frozen = None
    if cfg.kl_coef > 0 and not cfg.model.lora.enabled:
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
    sets = training.eval_sets(cfg.eval, data_dir, pool, cfg.seed) if main else {}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)   # constant; checkpoints keep one
    run = runs.RunDir(cfg.out_dir, cfg) if main else None
    state = training.resume(run, model, optimizer, scheduler) if main else None
    accelerator.wait_for_everyone()   # the main process has cleaned up the run directory
    if not main:
        state = training.resume(runs.RunDir(cfg.out_dir), model, optimizer, scheduler, main=False)
    state = state or {"step": 0, "tokens": 0, "buffer": []}
    step = state["step"]
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    pieces = sampling.token_pieces(tokenizer)
    # RLTF: the generator is a copy refreshed from the trainer every `refresh_every` steps (a resumed run starts
    # with a fresh copy); its samples wait in a queue, restored from the checkpoint.
    generator = copy.deepcopy(unwrapped) if cfg.algorithm == "rltf" and cfg.refresh_every > 1 else unwrapped
    buffer = collections.deque(state.pop("buffer", []), maxlen=cfg.buffer_size)
    buffer_rng = random.Random(f"{cfg.seed}-buffer-{rank}")

    def fields() -> dict:
        return {"step": step, "epoch": round(step * cfg.prompts_per_step / len(pool), 4), "tokens": state["tokens"]}

    def evaluate_and_save() -> None:
        score_ = None
        if main and sets:
            score_ = training.evaluate_and_log(run, callbacks, unwrapped, tokenizer, sets, cfg.eval, cfg.seed,
                                               **fields())
        if main:
            training.save(run, step, unwrapped, tokenizer, optimizer, scheduler,
                          {**{k: v for k, v in state.items() if k != "step"}, "buffer": list(buffer)}, score_)
        accelerator.wait_for_everyone()

    if main:
        print(f"rl: {cfg.algorithm}, reward {cfg.reward}, {len(pool)} prompts, {cfg.steps} steps of "
              f"{cfg.prompts_per_step} x {cfg.group_size} samples" + (f"; resuming at step {step}" if step else ""))
    if step >= cfg.steps:
        if main:
            print(f"rl: {cfg.out_dir} is already complete ({cfg.steps} steps)")
        return run
    if step == 0 and main and sets:
        training.evaluate_and_log(run, callbacks, unwrapped, tokenizer, sets, cfg.eval, cfg.seed, **fields())

    bar = tqdm(total=cfg.steps, initial=step, desc="rl", disable=not main, dynamic_ncols=True)
    while step < cfg.steps:
        chosen = step_tasks(pool, cfg, step, rank, world)
        if cfg.algorithm == "grpo":
            rollout, scored, stats = grpo_step(model, unwrapped, frozen, tokenizer, pieces, optimizer, accelerator,
                                               chosen, cfg)
        else:
            if cfg.refresh_every > 1 and step % cfg.refresh_every == 0:
                generator.load_state_dict(unwrapped.state_dict())
            rollout, scored, stats = rltf_step(model, unwrapped, frozen, generator, buffer, buffer_rng, tokenizer,
                                               pieces, optimizer, accelerator, chosen, cfg, step)
        state["tokens"] += stats.pop("tokens")
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            stats = {k: accelerator.reduce(torch.tensor(float(v)), "mean").item()
                     for k, v in stats.items()}
            records = rollout_records(rollout, scored, accelerator)
            records += [{"split": ROLLOUT, "metric": m, "value": v} for m, v in sorted(stats.items())]
            shown = {r["metric"]: r["value"] for r in records}
            bar.set_postfix(reward=f"{shown['reward_mean']:.2f}", passed=f"{shown['sample_pass_rate']:.2f}")
            if main:
                training.log(run, callbacks, records, **fields())
        if cfg.eval.every > 0 and step % cfg.eval.every == 0 or step == cfg.steps:
            evaluate_and_save()
    bar.close()
    accelerator.end_training()
    return run


def run_cli(cfg: RLConfig, args) -> int:
    run = train(cfg)
    if run is not None:
        ckpt = run.checkpoint("best") or run.checkpoint("last")
        print(f"rl: done; metrics in {run.metrics_path}, best checkpoint {ckpt}")
    return 0
