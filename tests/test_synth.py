"""The synthetic data pipeline: determinism, correctness of every record, the split rule, no leaks, bad input."""
import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import atomic, compose, config, sandbox, synth, tasks, validation

ROOT = Path(__file__).resolve().parents[1]


def make(out_dir, **overrides):
    cfg = config.resolve(synth.SynthConfig, "smoke", {"out_dir": str(out_dir), **overrides})
    return cfg, synth.synthesize(cfg, progress=False)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "seed0"
    cfg, manifest = make(out)
    return out, cfg, manifest, {s: tasks.load_split(out, s) for s in tasks.SPLITS}


def digests(out_dir: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out_dir.iterdir())}


def test_same_seed_same_bytes_other_seed_differs(smoke, tmp_path):
    out, _, manifest, _ = smoke
    make(tmp_path / "again")
    assert digests(tmp_path / "again") == digests(out)          # manifest.json included
    make(tmp_path / "seed1", seed=1)
    other = digests(tmp_path / "seed1")
    assert all(other[name] != digests(out)[name] for name in other)
    assert manifest["sha256"] == {n: h for n, h in digests(out).items() if n != "manifest.json"}


def test_counts_and_nested_pools(smoke):
    _, cfg, manifest, splits = smoke
    assert manifest["counts"] == {s: len(splits[s]) for s in tasks.SPLITS}
    ids = {s: [t.id for t in splits[s]] for s in tasks.SPLITS}
    assert len(ids["train_A"]) == cfg.pool_a and len(ids["train_C"]) == cfg.pool_c
    assert ids["train_A"] == ids["train_B"][:cfg.pool_a] and ids["train_B"] == ids["train_C"][:cfg.pool_b]
    assert all(len(set(v)) == len(v) for v in ids.values())
    assert len(splits["test_in_domain"]) == cfg.n_in_domain
    assert {k: sum(t.kind == k for t in splits["test_target"]) for k in tasks.KINDS} == \
        {k: cfg.n_target for k in tasks.KINDS}
    assert all(t.split == s for s in tasks.SPLITS for t in splits[s])
    specs = atomic.library(cfg.seed, cfg.n_tests)
    assert len(splits["atom_base"]) == len(splits["atom_call"]) == sum(len(s.prompts) for s in specs)
    assert all(len(t.tests) >= 5 for s in tasks.SPLITS for t in splits[s])


def test_every_record_passes_its_tests_in_the_sandbox(smoke):
    _, _, _, splits = smoke
    records = [t for s in ("atom_base", "atom_call", "train_C", "test_in_domain", "test_target") for t in splits[s]]
    verdicts = sandbox.run_many([tasks.program(t, t.solution) for t in records],
                                [tasks.test_snippets(t) for t in records], timeout=5)
    failed = [(t.id, v.status, v.stderr[-300:]) for t, v in zip(records, verdicts) if v.status != "pass"]
    assert not failed
    assert all(v.tests_passed == len(t.tests) for t, v in zip(records, verdicts))


def test_inline_style_runs_without_context(tmp_path):
    _, manifest = make(tmp_path, style="inline", pool_a=2, pool_b=2, pool_c=4, n_in_domain=2, n_target=2)
    records = tasks.load_split(tmp_path, "train_C") + tasks.load_split(tmp_path, "test_target")
    assert all(t.context == "" and "    def " in t.solution for t in records)
    verdicts = sandbox.run_many([tasks.program(t, t.solution) for t in records],
                                [tasks.test_snippets(t) for t in records], timeout=5)
    assert [v.status for v in verdicts] == ["pass"] * len(records)


def test_split_rule_held_out_atoms_pairs_and_depth(smoke):
    _, cfg, manifest, splits = smoke
    held_atoms = set(manifest["held_out_atoms"])
    held_pairs = {tuple(p) for p in manifest["held_out_pairs"]}
    assert len(held_atoms) == cfg.n_held_out_atoms and len(held_pairs) == cfg.n_held_out_pairs
    assert held_atoms <= {t.atoms[0] for t in splits["atom_base"]}
    # atom_call: each atom (held-out ones too) once per phrasing, as a one-line call named by no atom
    specs = atomic.by_name(cfg.seed, cfg.n_tests)
    assert sorted((t.atoms[0], t.prompt.split('"""')[1]) for t in splits["atom_call"]) == sorted(
        (name, compose._cap(p.format(**{q: q for q, _ in spec.params})) + ".")
        for name, spec in specs.items() for p in spec.prompts)
    for t in splits["atom_call"]:
        assert t.solution.strip() == f"return {t.atoms[0]}({', '.join(p for p, _ in specs[t.atoms[0]].params)})"
        assert t.entry_point.startswith("task_") and t.context == specs[t.atoms[0]].source + "\n\n"
    for s in ("train_C", "test_in_domain"):
        for t in splits[s]:
            assert not held_atoms & set(t.atoms), (s, t.atoms)
            assert not held_pairs & set(zip(t.atoms, t.atoms[1:])), (s, t.atoms)
            assert 2 <= t.depth == len(t.atoms) <= cfg.max_depth
    for t in splits["test_target"]:
        atoms, pairs = set(t.atoms), set(zip(t.atoms, t.atoms[1:]))
        if t.kind == "held_out_atom":
            assert atoms & held_atoms and not pairs & held_pairs and t.depth <= cfg.max_depth
        elif t.kind == "held_out_pair":
            assert pairs & held_pairs and not atoms & held_atoms and t.depth <= cfg.max_depth
        else:
            assert t.kind == "deeper" and t.depth == cfg.target_depth and not atoms & held_atoms
            assert not pairs & held_pairs


