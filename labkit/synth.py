"""Synthetic composite functions and the data splits that make generalisation measurable (DESIGN §2.1, §3).

    python -m labkit synth --preset quick --seed 0 --out data/quick

The pipeline, top to bottom in this file:
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
phrasing; train_A ⊂ train_B ⊂ train_C and test_in_domain contain no held-out atom and no held-out pair and have
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
import re
import textwrap
import time
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from labkit import atomic, config, files, sandbox, tasks
from labkit.atomic import AtomicSpec
from labkit.tasks import Task



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


# --- 1. the composition graph and what the target domain reserves ----------------------------------------------

@dataclass(frozen=True)
class Graph:
    specs: dict[str, AtomicSpec]
    succ: dict[str, list[str]]     # f -> one-argument atoms that accept f's return type
    pred: dict[str, list[str]]     # g -> atoms whose return type g accepts (g takes one argument)

    @classmethod
    def build(cls, specs: list[AtomicSpec]) -> "Graph":
        succ = {s.name: [] for s in specs}
        pred = {s.name: [] for s in specs}
        for f, g in sorted(atomic.composition_edges(specs)):
            succ[f].append(g)
            pred[g].append(f)
        return cls({s.name: s for s in specs}, succ, pred)

    def one_arg(self, name: str) -> bool:
        return len(self.specs[name].params) == 1


@dataclass(frozen=True)
class Rule:
    """Which chains a category may hold."""
    depths: tuple[int, ...]
    banned_atoms: frozenset = frozenset()
    banned_pairs: frozenset = frozenset()
    need_atoms: frozenset = frozenset()    # at least one of these must appear...
    need_pairs: frozenset = frozenset()    # ...or at least one of these pairs, adjacent

    def allows(self, chain: list[str]) -> bool:
        pairs = set(zip(chain, chain[1:]))
        return (len(chain) in self.depths and not self.banned_atoms & set(chain) and not self.banned_pairs & pairs
                and (not self.need_atoms or bool(self.need_atoms & set(chain)))
                and (not self.need_pairs or bool(self.need_pairs & pairs)))


def hold_out(graph: Graph, n_atoms: int, n_pairs: int, rng: random.Random):
    """Held-out atoms among one-argument atoms with >= 2 ways in and out (so composites around them exist),
    then held-out pairs among edges between the remaining atoms whose ends keep other neighbours."""
    connected = sorted(n for n in graph.specs if graph.one_arg(n)
                       and len(graph.pred[n]) >= 2 and len(graph.succ[n]) >= 2)
    if n_atoms > len(connected):
        raise config.UserError(f"n_held_out_atoms={n_atoms} but only {len(connected)} atoms are connected enough "
                               f"to hold out (>= 2 predecessors and successors); use at most {len(connected)}")
    atoms = frozenset(rng.sample(connected, n_atoms))
    edges = sorted((f, g) for f in graph.specs for g in graph.succ[f]
                   if f != g and not {f, g} & atoms and len(graph.succ[f]) >= 2 and len(graph.pred[g]) >= 2)
    if n_pairs > len(edges):
        raise config.UserError(f"n_held_out_pairs={n_pairs} but only {len(edges)} adjacent pairs can be held out; "
                               f"use at most {len(edges)}")
    return atoms, frozenset(rng.sample(edges, n_pairs))


def count_chains(graph: Graph, rule: Rule) -> int:
    """How many distinct chains a rule allows (before validation): dynamic programming over the graph,
    with "must contain" constraints by inclusion-exclusion (all chains minus those avoiding the need)."""
    def avoiding(banned_atoms, banned_pairs) -> int:
        ends = {n: 1 for n in graph.specs if n not in banned_atoms}
        total = ends_total = 0
        for depth in range(1, max(rule.depths) + 1):
            if depth > 1:
                ends = {g: sum(ends.get(f, 0) for f in graph.pred[g] if (f, g) not in banned_pairs)
                        for g in graph.specs if g not in banned_atoms and graph.one_arg(g)}
            ends_total = sum(ends.values())
            total += ends_total if depth in rule.depths else 0
        return total
    n = avoiding(rule.banned_atoms, rule.banned_pairs)
    if rule.need_atoms:
        n -= avoiding(rule.banned_atoms | rule.need_atoms, rule.banned_pairs)
    if rule.need_pairs:
        n -= avoiding(rule.banned_atoms, rule.banned_pairs | rule.need_pairs)
    return n


def walk(graph: Graph, rule: Rule, rng: random.Random) -> list[str] | None:
    """One random chain the rule allows, or None at a dead end. A needed atom or pair is placed first, at a
    random position, and the chain grows backwards and forwards from it along allowed edges."""
    depth = rng.choice(rule.depths)
    if rule.need_atoms:
        segment = [rng.choice(sorted(rule.need_atoms))]
    elif rule.need_pairs:
        segment = list(rng.choice(sorted(rule.need_pairs)))
    else:
        segment = [rng.choice(sorted(n for n in graph.specs if n not in rule.banned_atoms))]
    if depth < len(segment):
        return None
    # Only the first step may take several arguments; a segment that starts with one sits at position 0.
    start = rng.randint(0, depth - len(segment)) if graph.one_arg(segment[0]) else 0
    chain = segment
    for position in range(start - 1, -1, -1):
        options = [f for f in graph.pred[chain[0]] if f not in rule.banned_atoms
                   and (f, chain[0]) not in rule.banned_pairs and (position == 0 or graph.one_arg(f))]
        if not options:
            return None
        chain = [rng.choice(options)] + chain
    while len(chain) < depth:
        options = [g for g in graph.succ[chain[-1]] if g not in rule.banned_atoms
                   and (chain[-1], g) not in rule.banned_pairs]
        if not options:
            return None
        chain.append(rng.choice(options))
    return chain if rule.allows(chain) else None


# --- 2. prompts and responses ------------------------------------------------------------------------------

def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# "the list {xs}" with "the result" filled in would read "the list the result": the noun goes.
_NOUN_BEFORE_PARAM = re.compile(r"\bthe (?:list|dictionary|dict|grid|matrix|text|string|sentence|number|integer) "
                                r"(?=\{\w+\})")


def describe(graph: Graph, chain: list[str], rng: random.Random) -> str:
    """An English description of the chain: one phrasing per atom, joined by one of several connectives."""
    phrases = []
    for i, name in enumerate(chain):
        spec = graph.specs[name]
        template = rng.choice(spec.prompts)
        if i == 0:
            fill = {p: p for p, _ in spec.params}
        else:
            template = _NOUN_BEFORE_PARAM.sub("", template)
            fill = {spec.params[0][0]: rng.choice(("the result", "the result", "it"))}
        phrases.append(template.format(**fill))
    first, rest = phrases[0], phrases[1:]
    form = rng.randrange(4)
    if form == 0:     # "Sort xs in ascending order, then sum the numbers in it."
        return _cap(", then ".join(phrases)) + "."
    if form == 1:     # "First sort xs ...; next ...; finally sum the numbers in the result."
        middle = [f"next {p}" for p in rest[:-1]]
        return _cap("; ".join([f"first {first}"] + middle + [f"finally {rest[-1]}"])) + "."
    if form == 2:     # "Sort xs in ascending order. Then sum the numbers in the result. Return that."
        return " ".join([_cap(first) + "."] + [f"Then {p}." for p in rest] + ["Return the result."])
    # "Take the result of sorting ..." needs gerunds the phrasings don't have; this form keeps them imperative.
    return f"Compute the following in order: {first}; " + "; ".join(f"{p}" for p in rest) + "."


def call_body(graph: Graph, chain: list[str]) -> str:
    """One line per step: `a = f(x)`, `b = g(a)`, `return h(b)`."""
    params = [p for p, _ in graph.specs[chain[0]].params]
    names = [v for v in "abcdeghkmpqrtuvwyz" if v not in params]
    lines, arg = [], ", ".join(params)
    for i, name in enumerate(chain):
        if i == len(chain) - 1:
            lines.append(f"    return {name}({arg})")
        else:
            lines.append(f"    {names[i]} = {name}({arg})")
            arg = names[i]
    return "\n".join(lines) + "\n"


def inline_body(graph: Graph, chain: list[str]) -> str:
    """Self-contained: each atom's source as an inner function, then the same calls."""
    inner = [textwrap.indent(graph.specs[n].source, "    ") for n in dict.fromkeys(chain)]
    return "".join(inner) + call_body(graph, chain)


