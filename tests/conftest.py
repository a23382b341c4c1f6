"""Fixtures shared by the test files. Each name means one thing:

    tokenizer       the embedded tokenizer (BPE trained by the lab itself)
    tiny_llama      (model, tokenizer): a random tiny Llama with that tokenizer, in memory, on the CPU
    tiny_model_dir  the same tiny model saved as a local Hugging Face model directory (a path, for stages)
    smoke_data      a small data directory in synth's format (a path)
    stage_env       the environment of a stage process a test starts (`python -m labkit ...`): one torch
                    thread each, no OpenMP spin-wait, so two processes side by side get a core each
"""
import json
import os

import pytest

from labkit import atomic, models, runs, tasks


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
