"""The paper's findings as experiments: a suite of runs over seeds, a runner, and verdicts by rules fixed in advance.

    python -m labkit findings --preset paper --out runs/findings     # -> figures/findings.json + PNG figures

This module makes the numbers and findings.json; the rules are `labkit.verdicts`, the stage itself and the
figures `labkit.viz.findings` (above both: nothing here draws).

The suite (DESIGN §2.1-§2.3), every run repeated for each seed in `seeds` (one data set and one base model,
fixed; the seed fixes each run's initialisation, data order, sampling and evaluation sample):
  E1 data mixture: SFT on atomic only (`tasks.ATOMIC`: atom_base and the call-form atom_call), synthetic only
     (`synthetic_only` composites, no atomic data), and atomic + the first N composites of train_C for each N in
     `sizes` (the sweep that locates "a handful"); target-domain pass@1 per kind.
  E2 RL after SFT: from E1's atomic + `rl_start` run (its end: not saturated, so its samples still differ within
     a group; target pass@1 above 0), GRPO on the *same* prompts, and on *fresh* in-domain prompts.
  E3 overfitting and forgetting: a long SFT run at constant lr on atomic + `long_split` (evaluated every
     `long_every` steps), against RL from the base model on the same prompts; both measure forgetting
     (`labkit.forgetting`: the held-out standard-library loss and the KL to their start).
  E4 the RLTF reward ablation: `ablation_algorithm` from E2's SFT start on fresh prompts, one run per reward
     mode (with grpo, E2's run on fresh prompts is the binary run).

Each run is a subprocess `python -m labkit sft|rl ...` with one torch thread, `workers` of them side by side
(`jobs.py`; DESIGN §2.3: independent runs side by side beat two threads per run on 2 cores). A run is complete
when its checkpoint at its last step exists; complete runs are skipped, and an interrupted one resumes (the
stages resume themselves), so re-running the same command finishes a suite.

The statistics (pass@1 is greedy, on the run's fixed evaluation sample of the split; rules: `labkit.verdicts`):
  F1  final target pass@1 of atomic + N* minus the better of atomic only and synthetic only, where N* is the
      smallest size that reaches KNEE_SHARE of the largest size's mean gain over atomic only (the "handful").
      Precondition: the atomic + `rl_start` target pass@1 lies in TARGET_RANGE (neither 0 nor saturated).
  F2  target pass@1 of RL after SFT with the same prompts at its end minus at its step 0 (the SFT start, the
      same model on the same tasks); RL on fresh prompts beside it ("F2_fresh"). Preconditions: RL learns from
      the SFT start (its train pass@1 rises by RL_LEARNS on average), the start is not memorised (a share
      EDGE_SHARE of its RL prompts give differing rewards) and not untrained (target pass@1 > 0).
  F3a SFT's drop of target pass@1 from its peak to its end (`verdicts.window_drop`) minus the same drop of RL
      from the base. Preconditions: RL from the base learns (RL_LEARNS), and SFT does peak and drop (PEAK_DROP).
  F3b forgetting at a matched gain: SFT's rise of the held-out standard-library loss, at its first evaluation
      whose train pass@1 gain reaches RL's final gain, minus RL from the base's rise at its end; the KL to the
      start beside both. Precondition: RL from the base learns.
  Reward ordering: final test_in_domain pass@1 of each mode; the paper's order binary <= coarse <= fine <=
      adaptive is reproduced when each adjacent step (per-seed differences) is reproduced by the rule, not
      reproduced when any step is not reproduced, else inconclusive; the observed order of the means is
      reported whatever it is. Precondition: RL learns from the SFT start.
Every precondition is recorded in findings.json under "preconditions" as {"value", "threshold", "holds"}.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from labkit import config
from labkit import runs, tasks
from labkit.config import UserError
from labkit.jobs import Job, run_jobs
from labkit.rl import BASE_START, FILTER_FILE
from labkit.sft import SFTConfig
from labkit.verdicts import DROP_WINDOW, RULE, decide, gated, knee, matched_index, precondition, window_drop

MODES = ("binary", "coarse", "fine", "adaptive")   # the paper's ablation order, weakest first
FINDINGS = ("F1", "F2", "F2_fresh", "F3a", "F3b", "reward_ordering")   # the keys of findings.json
# The committed reference run of the `paper` preset: findings.json and its PNG figures (notebook 07 shows it
# when there is no time to run a suite, as in the main job).
REFERENCE = Path(__file__).resolve().parent.parent / "figures"
# Evaluation of every CPU run: greedy pass@1 on 300 tasks per split (the whole test splits at `quick` data: a
# difference of 0.05 is about two standard errors), on the same fixed samples in SFT and RL (RL's step 0 is
# exactly its SFT start). No reference loss (a third of the cost; no finding reads it) except in E3's runs.
EVAL = {"eval.n_samples": 0, "eval.max_new_tokens": 64, "eval.best_split": "test_target",
        "eval.reference_loss": False,
        "eval.sizes": {"train": 300, "atom_base": 0, "test_in_domain": 300, "test_target": 300}}
# E3's runs: the overfitting view (train and target, with their reference losses) and forgetting.
E3_EVAL = {"eval.sizes": {"train": 300, "atom_base": 0, "test_in_domain": 300, "test_target": 300},
           "eval.reference_loss": True, "eval.general_blocks": 16, "eval.kl_prompts": 64}
# Smoke: a random tiny model, evaluated greedily like the real suite (sampled pass@k would only add time).
SMOKE_EVAL = {"model.size": "tiny", "eval.n_samples": 0}
# Preconditions (fixed with the rules, before the runs).
RL_LEARNS = 0.15          # RL's train-prompt pass@1 rises at least this much on average over the seeds
TARGET_RANGE = [0.1, 0.8]  # the atomic + synthetic SFT start's target pass@1: neither 0 nor saturated
EDGE_SHARE = 0.1           # the SFT start is not memorised: this share of its RL prompts gives differing rewards
TRAINED = 0.01             # the SFT start is not untrained: its target pass@1 is at least this
PEAK_DROP = 0.05           # F3a: the long SFT run's target pass@1 falls this much from its peak window to its end
EVAL_TASKS = 300           # tasks per evaluated test split (or the whole split when smaller)


@dataclass
class FindingsConfig:
    out_dir: str = "runs/findings"         # every run of the suite lives under OUT/runs (re-run to resume)
    figures_dir: str = "figures"           # findings.json and the PNG figures
    data_dir: str = ""                     # "" = synthesise into OUT/data at data_preset with data_overrides
    data_preset: str = "quick"             # quick: train_B = 300 composites (E3's pool), train_C 3,000
    data_overrides: dict[str, Any] = field(default_factory=dict)
    base_model: str = "base"               # the committed base; "" = pretrain into OUT/base at base_preset; a dir
    base_preset: str = "quick"
    stage_preset: str = "quick"            # the sft/rl preset every run starts from
    sft: dict[str, Any] = field(default_factory=dict)    # dotted SFT overrides for every SFT run
    rl: dict[str, Any] = field(default_factory=dict)     # dotted RL overrides for every RL run
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    # E1
    sizes: list[int] = field(default_factory=lambda: [30, 100, 300, 1000])   # composites beside atomic data
    synthetic_only: int = 1000             # composites of the synthetic-only run (no atomic data)
    sft_steps: int = 300
    # E2 / E4: RL from the end of E1's atomic + rl_start run
    rl_start: int = 1000
    rl_steps: int = 30
    rl_sft_prompts: int = 64               # RL's pool from the SFT start (max_prompts): revisited ~4 times
    reward_modes: list[str] = field(default_factory=lambda: list(MODES))
    ablation_algorithm: str = "grpo"
    # E3
    long_split: str = "train_B"            # the composites of the long SFT run and of RL from the base
    long_steps: int = 1200
    long_every: int = 150
    rl_base_steps: int = 60                # at lr 3e-5 RL from the base needs twice RL-from-SFT's steps
    rl_base_prompts: int = 200             # from the base few prompts are at the edge (~15 %): a larger pool
    rl_base_every: int = 10
    e3_eval: dict[str, Any] = field(default_factory=lambda: dict(E3_EVAL))   # E3's runs' evaluation, over sft/rl
    # the runner
    workers: int = 2                       # runs side by side
    threads: int = 1                       # torch threads per run
    experiments: list[str] = field(default_factory=lambda: ["E1", "E2", "E3", "E4"])

    PRESETS: ClassVar[dict] = {
        # Machinery check: a random tiny model, tiny data, one seed (verdicts: inconclusive by design). E1 and E3
        # hold both stages and the forgetting measures; E2/E4 (RL from an SFT run) run with `experiments` set to
        # all four (the slow test; notebook 05 runs RL after SFT at smoke anyway).
        "smoke": {"experiments": ["E1", "E3"], "data_preset": "smoke", "base_model": "embedded", "stage_preset": "smoke",
                  "sft": SMOKE_EVAL, "rl": SMOKE_EVAL, "seeds": [0], "sizes": [8], "synthetic_only": 8,
                  "rl_start": 8, "sft_steps": 6, "rl_steps": 2, "rl_sft_prompts": 16, "long_steps": 8,
                  "long_every": 4, "rl_base_steps": 2, "rl_base_prompts": 16, "rl_base_every": 1,
                  "e3_eval": {"eval.reference_loss": True, "eval.general_blocks": 2, "eval.kl_prompts": 4},
                  "reward_modes": ["binary", "fine"]},
        # One seed, short runs: too small to decide anything (it says so).
        "quick": {"seeds": [0], "sizes": [300, 1000], "sft_steps": 200, "rl_steps": 10, "long_steps": 400,
                  "long_every": 100, "rl_base_steps": 10, "rl_base_every": 5, "reward_modes": ["binary", "fine"],
                  "sft": EVAL, "rl": EVAL},
        # Decides the findings on the 2-core CPU: 3 seeds, the whole suite (its time: README). The reward ablation
        # is cut to binary against fine: an RL run is ~7.5 minutes on one core, and the four modes would add 35
        # minutes to the suite (README, *The findings*).
        "paper": {"sft": EVAL, "rl": EVAL, "reward_modes": ["binary", "fine"]},
        # A GPU: bigger model and data, longer runs (stage presets `full`).
        "full": {"data_preset": "full", "base_model": "", "base_preset": "full", "stage_preset": "full",
                 "seeds": [0, 1, 2, 3, 4], "sizes": [100, 300, 1000, 3000, 10000], "synthetic_only": 10000,
                 "sft_steps": 4000, "rl_steps": 500, "rl_sft_prompts": 0, "long_steps": 20000,
                 "long_every": 1000, "rl_base_steps": 500, "rl_base_prompts": 0, "rl_base_every": 50,
                 "threads": 8, "workers": 1},
    }


# --- the suite as data --------------------------------------------------------------------------------------

def _ckpt(steps: int) -> str:
    return f"checkpoints/step-{steps:06d}"


def paths(cfg: FindingsConfig) -> tuple[Path, Path, Path]:
    """(root of the runs, data directory, base model: a `model.name_or_path`) of a suite."""
    out = Path(cfg.out_dir)
    data = Path(cfg.data_dir) if cfg.data_dir else out / "data"
    base = cfg.base_model or str(out / "base" / "model")
    return out / "runs", data, base


def mixture(n: int, atomic: bool = True) -> dict[str, float]:
    return {**(tasks.ATOMIC if atomic else {}), **({f"train_C:{n}": 1.0} if n else {})}


def e1_runs(cfg: FindingsConfig) -> dict[str, dict[str, float]]:
    """E1's mixtures by name: atomic only, atomic + each size, synthetic only."""
    out = {"atomic-only": mixture(0)}
    out.update({f"atomic+{n}": mixture(n) for n in cfg.sizes})
    out[f"synthetic-only-{cfg.synthetic_only}"] = mixture(cfg.synthetic_only, atomic=False)
    return out


