"""The prompts RL trains on: which tasks (`RLConfig.prompts`), how the pool is fitted to the run, and which
prompts a step draws.

    pool = prompt_pool(cfg, sft_cfg, data_dir)               # the SFT run's prompts, fresh ones, or named splits
    pool, counts = fit_pool(pool, cfg, tokenizer)            # at most max_prompts; fit_prompts: none too long
    record = edge_of_competence(model, tokenizer, pieces, pool, cfg)  # prompt_filter="edge": pass rates
    pool = on_the_edge(pool, record)
    chosen = step_tasks(pool, cfg, step, rank, world)

Why fit the pool: RL is judged on a sample of its own prompts ("train"), so the pool must be small enough that
the prompts are revisited (a pool of thousands is drawn about once each in a run), and a prompt whose reference
body needs more tokens than `max_new_tokens` can never pass. Why the edge of competence: a prompt the policy
always or never solves gives a group of equal rewards, hence a zero advantage and no gradient.
"""
from __future__ import annotations

import random

import torch

from labkit import tasks
from labkit.config import UserError
from labkit.rollouts import reward_rollout, sample


def prompt_pool(cfg, sft_cfg, data_dir: str) -> list:
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


def fit_pool(pool: list, cfg, tokenizer) -> tuple[list, dict]:
    """At most `cfg.max_prompts` prompts (a fixed random subset) and, with `cfg.fit_prompts`, none whose
    reference body is longer than `cfg.max_new_tokens` tokens (with the token that ends it).
    -> (pool, counts of what was left out)."""
    fits = [t for t in pool if not cfg.fit_prompts
            or len(tokenizer(t.solution, add_special_tokens=False)["input_ids"]) < cfg.max_new_tokens]
    counts = {"too_long": len(pool) - len(fits)}
    if cfg.max_prompts and len(fits) > cfg.max_prompts:
        fits = random.Random(f"{cfg.seed}-pool").sample(fits, cfg.max_prompts)
    counts["pool"] = len(fits)
    if not fits:
        raise UserError(f"no training prompt fits: all {len(pool)} need more than max_new_tokens="
                        f"{cfg.max_new_tokens} tokens; raise max_new_tokens or choose other prompts")
    return fits, counts


@torch.no_grad()
def edge_of_competence(model, tokenizer, pieces: list[str], pool: list, cfg, batch: int = 32) -> dict:
    """The policy's pass rate on every prompt, over `cfg.num_generations` samples at the run's temperature, from
    its own seeded RNG (the training stream is untouched): the record `on_the_edge` keeps prompts by."""
    rates = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed * 1_000_033 + 17)
        for i in range(0, len(pool), batch):
            chunk = pool[i:i + batch]
            rollout = sample(model, tokenizer, pieces, chunk, cfg.num_generations, temperature=cfg.temperature,
                             top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens)
            passed = [v.status == "pass" for v in reward_rollout(rollout, "binary", cfg.sandbox_timeout).verdicts]
            for j, t in enumerate(chunk):
                rates[t.id] = sum(passed[j * cfg.num_generations:(j + 1) * cfg.num_generations]) / cfg.num_generations
    record = {"num_generations": cfg.num_generations, "temperature": cfg.temperature, "rates": rates}
    kept = on_the_edge(pool, record)
    record.update(kept=len(kept), always=sum(r == 1 for r in rates.values()),
                  never=sum(r == 0 for r in rates.values()))
    if not kept:
        raise UserError(f"prompt_filter=edge keeps no prompt: of {len(pool)}, the start policy solved "
                        f"{record['always']} in every sample and {record['never']} in none; use prompt_filter=none, "
                        f"more prompts (max_prompts), another temperature or a start that is neither untrained "
                        f"nor memorised")
    return record


def on_the_edge(pool: list, record: dict) -> list:
    """The prompts of `pool` whose recorded pass rate is strictly between 0 and 1."""
    return [t for t in pool if 0 < record["rates"][t.id] < 1]


def step_tasks(pool: list, cfg, step: int, rank: int, world: int, round_: int = 0) -> list:
    """The prompts of one step: a pure function of (seed, step), so a resumed run continues identically;
    each process takes its share. `round_` > 0: the further prompts of dynamic sampling."""
    rng = random.Random(f"{cfg.seed}-rl-{step}" + (f"-{round_}" if round_ else ""))
    chosen = rng.sample(pool, cfg.prompts_per_step) if cfg.prompts_per_step <= len(pool) else \
        rng.choices(pool, k=cfg.prompts_per_step)
    return chosen[rank::world]
