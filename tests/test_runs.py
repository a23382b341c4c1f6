"""Run directories: config guard, metrics that survive a kill, checkpoints that keep last and best."""
import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from tokenizers import Tokenizer
from tokenizers.models import WordLevel

from labkit import runs
from labkit.atomic import AtomicConfig
from labkit.config import UserError


def _tiny():
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"a": 0, "<unk>": 1}, "<unk>")))
    return model, tok


def test_config_mismatch_is_refused(tmp_path):
    runs.RunDir(tmp_path, AtomicConfig())
    runs.RunDir(tmp_path, AtomicConfig())  # same config: fine
    with pytest.raises(UserError, match="seed"):
        runs.RunDir(tmp_path, AtomicConfig(seed=1))


def test_resume_drops_metrics_after_last_checkpoint(tmp_path):
    model, tok = _tiny()
    run = runs.RunDir(tmp_path)
    for step in range(0, 7):
        run.log([{"step": step, "split": "train", "metric": "loss", "value": 1.0 / (step + 1)}])
        if step in (2, 4):
            run.save_checkpoint(step, model, tok, {"epoch": 0}, score=float(step == 2))
    run.write_samples(6, [{"x": 1}])
    # A kill mid-append leaves a torn last line.
    with open(run.metrics_path, "a") as f:
        f.write('{"step": 7, "spl')

    again = runs.RunDir(tmp_path)
    state = again.resume()
    assert state["step"] == 4 and state["epoch"] == 0
    assert [r["step"] for r in again.metrics()] == [0, 1, 2, 3, 4]
    assert not (tmp_path / "samples" / "step-000006.jsonl").exists()
    index = json.loads((tmp_path / "checkpoints" / "index.json").read_text())
    assert index["last"] == "step-000004" and index["best"] == "step-000002"
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-000002", "step-000004"]
    assert (again.checkpoint("last") / "config.json").exists()


def test_fresh_run_clears_metrics_of_a_run_killed_before_its_first_checkpoint(tmp_path):
    run = runs.RunDir(tmp_path)
    run.log([{"step": 0, "split": "train", "metric": "loss", "value": 2.0}])
    assert runs.RunDir(tmp_path).resume() is None
    assert runs.RunDir(tmp_path).metrics() == []