def base_prompts(cfg: FindingsConfig) -> str:
    """RL from the base trains on what E3's long SFT run trains on."""
    return ",".join([*tasks.ATOMIC, cfg.long_split])


def suite(cfg: FindingsConfig) -> list[Job]:
    """Every job of the suite, in the order the runner prefers to start them (long and blocking ones first)."""
    if cfg.rl_start not in cfg.sizes:
        raise UserError(f"rl_start={cfg.rl_start} must be one of sizes={cfg.sizes} (RL starts from that E1 run)")
    unknown = [e for e in cfg.experiments if e not in ("E1", "E2", "E3", "E4")]
    bad_modes = [m for m in cfg.reward_modes if m not in MODES]
    if unknown or bad_modes or not cfg.seeds:
        raise UserError(f"experiments must be among E1..E4 (got {unknown}), reward_modes among {MODES} "
                        f"(got {bad_modes}), and seeds non-empty")
    root, data, base = paths(cfg)
    jobs, pre = [], []
    if not cfg.data_dir:
        jobs.append(Job("data", "synth", data, cfg.data_preset, dict(cfg.data_overrides), "manifest.json"))
        pre.append("data")
    if not cfg.base_model:
        jobs.append(Job("base", "pretrain", Path(base).parent, cfg.base_preset, {}, "model/config.json"))
        pre.append("base")
    model = {"model.name_or_path": base, "data_dir": str(data)}
    want = set(cfg.experiments)

    def sft(name, seed, mix, steps, every, **settings):
        jobs.append(Job(f"{name}/s{seed}", "sft", root / name / f"s{seed}", cfg.stage_preset,
                        {**model, **cfg.sft, "mixture": mix, "max_steps": steps, "epochs": 10_000,
                         "eval.every": every, "seed": seed, **settings}, _ckpt(steps), tuple(pre)))

    def rl(name, seed, init, steps, every, **settings):
        after = tuple(pre) + ((f"{init}/s{seed}",) if init != "base" else ())
        start = {"init": str(root / init / f"s{seed}")} if init != "base" else {"init": "base", **model}
        jobs.append(Job(f"{name}/s{seed}", "rl", root / name / f"s{seed}", cfg.stage_preset,
                        {**(BASE_START if init == "base" else {}), **cfg.rl, **start, "steps": steps,
                         "eval.every": every, "seed": seed, **settings}, _ckpt(steps), after))

    start = f"e1/atomic+{cfg.rl_start}"
    from_sft = {"max_prompts": cfg.rl_sft_prompts}
    for seed in cfg.seeds:   # blocking and long runs first
        if want & {"E1", "E2", "E4"}:
            sft(start, seed, mixture(cfg.rl_start), cfg.sft_steps, cfg.sft_steps)
        if "E3" in want:
            sft("e3/sft-long", seed, {**tasks.ATOMIC, cfg.long_split: 1.0}, cfg.long_steps, cfg.long_every,
                schedule="constant", **cfg.e3_eval)
    for seed in cfg.seeds:
        if "E3" in want:
            rl("e3/rl-base", seed, "base", cfg.rl_base_steps, cfg.rl_base_every, prompts=base_prompts(cfg),
               max_prompts=cfg.rl_base_prompts, **cfg.e3_eval)
        if want & {"E2", "E4"}:
            rl("e2/rl-fresh", seed, start, cfg.rl_steps, max(1, cfg.rl_steps // 2), prompts="fresh", **from_sft)
        if "E2" in want:
            rl("e2/rl-same", seed, start, cfg.rl_steps, max(1, cfg.rl_steps // 2), prompts="sft", **from_sft)
    for seed in cfg.seeds:
        if "E1" in want:
            for name, mix in e1_runs(cfg).items():
                if f"e1/{name}" != start:
                    sft(f"e1/{name}", seed, mix, cfg.sft_steps, cfg.sft_steps)
        if "E4" in want:
            for mode in cfg.reward_modes:
                if e4_run(cfg, mode).startswith("e4/"):
                    rl(f"e4/{mode}", seed, start, cfg.rl_steps, cfg.rl_steps, prompts="fresh", reward=mode,
                       algorithm=cfg.ablation_algorithm, **from_sft)
    return jobs


def e4_run(cfg: FindingsConfig, mode: str) -> str:
    """The run of one reward mode: E2's run on fresh prompts is the binary grpo run (the same settings)."""
    return "e2/rl-fresh" if mode == "binary" and cfg.ablation_algorithm == "grpo" else f"e4/{mode}"


# --- reading results ------------------------------------------------------------------------------------------

def curve(run: Path, split: str, metric: str = "pass@1") -> list[tuple[int, float]]:
    """(step, value) of each evaluation of a run on `split`."""
    rows = [r for r in runs.read_jsonl(run / "metrics.jsonl") if r["split"] == split and r["metric"] == metric]
    return sorted((r["step"], r["value"]) for r in rows)


def values(run: Path, split: str, metric: str = "pass@1") -> list[float]:
    return [v for _, v in curve(run, split, metric)]


def final(run: Path, split: str, metric: str = "pass@1") -> float:
    return values(run, split, metric)[-1]


def rise(run: Path, split: str = "train") -> float:
    v = values(run, split)
    return v[-1] - v[0]


def by_kind(run: Path) -> dict[str, float]:
    """Final greedy test_target pass@1 per kind (the evaluation's `pass@1/<kind>` lines)."""
    return {k: final(run, "test_target", f"pass@1/{k}") for k in tasks.KINDS
            if curve(run, "test_target", f"pass@1/{k}")}


def edge_share(run: Path) -> float | None:
    """The share of an RL run's pool whose start-policy samples got differing rewards (its prompt filter; None
    when the run filtered nothing, as at smoke)."""
    if not (run / FILTER_FILE).exists():
        return None
    record = json.loads((run / FILTER_FILE).read_text())
    return record["kept"] / max(1, record["kept"] + record["always"] + record["never"])


def eval_tasks(cfg: FindingsConfig, data: Path) -> dict:
    """The precondition on evaluation size: every evaluated test split holds EVAL_TASKS tasks, or all of it."""
    sizes = config.resolve(SFTConfig, cfg.stage_preset, cfg.sft).eval.sizes
    manifest = data / "manifest.json"
    counts = json.loads(manifest.read_text())["counts"] if manifest.exists() else {}
    held = {s: min(n, counts.get(s, n)) for s, n in sizes.items() if n > 0 and s.startswith("test")}
    ok = all(n >= EVAL_TASKS or n == counts.get(s) for s, n in held.items())
    return precondition(min(held.values()) if held else None, EVAL_TASKS, ok and bool(held))


# --- the findings -----------------------------------------------------------------------------------------

def findings(cfg: FindingsConfig) -> dict:
    """Preconditions, then each finding's per-seed statistic and verdict, from the complete runs of the suite."""
    root, data, _ = paths(cfg)
    done = {j.name for j in suite(cfg) if j.complete() and j.stage in ("sft", "rl")}

    def have(*names):   # the seeds for which every named run is complete
        return [s for s in cfg.seeds if all(f"{n}/s{s}" in done for n in names)]

    def run(name, seed):
        return root / name / f"s{seed}"

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return float(np.mean(xs)) if xs else None

    start = f"e1/atomic+{cfg.rl_start}"
    want = set(cfg.experiments)
    pre = {"eval_tasks": eval_tasks(cfg, data)}
    out: dict[str, Any] = {"rule": RULE, "seeds": cfg.seeds, "runs_complete": len(done), "preconditions": pre}
    # Each run's own time (its metrics' last wall_time, which resumes carry on): on 2 cores with two runs side by
    # side the suite takes about half their sum.
    seconds = {n: max(r["wall_time"] for r in runs.read_jsonl(root / n / "metrics.jsonl")) for n in sorted(done)}
    out["run_seconds"] = {"total": round(sum(seconds.values())), **{n: round(v) for n, v in seconds.items()}}
    if want & {"E1", "E2", "E4"}:
        pre["sft_target_in_range"] = precondition(mean([final(run(start, s), "test_target") for s in have(start)]),
                                                  TARGET_RANGE)
    if want & {"E2", "E4"}:
        judged = "e2/rl-same" if "E2" in want else "e2/rl-fresh"   # the RL run from the SFT start that E2 judges
        from_sft = [run(judged, s) for s in have(start, judged)]
        pre["rl_learns_from_sft"] = precondition(mean([rise(r) for r in from_sft]), RL_LEARNS)
        pre["sft_start_not_memorised"] = precondition(mean([edge_share(r) for r in from_sft]), EDGE_SHARE)
        pre["sft_start_trained"] = precondition(mean([values(r, "test_target")[0] for r in from_sft]), TRAINED)
    if "E3" in want:
        e3_seeds = have("e3/sft-long", "e3/rl-base")
        sft_runs, rl_runs = [run("e3/sft-long", s) for s in e3_seeds], [run("e3/rl-base", s) for s in e3_seeds]
        sft_drop = [window_drop(values(r, "test_target"), EVAL_TASKS) for r in sft_runs]
        pre["rl_learns_from_base"] = precondition(mean([rise(r) for r in rl_runs]), RL_LEARNS)
        pre["sft_peak_then_drop"] = precondition(mean([d["drop"] for d in sft_drop]), PEAK_DROP)

    if "E1" in want:
        names = list(e1_runs(cfg))
        seeds = have(*(f"e1/{n}" for n in names))
        target = {n: [final(run(f"e1/{n}", s), "test_target") for s in seeds] for n in names}
        gains = [(mean(target[f"atomic+{n}"]) or 0) - (mean(target["atomic-only"]) or 0) for n in cfg.sizes]
        handful = knee(cfg.sizes, gains) if seeds else max(cfg.sizes)
        synth = f"synthetic-only-{cfg.synthetic_only}"
        stat = [a - max(b, c) for a, b, c in zip(target[f"atomic+{handful}"], target["atomic-only"], target[synth])]
        table = {n: {"test_target": target[n],
                     "test_in_domain": [final(run(f"e1/{n}", s), "test_in_domain") for s in seeds],
                     "train": [final(run(f"e1/{n}", s), "train") for s in seeds],
                     "by_kind": [by_kind(run(f"e1/{n}", s)) for s in seeds]} for n in names}
        out["F1"] = gated({
            "claim": "SFT generalises to the target domain only with atomic AND synthetic data; a handful of "
                     "synthetic functions is enough",
            "statistic": f"final test_target pass@1 of atomic+N* (N* = {handful}: the smallest size reaching half "
                         f"of the largest size's mean gain over atomic only) minus max(atomic only, synthetic only "
                         f"({cfg.synthetic_only}))",
            **decide(stat), "seeds_used": seeds, "handful": handful,
            "mean_gain_by_size": dict(zip(map(str, cfg.sizes), [round(g, 4) for g in gains])),
            "final_pass@1": table}, pre, ["sft_target_in_range", "eval_tasks"])
    if "E2" in want:
        for key, name in (("F2", "e2/rl-same"), ("F2_fresh", "e2/rl-fresh")):
            seeds = have(name)
            target = [values(run(name, s), "test_target") for s in seeds]
            out[key] = gated({
                "claim": "RL after SFT improves target-domain generalisation"
                         + (", even with the same prompts as SFT" if key == "F2" else
                            " (fresh in-domain prompts; supplement)"),
                "statistic": f"test_target pass@1 at the end of RL minus at its step 0 (the SFT start: atomic + "
                             f"{cfg.rl_start} composites, {cfg.sft_steps} SFT steps)",
                **decide([t[-1] - t[0] for t in target]), "seeds_used": seeds,
                "sft_start": [t[0] for t in target], "rl_end": [t[-1] for t in target],
                "train_start_end": [(values(run(name, s), "train")[0], final(run(name, s), "train")) for s in seeds]},
                pre, ["rl_learns_from_sft", "sft_start_not_memorised", "sft_start_trained", "eval_tasks"])
    if "E3" in want:
        seeds = e3_seeds
        rl_drop = [window_drop(values(r, "test_target"), EVAL_TASKS) for r in rl_runs]
        out["F3a"] = gated({
            "claim": "RL from the base model avoids the overfitting SFT shows (held-out pass@1 peaks and falls "
                     "under long SFT)",
            "statistic": f"test_target pass@1 drop from the peak to the end (means of {DROP_WINDOW} "
                         f"evaluations each): SFT ({cfg.long_steps} steps, constant lr) minus RL from the base on "
                         f"the same prompts",
            **decide([a["drop"] - b["drop"] for a, b in zip(sft_drop, rl_drop)]), "seeds_used": seeds,
            "sft_drop": sft_drop, "rl_drop": rl_drop,
            "sft_drop_in_domain": [window_drop(values(r, "test_in_domain"), EVAL_TASKS) for r in sft_runs
                                   if values(r, "test_in_domain")],
            "sft_curve": [curve(r, "test_target") for r in sft_runs],
            "sft_train_curve": [curve(r, "train") for r in sft_runs],
            "rl_curve": [curve(r, "test_target") for r in rl_runs]},
            pre, ["rl_learns_from_base", "sft_peak_then_drop", "eval_tasks"])
        matched = []
        for sft_run, rl_run in zip(sft_runs, rl_runs):
            i = matched_index(values(sft_run, "train"), rise(rl_run))
            general_sft, general_rl = values(sft_run, "general", "loss"), values(rl_run, "general", "loss")
            matched.append({"rl_gain": round(rise(rl_run), 4), "sft_step": curve(sft_run, "train")[i][0],
                            "sft_gain": round(values(sft_run, "train")[i] - values(sft_run, "train")[0], 4),
                            "sft_forgetting": round(general_sft[i] - general_sft[0], 4),
                            "rl_forgetting": round(general_rl[-1] - general_rl[0], 4),
                            "sft_kl": round(values(sft_run, "train", "kl_to_init")[i], 4),
                            "rl_kl": round(final(rl_run, "train", "kl_to_init"), 4)})
        out["F3b"] = gated({
            "claim": "at a matched gain on its training prompts, SFT forgets more than RL from the base (and moves "
                     "further from it: KL)",
            "statistic": "rise of the held-out standard-library loss (general/loss) from step 0: SFT at its first "
                         "evaluation whose train pass@1 gain reaches RL's final gain, minus RL from the base at "
                         "its end",
            **decide([m["sft_forgetting"] - m["rl_forgetting"] for m in matched]), "seeds_used": seeds,
            "matched": matched}, pre, ["rl_learns_from_base"])
    if "E4" in want:
        modes = [m for m in MODES if m in cfg.reward_modes]
        seeds = have(*(e4_run(cfg, m) for m in modes))
        ends = {m: [final(run(e4_run(cfg, m), s), "test_in_domain") for s in seeds] for m in modes}
        steps = {f"{b}<={a}": decide([x - y for x, y in zip(ends[a], ends[b])]) for b, a in zip(modes, modes[1:])}
        verdicts = [v["verdict"] for v in steps.values()]
        overall = ("not reproduced" if "not reproduced" in verdicts else
                   "reproduced" if verdicts and all(v == "reproduced" for v in verdicts) else
                   next((v for v in verdicts if v.startswith("inconclusive (")), "inconclusive"))
        means = {m: round(float(np.mean(v)), 4) if v else None for m, v in ends.items()}
        out["reward_ordering"] = gated({
            "claim": "RLTF's ablation order (binary <= coarse <= fine <= adaptive), over the modes run: "
                     + " <= ".join(modes),
            "statistic": f"final test_in_domain pass@1 per reward mode ({cfg.ablation_algorithm} from the SFT start, "
                         "fresh prompts); each adjacent step by the rule on its per-seed differences",
            "verdict": overall, "steps": steps, "per_seed": ends, "mean": means, "seeds_used": seeds,
            "observed_order": sorted((m for m in means if means[m] is not None), key=means.get)},
            pre, ["rl_learns_from_sft", "eval_tasks"])
    return out


# --- writing and showing the numbers ------------------------------------------------------------------------

def write(cfg: FindingsConfig, result: dict) -> list[Path]:
    """findings.json into cfg.figures_dir (the PNG figures beside it: labkit.viz.findings)."""
    out = Path(cfg.figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "findings.json").write_text(json.dumps(result, indent=1) + "\n")
    return [out / "findings.json"]


def reference(figures_dir: Path = REFERENCE) -> dict:
    """The findings of the committed reference run (its figures lie beside findings.json)."""
    path = Path(figures_dir) / "findings.json"
    if not path.exists():
        raise UserError(f"no reference findings at {path}; produce them with "
                        f"`python -m labkit findings --preset paper --out runs/findings`")
    return json.loads(path.read_text())


def summary(result: dict) -> str:
    """The verdicts in plain words, with their numbers."""
    lines = [f"precondition {name}: {'holds' if p['holds'] else 'DOES NOT HOLD'} ({p['value']} against "
             f"{p['threshold']})" for name, p in result.get("preconditions", {}).items()]
    for key in FINDINGS:
        if key in result:
            r = result[key]
            nums = (f"mean {r['mean']} (sd {r['sd']}, per seed {r['per_seed']})" if "sd" in r
                    else f"means {r['mean']}, observed order {' < '.join(r['observed_order'])}")
            lines.append(f"{key}: {r['verdict'].upper()} — {r['claim']}. Statistic: {r['statistic']}: {nums}.")
    return "\n".join(lines)


def run(cfg: FindingsConfig) -> dict:
    """Run (or finish) the suite, then decide and write the findings (`suite_wall_s`: this invocation's time; a
    resumed suite's runs keep their own times in `run_seconds`). Returns the findings."""
    jobs = suite(cfg)
    t0 = time.time()
    config.save(cfg, Path(cfg.out_dir) / "findings_config.json")   # what notebook 07 reads to show a suite
    print(f"findings: {len(jobs)} jobs, {sum(j.complete() for j in jobs)} already complete; "
          f"{cfg.workers} side by side, {cfg.threads} thread(s) each; logs in {Path(cfg.out_dir) / 'logs'}")
    status = run_jobs(jobs, cfg.workers, cfg.threads, Path(cfg.out_dir) / "logs")
    failed = sorted(n for n, s in status.items() if s in ("failed", "blocked"))
    if failed:
        print(f"findings: {len(failed)} jobs failed or blocked (see logs): {', '.join(failed)}")
    result = findings(cfg)
    result["suite_wall_s"] = round(time.time() - t0, 1)
    result["config"] = config.to_dict(cfg)
    result["failed"] = failed
    write(cfg, result)
    print(summary(result))
    return result
