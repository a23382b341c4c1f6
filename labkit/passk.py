"""Does RL add abilities, or sharpen what the model already had? pass@k out to large k, per model and split.

    python -m labkit passk --preset quick --data runs/data --out runs/passk \
        --set 'models={"base": "base", "sft": "runs/sft", "rl after sft": "runs/rl"}'

Yue et al. (2025, arXiv 2504.13837) found that RL-trained models win at pass@1 while the base model catches up
and overtakes at large k: RL sharpens the distribution toward answers the base could already sample, rather
than adding new ones. This stage measures the same on the lab's own models. For every model (a committed or
local model directory, or an SFT/RL run directory: its last checkpoint) and split, `n` samples per task at
`temperature` (batched, KV cache), each judged in the sandbox, give per task the count c of passing samples;
pass@k for k = 1, 2, 4, ..., n is the unbiased estimator (`evaluate.pass_at_k`) averaged over tasks, with its
standard error over tasks. From those counts:

* the crossover: for each pair of models, the smallest k at which the one behind at k=1 has caught up;
* the solved sets: a task is solved at some k when c > 0. "New abilities" are the tasks a model solves that the
  model it is measured against solves in none of its n samples (its start: `against`, e.g. RL after SFT against
  the SFT checkpoint; by default `reference`, the base); the reverse are the abilities it lost. Both are shares
  of the split's tasks — at finite n, a lower bound on what either can do.

Writes OUT/passk.json (per model and split: k, pass@k, its standard error, the per-task counts) and prints a
table. Notebook 08 draws it (`labkit.viz.passk`).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from labkit import config, evaluate, models
from labkit.config import UserError
from labkit.files import write_json


@dataclass
class PassKConfig:
    # label -> model: "base" (committed), a model directory, or an SFT/RL run directory (its last checkpoint)
    models: dict[str, str] = field(default_factory=lambda: {"base": "base"})
    reference: str = "base"          # the label "new abilities" are measured against ...
    against: dict[str, str] = field(default_factory=dict)   # ... unless named here: {"rl after sft": "sft"}
    data_dir: str = ""
    splits: list[str] = field(default_factory=lambda: ["test_in_domain", "test_target"])
    limit: int = 90                  # tasks per split (the first ones, an equal share per kind); 0 = all
    n: int = 32                      # samples per task; k runs over the powers of two up to n
    temperature: float = 1.0         # the base's own distribution: what it *can* sample
    top_p: float = 1.0
    max_new_tokens: int = 96
    batch_size: int = 256
    timeout: float = 1.0
    seed: int = 0
    device: str = "auto"
    out_dir: str = "runs/passk"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"limit": 4, "n": 4, "max_new_tokens": 32},
        "quick": {"limit": 90, "n": 32},
        "full": {"limit": 0, "n": 256, "max_new_tokens": 160},
    }


CONFIG = PassKConfig
CLI_ALIASES = {"--data": "data_dir", "--out": "out_dir", "--n": "n", "--seed": "seed"}


def ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    out = [2 ** i for i in range(int(math.log2(n)) + 1)] if n >= 1 else []
    return out + ([n] if n not in out else [])


def curve(counts: list[int], n: int) -> dict[str, list[float]]:
    """Mean unbiased pass@k over tasks (and its standard error over tasks) for every k of `ks(n)`."""
    out: dict[str, list[float]] = {"k": ks(n), "pass": [], "se": []}
    for k in out["k"]:
        per_task = np.array([evaluate.pass_at_k(n, c, k) for c in counts])
        out["pass"].append(float(per_task.mean()))
        out["se"].append(float(per_task.std(ddof=1) / math.sqrt(len(per_task))) if len(per_task) > 1 else 0.0)
    return out


def crossover(a: dict, b: dict) -> int | None:
    """The smallest k at which the curve behind at k=1 reaches the one ahead; None if it never does (or if
    they start level)."""
    ahead, behind = (a, b) if a["pass"][0] > b["pass"][0] else (b, a)
    if ahead["pass"][0] == behind["pass"][0]:
        return None
    return next((k for k, x, y in zip(ahead["k"], ahead["pass"], behind["pass"]) if y >= x), None)


def solved_sets(counts: dict[str, int], reference: dict[str, int]) -> dict[str, float]:
    """Shares of tasks solved (c > 0) by a model and never by the reference ("new"), and the reverse ("lost")."""
    tasks = list(counts)
    new = sum(counts[t] > 0 and reference[t] == 0 for t in tasks)
    lost = sum(counts[t] == 0 and reference[t] > 0 for t in tasks)
    return {"new": new / len(tasks), "lost": lost / len(tasks), "tasks": len(tasks)}


def count_passes(model, tokenizer, task_list, cfg: PassKConfig) -> dict[str, int]:
    """task id -> how many of `cfg.n` samples pass its tests."""
    result = evaluate.evaluate_tasks(model, tokenizer, task_list, n=cfg.n, k=[1], temperature=cfg.temperature,
                                     top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, greedy=False,
                                     batch_size=cfg.batch_size, timeout=cfg.timeout, seed=cfg.seed)
    counts = {t.id: 0 for t in task_list}
    for s in result.samples:
        counts[s["task_id"]] += s["status"] == "pass"
    return counts


def by_kind(counts: dict[str, dict[str, dict[str, int]]], kinds: dict[str, dict[str, str]]) -> dict:
    """The counts with, beside each split whose tasks have kinds (test_target), one "split/kind" entry per kind."""
    out = {}
    for label, by_split in counts.items():
        out[label] = dict(by_split)
        for split, c in by_split.items():
            for kind in sorted(set(kinds.get(split, {}).values()) - {""}):
                out[label][f"{split}/{kind}"] = {t: x for t, x in c.items() if kinds[split][t] == kind}
    return out


def first_tasks(task_list: list, limit: int) -> list:
    """The first `limit` tasks, an equal share of each kind where the split has kinds (0: all)."""
    if not limit or len(task_list) <= limit:
        return task_list
    kinds = list(dict.fromkeys(t.kind for t in task_list))
    share = -(-limit // len(kinds))
    return [t for kind in kinds for t in [t for t in task_list if t.kind == kind][:share]][:limit]


def summarise(counts: dict[str, dict[str, dict[str, int]]], n: int, reference: str,
              against: dict[str, str] | None = None) -> dict:
    """The curves, crossovers and solved sets of per-task counts {model: {split: {task: c}}}; each model is
    measured against `against[model]`, else against `reference`."""
    against = {label: (against or {}).get(label, reference) for label in counts if label != reference}
    out: dict[str, Any] = {"n": n, "reference": reference, "against": against, "models": {}, "crossover": {},
                           "solved": {}}
    for label, by_split in counts.items():
        out["models"][label] = {split: {**curve(list(c.values()), n), "counts": c} for split, c in by_split.items()}
    labels = list(counts)
    for split in next(iter(counts.values())):
        out["crossover"][split] = {f"{a} vs {b}": crossover(out["models"][a][split], out["models"][b][split])
                                   for i, a in enumerate(labels) for b in labels[i + 1:]}
        out["solved"][split] = {label: solved_sets(counts[label][split], counts[other][split])
                                for label, other in against.items() if other in counts}
    return out


def describe(result: dict, split: str) -> list[str]:
    """Plain sentences on one split: each model against the model it is measured against, at k=1 and at k=n,
    where the curves cross, and the solved sets. A gap within two standard errors is called level."""
    n, lines = result["n"], []
    curves = {label: by_split[split] for label, by_split in result["models"].items()}

    def compare(a, b, i):
        gap = curves[a]["pass"][i] - curves[b]["pass"][i]
        noise = 2 * math.hypot(curves[a]["se"][i], curves[b]["se"][i])
        return "level with" if abs(gap) <= noise else "ahead of" if gap > 0 else "behind"

    for label, ref in result["against"].items():
        if ref not in curves:
            continue
        a, b = curves[label], curves[ref]
        text = (f"{split}: {label} is {compare(label, ref, 0)} {ref} at k=1 ({a['pass'][0]:.3f} vs {b['pass'][0]:.3f}) "
                f"and {compare(label, ref, -1)} it at k={n} ({a['pass'][-1]:.3f} vs {b['pass'][-1]:.3f})")
        k = crossover(a, b)
        if k is not None:
            text += f"; the curves meet at k={k}"
        solved = result["solved"].get(split, {}).get(label)
        if solved:
            text += (f". It solves {solved['new']:.1%} of the tasks that no sample of {ref} solves; {ref} solves "
                     f"{solved['lost']:.1%} that no sample of {label} does")
        lines.append(text + ".")
    return lines


def measure(cfg: PassKConfig) -> dict:
    """Sample every model on every split, write OUT/passk.json and return it (progress printed per model)."""
    if cfg.n < 1 or cfg.temperature <= 0:
        raise UserError(f"pass@k needs samples: n >= 1 and temperature > 0 (got n={cfg.n}, "
                        f"temperature={cfg.temperature})")
    if not cfg.models:
        raise UserError('name at least one model: --set \'models={"base": "base"}\'')
    if cfg.reference not in cfg.models:
        raise UserError(f"reference={cfg.reference!r} is not one of the models ({', '.join(cfg.models)}); "
                        f"set reference to the label new abilities are measured against")
    bad = {k: v for k, v in cfg.against.items() if k not in cfg.models or v not in cfg.models}
    if bad:
        raise UserError(f"against={bad} names labels that are not models ({', '.join(cfg.models)})")
    task_lists = {s: first_tasks(evaluate.split_tasks(s, cfg.data_dir, cfg.seed), cfg.limit) for s in cfg.splits}
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for label, path in cfg.models.items():
        model, tokenizer = models.load(models.ModelConfig(name_or_path=path, device=cfg.device), seed=cfg.seed)
        model.eval()
        counts[label] = {}
        for split, task_list in task_lists.items():
            t0 = time.time()
            counts[label][split] = count_passes(model, tokenizer, task_list, cfg)
            c = curve(list(counts[label][split].values()), cfg.n)
            print(f"passk: {label:>14s} {split:16s} {len(task_list):4d} tasks x {cfg.n}: pass@1 "
                  f"{c['pass'][0]:.3f}  pass@{cfg.n} {c['pass'][-1]:.3f}  ({time.time() - t0:.0f} s)", flush=True)
    kinds = {split: {t.id: t.kind for t in task_list} for split, task_list in task_lists.items()}
    result = summarise(by_kind(counts, kinds), cfg.n, cfg.reference, cfg.against)
    result["config"], result["command"] = config.to_dict(cfg), command(cfg)
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(cfg.out_dir) / "passk.json", result)
    return result


def command(cfg: PassKConfig) -> str:
    """The command line that measures `cfg` again (every key that differs from the defaults)."""
    default, mine = config.to_dict(PassKConfig()), config.to_dict(cfg)
    sets = [f"--set '{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}'"
            for k, v in mine.items() if v != default[k]]
    return " ".join(["python -m labkit passk", *sets])


def run_cli(cfg: PassKConfig, args) -> int:
    result = measure(cfg)
    for split in result["crossover"]:
        for line in describe(result, split):
            print("passk:", line)
    print(f"passk: wrote {Path(cfg.out_dir) / 'passk.json'}")
    return 0


REFERENCE = Path(__file__).resolve().parent.parent / "figures" / "passk.json"   # the committed measurement


def load(path=REFERENCE) -> dict:
    """A passk.json back (by default the committed figures/passk.json)."""
    return json.loads(Path(path).read_text())
