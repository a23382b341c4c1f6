"""The learning benchmark: does RL raise the pass rate of the prompts it trains on, from the base model and from
an SFT checkpoint that is not saturated? Today's settings ("old") against the new defaults, over seeds, in one run.

    .venv/bin/python bench/rl_learning.py [--seeds 0,1,2] [--steps 120] [--work runs/bench/rl_learning]

"new" is the set of defaults this benchmark chose (NEW below; RLConfig's defaults since it met the bar from the
SFT start over 3 seeds), from the base with its smaller step (rl.BASE_START). Every run is a plain
`python -m labkit rl --preset quick` run directory (two side by side, one thread each,
`labkit.jobs`); finished runs are skipped, so an interrupted benchmark resumes. RL starts from the committed base
model ("base") unless --base names another; the data (synth quick) is made in the work directory unless --data
names it; the SFT start is one SFT run on atom_base + 1000 composites (the findings suite's E2 mixture before
atom_call joined it; the runs from it are kept) for --sft-steps steps: 150 by default, where the committed base's
start leaves room (README: 150 steps give train pass@1 0.347 and test_in_domain 0.21; 300 give 0.77 and 0.573).
Every finished RL run's curves are kept in bench/results/rl_learning/ (config.json, the evaluations and the
per-step RL metrics that explain them, prompt_filter.json): they are committed as they complete, and a run whose
results are there with the same config is not run again, so the benchmark resumes across machines too. Both
settings train on the same pool and are judged on the same evaluation: greedy pass@1 on every prompt of the pool ("train", at most 300) and
on test_in_domain (300 tasks), with its standard error.

Prints and writes figures/rl_learning.json: per setting and start, the train-prompt and test_in_domain pass@1 at
the start and end of every seed, the rise per seed, its mean and standard deviation, steps/s; and the figure of
the train-prompt curves (mean and min-max band over seeds) as figures/rl_learning.png.
"""
import argparse
import json
import shutil
import statistics
from pathlib import Path

from labkit import runs
from labkit.files import write_json
from labkit.jobs import Job, run_or_raise
from labkit.rl import BASE_START, RLConfig

# Today's settings, written out so that later changes of the defaults leave them as they were measured.
OLD = {"num_generations": 8, "temperature": 1.0, "lr": 1e-4, "beta": 0.05, "epsilon": 0.2, "epsilon_high": None,
       "num_iterations": 1, "loss_type": "dapo", "scale_rewards": "group", "mask_truncated_completions": False,
       "dynamic_sampling": False, "prompt_filter": "none"}
# The candidate defaults: the options the field converged on, at the values the first pilot settled on (README).
NEW = {"num_generations": 8, "temperature": 0.7, "lr": 1e-4, "beta": 0.0, "epsilon": 0.2, "epsilon_high": 0.28,
       "num_iterations": 2, "loss_type": "dapo", "scale_rewards": "group", "mask_truncated_completions": False,
       "dynamic_sampling": True, "max_resample": 1, "prompt_filter": "edge"}
POOL = {"max_prompts": 300, "fit_prompts": True}   # both settings: a pool RL revisits, evaluated whole
EVAL = {"eval.n_samples": 0, "eval.sizes": {"train": 300, "test_in_domain": 300}, "eval.best_split": "train"}
# In the order the runs start. From the base, the pool holds the call-form atomic prompts (atom_call): the base
# solves atom_base's greedily almost always and no composite ever, so without them it had no room (README).
STARTS = {"sft": {"prompts": "sft"}, "base": {"init": "base", "prompts": "atom_base,atom_call,train_B"}}
# ... and the new settings take the base's smaller step there (rl.BASE_START); the old settings are as they were.
NEW_FROM = {"sft": {}, "base": BASE_START}


RESULTS = Path(__file__).parent / "results" / "rl_learning"
# What a kept run holds besides its evaluations: the per-step RL metrics that explain a curve.
KEPT_RL = ("reward_mean", "sample_pass_rate", "zero_advantage_groups", "dynamic/groups_kept", "completion_len",
           "entropy", "clip_frac")


