"""Pretraining the embedded base model: corpus, schedule, output format, and exact resume after a kill."""
import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import transformers

from labkit import cli, config, models, pretrain, runs
from labkit.pretrain import PretrainConfig

# A tiny run: small corpus, short blocks, a few steps. Two threads at most, like the lab on its 2 cores.
TINY = {"model.size": "tiny", "model.device": "cpu", "steps": 12, "batch_size": 4, "seq_len": 64, "warmup": 3,
        "log_every": 2, "eval_every": 4, "eval_blocks": 2, "save_every": 4, "stdlib_chars": 40_000,
        "atomic_repeat": 2}


def tiny(out_dir, **overrides) -> PretrainConfig:
    return config.resolve(PretrainConfig, None, {**TINY, "out_dir": str(out_dir), **overrides})


def test_corpus_holds_the_atomic_tasks_verbatim_and_a_disjoint_heldout():
    cfg = tiny("unused")
    docs = pretrain.corpus(cfg)
    atomic = models.atomic_documents()
    assert docs["atomic"] == atomic
    assert all(docs["train"].count(d) >= cfg.atomic_repeat for d in atomic)
    assert not set(docs["heldout"]) & set(docs["train"])
    assert all(d.startswith("def ") for d in docs["heldout"])


def test_batch_order_is_a_function_of_seed_and_step_and_covers_each_epoch():
    n, bs = 10, 4
    first = [i for step in range(5) for i in pretrain.batch_indices(step, bs, n, seed=0)]
    assert sorted(first[:10]) == list(range(10)) and sorted(first[10:20]) == list(range(10))
    assert pretrain.batch_indices(3, bs, n, seed=0) == first[12:16]
    assert pretrain.batch_indices(0, bs, n, seed=1) != first[:4]


def test_lr_warms_up_then_decays_to_a_tenth():
    cfg = PretrainConfig(steps=100, warmup=10, lr=1.0)
    assert pretrain.lr_at(0, cfg) == pytest.approx(0.1)
    assert pretrain.lr_at(9, cfg) == pytest.approx(1.0)
    assert pretrain.lr_at(99, cfg) == pytest.approx(0.1, abs=0.01)
    assert all(pretrain.lr_at(s, cfg) >= pretrain.lr_at(s + 1, cfg) for s in range(10, 99))


def test_pretrain_learns_and_writes_a_loadable_model(tmp_path):
    final = pretrain.train(tiny(tmp_path, steps=30, **{"lr": 1e-2}))
    assert final == tmp_path / "model"
    model = transformers.AutoModelForCausalLM.from_pretrained(final)
    tokenizer = transformers.AutoTokenizer.from_pretrained(final)
    assert tokenizer.decode(tokenizer("    return x\n")["input_ids"]) == "    return x\n"
    assert isinstance(model, transformers.LlamaForCausalLM)
    rows = runs.read_jsonl(tmp_path / "metrics.jsonl")
    assert {(r["split"], r["metric"]) for r in rows} >= {("train", "train_loss"), ("heldout", "loss"), ("atomic", "loss")}
    heldout = [r["value"] for r in rows if r["split"] == "heldout"]
    assert heldout[-1] < heldout[0] - 0.5     # it learned something
    # the run directory itself works as a model path (its final model is model/)
    loaded, _ = models.load(models.ModelConfig(name_or_path=str(tmp_path), device="cpu"))
    assert all(torch.equal(p, q) for p, q in zip(loaded.parameters(), model.parameters()))


def _weights(path: Path) -> dict:
    return transformers.AutoModelForCausalLM.from_pretrained(path).state_dict()


def test_killed_run_resumes_from_its_last_checkpoint_and_ends_identical(tmp_path, stage_env):
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    overrides = {**TINY, "steps": 40, "save_every": 5, "eval_every": 20}
    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "labkit", "pretrain", "--out", str(out),
                *(a for key, value in overrides.items() for a in ("--set", f"{key}={value}"))]
    args, env = command(killed), stage_env
    # The uninterrupted run goes beside the one to be killed: one core each.
    reference = subprocess.Popen(command(straight), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = runs.RunDir(killed)
    deadline = time.time() + 120
    while run.checkpoint("last") is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(run.checkpoint("last") / "trainer_state.pt", weights_only=False)["step"]
    assert 0 < killed_at < 150
    assert subprocess.run(args, env=env, capture_output=True).returncode == 0   # the same command resumes
    assert reference.wait(timeout=300) == 0
    a, b = _weights(killed / "model"), _weights(straight / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [(r["step"], r["split"], r["metric"]) for r in runs.read_jsonl(killed / "metrics.jsonl")]
    assert len(steps) == len(set(steps)), "metric lines were duplicated by the resume"


def test_resuming_with_other_settings_is_refused(tmp_path):
    pretrain.train(tiny(tmp_path, steps=2, save_every=2))
    with pytest.raises(config.UserError, match="different config"):
        pretrain.train(tiny(tmp_path, steps=2, save_every=2, seq_len=32))


def test_cli_bad_model_path_exits_2(tmp_path, capsys):
    code = cli.main(["pretrain", "--out", str(tmp_path), "--set", "model.name_or_path=/no/such/dir"])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_presets_resolve():
    for preset in PretrainConfig.PRESETS:
        cfg = config.resolve(PretrainConfig, preset)
        assert cfg.model.size in models.SIZES and cfg.save_every <= cfg.steps
