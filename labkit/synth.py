"""Synthetic composite functions and the data splits that make generalisation measurable (DESIGN §2.1, §3).

    python -m labkit synth --preset quick --seed 0 --out data/quick

The pipeline (steps 1-3: `compose.py`; 4: `validation.py`; 5 and the splits: this file):
1. Reserve the target domain before generating anything: a few held-out atoms (drawn by seed among the
   well-connected ones) and held-out adjacent pairs. Train and in-domain composites use neither.
2. Compose by types: a chain starts at a random atomic function (any number of parameters: the composite
   takes the same arguments) and every next step is a one-argument atom whose parameter type is the previous
   step's return type. Depth = number of steps.
3. Describe and implement it: the prompt chains the atoms' phrasings with varied connectives, the fed
   parameter of a later step becoming "the result" / "it"; the body is written in one of two styles.
4. Validate in the sandbox, many candidates per program (one interpreter per candidate would cost more than
   the work): each candidate runs on >= 5 inputs from its first atom's generator; it is rejected when it
   raises, returns None, gives one output for every input, or behaves exactly like the chain with one or more
   consecutive steps removed (e.g. sort then sort, reverse then reverse). A program that dies (timeout,
   memory) is split in halves and rerun, so one bad candidate cannot sink its batch. The expected outputs of
   the tests are then computed here from the same (our own, now vetted) code and checked against the digest
   the sandbox reported.
5. Deduplicate against everything accepted so far (normalised source, and identical outputs on the same test
   inputs), split, and write one JSONL per split plus manifest.json, each file through a temp name + rename.

Response styles (config `style`):
- `call` (the default): the body calls the atoms by name, one line per step (`a = f(xs)`, `return g(a)`), and
  the task's `context` holds the atoms' sources so the program runs. It is the default because at small scale
  it is what makes composition learnable (DESIGN §2.3): each clause of the prompt maps to one short line.
- `inline`: a self-contained body, the atoms' sources nested as inner functions before the same calls. It
  needs no context, and is much harder for a tiny model.

Split rule (tested in tests/test_synth.py): `atom_base` holds every atom (held-out ones included) in every
phrasing, and so does `atom_call` (the same atoms as one-step `call`-style composites: phrase -> `return atom(x)`);
train_A ⊂ train_B ⊂ train_C and test_in_domain contain no held-out atom and no held-out pair and have
depth 2..max_depth; test_target holds composites with a held-out atom (kind held_out_atom), with a held-out
adjacent pair but no held-out atom (held_out_pair), and of depth target_depth > max_depth without either
(deeper). No function appears twice across train_C, test_in_domain and test_target.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import math
import random
import time
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from labkit import atomic, config, files, tasks
from labkit.compose import (Candidate, Graph, Rule, atom_calls, count_chains, hold_out, make_candidate, test_inputs,
                            walk)
from labkit.tasks import Task
from labkit.validation import DIGEST_CHARS, HARNESS, SETTINGS, validate



@dataclass
class SynthConfig:
    seed: int = 0                  # fixes everything: held-out choices, chains, phrasings, test inputs
    out_dir: str = "data/synth"
    pool_a: int = 30               # train pools, nested: train_A ⊂ train_B ⊂ train_C
    pool_b: int = 300
    pool_c: int = 3000
    n_in_domain: int = 300         # test_in_domain: same distribution as train, never trained on
    n_target: int = 100            # test_target: this many of each kind
    max_depth: int = 3             # train / in-domain chains have depth 2..max_depth
    target_depth: int = 4          # the "deeper" kind: chains of exactly this depth
    n_tests: int = 8               # tests per function (>= 5)
    n_held_out_atoms: int = 4
    n_held_out_pairs: int = 20
    style: Literal["call", "inline"] = "call"
    batch_size: int = 16           # at most this many candidates per sandbox program (fewer when their results
                                   # would not fit the sandbox's stdout tail)
    timeout: float = 10.0          # wall seconds per sandbox program

    PRESETS: typing.ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"pool_a": 4, "pool_b": 8, "pool_c": 16, "n_in_domain": 8, "n_target": 4, "n_tests": 5,
                  "n_held_out_pairs": 6},
        "quick": {},
        "full": {"pool_a": 100, "pool_b": 1000, "pool_c": 10000, "n_in_domain": 1000, "n_target": 300,
                 "max_depth": 4, "target_depth": 5, "n_tests": 10, "n_held_out_atoms": 6,
                 "n_held_out_pairs": 40},
    }


CONFIG = SynthConfig
CLI_ALIASES = {"--seed": "seed", "--out": "out_dir"}


def check_config(cfg: SynthConfig) -> None:
    """Bad sizes fail before any work, with the range that would work."""
    for key in ("pool_a", "pool_b", "pool_c", "n_in_domain", "n_target", "n_held_out_atoms", "n_held_out_pairs"):
        if getattr(cfg, key) < 0:
            raise config.UserError(f"{key} must be >= 0, got {getattr(cfg, key)}")
    if not cfg.pool_a <= cfg.pool_b <= cfg.pool_c:
        raise config.UserError(f"train pools are nested, so pool_a <= pool_b <= pool_c is needed; got "
                               f"{cfg.pool_a}, {cfg.pool_b}, {cfg.pool_c}")
    if cfg.max_depth < 2:
        raise config.UserError(f"max_depth must be >= 2 (a composite chains at least two atoms), got {cfg.max_depth}")
    if cfg.target_depth <= cfg.max_depth:
        raise config.UserError(f"target_depth must exceed max_depth ({cfg.max_depth}) so 'deeper' means deeper "
                               f"than any train function; got {cfg.target_depth}")
    if cfg.n_tests < 5:
        raise config.UserError(f"n_tests must be >= 5, got {cfg.n_tests}")
    if cfg.batch_size < 1 or cfg.timeout <= 0:
        raise config.UserError(f"batch_size must be >= 1 and timeout > 0; got {cfg.batch_size}, {cfg.timeout}")


# --- generation, deduplication and splits -----------------------------------------------------------------

def normalised_source(task: Task) -> str:
    """The function's AST without its name and docstring: equal for the same code written differently."""
    tree = ast.parse(task.prompt + task.solution).body[0]
    tree.name = "f"
    tree.body = [s for s in tree.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return ast.dump(tree, annotate_fields=False)


@dataclass
class Pipeline:
    """Generation state shared by all categories, so nothing accepted anywhere is accepted twice.

    Behavioural duplicates: a candidate is one when it agrees with an accepted function of the same types on
    the candidate's tests, or on that function's tests. Tests come from the first atom's input family, and
    the sandbox reports a digest of each candidate's outputs on every family of its parameter types, so both
    directions are set lookups: `own` holds (family, return type, digest) of each accepted function on its own
    family, `seen` the same on every family.

    Expected outputs: the sandbox vetted the candidate on exactly these inputs (it ends, fast, small output);
    `scope` (the atoms and the harness, run in this process) recomputes them, and they must match the digest."""
    graph: Graph
    cfg: SynthConfig
    rng: random.Random
    inputs: dict[str, list]                                    # atom -> its input family (the test inputs)
    scope: dict
    progress: bool = True
    chains: set = dataclasses.field(default_factory=set)       # every chain drawn so far
    sources: set = dataclasses.field(default_factory=set)      # normalised sources accepted
    own: set = dataclasses.field(default_factory=set)
    seen: set = dataclasses.field(default_factory=set)
    names: set = dataclasses.field(default_factory=set)
    rejections: Counter = dataclasses.field(default_factory=Counter)
    validated: int = 0
    validate_seconds: float = 0.0

    def generate(self, label: str, rule: Rule, n: int) -> list[Task]:
        """n accepted functions for one category. Rounds of candidates are sized by the acceptance rate seen
        so far, so the run stays deterministic (it depends on results, never on timing)."""
        accepted: list[Task] = []
        rate, tried = 0.5, 0
        bar = tqdm(total=n, desc=f"synth {label}", disable=not self.progress, leave=False)
        while len(accepted) < n:
            want = math.ceil((n - len(accepted)) / max(rate, 0.05) * 1.1) + 4
            round_, draws = [], 0
            while len(round_) < want and draws < 50 * want + 1000:
                draws += 1
                chain = walk(self.graph, rule, self.rng)
                if chain is None:
                    continue
                if tuple(chain) in self.chains:
                    self.rejections["repeat"] += 1
                    continue
                self.chains.add(tuple(chain))
                cand = make_candidate(self.graph, chain, self.cfg, self.rng, self.names)
                self.names.add(cand.task.entry_point)
                round_.append(cand)
            tried += len(round_)
            if not round_ or tried > 20 * n + 2000:
                raise config.UserError(
                    f"could make only {len(accepted)} of {n} valid, distinct {label} functions after {tried} "
                    f"candidates: too few new chains pass validation under this rule; lower the sizes, raise "
                    f"max_depth, or hold out fewer atoms/pairs")
            start = time.perf_counter()
            results = validate(self.graph, round_, self.inputs, self.cfg)
            self.validate_seconds += time.perf_counter() - start
            self.validated += len(round_)
            ok = 0
            for cand, (reason, *digests) in zip(round_, results):
                if reason == "ok":
                    reason = self._accept(cand, digests[0], accepted, n)
                    ok += reason in ("ok", "surplus")
                if reason != "ok":
                    self.rejections[reason] += 1
            rate = max(ok / len(round_), 0.01)
            bar.update(len(accepted) - bar.n)
        bar.close()
        return accepted

    def _accept(self, cand: Candidate, digests: str, accepted: list[Task], n: int) -> str:
        task, first, returns = cand.task, cand.chain[0], self.graph.specs[cand.chain[-1]].returns
        source = normalised_source(task)
        if source in self.sources:
            return "duplicate_source"
        by_family = {f: digests[i * DIGEST_CHARS:(i + 1) * DIGEST_CHARS] for i, f in enumerate(cand.families)}
        keys = {(f, returns, d) for f, d in by_family.items() if d != "!" * DIGEST_CHARS}
        own = (first, returns, by_family[first])
        if own in self.seen or keys & self.own:
            return "duplicate_behaviour"
        if len(accepted) == n:
            return "surplus"   # valid, but the round overshot; not kept, so it does not block anything
        exec(task.prompt + task.solution, self.scope)
        outs = [self.scope[task.entry_point](*args) for args in self.inputs[first]]
        if self.scope["_digest"](outs) != own[2]:
            raise RuntimeError(f"{task.entry_point} {cand.chain}: outputs here differ from the sandbox's")
        self.sources.add(source)
        self.own.add(own)
        self.seen |= keys
        task.tests = [{"args": args, "expected": json.loads(json.dumps(out))}
                      for args, out in zip(self.inputs[first], outs)]
        accepted.append(task)
        return "ok"


def synthesize(cfg: SynthConfig, progress: bool = True) -> dict:
    """Make every split and write them to cfg.out_dir; returns the manifest (also written as manifest.json)."""
    check_config(cfg)
    t0 = time.perf_counter()
    specs = atomic.library(cfg.seed, cfg.n_tests)
    graph = Graph.build(specs)
    rng = random.Random(cfg.seed)
    held_atoms, held_pairs = hold_out(graph, cfg.n_held_out_atoms, cfg.n_held_out_pairs, rng)
    for kind, held in (("atom", held_atoms), ("pair", held_pairs)):
        if cfg.n_target and not held:
            raise config.UserError(f"n_held_out_{kind}s=0 leaves nothing for the held_out_{kind} kind of test_target; "
                                   f"hold out at least one {kind} or set n_target=0")
    train_depths = tuple(range(2, cfg.max_depth + 1))
    rules = {
        "in_domain": (Rule(train_depths, held_atoms, held_pairs), cfg.n_in_domain + cfg.pool_c),
        "held_out_atom": (Rule(train_depths, banned_pairs=held_pairs, need_atoms=held_atoms), cfg.n_target),
        "held_out_pair": (Rule(train_depths, banned_atoms=held_atoms, need_pairs=held_pairs), cfg.n_target),
        "deeper": (Rule((cfg.target_depth,), held_atoms, held_pairs), cfg.n_target),
    }
    capacity = {label: count_chains(graph, rule) for label, (rule, _) in rules.items()}
    for label, (rule, n) in rules.items():
        if n > capacity[label]:
            raise config.UserError(
                f"asked for {n} {label} functions, but the composition graph of {len(specs)} atoms allows at most "
                f"{capacity[label]} distinct chains of depth {'/'.join(map(str, rule.depths))} there (before "
                f"validation rejects some); lower the sizes, change max_depth/target_depth, or the held-out counts")

    inputs = {s.name: test_inputs(s, cfg.seed, cfg.n_tests) for s in specs}
    scope: dict = {}
    exec("\n\n".join([s.source for s in specs] + [SETTINGS, HARNESS]), scope)
    pipe = Pipeline(graph, cfg, rng, inputs, scope, progress)
    made = {label: pipe.generate(label, rule, n) for label, (rule, n) in rules.items()}
    in_domain = made.pop("in_domain")
    # test_in_domain first: it then stays the same when only the pool sizes change.
    train_c = in_domain[cfg.n_in_domain:]
    splits = {
        "atom_base": tasks.atom_base(specs),
        "atom_call": atom_calls(graph),
        "train_A": train_c[:cfg.pool_a], "train_B": train_c[:cfg.pool_b], "train_C": train_c,
        "test_in_domain": in_domain[:cfg.n_in_domain],
        "test_target": [dataclasses.replace(t, kind=kind) for kind in tasks.KINDS for t in made[kind]],
    }
    manifest = {
        "seed": cfg.seed,
        "config": {k: v for k, v in config.to_dict(cfg).items() if k != "out_dir"},  # where is not what
        "library": {"atoms": len(specs), "topics": dict(Counter(s.topic for s in specs))},
        "held_out_atoms": sorted(held_atoms),
        "held_out_pairs": sorted(map(list, held_pairs)),
        "capacity": capacity,
        "candidates_validated": pipe.validated,
        "rejections": dict(sorted(pipe.rejections.items())),
        "counts": {name: len(records) for name, records in splits.items()},
        "sha256": write_splits(Path(cfg.out_dir), splits),
    }
    files.write_json(Path(cfg.out_dir) / "manifest.json", manifest)
    manifest["timing"] = {"seconds": time.perf_counter() - t0, "validate_seconds": pipe.validate_seconds}
    return manifest


# --- files ------------------------------------------------------------------------------------------------

def write_splits(out_dir: Path, splits: dict[str, list[Task]]) -> dict[str, str]:
    """One JSONL per split (sorted keys: same seed, same bytes), each via a temp name and a rename. An old
    manifest goes first: a directory with a manifest is a complete one (tasks.load_split relies on it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    digests = {}
    for name, records in splits.items():
        text = "".join(json.dumps(dataclasses.replace(t, split=name).to_json(), sort_keys=True) + "\n"
                       for t in records)
        path = out_dir / f"{name}.jsonl"
        files.write_atomic(path, text)
        digests[path.name] = hashlib.sha256(text.encode()).hexdigest()
    return digests


def run_cli(cfg: SynthConfig, args) -> int:
    manifest = synthesize(cfg)
    seconds = manifest["timing"]["seconds"]
    print(f"wrote {cfg.out_dir} in {seconds:.1f} s ({manifest['library']['atoms']} atoms, "
          f"{manifest['candidates_validated']} candidates validated, "
          f"{manifest['candidates_validated'] / max(manifest['timing']['validate_seconds'], 1e-9):.0f}/s)")
    for name, n in manifest["counts"].items():
        print(f"  {name:15s} {n:6d}")
    print("rejections: " + ", ".join(f"{k} {v}" for k, v in manifest["rejections"].items()))
    print(f"held out: atoms {', '.join(manifest['held_out_atoms'])}; {len(manifest['held_out_pairs'])} pairs")
    return 0


# --- looking at a data directory (notebook 02; its figures and browser: labkit.viz.data) ----------------------

def frame(out_dir: str | Path):
    """(manifest, one row per record of every split) with the atoms' topics, for the figures of labkit.viz.data."""
    import pandas as pd
    manifest = json.loads((Path(out_dir) / "manifest.json").read_text())
    topic = {s.name: s.topic for s in atomic.library(manifest["seed"], manifest["config"]["n_tests"])}
    rows = [dict(t.to_json(), topics=[topic[a] for a in t.atoms]) for s in tasks.SPLITS
            for t in tasks.load_split(out_dir, s)]
    return manifest, pd.DataFrame(rows)


def funnel(manifest) -> dict[str, int]:
    """Candidates at each stage: drawn, new compositions, ran cleanly, not trivial, unique, kept."""
    rej = Counter(manifest["rejections"])
    stages = {"drawn": manifest["candidates_validated"] + rej["repeat"],
              "new composition": manifest["candidates_validated"]}
    broken = sum(v for k, v in rej.items() if k in ("raises", "returns_none", "not_json", "too_large", "big_int",
                                                      "slow") or k.startswith("sandbox_"))
    stages["runs cleanly"] = stages["new composition"] - broken
    stages["not constant or redundant"] = stages["runs cleanly"] - rej["constant"] - rej["redundant"]
    stages["unique"] = stages["not constant or redundant"] - rej["duplicate_source"] - rej["duplicate_behaviour"]
    stages["kept"] = stages["unique"] - rej["surplus"]
    return stages