def jobs(a) -> list[Job]:
    work = Path(a.work)
    data = Path(a.data or work / "data")
    out = []
    if not a.data:
        out.append(Job("data", "synth", data, "quick", {"seed": 0}, "manifest.json"))
    pre = tuple(j.name for j in out)
    sft = work / "sft-start"
    out.append(Job("sft-start", "sft", sft, "quick", {"model.name_or_path": a.base, "data_dir": str(data),
                                                    "mixture": {"atom_base": 1.0, "train_C:1000": 1.0},
                                                    "max_steps": a.sft_steps, "epochs": 10_000,
                                                    "eval.every": a.sft_steps, **EVAL},
                   f"checkpoints/step-{a.sft_steps:06d}", pre))
    for start, how in STARTS.items():
        for setting in a.settings:
            for seed in a.seeds:
                init = {"model.name_or_path": a.base, "data_dir": str(data)} if start == "base" \
                    else {"init": str(sft)}
                settings = OLD if setting == "old" else {**NEW, **NEW_FROM[start]}
                overrides = {**settings, **POOL, **EVAL, **how, **init, "seed": seed, "steps": a.steps,
                             "eval.every": max(1, a.steps // 4)}
                out.append(Job(f"{setting}/{start}/s{seed}", "rl", work / setting / start / f"s{seed}", "quick",
                               overrides, f"checkpoints/step-{a.steps:06d}", pre + (("sft-start",) if start == "sft"
                                                                                     else ())))
    return out


def kept(job: Job) -> Path:
    return RESULTS / job.name.replace("/", "-")


def keep(job: Job) -> None:
    """Copy what the summary and figures need of a finished RL run into bench/results (small, committed)."""
    dest = kept(job)
    dest.mkdir(parents=True, exist_ok=True)
    rows = [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items() if k not in ("tokens", "epoch")}
            for r in runs.read_jsonl(job.out / "metrics.jsonl")
            if r["split"] != "rl" and r["metric"] in ("pass@1", "pass@1_se") or r["metric"] in KEPT_RL]
    runs.write_jsonl(dest / "metrics.jsonl", rows)
    for name in ("config.json", "prompt_filter.json"):
        if (job.out / name).exists():
            shutil.copy(job.out / name, dest / name)
    write_json(dest / "job.json", {"name": job.name, "overrides": job.overrides})


def already_kept(job: Job) -> bool:
    """The run's results are in bench/results with the same overrides (paths aside: machines differ)."""
    path = kept(job) / "job.json"
    if not path.exists():
        return False
    def portable(o):
        return {k: v for k, v in o.items() if k not in ("init", "data_dir")}
    return portable(json.loads(path.read_text())["overrides"]) == portable(json.loads(json.dumps(job.overrides)))


def pass1(run: Path, split: str) -> dict[int, float]:
    return {r["step"]: r["value"] for r in runs.read_jsonl(run / "metrics.jsonl")
            if r["split"] == split and r["metric"] == "pass@1"}


def rl_metric(run: Path, metric: str) -> list[float]:
    return [r["value"] for r in runs.read_jsonl(run / "metrics.jsonl") if r["split"] == "rl" and r["metric"] == metric]


def summary(run_dirs: dict[int, Path], steps: int) -> dict:
    """Per seed whose results are kept: start and end of the train-prompt and test_in_domain pass@1, the room the
    start left (1 - start), the sampled pass rate over the first and last 10 steps, the share of groups with
    equal rewards, steps/s; then the mean rise and its spread over those seeds."""
    done = {seed: run for seed, run in run_dirs.items() if (run / "metrics.jsonl").exists()}
    out = {"seeds_done": sorted(done), "train": [], "test_in_domain": [], "steps_per_s": [], "room": [],
           "sampled_pass_first10": [], "sampled_pass_last10": [], "zero_advantage_groups": []}
    for run in done.values():
        for split in ("train", "test_in_domain"):
            curve = pass1(run, split)
            out[split].append({"start": curve[0], "end": curve[steps]})
        out["room"].append(1 - out["train"][-1]["start"])
        sampled = rl_metric(run, "sample_pass_rate")
        out["sampled_pass_first10"].append(statistics.mean(sampled[:10]))
        out["sampled_pass_last10"].append(statistics.mean(sampled[-10:]))
        out["zero_advantage_groups"].append(statistics.mean(rl_metric(run, "zero_advantage_groups")))
        wall = max(r["wall_time"] for r in runs.read_jsonl(run / "metrics.jsonl"))
        out["steps_per_s"].append(steps / wall)
    if not done:
        return out
    rises = [r["end"] - r["start"] for r in out["train"]]
    moves = [r["end"] - r["start"] for r in out["test_in_domain"]]
    out.update(rise_per_seed=rises, rise_mean=statistics.mean(rises),
               rise_sd=statistics.stdev(rises) if len(rises) > 1 else 0.0,
               test_in_domain_change_per_seed=moves, test_in_domain_change_mean=statistics.mean(moves))
    out["learns"] = len(rises) >= 3 and out["rise_mean"] >= 0.15 and out["rise_mean"] - out["rise_sd"] > 0
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--settings", default="new,old")
    p.add_argument("--sft-steps", type=int, default=150)
    p.add_argument("--work", default="runs/bench/rl_learning")
    p.add_argument("--data", default="")
    p.add_argument("--base", default="base", help="the base model: 'base' (the committed one) or a directory")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="figures/rl_learning.json")
    p.add_argument("--report", action="store_true", help="run nothing: summarise the runs kept so far")
    a = p.parse_args()
    a.seeds = [int(s) for s in a.seeds.split(",")]
    a.settings = a.settings.split(",")
    work = Path(a.work)
    todo = [j for j in jobs(a) if not (j.stage == "rl" and already_kept(j))]
    rl_todo = [j for j in todo if j.stage == "rl"]
    print(f"{len(rl_todo)} RL runs to do; the others' results are in {RESULTS}")
    if rl_todo and not a.report:
        waiting = list(rl_todo)

        def keep_finished():   # the runner's watch: each finished run is kept once
            for job in [j for j in waiting if j.complete()]:
                keep(job)
                waiting.remove(job)
        run_or_raise(todo, log_dir=work / "logs", workers=a.workers, threads=1, watch=keep_finished)
    run = {f"{s}/{start}/s{seed}": RESULTS / f"{s}-{start}-s{seed}" for s in a.settings for start in STARTS
           for seed in a.seeds}

    result = {"eval_tasks": {"train": "the whole pool (at most 300)", "test_in_domain": 300},
              "steps": a.steps, "sft_start_steps": a.sft_steps, "base": a.base, "seeds": a.seeds, "pool": POOL,
              "old_settings": OLD,
              "new_settings": NEW, "new_settings_by_start": NEW_FROM,
              "labkit_defaults": {k: getattr(RLConfig(), k) for k in NEW}}
    for setting in a.settings:
        block = {start: summary({s: run[f"{setting}/{start}/s{s}"] for s in a.seeds}, a.steps) for start in STARTS}
        result[setting] = {f"from_{start}": v for start, v in block.items()}
    result["eval_tasks"]["train_by_run"] = {
        name: json.loads((path / "prompt_filter.json").read_text())["kept"] if (path / "prompt_filter.json").exists()
        else "the whole pool" for name, path in run.items() if (path / "metrics.jsonl").exists()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    for setting in a.settings:
        for start in STARTS:
            r = result[setting][f"from_{start}"]
            if not r["seeds_done"]:
                print(f"{setting:4s} from {start:4s}: no run kept yet")
                continue
            print(f"{setting:4s} from {start:4s}: train pass@1 rise {r['rise_mean']:+.3f} (sd {r['rise_sd']:.3f}; "
                  f"{', '.join(f'{x:+.3f}' for x in r['rise_per_seed'])}), test_in_domain "
                  f"{r['test_in_domain_change_mean']:+.3f}, {statistics.mean(r['steps_per_s']):.2f} steps/s"
                  f" (seeds {r['seeds_done']}; room at the start {statistics.mean(r['room']):.3f})"
                  f"{'  LEARNS' if r['learns'] else ''}")

    from labkit.viz import export
    from labkit.viz.runs import PALETTE, seed_bands
    figs = {}
    for start in STARTS:
        fig = None
        for i, setting in enumerate(a.settings):   # one band per setting, named and coloured by it
            present = [run[f"{setting}/{start}/s{seed}"] for seed in a.seeds
                       if (run[f"{setting}/{start}/s{seed}"] / "metrics.jsonl").exists()]
            if not present:
                continue
            part = seed_bands(present, split="train")
            for trace in part.data:
                trace.line.color = PALETTE[i]
                if trace.fill:
                    trace.fillcolor = PALETTE[i]
                else:
                    trace.name = f"{setting} settings (n={len(present)})"
            fig = part if fig is None else fig.add_traces(part.data)
        if fig is None:
            continue
        figs[f"rl_learning_{start}"] = fig.update_layout(
            title=f"RL from {({'sft': 'the SFT start', 'base': 'the base model'})[start]}: greedy pass@1 on its own "
                  f"prompts (mean, min-max over seeds)")
    export.write(figs, Path(a.out).parent, html=False)
    print(f"wrote {a.out} and its figures")


if __name__ == "__main__":
    main()