def _function(t):
    scope = {}
    exec(t.context + t.prompt + t.solution, scope)
    return scope[t.entry_point]


def test_no_test_function_duplicates_a_train_or_another_test_function(smoke):
    _, _, _, splits = smoke
    train, test = splits["train_C"], splits["test_in_domain"] + splits["test_target"]
    sources = [synth.normalised_source(t) for t in train + test]
    assert len(set(sources)) == len(sources)
    for i, t in enumerate(test):
        header = t.prompt.split("(", 1)[1].split(":\n", 1)[0]            # parameter and return types
        for other in train + test[:i] + test[i + 1:]:
            if other.prompt.split("(", 1)[1].split(":\n", 1)[0] != header:
                continue
            fn = _function(other)
            try:
                same = all(json.loads(json.dumps(fn(*c["args"]))) == c["expected"] for c in t.tests)
            except Exception:
                same = False
            assert not same, f"{t.id} {t.atoms} behaves like {other.id} {other.atoms} on its tests"


def test_validation_rejects_what_it_should(smoke):
    _, cfg, _, _ = smoke
    specs = atomic.library(cfg.seed, cfg.n_tests)
    graph = compose.Graph.build(specs)
    inputs = {s.name: compose.test_inputs(s, cfg.seed, cfg.n_tests) for s in specs}
    chains = {"redundant": ["sort_ascending", "sort_ascending"], "constant": ["sort_ascending", "is_sorted"],
              "ok": ["reverse_list", "running_sum"]}
    cands = [compose.make_candidate(graph, c, cfg, random.Random(0), set()) for c in chains.values()]
    results = validation.validate(graph, cands, inputs, cfg)
    assert [r[0] for r in results] == list(chains)
    assert compose.shorter_chains(graph, ["reverse_list", "reverse_list"]) == [["reverse_list"], [], ["reverse_list"]]


@pytest.mark.parametrize("overrides, words", [
    ({"pool_c": -1}, "pool_c must be >= 0"),
    ({"max_depth": 0}, "max_depth must be >= 2"),
    ({"pool_a": 50, "pool_b": 10}, "nested"),
    ({"target_depth": 3}, "target_depth must exceed"),
    ({"n_held_out_atoms": 1000}, "at most"),
    ({"n_held_out_pairs": 0}, "leaves nothing for the held_out_pair kind"),
    ({"pool_c": 10**7}, "allows at most"),
])
def test_bad_input_exits_2_with_what_is_possible(tmp_path, overrides, words):
    args = [f"--set={k}={v}" for k, v in overrides.items()]
    proc = subprocess.run([sys.executable, "-m", "labkit", "synth", "--preset", "smoke", "--out",
                           str(tmp_path / "d"), *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr
    assert not (tmp_path / "d").exists()


def test_cli_and_loaders(tmp_path, smoke):
    out, _, _, _ = smoke
    proc = subprocess.run([sys.executable, "-m", "labkit", "synth", "--preset", "smoke", "--seed", "0", "--out",
                           str(tmp_path / "cli")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "train_C" in proc.stdout and "rejections" in proc.stdout
    assert digests(tmp_path / "cli") == digests(out)
    assert not list((tmp_path / "cli").glob("*.tmp"))
    import datasets
    import pandas as pd
    for split in tasks.SPLITS:
        frame = pd.read_json(out / f"{split}.jsonl", lines=True)
        ds = datasets.load_dataset("json", data_files=str(out / f"{split}.jsonl"), split="train",
                                   cache_dir=str(tmp_path / "hf"))
        assert len(frame) == len(ds) == len(tasks.load_split(out, split))
        assert {"id", "split", "prompt", "entry_point", "solution", "tests", "atoms", "depth"} <= set(ds.column_names)


def test_frame_funnel_and_the_data_figures(smoke):
    # synth.frame and synth.funnel are the numbers; labkit.viz.data draws them (notebook 02)
    from labkit.viz import data as views

    out, _, manifest, splits = smoke
    loaded, records = synth.frame(out)
    assert loaded["sha256"] == manifest["sha256"] and len(records) == sum(len(v) for v in splits.values())
    topic = {s.name: s.topic for s in atomic.library()}
    assert all(r.topics == [topic[a] for a in r.atoms] for r in records.itertuples())
    stages = synth.funnel(manifest)
    assert list(stages.values()) == sorted(stages.values(), reverse=True)
    assert stages["kept"] == sum(manifest["counts"][s] for s in ("train_C", "test_in_domain", "test_target"))

    assert list(views.funnel_figure(manifest).data[0].x) == list(stages.values())
    assert sum(sum(t.y) for t in views.depth_histogram(records).data) == len(records)
    shown = records[records.split.isin(["atom_base", "train_C", "test_in_domain", "test_target"])]
    assert sum(sum(t.y) for t in views.topic_histogram(records).data) == shown.topics.map(len).sum()
    z = views.pair_coverage(records, manifest).data[0].z
    names = sorted(atomic.library(), key=lambda s: (s.topic, s.name))
    in_train = {(f.name, g.name) for g_row, g in zip(z, names) for f, cell in zip(names, g_row) if cell & 1}
    assert in_train == {p for a in records[records.split == "train_C"].atoms for p in zip(a, a[1:])}
    assert not in_train & {tuple(p) for p in manifest["held_out_pairs"]}

    ui = views.record_browser(records)
    split, index = ui.children[0].children
    target = records[records.split == "test_target"]
    assert index.max == len(target) - 1
    assert ui.children[1].outputs[0]["text"] == views.show_record(target.iloc[0]) + "\n"
    split.value = "train_A"
    assert ui.children[1].outputs[0]["text"].startswith("# train_A ")
