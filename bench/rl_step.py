"""Seconds per RL step and per token: labkit's GRPO step vs Hugging Face TRL's GRPOTrainer, in one run, steps
interleaved.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/rl_step.py [--model base] [--steps 8] [--before OLD.json]

Three sides start from the same weights (a copy each), draw the same prompts (TRL's sampler picks them; labkit's
steps take the very prompts TRL just used), sample the same group size and at most the same number of new
tokens at the same temperature, score with the same reward (binary: the program passes its unit tests in
labkit's sandbox, same timeout) and take one AdamW step with the same learning rate, KL coefficient (k3 to the
frozen init) and clip range:
  * `trl`: GRPOTrainer; a sample ends at eos or at the length cap;
  * `labkit`: the trainer's own step; a sample ends at the end of its function (the stop rule);
  * `labkit_same_length`: the same step with the stop rule off, so a sample ends where TRL's would (eos or the
    cap) and both sides generate and train on about the same tokens: the per-token comparison.
A callback at the end of each TRL step runs one step of each labkit side, so all see the same load on these
shared cores. The first step of each side is a warm-up and is not counted.

Per token: `generated` tokens are the completions' tokens; `trained` tokens are the update's real (non-padding)
prompt + completion tokens, what TRL counts as `num_tokens`. `per_token_ms` is the median over steps of the
step's time per generated token. labkit's steps are also split into their phases (sampling, sandbox, update)
by timing the step's own functions. `--before` embeds the result of an earlier run (e.g. this bench at an older
commit) under "before", to keep a speed-up's before/after in one file.
Writes runs/bench/rl_step.json (medians with their range; ratios TRL / labkit: above 1 means labkit is faster).
"""
import argparse
import collections
import contextlib
import copy
import json
import os
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from labkit import atomic, loop, models, rl, sampling, sandbox, tasks

SIDES = ("trl", "labkit", "labkit_same_length")
TIMEOUT = 1.0   # seconds per test, both sides (RLConfig.sandbox_timeout's default)


def binary_rewards(task_list: list, completions: list[str]) -> list[float]:
    """The reward both sides use: 1 if the cut completion passes all the task's tests, else 0."""
    programs = [tasks.program(t, tasks.cut_completion(c)) for t, c in zip(task_list, completions)]
    verdicts = sandbox.run_many(programs, [tasks.test_snippets(t) for t in task_list], timeout=TIMEOUT)
    return [float(v.status == "pass") for v in verdicts]


@contextlib.contextmanager
def stop_rule_off():
    """RL's sampler without the stop rule: samples end at eos or the cap, as TRL's do."""
    original = sampling.stop_rule
    sampling.stop_rule = sampling.eos_only
    try:
        yield
    finally:
        sampling.stop_rule = original


