"""The paper's findings as experiments: a suite of runs over seeds, a runner, and verdicts by rules fixed in advance.

    python -m labkit findings --preset paper --out runs/findings     # -> figures/findings.json + PNG figures

This module makes the numbers and findings.json; the stage itself, and the figures, are `labkit.viz.findings`
(above both: nothing here draws).

The suite (DESIGN §2.1-§2.3), every run repeated for each seed in `seeds` (one data set and one base model,
fixed; the seed fixes each run's initialisation of LoRA/sampling, data order and evaluation sample):
  E1 data mixture: SFT on atomic only (`tasks.ATOMIC`: atom_base and the call-form atom_call), synthetic only
     (`synthetic_only` composites, no atomic data), and atomic + the first N composites of train_C for N in
     `sizes`; target-domain pass@1 split by kind (held-out atom, held-out pair, deeper chain).
  E2 RL after SFT: a short SFT run on atomic + the handful (`rl_init_steps`: not yet saturated, so its samples
     still differ within a group), then GRPO from it on the *same* prompts, and on *fresh* in-domain prompts.
  E3 overfitting: E1's SFT run on atomic + the handful (its curve over `sft_steps`), against RL from the base
     model on the same prompts (the atomic splits + `handful_split`, the pool synth made of exactly the handful).
  E4 the RLTF reward ablation: `ablation_algorithm` from E2's SFT start on fresh prompts, one run per reward
     mode.

Each run is a subprocess `python -m labkit sft|rl ...` with one torch thread, `workers` of them side by side
(`jobs.py`; DESIGN §2.3: independent runs side by side beat two threads per run on 2 cores). A run is complete
when its checkpoint at its last step exists; complete runs are skipped, and an interrupted one resumes (the
stages resume themselves), so re-running the same command finishes a suite.

Verdicts. Written before any result was looked at, and not changed after. Each finding has one decision
statistic with one value per seed; over the n seeds, with mean m and sample standard deviation s (ddof=1):
    reproduced       n >= 3 and m - s > 0     (the effect is positive and larger than its seed-to-seed spread)
    not reproduced   n >= 3 and m <= 0        (no effect, or the opposite one, on average)
    inconclusive     otherwise (0 < m <= s, or fewer than 3 seeds finished)
The statistics (pass@1 is greedy, on the run's fixed evaluation sample of the split):
  F1  target pass@1 of atomic + `handful` composites minus the better of atomic only and synthetic only.
  F2  target pass@1 of RL after SFT with the same prompts minus that of the SFT checkpoint it started from
      (its step-0 evaluation: the same model on the same tasks). RL on fresh prompts is reported beside it
      under the same rule ("F2_fresh"), as a supplement.
  F3  SFT's drop of target pass@1 from its peak to its end minus the same drop of RL from the base model.
      Precondition: RL from the base must learn at all (its train-prompt pass@1 rises by >= 0.05 on average),
      else inconclusive: avoiding overfitting by not learning shows nothing.
  Reward ordering: final test_in_domain pass@1 of each mode; the paper's order binary <= coarse <= fine <=
      adaptive is reproduced when each adjacent step (per-seed differences coarse-binary, fine-coarse,
      adaptive-fine) is reproduced by the rule above, not reproduced when any step is not reproduced, else
      inconclusive. The observed order of the means is reported whatever it is.
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
from labkit.rl import BASE_START

MODES = ("binary", "coarse", "fine", "adaptive")   # the paper's ablation order, weakest first
# The committed reference run of the `paper` preset: findings.json and its PNG figures (notebook 07 shows it
# when there is no time to run a suite, as in the main job).
REFERENCE = Path(__file__).resolve().parent.parent / "figures"
MIN_SEEDS = 3
# Evaluation of every CPU run: greedy pass@1 only (sampled pass@k would cost 4x for no verdict), on the same
# fixed task samples in SFT and RL (so RL's step 0 is exactly its SFT start), 150 target tasks (~50 per kind).
EVAL = {"eval.n_samples": 0, "eval.max_new_tokens": 64, "eval.best_split": "test_target",
        "eval.sizes": {"train": 40, "test_in_domain": 60, "test_target": 150}}
# Smoke: a random tiny model, evaluated greedily like the real suite (sampled pass@k would only add time).
SMOKE_EVAL = {"model.size": "tiny", "eval.n_samples": 0}
LEARNED = 0.05   # F3's precondition: RL from the base raises its train-prompt pass@1 at least this much


@dataclass
class FindingsConfig:
    out_dir: str = "runs/findings"         # every run of the suite lives under OUT/runs (re-run to resume)
    figures_dir: str = "figures"           # findings.json and the PNG figures
    data_dir: str = ""                     # "" = synthesise into OUT/data at data_preset with data_overrides
    data_preset: str = "quick"
    # Pools: train_B is the handful (the first `handful` of train_C): RL from base takes it as its prompts.
    data_overrides: dict[str, Any] = field(default_factory=lambda: {"pool_a": 300, "pool_b": 1000})
    base_model: str = "base"               # the committed base; "" = pretrain into OUT/base at base_preset; a dir
    base_preset: str = "quick"
    stage_preset: str = "quick"            # the sft/rl preset every run starts from
    sft: dict[str, Any] = field(default_factory=dict)    # dotted SFT overrides for every SFT run
    rl: dict[str, Any] = field(default_factory=dict)     # dotted RL overrides for every RL run
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    # E1
    sizes: list[int] = field(default_factory=lambda: [300, 1000])   # composites beside atomic data
    handful: int = 1000                    # the size F1 tests ("a handful is enough"); one of `sizes`
    handful_split: str = "train_B"         # the data split holding exactly the first `handful` of train_C
    synthetic_only: int = 1000             # composites of the synthetic-only run (no atomic data)
    sft_steps: int = 600
    # E2 / E4
    rl_init_steps: int = 300               # the unsaturated SFT start of RL
    rl_steps: int = 100
    reward_modes: list[str] = field(default_factory=lambda: list(MODES))
    ablation_algorithm: str = "rltf"
    # E3
    rl_base_steps: int = 100               # RL steps from the base model on the SFT run's prompts
    # the runner
    workers: int = 2                       # runs side by side
    threads: int = 1                       # torch threads per run
    experiments: list[str] = field(default_factory=lambda: ["E1", "E2", "E3", "E4"])

    PRESETS: ClassVar[dict] = {
        # Machinery check: a random tiny model, tiny data, one seed (verdicts: inconclusive by design).
        "smoke": {"data_preset": "smoke", "data_overrides": {}, "base_model": "embedded", "stage_preset": "smoke",
                  "sft": SMOKE_EVAL, "rl": SMOKE_EVAL, "seeds": [0], "sizes": [8],
                  "handful": 8, "synthetic_only": 8, "sft_steps": 6, "rl_init_steps": 4, "rl_steps": 2,
                  "rl_base_steps": 2, "reward_modes": ["binary", "fine"]},
        # One seed, one size, short runs: too small to decide anything (it says so).
        "quick": {"seeds": [0], "sizes": [1000], "sft_steps": 200, "rl_init_steps": 100, "rl_steps": 20,
                  "rl_base_steps": 20, "reward_modes": ["binary", "fine"], "sft": EVAL, "rl": EVAL},
        # Decides the findings on the 2-core CPU: 3 seeds, the whole suite, 38 jobs (its time: README).
        "paper": {"sft": EVAL, "rl": EVAL},
        # A GPU: bigger model and data, longer runs (stage presets `full`).
        "full": {"data_preset": "full", "data_overrides": {"pool_a": 300, "pool_b": 1000}, "base_model": "",
                 "base_preset": "full", "stage_preset": "full", "seeds": [0, 1, 2, 3, 4],
                 "sizes": [100, 300, 1000, 3000, 10000],
                 "sft_steps": 4000, "rl_init_steps": 1000, "rl_steps": 500, "rl_base_steps": 500,
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


def suite(cfg: FindingsConfig) -> list[Job]:
    """Every job of the suite, in the order the runner prefers to start them (long and blocking ones first)."""
    if cfg.handful not in cfg.sizes:
        raise UserError(f"handful={cfg.handful} must be one of sizes={cfg.sizes} (F1 compares that E1 run)")
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

    def sft(name, seed, mix, steps, every):
        jobs.append(Job(f"{name}/s{seed}", "sft", root / name / f"s{seed}", cfg.stage_preset,
                        {**model, **cfg.sft, "mixture": mix, "max_steps": steps, "epochs": 10_000,
                         "eval.every": every, "seed": seed}, _ckpt(steps), tuple(pre)))

    def rl(name, seed, init, steps=cfg.rl_steps, **settings):
        after = tuple(pre) + ((f"{init}/s{seed}",) if init != "base" else ())
        start = {"init": str(root / init / f"s{seed}")} if init != "base" else {"init": "base", **model}
        jobs.append(Job(f"{name}/s{seed}", "rl", root / name / f"s{seed}", cfg.stage_preset,
                        {**(BASE_START if init == "base" else {}), **cfg.rl, **start, "steps": steps,
                         "eval.every": max(1, steps // 4), "seed": seed, **settings}, _ckpt(steps), after))

    handful = f"e1/atomic+{cfg.handful}"
    for seed in cfg.seeds:   # blocking runs first: the SFT starts of RL
        if want & {"E2", "E4"}:
            sft("e2/sft-start", seed, mixture(cfg.handful), cfg.rl_init_steps, cfg.rl_init_steps)
        if want & {"E1", "E3"}:
            sft(handful, seed, {**tasks.ATOMIC, cfg.handful_split: 1.0}, cfg.sft_steps, max(1, cfg.sft_steps // 4))
    for seed in cfg.seeds:
        if "E1" in want:
            for name, mix in e1_runs(cfg).items():
                if f"e1/{name}" != handful:
                    sft(f"e1/{name}", seed, mix, cfg.sft_steps, max(1, cfg.sft_steps // 4))
    for seed in cfg.seeds:
        if "E2" in want:
            rl("e2/rl-same", seed, "e2/sft-start", prompts="sft")
            rl("e2/rl-fresh", seed, "e2/sft-start", prompts="fresh")
    for seed in cfg.seeds:
        if "E3" in want:
            rl("e3/rl-base", seed, "base", prompts=f"{','.join(tasks.ATOMIC)},{cfg.handful_split}",
               steps=cfg.rl_base_steps)
    for seed in cfg.seeds:
        if "E4" in want:
            for mode in cfg.reward_modes:
                rl(f"e4/{mode}", seed, "e2/sft-start", prompts="fresh", reward=mode,
                   algorithm=cfg.ablation_algorithm)
    return jobs


# --- reading results ------------------------------------------------------------------------------------------

def pass1(run: Path, split: str) -> list[tuple[int, float]]:
    """(step, greedy pass@1) of each evaluation of a run on `split`."""
    rows = [r for r in runs.read_jsonl(run / "metrics.jsonl") if r["split"] == split and r["metric"] == "pass@1"]
    return sorted((r["step"], r["value"]) for r in rows)


def kind_pass1(run: Path, data_dir: Path, step: int) -> dict[str, float]:
    """Greedy pass@1 on test_target per kind, from the evaluation samples of `step`."""
    kinds = {r["id"]: r["kind"] for r in runs.read_jsonl(Path(data_dir) / "test_target.jsonl")}
    rows = [r for r in runs.read_jsonl(run / "samples" / f"step-{step:06d}.jsonl")
            if r["split"] == "test_target" and r["mode"] == "greedy"]
    return {k: float(np.mean([r["status"] == "pass" for r in rows if kinds[r["task_id"]] == k]))
            for k in tasks.KINDS if any(kinds[r["task_id"]] == k for r in rows)}


def decide(values: list[float]) -> dict:
    """The verdict rule of this module's docstring, on one value per seed."""
    values = [round(float(v), 9) for v in values]   # pass@1 differences: no float dust deciding a verdict
    n = len(values)
    mean = float(np.mean(values)) if n else float("nan")
    sd = float(np.std(values, ddof=1)) if n > 1 else float("nan")
    if n < MIN_SEEDS:
        verdict = f"inconclusive (only {n} seed{'s' * (n != 1)} finished; the rule needs {MIN_SEEDS})"
    elif mean - sd > 0:
        verdict = "reproduced"
    elif mean <= 0:
        verdict = "not reproduced"
    else:
        verdict = "inconclusive"
    return {"per_seed": [round(v, 4) for v in values], "mean": round(mean, 4),
            "sd": None if np.isnan(sd) else round(sd, 4), "n_seeds": n, "verdict": verdict}


