"""Invariants of the atomic library: size, topics, prompts, types, tests, generators, self-contained sources,
the composition graph synthesis relies on, and the `labkit atomic` command line."""
import ast
import json
import string
import subprocess
import sys
import time
from collections import Counter

import pytest

from labkit import atomic

SPECS = atomic.library()
MAIN_TYPES = ("int", "str", "list[int]", "list[str]")


def _has_type(value, tp: str) -> bool:
    """Does a JSON value belong to a type of the vocabulary?"""
    if tp == "bool":
        return isinstance(value, bool)
    if tp == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if tp == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if tp == "str":
        return isinstance(value, str)
    if tp.startswith("list["):
        return isinstance(value, list) and all(_has_type(v, tp[5:-1]) for v in value)
    if tp == "dict[str, int]":
        return isinstance(value, dict) and all(_has_type(v, "int") for v in value.values())
    raise AssertionError(f"unknown type {tp}")


def _compile(spec):
    namespace = {}
    exec(compile(spec.source, f"<{spec.name}>", "exec"), namespace)
    return namespace[spec.name]


def test_exactly_100_functions_with_unique_names():
    names = [s.name for s in SPECS]
    assert len(names) == 100
    assert len(set(names)) == 100, [n for n, k in Counter(names).items() if k > 1]
    assert all(n.isidentifier() and n == n.lower() for n in names)


def test_topics_cover_the_design_list():
    counts = Counter(s.topic for s in SPECS)
    assert set(counts) <= set(atomic.TOPICS)
    assert len(counts) >= 10
    assert min(counts.values()) >= 5, counts


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_prompts_are_distinct_phrasings_naming_every_parameter(spec):
    assert len(set(spec.prompts)) >= 3
    params = {n for n, _ in spec.params}
    for p in spec.prompts:
        fields = {f for _, f, _, _ in string.Formatter().parse(p) if f is not None}
        assert fields == params, (p, params)
        assert p[0].islower() and not p.endswith("."), p
    assert len({spec.describe(i) for i in range(len(spec.prompts))}) == len(spec.prompts)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_signature_uses_the_type_vocabulary_and_tests_match_it(spec):
    assert spec.returns in atomic.TYPES
    assert all(t in atomic.TYPES for _, t in spec.params)
    assert spec.header == f"def {spec.name}{spec.signature}:"
    for t in spec.tests:
        assert len(t["args"]) == len(spec.params)
        assert all(_has_type(a, tp) for a, (_, tp) in zip(t["args"], spec.params)), t
        assert _has_type(t["expected"], spec.returns), t


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_tests_are_distinct_and_not_constant(spec):
    assert len(spec.tests) >= 5
    assert len({json.dumps(t["args"]) for t in spec.tests}) == len(spec.tests)
    assert len({json.dumps(t["expected"], sort_keys=True) for t in spec.tests}) >= 2, "every test expects the same"
    assert all(len(json.dumps(t)) < 2000 for t in spec.tests), "outputs should stay small"


def test_generators_are_deterministic_per_seed_and_vary_across_seeds():
    differ = 0
    for spec in SPECS:
        first = spec.inputs(seed=3, n=20)
        assert first == spec.inputs(seed=3, n=20), spec.name
        assert len({json.dumps(a) for a in first}) >= 5, f"{spec.name}: generator gives too few distinct inputs"
        differ += first != spec.inputs(seed=4, n=20)
    assert differ == len(SPECS)
    assert [s.tests for s in atomic.library(seed=0)] == [s.tests for s in SPECS]
    assert [s.tests for s in atomic.library(seed=1)] != [s.tests for s in SPECS]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_source_is_self_contained_and_reproduces_its_tests(spec):
    tree = ast.parse(spec.source)
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.FunctionDef) and tree.body[0].name == spec.name
    assert spec.source.startswith(spec.header + "\n")
    assert not tree.body[0].decorator_list
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for a in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])}
    assert imported <= sys.stdlib_module_names, imported
    assert len(spec.source.splitlines()) <= 25
    fn = _compile(spec)  # a fresh namespace: a module-level helper or global would raise NameError here
    for t in spec.tests:
        assert json.loads(json.dumps(fn(*t["args"]))) == t["expected"], t


