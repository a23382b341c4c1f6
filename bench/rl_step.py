"""Seconds per RL step: labkit's GRPO step vs Hugging Face TRL's GRPOTrainer, in one run, steps interleaved.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/rl_step.py [--model DIR] [--steps 8]

Both sides start from the same weights (a copy each), draw the same prompts (TRL's sampler picks them; labkit's
step takes the very prompts TRL just used), sample the same group size and at most the same number of new
tokens at the same temperature, score with the same reward (binary: the program passes its unit tests in
labkit's sandbox), and take one AdamW step with the same learning rate, KL coefficient (k3 to the frozen init)
and clip range. Steps alternate: a callback at the end of each TRL step runs one labkit step, so both see the
same load on these shared cores. The first step of each side is a warm-up and is not counted.

Where the difference comes from: generation dominates a step (NOTES-environment.md), and labkit stops each
sample at the end of its function (its first non-indented line), while TRL samples until eos or the length cap;
the JSON reports the mean completion length of each side beside the times.
Writes runs/bench/rl_step.json (medians with their range, the ratio TRL / labkit: above 1 means labkit is faster).
"""
import argparse
import collections
import copy
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from labkit import atomic, loop, models, rl, sampling, sandbox, tasks


def binary_rewards(task_list: list, completions: list[str]) -> list[float]:
    """The reward both sides use: 1 if the cut completion passes all the task's tests, else 0."""
    programs = [tasks.program(t, tasks.cut_completion(c)) for t, c in zip(task_list, completions)]
    verdicts = sandbox.run_many(programs, [tasks.test_snippets(t) for t in task_list], timeout=5.0)
    return [float(v.status == "pass") for v in verdicts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="a model directory (default: a random embedded 'small')")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per side (after one warm-up)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one per process is best on 2 "
                                                                "shared cores, DESIGN §2.3)")
    parser.add_argument("--out", default="runs/bench/rl_step.json")
    args = parser.parse_args()

    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="rl_step_"))
    if args.model:
        model_dir = args.model
    else:   # TRL rebuilds its reference model from a path, so the random model is saved first
        model, tokenizer = models.load(models.ModelConfig(size="small", device="cpu"), seed=0)
        model_dir = str(work / "model")
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
    # The same step on both sides: one update per batch, a KL term, no dynamic sampling (TRL has none).
    cfg = rl.RLConfig(reward="binary", num_generations=args.group, prompts_per_step=args.prompts, temperature=1.0,
                      top_p=1.0, max_new_tokens=args.max_new_tokens, lr=1e-4, beta=0.04, epsilon=0.2,
                      epsilon_high=None, num_iterations=1, dynamic_sampling=False)

    # labkit: the trainer's own step function on its own copy of the model.
    model_cfg = models.ModelConfig(name_or_path=model_dir, device="cpu")
    lk_model, tokenizer = models.load(model_cfg, seed=0)
    frozen = copy.deepcopy(lk_model).eval().requires_grad_(False)
    lk_loop = loop.Loop(cfg, "rl", cpu=True)   # the trainer's loop, holding just the model and optimizer
    lk_loop.model, lk_loop.tokenizer = lk_model, tokenizer
    lk_loop.optimizer = torch.optim.AdamW(lk_model.parameters(), lr=cfg.lr, weight_decay=0.0)
    actors = rl.Actors(cfg, frozen, lk_model, sampling.token_pieces(tokenizer), collections.deque(), random.Random(0))

    # TRL: the same model directory, prompts and reward.
    pool = tasks.atom_base(atomic.library(0))
    data = Dataset.from_list([{"prompt": t.prompt, "task": i} for i, t in enumerate(pool)])

    trl_args = GRPOConfig(
        output_dir=str(work / "trl"), max_steps=args.steps + 1, per_device_train_batch_size=args.prompts * args.group,
        num_generations=args.group, max_completion_length=args.max_new_tokens, temperature=cfg.temperature,
        top_p=cfg.top_p, top_k=0, learning_rate=cfg.lr, beta=cfg.beta, epsilon=cfg.epsilon, num_iterations=1,
        loss_type="dapo", scale_rewards="group", lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0,
        bf16=False, use_cpu=True, activation_checkpointing=False, report_to="none", save_strategy="no",
        logging_steps=10_000, disable_tqdm=True, seed=0, dataloader_num_workers=0)

    times = {"labkit": [], "trl": []}
    lengths = {"labkit": [], "trl": []}
    seen: list[list[int]] = []

    def recording_reward(prompts, completions, task, **kwargs):
        seen.append(sorted(set(task), key=task.index))
        lengths["trl"] += [len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in completions]
        return binary_rewards([pool[i] for i in task], completions)

    class Interleave(TrainerCallback):
        """After each TRL step, one labkit step on the prompts TRL just used; each side's clock runs alone."""
        mark = None

        def on_train_begin(self, *a, **k):
            self.mark = time.perf_counter()

        def on_step_end(self, *a, **k):
            times["trl"].append(time.perf_counter() - self.mark)
            chosen = [pool[i] for i in seen[-1]]
            t0 = time.perf_counter()
            rollout, _, _ = rl.rl_step(lk_loop, actors, chosen)
            times["labkit"].append(time.perf_counter() - t0)
            lengths["labkit"] += rollout.batch["completion_mask"].sum(1).tolist()
            print(f"step {len(times['trl'])}: trl {times['trl'][-1]:.2f} s, labkit {times['labkit'][-1]:.2f} s",
                  flush=True)
            self.mark = time.perf_counter()

    trl_model = models.load(model_cfg, seed=0)[0]
    trainer = GRPOTrainer(model=trl_model, reward_funcs=recording_reward, args=trl_args, train_dataset=data,
                          processing_class=tokenizer, callbacks=[Interleave()])
    trainer.train()

    def summary(xs):
        xs = xs[1:]   # the first step warms up caches and the sandbox pool
        return {"median_s": statistics.median(xs), "min_s": min(xs), "max_s": max(xs), "steps_s": xs}

    result = {
        "labkit": summary(times["labkit"]), "trl": summary(times["trl"]),
        "ratio_trl_over_labkit": statistics.median(times["trl"][1:]) / statistics.median(times["labkit"][1:]),
        "mean_completion_tokens": {k: sum(v) / max(len(v), 1) for k, v in lengths.items()},
        "setup": {"model": args.model or "embedded small (random init)", "params": models.n_params(lk_model),
                  "prompts_per_step": args.prompts, "num_generations": args.group,
                  "max_new_tokens": args.max_new_tokens, "reward": "binary (sandbox)", "beta": cfg.beta,
                  "torch_threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
                  "timed_steps": args.steps, "trl": __import__("trl").__version__},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"labkit {result['labkit']['median_s']:.2f} s/step, TRL {result['trl']['median_s']:.2f} s/step: "
          f"ratio {result['ratio_trl_over_labkit']:.2f} (completion tokens: labkit "
          f"{result['mean_completion_tokens']['labkit']:.1f}, TRL {result['mean_completion_tokens']['trl']:.1f}); "
          f"wrote {out}")


if __name__ == "__main__":
    main()