def context_for(graph: Graph, chain: list[str]) -> str:
    """The atoms' sources, placed before the prompt in `call` style so the program runs."""
    return "\n\n".join(graph.specs[n].source for n in dict.fromkeys(chain)) + "\n\n"


def entry_name(chain: list[str], taken: set[str]) -> str:
    """`task_<hash of the chain>`: short, the same for the same chain in every run, and it names no atom (a
    readable name would let a model copy a held-out atom's name instead of reading the description)."""
    digest = hashlib.sha1("|".join(chain).encode()).hexdigest()
    width = 8
    while f"task_{digest[:width]}" in taken:
        width += 4
    return f"task_{digest[:width]}"


def test_inputs(spec: AtomicSpec, seed: int, n: int) -> list[list]:
    """n distinct argument lists from the atom's generator. Every composite starting with this atom gets the
    same inputs (its "input family"), which is what makes behavioural duplicates cheap to find."""
    rng = random.Random(f"{seed}:synth:{spec.name}")
    out, seen = [], set()
    for _ in range(20 * n):
        args = json.loads(json.dumps(list(spec.generate(rng))))
        key = json.dumps(args, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(args)
            if len(out) == n:
                break
    return out


def shorter_chains(graph: Graph, chain: list[str]) -> list[list[str]]:
    """The chain with one run of consecutive steps removed, wherever the remaining chain has the same
    signature (the removed run maps a single type to itself). Removing everything leaves the identity."""
    out = []
    for i in range(len(chain)):
        first = graph.specs[chain[i]]
        if len(first.params) != 1:
            continue
        for j in range(i, len(chain)):
            if first.params[0][1] == graph.specs[chain[j]].returns:
                out.append(chain[:i] + chain[j + 1:])
    return out


@dataclass
class Candidate:
    chain: list[str]
    task: Task
    families: list[str]          # atoms whose test inputs this candidate can take (its own first atom included)
    shorter: list[list[str]]


def make_candidate(graph: Graph, chain: list[str], cfg: SynthConfig, rng: random.Random, taken: set[str]):
    first = graph.specs[chain[0]]
    kinds = [t for _, t in first.params]
    families = [n for n, s in graph.specs.items() if [t for _, t in s.params] == kinds]
    name = entry_name(chain, taken)
    params = ", ".join(f"{p}: {t}" for p, t in first.params)
    header = f"def {name}({params}) -> {graph.specs[chain[-1]].returns}:"
    body = call_body(graph, chain) if cfg.style == "call" else inline_body(graph, chain)
    task = Task(id=name, split="", prompt=tasks.format_prompt(header, describe(graph, chain, rng)),
                entry_point=name, solution=body, tests=[], atoms=list(chain), depth=len(chain),
                context=context_for(graph, chain) if cfg.style == "call" else "")
    return Candidate(chain, task, sorted(families), shorter_chains(graph, chain))


# --- 3. validation in the sandbox --------------------------------------------------------------------------

MARK = "@@synth-results@@"
SLOW_SECONDS = 1.0        # CPU seconds per candidate inside a batch program; real candidates take microseconds
MAX_OUTPUT_CHARS = 2000   # outputs of all tests as JSON: bigger values make poor prompts and slow tests
DIGEST_CHARS = 8          # one behaviour digest (48 bits, base64)

# Runs inside the sandbox after the atoms and the candidates' definitions; it prints one line of results.
# The sandbox keeps only the last 2,000 characters of stdout, so a candidate reports a reason and, when it is
# good, one digest per input family (its behaviour on each, for the duplicate check) -- not its outputs: the
# caller recomputes those from the same (trusted, now vetted) code and checks them against the digest.
# A candidate's CPU time is capped with ITIMER_VIRTUAL: the sandbox's own wall limit uses ITIMER_REAL.
HARNESS = """
import base64, hashlib, json, signal

class _Slow(BaseException):   # BaseException: a candidate's own `except Exception` must not swallow it
    pass

def _on_cpu_limit(signum, frame):
    raise _Slow()

def _digest(value):
    raw = hashlib.sha1(json.dumps(value, sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(raw[:6]).decode()

def _int64(v):   # JSON readers (pandas, pyarrow) hold integers as int64
    if isinstance(v, list):
        return all(_int64(x) for x in v)
    if isinstance(v, dict):
        return all(_int64(x) for x in v.values())
    return not isinstance(v, int) or -2**63 <= v < 2**63

def _apply(names, args):
    value = globals()[names[0]](*args) if names else args[0]
    for name in names[1:]:
        value = globals()[name](value)
    return value

def _check(entry, first, families, shorter):
    fn, inputs = globals()[entry], INPUTS[first]
    try:
        outs = [fn(*args) for args in inputs]
    except Exception:
        return ["raises"]
    if any(o is None for o in outs):
        return ["returns_none"]
    try:
        text = json.dumps(outs, allow_nan=False)   # the tests store outputs as JSON; nan != nan anyway
    except (TypeError, ValueError):
        return ["not_json"]
    if json.loads(text) != outs:                   # e.g. tuples or int dict keys would not survive the trip
        return ["not_json"]
    if len(text) > MAX_OUTPUT_CHARS:
        return ["too_large"]
    if not _int64(outs):
        return ["big_int"]
    if len({json.dumps(o, sort_keys=True) for o in outs}) == 1:
        return ["constant"]
    for names in shorter:
        try:
            if [_apply(names, args) for args in inputs] == outs:
                return ["redundant"]
        except Exception:
            pass
    digests = ""
    for name in families:
        try:
            digests += _digest([fn(*args) for args in INPUTS[name]])
        except Exception:
            digests += "!" * DIGEST_CHARS          # not in the base64 alphabet: "no behaviour here"
    return ["ok", digests]

def _run(cands):
    signal.signal(signal.SIGVTALRM, _on_cpu_limit)
    results = []
    for entry, first, families, shorter in cands:
        signal.setitimer(signal.ITIMER_VIRTUAL, SLOW_SECONDS)
        try:
            results.append(_check(entry, first, families, shorter))
        except _Slow:
            results.append(["slow"])
        finally:
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)
    print(MARK + json.dumps(results, separators=(",", ":")))
"""
SETTINGS = f"MARK = {MARK!r}\nSLOW_SECONDS = {SLOW_SECONDS}\nMAX_OUTPUT_CHARS = {MAX_OUTPUT_CHARS}\n" \
           f"DIGEST_CHARS = {DIGEST_CHARS}\n"


def validation_program(graph: Graph, batch: list[Candidate], inputs: dict[str, list]) -> str:
    atoms = sorted({n for c in batch for n in c.chain})
    families = sorted({n for c in batch for n in c.families})
    cands = [[c.task.entry_point, c.chain[0], c.families, c.shorter] for c in batch]
    return "\n\n".join(
        [graph.specs[n].source for n in atoms]
        + [c.task.prompt + c.task.solution for c in batch]
        + [HARNESS, SETTINGS + f"INPUTS = json.loads({json.dumps(json.dumps({n: inputs[n] for n in families}))})",
           f"_run(json.loads({json.dumps(json.dumps(cands))}))\n"])


def pack(candidates: list[Candidate], max_size: int) -> list[list[int]]:
    """Batches of candidate indices whose result line fits the sandbox's stdout tail (a good candidate
    reports one digest per input family), at most max_size each."""
    budget = sandbox.TAIL - len(MARK) - 10
    batches, size = [[]], 0
    for i, c in enumerate(candidates):
        need = 20 + DIGEST_CHARS * len(c.families)
        if batches[-1] and (size + need > budget or len(batches[-1]) == max_size):
            batches.append([])
            size = 0
        batches[-1].append(i)
        size += need
    return batches if batches[0] else []


def _parse(stdout: str) -> list | None:
    for line in stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    return None


def validate(graph: Graph, candidates: list[Candidate], inputs: dict[str, list], cfg: SynthConfig) -> list[list]:
    """[reason] or ["ok", digests] per candidate. A batch whose program fails as a whole is split in halves
    until the failing candidate stands alone; it is then rejected with the sandbox's status."""
    results: list = [None] * len(candidates)
    pending = pack(candidates, cfg.batch_size)
    while pending:
        programs = [validation_program(graph, [candidates[i] for i in batch], inputs) for batch in pending]
        verdicts = sandbox.run_many(programs, timeout=cfg.timeout)
        retry = []
        for batch, verdict in zip(pending, verdicts):
            if verdict.status in ("syntax_error", "runtime_error"):
                # The harness catches every candidate's exceptions: this is a bug here, not a bad candidate.
                raise RuntimeError(f"synth validation program failed: {verdict.error_type}\n{verdict.stderr}")
            parsed = _parse(verdict.stdout) if verdict.status == "pass" else None
            if parsed is not None and len(parsed) == len(batch):
                for i, result in zip(batch, parsed):
                    results[i] = result
            elif len(batch) == 1:
                results[batch[0]] = [f"sandbox_{verdict.status}"]
            else:
                retry += [batch[:len(batch) // 2], batch[len(batch) // 2:]]
        pending = retry
    return results


# --- 4. generation, deduplication and splits -----------------------------------------------------------------

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


# --- 5. files ------------------------------------------------------------------------------------------------

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


# --- 6. looking at a data directory (notebook 02; its figures and browser: labkit.viz.data) ----------------------

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
    stages = {"drawn": manifest["candidates_validated"] + rej["repeat"], "new composition": manifest["candidates_validated"]}
    broken = sum(v for k, v in rej.items() if k in ("raises", "returns_none", "not_json", "too_large", "big_int",
                                                      "slow") or k.startswith("sandbox_"))
    stages["runs cleanly"] = stages["new composition"] - broken
    stages["not constant or redundant"] = stages["runs cleanly"] - rej["constant"] - rej["redundant"]
    stages["unique"] = stages["not constant or redundant"] - rej["duplicate_source"] - rej["duplicate_behaviour"]
    stages["kept"] = stages["unique"] - rej["surplus"]
    return stages