def _final(run: Path, split: str) -> float:
    return pass1(run, split)[-1][1]


def _drop(run: Path, split: str) -> float:
    values = [v for _, v in pass1(run, split)]
    return max(values) - values[-1]


def findings(cfg: FindingsConfig) -> dict:
    """Per-seed numbers, statistic, rule and verdict of each finding, from the complete runs of the suite."""
    root, data, _ = paths(cfg)
    manifest = data / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text())["counts"].get(cfg.handful_split) != cfg.handful:
        raise UserError(f"{cfg.handful_split} in {data} does not hold exactly handful={cfg.handful} tasks, so RL from "
                        f"the base (E3) trained on other prompts than SFT; synthesise with pool_b={cfg.handful}")
    done = {j.name for j in suite(cfg) if j.complete() and j.stage in ("sft", "rl")}

    def have(*names):   # the seeds for which every named run is complete
        return [s for s in cfg.seeds if all(f"{n}/s{s}" in done for n in names)]

    def run(name, seed):
        return root / name / f"s{seed}"

    out = {"rule": ("per-seed statistic; mean m, sample sd s over n seeds: reproduced if n >= 3 and m - s > 0; "
                    "not reproduced if n >= 3 and m <= 0; else inconclusive"),
           "seeds": cfg.seeds, "runs_complete": len(done)}
    if "E1" in cfg.experiments:
        names = list(e1_runs(cfg))
        seeds = have(*(f"e1/{n}" for n in names))
        handful, synth = f"e1/atomic+{cfg.handful}", f"e1/synthetic-only-{cfg.synthetic_only}"
        stat = [_final(run(handful, s), "test_target")
                - max(_final(run("e1/atomic-only", s), "test_target"), _final(run(synth, s), "test_target"))
                for s in seeds]
        table = {n: {"test_target": [_final(run(f"e1/{n}", s), "test_target") for s in seeds],
                     "test_in_domain": [_final(run(f"e1/{n}", s), "test_in_domain") for s in seeds],
                     "train": [_final(run(f"e1/{n}", s), "train") for s in seeds],
                     "by_kind": [kind_pass1(run(f"e1/{n}", s), data, cfg.sft_steps) for s in seeds]}
                 for n in names}
        out["F1"] = {"claim": "SFT generalises to the target domain only with atomic AND synthetic data; a handful "
                              "of synthetic functions is enough",
                     "statistic": f"final test_target pass@1 of atomic+{cfg.handful} minus max(atomic only, "
                                  f"synthetic only ({cfg.synthetic_only}))",
                     **decide(stat), "seeds_used": seeds, "final_pass@1": table}
    if "E2" in cfg.experiments:
        for key, name in (("F2", "e2/rl-same"), ("F2_fresh", "e2/rl-fresh")):
            seeds = have(name)
            curves = [pass1(run(name, s), "test_target") for s in seeds]
            out[key] = {"claim": "RL after SFT improves target-domain generalisation"
                                 + (", even with the same prompts as SFT" if key == "F2" else
                                    " (fresh in-domain prompts; supplement)"),
                        "statistic": "test_target pass@1 at the end of RL minus at its step 0 (= the SFT start, "
                                     f"{cfg.rl_init_steps} SFT steps)",
                        **decide([c[-1][1] - c[0][1] for c in curves]), "seeds_used": seeds,
                        "sft_start": [c[0][1] for c in curves], "rl_end": [c[-1][1] for c in curves],
                        "train_start_end": [(pass1(run(name, s), "train")[0][1], _final(run(name, s), "train"))
                                            for s in seeds]}
    if "E3" in cfg.experiments:
        sft_run = f"e1/atomic+{cfg.handful}"
        seeds = have(sft_run, "e3/rl-base")
        rl_learned = [_final(run("e3/rl-base", s), "train") - pass1(run("e3/rl-base", s), "train")[0][1]
                      for s in seeds]
        result = decide([_drop(run(sft_run, s), "test_target") - _drop(run("e3/rl-base", s), "test_target")
                         for s in seeds])
        if seeds and np.mean(rl_learned) < LEARNED and not result["verdict"].startswith("inconclusive ("):
            result["verdict"] = (f"inconclusive (RL from the base did not learn: train pass@1 rose by "
                                 f"{np.mean(rl_learned):.3f} < {LEARNED} on average)")
        out["F3"] = {"claim": "RL from the base model avoids the overfitting SFT shows (held-out pass@1 peaks and "
                              "falls under SFT)",
                     "statistic": f"test_target pass@1 drop from its peak to the end: SFT ({sft_run}, {cfg.sft_steps} "
                                  "steps) minus RL from base on the same prompts",
                     **result, "seeds_used": seeds, "precondition": f"RL-from-base train pass@1 rise >= {LEARNED}",
                     "rl_train_rise": [round(v, 4) for v in rl_learned],
                     "sft_curve": [pass1(run(sft_run, s), "test_target") for s in seeds],
                     "sft_train_curve": [pass1(run(sft_run, s), "train") for s in seeds],
                     "rl_curve": [pass1(run("e3/rl-base", s), "test_target") for s in seeds]}
    if "E4" in cfg.experiments:
        modes = [m for m in MODES if m in cfg.reward_modes]
        seeds = have(*(f"e4/{m}" for m in modes))
        final = {m: [_final(run(f"e4/{m}", s), "test_in_domain") for s in seeds] for m in modes}
        steps = {f"{b}<={a}": decide([x - y for x, y in zip(final[a], final[b])]) for b, a in zip(modes, modes[1:])}
        verdicts = [v["verdict"] for v in steps.values()]
        overall = ("not reproduced" if "not reproduced" in verdicts else
                   "reproduced" if verdicts and all(v == "reproduced" for v in verdicts) else
                   next((v for v in verdicts if v.startswith("inconclusive (")), "inconclusive"))
        means = {m: round(float(np.mean(v)), 4) if v else None for m, v in final.items()}
        out["reward_ordering"] = {
            "claim": "RLTF's ablation order: binary <= coarse <= fine <= adaptive",
            "statistic": f"final test_in_domain pass@1 per reward mode ({cfg.ablation_algorithm} from the SFT start, "
                         "fresh prompts); each adjacent step by the rule on its per-seed differences",
            "verdict": overall, "steps": steps, "per_seed": final, "mean": means, "seeds_used": seeds,
            "observed_order": sorted((m for m in means if means[m] is not None), key=means.get)}
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
    lines = []
    for key in ("F1", "F2", "F2_fresh", "F3", "reward_ordering"):
        if key in result:
            r = result[key]
            nums = (f"mean {r['mean']} (sd {r['sd']}, per seed {r['per_seed']})" if "sd" in r
                    else f"means {r['mean']}, observed order {' < '.join(r['observed_order'])}")
            lines.append(f"{key}: {r['verdict'].upper()} — {r['claim']}. Statistic: {r['statistic']}: {nums}.")
    return "\n".join(lines)


def run(cfg: FindingsConfig) -> dict:
    """Run (or finish) the suite, then decide and write the findings. Returns the findings."""
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
    result["failed"] = failed
    write(cfg, result)
    print(summary(result))
    return result
