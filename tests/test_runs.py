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


def test_resume_drops_rollout_files_of_steps_after_the_last_checkpoint(tmp_path):
    model, tok = _tiny()
    run = runs.RunDir(tmp_path)
    for step in range(1, 7):   # the rollout file of step s is written while step s is taken, before its checkpoint
        run.write_rollouts(step, [{"task_id": "t", "status": "pass", "reward": 1.0}] * 2)
        if step == 4:
            run.save_checkpoint(step, model, tok, {"epoch": 0})
    (tmp_path / "rollouts" / ".step-000007.jsonl.gz.tmp").write_bytes(b"\x1f\x8b")   # a kill mid-write
    assert runs.rollout_steps(tmp_path) == [1, 2, 3, 4, 5, 6]

    runs.RunDir(tmp_path).resume()
    assert sorted(p.name for p in (tmp_path / "rollouts").iterdir()) == [f"step-{s:06d}.jsonl.gz" for s in (1, 2, 3, 4)]
    df = runs.read_rollouts(tmp_path)
    assert df.step.tolist() == [1, 1, 2, 2, 3, 3, 4, 4] and set(df.columns) == {"step", "task_id", "status", "reward"}
    assert runs.read_rollouts(tmp_path, steps=[2, 9]).step.tolist() == [2, 2]
    # Taking steps 5 and 6 again writes one file each: none lost, none twice.
    resumed = runs.RunDir(tmp_path)
    for step in (5, 6):
        resumed.write_rollouts(step, [{"task_id": "t", "status": "fail", "reward": 0.0}])
    assert runs.rollout_steps(tmp_path) == [1, 2, 3, 4, 5, 6]
    assert runs.read_rollouts(tmp_path).groupby("step").size().tolist() == [2, 2, 2, 2, 1, 1]


def test_a_fresh_run_drops_the_rollouts_of_a_run_killed_before_its_first_checkpoint(tmp_path):
    run = runs.RunDir(tmp_path)
    run.write_rollouts(1, [{"task_id": "t"}])
    assert runs.RunDir(tmp_path).resume() is None
    assert runs.rollout_steps(tmp_path) == [] and runs.read_rollouts(tmp_path).empty
    assert "step" in runs.read_rollouts(tmp_path / "nowhere").columns
