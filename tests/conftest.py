"""Fixtures shared by the test files. Each name means one thing:

    tokenizer       the embedded tokenizer (BPE trained by the lab itself)
    tiny_llama      (model, tokenizer): a random tiny Llama with that tokenizer, in memory, on the CPU
    tiny_model_dir  the same tiny model saved as a local Hugging Face model directory (a path, for stages)
    smoke_data      a small data directory in synth's format (a path)
    add_one_rollout a factory of hand-written rollouts of one task (`.line_error`: a body with a NameError)
    fake_run        a factory of run directories as a trainer writes them (metrics, samples), for readers
    stage_env       the environment of a stage process a test starts (`python -m labkit ...`): one torch
                    thread each, no OpenMP spin-wait, so two processes side by side get a core each
"""
import json
import os

import torch

import pytest

from labkit import atomic, models, rollouts, runs, sampling, tasks


@pytest.fixture(scope="session")
def stage_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


@pytest.fixture(scope="session")
def tokenizer():
    return models.embedded_tokenizer()


@pytest.fixture(scope="module")
def tiny_llama():
    return models.load(models.ModelConfig(size="tiny", device="cpu"), seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("model") / "tiny"
    model, tok = models.load(models.ModelConfig(size="tiny"), seed=0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory) -> str:
    """The trainers only read tasks, so atomic tasks stand in for every split: it keeps their tests independent
    of synthesis time (tests/test_synth.py covers synth)."""
    out = tmp_path_factory.mktemp("data")
    atoms = tasks.atom_base(atomic.library(0))
    splits = {"atom_base": atoms[:80], "train_A": atoms[80:88], "train_B": atoms[80:96], "train_C": atoms[80:120],
              "test_in_domain": atoms[120:136], "test_target": atoms[136:152]}
    for split, task_list in splits.items():
        runs.write_jsonl(out / f"{split}.jsonl", [{**t.to_json(), "split": split} for t in task_list])
    (out / "manifest.json").write_text(json.dumps({"counts": {s: len(t) for s, t in splits.items()}}))
    return str(out)


@pytest.fixture(scope="session")
def add_one_rollout():
    """`make(tokenizer, bodies)`: one completion per body for one task (`def add_one`), laid out (right-padded)
    as `rollouts.sample` lays out sampled completions. `make.line_error` is a body whose third line raises a
    NameError (what `fine` rewards pin to a line)."""
    prompt = 'def add_one(x: int) -> int:\n    """Add one to x."""\n'

    def make(tokenizer, bodies: list[str]) -> rollouts.Rollout:
        task = tasks.Task(id="t", split="train_A", prompt=prompt, entry_point="add_one", solution="    return x + 1\n",
                          tests=[{"args": [1], "expected": 2}, {"args": [5], "expected": 6}], atoms=[], depth=1)
        pieces = sampling.token_pieces(tokenizer)
        ids = [tokenizer(b, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for b in bodies]
        texts, spans = zip(*(rollouts._spans(tokenizer, pieces, x) for x in ids))
        assert list(texts) == list(bodies)
        width = max(map(len, ids))
        prompt_ids, prompt_mask = sampling.encode_prompts(tokenizer, [prompt] * len(bodies), "cpu")
        batch = dict(prompt_ids=prompt_ids, prompt_mask=prompt_mask,
                     completion_ids=torch.tensor([x + [tokenizer.pad_token_id] * (width - len(x)) for x in ids]),
                     completion_mask=torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids]))
        return rollouts.Rollout([task] * len(bodies), batch, list(bodies), list(bodies), list(spans),
                                [False] * len(bodies))

    make.prompt = prompt
    make.line_error = "    y = x + 1\n    z = y * 2\n    return undefined_name + z\n"
    return make


@pytest.fixture(scope="session")
def fake_run():
    """`make(path, seed=0, lr=1e-3, steps=..., peak_at=20)`: a run directory as a trainer writes it, with train
    pass@1 rising and held-out pass@1 peaking at `peak_at` then falling, and samples at every evaluation."""
    def make_run(path, seed=0, lr=1e-3, steps=(0, 10, 20, 30, 40), peak_at=20):
        path.mkdir(parents=True)
        (path / "config.json").write_text(json.dumps({"seed": seed, "lr": lr, "out_dir": str(path)}))
        records = []
        for i, step in enumerate(steps):
            train = min(1.0, 0.2 * i + 0.01 * seed)
            held = 0.5 - abs(step - peak_at) / 100 + 0.01 * seed
            for split, value in (("train", train), ("test_target", held)):
                for metric, v in (("pass@1", value), ("pass@5", min(1.0, value + 0.1))):
                    records.append({"step": step, "epoch": step / 20, "tokens": step * 512, "wall_time": step * 1.5
                                    + seed, "split": split, "metric": metric, "value": v})
        runs.write_jsonl(path / "metrics.jsonl", records)
        for i, step in enumerate(steps):
            samples = []
            for t in range(6):
                status = "pass" if t < i + 1 else ["fail", "runtime_error", "syntax_error"][t % 3]
                samples.append({"task_id": f"t{t}", "split": ("train", "test_target")[t % 2],
                                "atoms": ["add", f"atom{t % 3}"], "completion": f"    return x < {t}\n", "status": status,
                                "error_type": "NameError" if status == "runtime_error" else None})
            runs.write_jsonl(path / "samples" / f"step-{step:06d}.jsonl", samples)
        return path

    return make_run


def pytest_collection_modifyitems(items):
    """Tests marked `longest` run first: under `pytest -n 2` (test.sh) the other worker takes the many short
    tests meanwhile, instead of one worker starting the longest test last while the other idles."""
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)