def test_every_reference_passes_its_tests_in_the_sandbox():
    status = atomic.check_references(SPECS)
    assert Counter(status.values()) == {"pass": 100}, {n: s for n, s in status.items() if s != "pass"}


def test_composition_graph_is_rich_and_connected_for_the_main_types():
    single = [s for s in SPECS if len(s.params) == 1]
    assert len(single) >= 80
    for tp in MAIN_TYPES:
        consumers = [s.name for s in single if s.params[0][1] == tp]
        producers = [s.name for s in SPECS if s.returns == tp]
        assert len(consumers) >= 8 and len(producers) >= 5, (tp, consumers, producers)
    assert len(atomic.composition_edges(SPECS)) >= 1000
    # Strongly connected: from every main type a chain of one-argument functions reaches every other one.
    step = {(s.params[0][1], s.returns) for s in single if s.returns in MAIN_TYPES and s.params[0][1] in MAIN_TYPES}
    for start in MAIN_TYPES:
        reached, frontier = {start}, [start]
        while frontier:
            a = frontier.pop()
            for x, b in step:
                if x == a and b not in reached:
                    reached.add(b)
                    frontier.append(b)
        assert reached == set(MAIN_TYPES), (start, reached)


def test_references_stay_quick_on_whatever_a_predecessor_returns():
    """Synthesis feeds g the outputs of any f before it: g must answer quickly, and nearly always without error."""
    fns = {s.name: _compile(s) for s in SPECS}
    outputs = {s.name: [t["expected"] for t in s.tests] for s in SPECS}
    calls, failures = 0, Counter()
    for f, g in atomic.composition_edges(SPECS):
        for value in outputs[f]:
            start = time.perf_counter()
            try:
                json.dumps(fns[g](value))
            except ValueError:  # allowed: e.g. trial division refuses huge numbers
                failures[g] += 1
            assert time.perf_counter() - start < 0.5, (f, g, value)
            calls += 1
    assert sum(failures.values()) < 0.02 * calls, failures


def test_card_browser_and_composition_figure():
    from labkit.viz.data import atom_browser, card, composition_figure

    spec = atomic.by_name()["gcd"]
    text = card(spec)
    assert spec.source in text and spec.describe(2) in text and "gcd(" in text.split("tests:")[1]
    ui = atom_browser(SPECS)
    topic, name = ui.children[0].children
    topic.value = "bits"
    assert name.value == "count_set_bits" and set(name.options) == {s.name for s in SPECS if s.topic == "bits"}
    assert ui.children[1].outputs[0]["text"] == card(next(s for s in SPECS if s.name == "count_set_bits")) + "\n"
    fig = composition_figure(SPECS)
    heat = next(t for t in fig.data if t.type == "heatmap")
    n_single = sum(len(s.params) == 1 for s in SPECS)
    assert len(heat.z) == 100 and len(heat.z[0]) == n_single
    assert sum(map(sum, heat.z)) == len(atomic.composition_edges(SPECS))


def _labkit(*args):
    return subprocess.run([sys.executable, "-m", "labkit", "atomic", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_json_lists_100_specs_over_10_topics():
    proc = _labkit("--json", "--preset", "smoke")
    assert proc.returncode == 0, proc.stderr
    specs = json.loads(proc.stdout)
    assert len(specs) == 100 and len({s["topic"] for s in specs}) >= 10
    assert {"name", "topic", "prompts", "signature", "source", "tests"} <= set(specs[0])
    assert all(len(s["tests"]) == 5 for s in specs)


def test_cli_unknown_key_exits_2_naming_it():
    proc = _labkit("--set", "nosuchkey=1")
    assert proc.returncode == 2
    assert "nosuchkey" in proc.stderr and "n_tests" in proc.stderr