@contextlib.contextmanager
def phase_clock(phases: dict):
    """Time the step's own functions (sampling, sandbox + rewards, update) while inside."""
    wrapped = {(rl, "sample"): "sample", (rl, "reward_rollout"): "reward", (rl, "grpo_update"): "update"}
    originals = {key: getattr(*key) for key in wrapped}

    def timed(fn, phase):
        def run(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[phase] += time.perf_counter() - t0
        return run
    for (module, name), phase in wrapped.items():
        setattr(module, name, timed(originals[(module, name)], phase))
    try:
        yield
    finally:
        for (module, name), fn in originals.items():
            setattr(module, name, fn)


def labkit_side(cfg: rl.RLConfig, model_cfg: models.ModelConfig):
    """A labkit trainer's step state on its own copy of the model: (loop, actors)."""
    model, tokenizer = models.load(model_cfg, seed=0)
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    lp = loop.Loop(cfg, "rl", cpu=True)   # the trainer's loop, holding just the model and optimizer
    lp.model, lp.tokenizer = model, tokenizer
    lp.optimizer = loop.adamw(model, cfg.lr)
    return lp, rl.Actors(cfg, frozen, model, sampling.token_pieces(tokenizer), collections.deque(), random.Random(0))


def summary(steps: list[dict]) -> dict:
    steps = steps[1:]   # the first step warms up caches and the sandbox pool
    seconds = [s["seconds"] for s in steps]
    out = {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
           "per_token_ms": statistics.median(1000 * s["seconds"] / s["generated"] for s in steps),
           "per_trained_token_ms": statistics.median(1000 * s["seconds"] / s["trained"] for s in steps),
           "mean_completion_tokens": sum(s["generated"] for s in steps) / sum(s["completions"] for s in steps),
           "steps": steps}
    if "phases" in steps[0]:
        out["phases_median_s"] = {p: statistics.median(s["phases"][p] for s in steps) for p in steps[0]["phases"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base", help="'base' (the committed base, default), 'embedded' (a "
                                                        "random small model) or a model directory")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per side (after one warm-up)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one per process is best on 2 "
                                                                "shared cores, DESIGN §2.3)")
    parser.add_argument("--before", default="", help="an earlier result of this bench, kept under 'before'")
    parser.add_argument("--out", default="runs/bench/rl_step.json")
    args = parser.parse_args()

    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="rl_step_"))
    # TRL rebuilds its reference model from a path, so the model is saved first.
    model, tokenizer = models.load(models.ModelConfig(name_or_path=args.model, size="small", device="cpu"), seed=0)
    model_dir = str(work / "model")
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    model_cfg = models.ModelConfig(name_or_path=model_dir, device="cpu")
    # The same step on every side: one update per batch, a KL term, no dynamic sampling (TRL has none).
    cfg = rl.RLConfig(reward="binary", num_generations=args.group, prompts_per_step=args.prompts, temperature=1.0,
                      top_p=1.0, max_new_tokens=args.max_new_tokens, lr=1e-4, beta=0.04, epsilon=0.2,
                      epsilon_high=None, num_iterations=1, dynamic_sampling=False, sandbox_timeout=TIMEOUT)
    labkit = {"labkit": labkit_side(cfg, model_cfg), "labkit_same_length": labkit_side(cfg, model_cfg)}

    pool = tasks.atom_base(atomic.library(0))
    data = Dataset.from_list([{"prompt": t.prompt, "task": i} for i, t in enumerate(pool)])
    prompt_tokens = [len(tokenizer(t.prompt, add_special_tokens=False)["input_ids"]) for t in pool]
    trl_args = GRPOConfig(
        output_dir=str(work / "trl"), max_steps=args.steps + 1, per_device_train_batch_size=args.prompts * args.group,
        num_generations=args.group, max_completion_length=args.max_new_tokens, temperature=cfg.temperature,
        top_p=cfg.top_p, top_k=0, learning_rate=cfg.lr, beta=cfg.beta, epsilon=cfg.epsilon, num_iterations=1,
        loss_type="dapo", scale_rewards="group", lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0,
        bf16=False, use_cpu=True, activation_checkpointing=False, report_to="none", save_strategy="no",
        logging_steps=10_000, disable_tqdm=True, seed=0, dataloader_num_workers=0)

    steps = {side: [] for side in SIDES}
    seen: list[dict] = []

    def recording_reward(prompts, completions, task, completion_ids, **kwargs):
        seen.append({"tasks": sorted(set(task), key=task.index), "generated": sum(map(len, completion_ids)),
                     "trained": sum(map(len, completion_ids)) + sum(prompt_tokens[i] for i in task),
                     "completions": len(completions)})
        return binary_rewards([pool[i] for i in task], completions)

    def labkit_step(side: str, chosen: list) -> dict:
        lp, actors = labkit[side]
        phases = collections.Counter()
        with phase_clock(phases), stop_rule_off() if side == "labkit_same_length" else contextlib.nullcontext():
            t0 = time.perf_counter()
            rollout, _, _ = rl.rl_step(lp, actors, chosen)
            seconds = time.perf_counter() - t0
        b = rollout.batch
        return {"seconds": seconds, "generated": int(b["completion_mask"].sum()),
                "trained": int(b["completion_mask"].sum() + b["prompt_mask"].sum()), "completions": len(rollout),
                "phases": dict(phases)}

    class Interleave(TrainerCallback):
        """After each TRL step, one step of each labkit side on the prompts TRL just used; each clock runs alone."""
        mark = None

        def on_train_begin(self, *a, **k):
            self.mark = time.perf_counter()

        def on_step_end(self, *a, **k):
            trl_step = {"seconds": time.perf_counter() - self.mark, **{k: v for k, v in seen[-1].items()
                                                                       if k != "tasks"}}
            steps["trl"].append(trl_step)
            chosen = [pool[i] for i in seen[-1]["tasks"]]
            for side in labkit:
                steps[side].append(labkit_step(side, chosen))
            print(f"step {len(steps['trl'])}: " + ", ".join(f"{s} {steps[s][-1]['seconds']:.2f} s "
                                                           f"({steps[s][-1]['generated']} tokens)" for s in SIDES),
                  flush=True)
            self.mark = time.perf_counter()

    trl_model = models.load(model_cfg, seed=0)[0]
    trainer = GRPOTrainer(model=trl_model, reward_funcs=recording_reward, args=trl_args, train_dataset=data,
                          processing_class=tokenizer, callbacks=[Interleave()])
    trainer.train()

    result = {side: summary(steps[side]) for side in SIDES}
    trl_ms = result["trl"]["per_token_ms"]
    result["per_token_ms"] = {"labkit": result["labkit"]["per_token_ms"],
                              "labkit_same_length": result["labkit_same_length"]["per_token_ms"], "trl": trl_ms}
    result["ratio_trl_over_labkit"] = result["trl"]["median_s"] / result["labkit"]["median_s"]
    result["per_token_ratio_trl_over_labkit"] = trl_ms / result["labkit"]["per_token_ms"]
    result["per_token_ratio_trl_over_labkit_same_length"] = trl_ms / result["labkit_same_length"]["per_token_ms"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result["setup"] = {"model": args.model, "params": models.n_params(model), "prompts_per_step": args.prompts,
                       "num_generations": args.group, "max_new_tokens": args.max_new_tokens,
                       "reward": "binary (sandbox)", "sandbox_timeout": TIMEOUT, "beta": cfg.beta,
                       "micro_batch": cfg.micro_batch, "torch_threads": args.threads,
                       "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "timed_steps": args.steps,
                       "trl": __import__("trl").__version__, "commit": commit}
    if args.before:
        before = json.loads(Path(args.before).read_text())
        result["before"] = {k: before[k] for k in ("per_token_ms", "ratio_trl_over_labkit", "setup") if k in before}
        result["before"]["labkit"] = {k: v for k, v in before["labkit"].items() if k != "steps"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for side in SIDES:
        r = result[side]
        print(f"{side:20s} {r['median_s']:.2f} s/step, {r['per_token_ms']:.3f} ms per generated token, "
              f"{r['per_trained_token_ms']:.3f} ms per trained token, {r['mean_completion_tokens']:.1f} tokens "
              f"per completion" + (f"; phases {r['phases_median_s']}" if "phases_median_s" in r else ""))
    print(f"TRL / labkit per step {result['ratio_trl_over_labkit']:.2f}, per generated token "
          f"{result['per_token_ratio_trl_over_labkit']:.2f} (same length "
          f"{result['per_token_ratio_trl_over_labkit_same_length']:.2f}); wrote {out}")


if __name__ == "__main__":
    main()
