"""The atomic library: 100 basic Python functions, each a small task with prompts, a typed signature and tests.

The functions themselves are written as ordinary Python in `atomic_functions.py`, each under an `@atom(...)`
decorator that records its topic, prompt phrasings and input generator in `atomic_functions.FUNCTIONS`.
This module turns them into `AtomicSpec` records: the reference source text (decorator stripped, so it is
self-contained), the signature from the annotations, and tests made by running the reference on seeded inputs.

Prompt phrasings are lowercase imperative verb phrases with `{param}` placeholders, e.g.
"sum the decimal digits of {n}". `spec.describe()` renders one as a sentence ("Sum the decimal digits of n.");
the synthesis stage fills the placeholder with "the result" to chain phrasings into one description.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import random
import textwrap
import typing
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from labkit import atomic_functions, config, sandbox

# The type vocabulary. Composition (synth.py) links f -> g when f's return type is g's first parameter type.
TYPES = ("int", "float", "str", "bool", "list[int]", "list[str]", "dict[str, int]", "list[list[int]]")

TOPICS = ("math", "strings", "lists", "sorting_searching", "dicts_counting", "sets", "bits", "parsing",
          "grids", "recursion_combinatorics")


@dataclass(frozen=True)
class AtomicSpec:
    name: str
    topic: str
    prompts: tuple[str, ...]            # phrasings: imperative verb phrases with {param} placeholders
    params: tuple[tuple[str, str], ...]  # ((name, type), ...)
    returns: str                        # a type from TYPES
    source: str                         # `def name(...) -> ...:` block, stdlib only, self-contained
    tests: tuple[dict, ...]             # ({"args": [...], "expected": ...}, ...), JSON-ready
    generate: Callable[[random.Random], tuple] = field(compare=False, repr=False)

    @property
    def signature(self) -> str:
        args = ", ".join(f"{n}: {t}" for n, t in self.params)
        return f"({args}) -> {self.returns}"

    @property
    def header(self) -> str:
        """The `def` line, e.g. `def digit_sum(n: int) -> int:`."""
        return f"def {self.name}{self.signature}:"

    def describe(self, phrasing: int = 0) -> str:
        """One phrasing as an English sentence naming the parameters."""
        text = self.prompts[phrasing].format(**{n: n for n, _ in self.params})
        return text[0].upper() + text[1:] + "."

    def inputs(self, seed: int, n: int) -> list[tuple]:
        """`n` argument tuples from the generator, deterministic in (seed, name)."""
        rng = random.Random(f"{seed}:{self.name}")
        return [self.generate(rng) for _ in range(n)]

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("generate")
        d["signature"] = self.signature
        return d


def _type_name(tp) -> str:
    name = tp.__name__ if isinstance(tp, type) else str(tp)
    return name.replace("typing.", "")


def _source(fn) -> str:
    lines = inspect.getsource(fn).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("def "))
    return textwrap.dedent("\n".join(lines[start:])).rstrip() + "\n"


def _jsonable(value):
    return json.loads(json.dumps(value))


def _make_spec(fn, topic, prompts, generate, seed: int, n_tests: int) -> AtomicSpec:
    hints = typing.get_type_hints(fn)
    params = tuple((p, _type_name(hints[p])) for p in inspect.signature(fn).parameters)
    returns = _type_name(hints["return"])
    probe = AtomicSpec(fn.__name__, topic, tuple(prompts), params, returns, _source(fn), (), generate)
    tests, seen = [], set()
    # Draw more inputs than needed and keep distinct ones, so the tests are not five copies of one edge case.
    for args in probe.inputs(seed, 4 * n_tests):
        key = json.dumps(_jsonable(list(args)), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        tests.append({"args": _jsonable(list(args)), "expected": _jsonable(fn(*args))})
        if len(tests) == n_tests:
            break
    return dataclasses.replace(probe, tests=tuple(tests))


@functools.lru_cache(maxsize=8)
def _library(seed: int, n_tests: int) -> tuple[AtomicSpec, ...]:
    return tuple(_make_spec(*entry, seed=seed, n_tests=n_tests) for entry in atomic_functions.FUNCTIONS)


def library(seed: int = 0, n_tests: int = 8) -> list[AtomicSpec]:
    """All atomic specs, in definition order. Tests are produced by running each reference on seeded inputs."""
    return list(_library(seed, n_tests))


def by_name(seed: int = 0, n_tests: int = 8) -> dict[str, AtomicSpec]:
    return {s.name: s for s in library(seed, n_tests)}


def composition_edges(specs: list[AtomicSpec]) -> list[tuple[str, str]]:
    """(f, g) pairs where g can follow f: f's return type is g's first parameter type, and g takes one arg."""
    return [(f.name, g.name) for f in specs for g in specs
            if len(g.params) == 1 and g.params[0][1] == f.returns]


# --- the check: every reference, as source text, reproduces its tests in a separate process -----------------

def check_program(spec: AtomicSpec) -> str:
    """A standalone program asserting the spec's tests against its source text."""
    lines = [spec.source, "import json", f"TESTS = json.loads({json.dumps(json.dumps(list(spec.tests)))})",
             "for t in TESTS:",
             f"    got = json.loads(json.dumps({spec.name}(*t['args'])))",
             "    assert got == t['expected'], (t, got)"]
    return "\n".join(lines) + "\n"


def check_references(specs: list[AtomicSpec], timeout: float = 10.0) -> dict[str, str]:
    """Run every spec's check program in isolation; returns {name: status}."""
    verdicts = sandbox.run_many([check_program(s) for s in specs], timeout=timeout)
    return {s.name: v.status for s, v in zip(specs, verdicts)}


# --- CLI ----------------------------------------------------------------------------------------------------

@dataclass
class AtomicConfig:
    seed: int = 0          # seeds the input generators that produce the tests
    n_tests: int = 8       # tests per function (at least 5)
    timeout: float = 10.0  # seconds per check program

    PRESETS: typing.ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"n_tests": 5}, "quick": {}, "full": {"n_tests": 20}}


CONFIG = AtomicConfig


def add_arguments(parser) -> None:
    parser.add_argument("--check", action="store_true", help="run every reference against its tests, isolated")
    parser.add_argument("--list", action="store_true", help="print a table of the functions by topic")
    parser.add_argument("--json", action="store_true", help="print every spec as JSON")


def run_cli(cfg: AtomicConfig, args) -> int:
    if cfg.n_tests < 5:
        raise config.ConfigError(f"n_tests must be at least 5, got {cfg.n_tests}")
    specs = library(cfg.seed, cfg.n_tests)
    if args.json:
        print(json.dumps([s.to_json() for s in specs], indent=1))
    if args.list:
        for topic in TOPICS:
            members = [s for s in specs if s.topic == topic]
            print(f"\n{topic} ({len(members)})")
            for s in members:
                print(f"  {s.name:28s} {s.signature:45s} {s.describe()}")
    if args.check or not (args.json or args.list):
        status = check_references(specs, cfg.timeout)
        counts = Counter(status.values())
        for name, st in status.items():
            if st != "pass":
                print(f"FAIL {name}: {st}")
        n_pass = counts.get("pass", 0)
        print(f"atomic library: {n_pass} of {len(specs)} references pass their tests "
              f"({len({s.topic for s in specs})} topics, {sum(len(s.tests) for s in specs)} tests)")
        return 0 if n_pass == len(specs) else 1
    return 0
